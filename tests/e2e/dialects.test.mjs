// dialects.test.mjs: the three official client SDKs from npm (openai, @anthropic-ai/sdk, @google/genai)
// pointed at the gateway, with only the base URL changed, reaching the OpenAI-shaped mock provider.
// For the Anthropic and Gemini clients the translation is on (dialect -> neutral -> OpenAI wire and
// back); the OpenAI client takes the passthrough. Checked for each: the answer's text, token usage in
// the client's own semantics, streaming, tool calls, errors in the client's dialect, and the usage row
// in PostgreSQL (exact tokens and cost).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { GoogleGenAI } from '@google/genai';
import OpenAI from 'openai';
import { MODEL, UPSTREAM_MODEL, expectedCost, mockText, startCluster } from './harness.mjs';

let c;
let seed;
let dp;

before(async () => {
  c = await startCluster({ dataplanes: 1, label: 'dialects' });
  seed = await c.seed();
  dp = c.dataplanes[0];
});

after(async () => {
  await c?.stop();
});

const anthropic = () => new Anthropic({ apiKey: seed.key.key, baseURL: `${dp.url}/anthropic`, maxRetries: 0 });
const gemini = () => new GoogleGenAI({ apiKey: seed.key.key, httpOptions: { baseUrl: `${dp.url}/genai` } });
const openai = () => new OpenAI({ apiKey: seed.key.key, baseURL: `${dp.url}/v1`, maxRetries: 0 });

// The mock counts 4 + ceil(bytes / 4) per message; the system prompt arrives as one message.
const SYSTEM = 'be brief'; // 8 bytes -> 6
const USER = 'hi there'; // 8 bytes -> 6
const PROMPT_TOKENS = 12;

async function lastUsageRow(endpoint) {
  let rows = [];
  for (let i = 0; i < 100 && rows.length === 0; i++) {
    rows = await c.sql(
      'SELECT * FROM usage_events WHERE endpoint = $1 ORDER BY ts DESC LIMIT 1', [endpoint]);
    if (rows.length === 0) await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(rows.length, 1, `a usage row for ${endpoint}`);
  return rows[0];
}

describe('Anthropic SDK -> OpenAI-shaped provider', () => {
  test('messages.create: text, usage, stop reason; the upstream got an OpenAI body', async () => {
    const msg = await anthropic().messages.create({
      model: MODEL, max_tokens: 100, system: SYSTEM, messages: [{ role: 'user', content: USER }],
    });
    assert.equal(msg.type, 'message');
    assert.equal(msg.role, 'assistant');
    assert.equal(msg.content[0].type, 'text');
    assert.equal(msg.content[0].text, mockText(16));
    assert.equal(msg.stop_reason, 'end_turn');
    assert.equal(msg.usage.input_tokens, PROMPT_TOKENS);
    assert.equal(msg.usage.output_tokens, 16);
    const last = await (await fetch(`${c.mockUrl}/__mock/last`)).json();
    assert.equal(last.body.model, UPSTREAM_MODEL);
    assert.equal(last.body.messages[0].role, 'system');
    assert.equal(last.body.max_tokens ?? last.body.max_completion_tokens, 100);
    const row = await lastUsageRow('messages');
    assert.equal(Number(row.input_tokens), PROMPT_TOKENS);
    assert.equal(Number(row.output_tokens), 16);
    assert.equal(BigInt(row.cost_nanousd), expectedCost({ input: PROMPT_TOKENS, output: 16 }));
  });

  test('max_tokens below the reply length: stop_reason max_tokens', async () => {
    const msg = await anthropic().messages.create({
      model: MODEL, max_tokens: 3, messages: [{ role: 'user', content: USER }],
    });
    assert.equal(msg.content[0].text, mockText(3));
    assert.equal(msg.stop_reason, 'max_tokens');
  });

  test('messages.stream: text deltas in order, final message with usage', async () => {
    const stream = anthropic().messages.stream({
      model: MODEL, max_tokens: 100, system: SYSTEM, messages: [{ role: 'user', content: `${USER} [mock:tokens=5]` }],
    });
    const deltas = [];
    stream.on('text', (t) => deltas.push(t));
    const final = await stream.finalMessage();
    assert.equal(deltas.join(''), mockText(5));
    assert.equal(final.content[0].text, mockText(5));
    assert.equal(final.stop_reason, 'end_turn');
    assert.equal(final.usage.output_tokens, 5);
    assert.ok(final.usage.input_tokens > 0, 'input tokens reported at the end');
  });

  test('tools: a tool_use block with parsed input, stop_reason tool_use (stream and not)', async () => {
    const tools = [{ name: 'get_weather', description: 'weather', input_schema: {
      type: 'object', properties: { location: { type: 'string' } }, required: ['location'] } }];
    const body = { model: MODEL, max_tokens: 100, tools,
      messages: [{ role: 'user', content: 'weather in Paris? [mock:tool_calls=1]' }] };
    const msg = await anthropic().messages.create(body);
    const use = msg.content.find((b) => b.type === 'tool_use');
    assert.ok(use, `a tool_use block in ${JSON.stringify(msg.content)}`);
    assert.equal(use.name, 'get_weather');
    assert.deepEqual(use.input, { location: 'Paris', unit: 'celsius' });
    assert.equal(msg.stop_reason, 'tool_use');
    const final = await anthropic().messages.stream(body).finalMessage();
    const suse = final.content.find((b) => b.type === 'tool_use');
    assert.ok(suse, `a streamed tool_use block in ${JSON.stringify(final.content)}`);
    assert.deepEqual(suse.input, { location: 'Paris', unit: 'celsius' });
    assert.equal(final.stop_reason, 'tool_use');

    // the tool result goes back; the upstream sees an OpenAI tool message
    await anthropic().messages.create({ model: MODEL, max_tokens: 50, tools, messages: [
      body.messages[0],
      { role: 'assistant', content: [{ type: 'tool_use', id: use.id, name: use.name, input: use.input }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: '18 C' }] },
    ] });
    const last = await (await fetch(`${c.mockUrl}/__mock/last`)).json();
    const toolMsg = last.body.messages.find((m) => m.role === 'tool');
    assert.ok(toolMsg, 'an OpenAI tool message upstream');
    assert.equal(toolMsg.tool_call_id, last.body.messages.find((m) => m.tool_calls).tool_calls[0].id);
  });

  test('errors arrive in Anthropic shape: unknown model 404, bad key 401, provider 529/503', async () => {
    await assert.rejects(
      anthropic().messages.create({ model: 'no-such-model', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }),
      (err) => err.status === 404 && err.error?.type === 'error' && err.error?.error?.type === 'not_found_error');
    const bad = new Anthropic({ apiKey: 'tg-wrong', baseURL: `${dp.url}/anthropic`, maxRetries: 0 });
    await assert.rejects(bad.messages.create({ model: MODEL, max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }),
      (err) => err.status === 401 && err.error?.error?.type === 'authentication_error');
    await assert.rejects(
      anthropic().messages.create({ model: MODEL, max_tokens: 5, messages: [{ role: 'user', content: 'x [mock:status=503]' }] }),
      (err) => [503, 529].includes(err.status) && err.error?.error?.type === 'overloaded_error');
    // missing max_tokens is the client's mistake, as Anthropic says
    const res = await fetch(`${dp.url}/anthropic/v1/messages`, { method: 'POST',
      headers: { 'x-api-key': seed.key.key, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
      body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'x' }] }) });
    assert.equal(res.status, 400);
    const b = await res.json();
    assert.equal(b.type, 'error');
    assert.equal(b.error.type, 'invalid_request_error');
  });

  test('a failure mid-stream ends the stream with an error event, never a clean stop', async () => {
    const stream = anthropic().messages.stream({ model: MODEL, max_tokens: 100,
      messages: [{ role: 'user', content: 'x [mock:tokens=6,error_after=2]' }] });
    await assert.rejects(stream.finalMessage());
  });
});

describe('Google GenAI SDK -> OpenAI-shaped provider', () => {
  test('generateContent: text, usageMetadata, finishReason', async () => {
    const res = await gemini().models.generateContent({
      model: MODEL, contents: USER, config: { systemInstruction: SYSTEM, maxOutputTokens: 100 } });
    assert.equal(res.text, mockText(16));
    assert.equal(res.candidates[0].finishReason, 'STOP');
    assert.equal(res.usageMetadata.promptTokenCount, PROMPT_TOKENS);
    assert.equal(res.usageMetadata.candidatesTokenCount, 16);
    const row = await lastUsageRow('generateContent');
    assert.equal(Number(row.input_tokens), PROMPT_TOKENS);
    assert.equal(Number(row.output_tokens), 16);
  });

  test('generateContentStream: chunks join to the text; usage in the last chunk', async () => {
    const stream = await gemini().models.generateContentStream({ model: MODEL, contents: `${USER} [mock:tokens=4]` });
    let text = '';
    let last;
    for await (const chunk of stream) {
      text += chunk.text ?? '';
      last = chunk;
    }
    assert.equal(text, mockText(4));
    assert.equal(last.usageMetadata.candidatesTokenCount, 4);
  });

  test('function calling: a functionCall part with args', async () => {
    const res = await gemini().models.generateContent({ model: MODEL, contents: 'weather? [mock:tool_calls=1]',
      config: { tools: [{ functionDeclarations: [{ name: 'get_weather', parameters: {
        type: 'OBJECT', properties: { location: { type: 'STRING' } } } }] }] } });
    assert.ok(res.functionCalls?.length === 1, JSON.stringify(res.candidates));
    assert.equal(res.functionCalls[0].name, 'get_weather');
    assert.deepEqual(res.functionCalls[0].args, { location: 'Paris', unit: 'celsius' });
  });

  test('errors arrive in Google shape', async () => {
    await assert.rejects(gemini().models.generateContent({ model: 'no-such-model', contents: 'x' }),
      (err) => err.status === 404);
    const res = await fetch(`${dp.url}/genai/v1beta/models/${MODEL}:generateContent?key=wrong`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"contents":[]}' });
    assert.equal(res.status, 401);
    const body = await res.json();
    assert.equal(body.error.code, 401);
    assert.equal(body.error.status, 'UNAUTHENTICATED');
  });
});

describe('OpenAI SDK: embeddings and legacy completions', () => {
  test('embeddings: the SDK asks for base64 by default and gets float vectors back', async () => {
    const res = await openai().embeddings.create({ model: MODEL, input: ['alpha', 'beta'] });
    assert.equal(res.data.length, 2);
    assert.ok(Array.isArray(res.data[0].embedding) && res.data[0].embedding.length > 0);
    assert.ok(res.data[0].embedding.every((v) => typeof v === 'number' && Number.isFinite(v)));
    assert.ok(res.usage.prompt_tokens > 0);
  });

  test('legacy completions', async () => {
    const res = await openai().completions.create({ model: MODEL, prompt: 'Say hi', max_tokens: 4 });
    assert.equal(res.object, 'text_completion');
    assert.equal(res.choices[0].text, mockText(4));
    assert.equal(res.choices[0].finish_reason, 'length');
  });
});
