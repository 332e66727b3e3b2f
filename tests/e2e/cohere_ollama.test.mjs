// cohere_ollama.test.mjs: Cohere v2 and Ollama's native API as upstreams, behind the three official
// client SDKs (openai, @anthropic-ai/sdk, @google/genai) with only their base URL changed. The cluster's
// mock provider speaks both wire formats (/v2/chat, /v2/embed; /api/chat, /api/embed): text, sampling
// and stop fields on the wire, usage (Cohere's billed_units, not its raw tokens; Ollama's eval counts),
// streaming (Cohere's named SSE events, Ollama's NDJSON), tool calls with streamed argument fragments
// (Cohere) or whole calls without ids (Ollama), tool results going back, errors before and after the
// 200, and embeddings.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { GoogleGenAI } from '@google/genai';
import OpenAI from 'openai';
import { headerValue, mockText, startCluster, mockVector } from './harness.mjs';

const CO_CHAT = 'co-chat';
const CO_EMBED = 'co-embed';
const OL_CHAT = 'ol-chat';
const OL_EMBED = 'ol-embed';
const CO_UPSTREAM = 'command-a-03-2025';
const OL_UPSTREAM = 'llama3.2';

// The mock counts 4 + ceil(bytes / 4) per message; the system prompt is one message.
const SYSTEM = 'be brief'; // 8 bytes -> 6
const USER = 'hi there'; // 8 bytes -> 6
const PROMPT_TOKENS = 12;
const COHERE_TEMPLATE = 8; // the mock's usage.tokens.input_tokens exceeds billed_units by this
const TOOLS_OPENAI = [{ type: 'function', function: { name: 'get_weather', description: 'weather',
  parameters: { type: 'object', properties: { location: { type: 'string' } }, required: ['location'] } } }];
const TOOLS_ANTHROPIC = [{ name: 'get_weather', description: 'weather',
  input_schema: { type: 'object', properties: { location: { type: 'string' } }, required: ['location'] } }];
const PARIS = { location: 'Paris', unit: 'celsius' };

let c;
let dp;
let key;

before(async () => {
  c = await startCluster({ dataplanes: 1, label: 'cohere-ollama' });
  dp = c.dataplanes[0];
  const tenant = await c.createTenant('cohere-ollama-tenant');
  const cohere = await c.adminOk('POST', '/admin/v1/providers', {
    name: 'cohere', kind: 'cohere', base_url: c.mockUrl, settings: {}, api_keys: [{ secret: c.mockSecret }] });
  const ollama = await c.adminOk('POST', '/admin/v1/providers', {
    name: 'ollama-native', kind: 'ollama_native', base_url: c.mockUrl, settings: {},
    api_keys: [{ secret: 'unused-by-ollama' }] });
  await c.createRoute(CO_CHAT, cohere.id, CO_UPSTREAM);
  await c.createRoute(CO_EMBED, cohere.id, 'embed-v4.0');
  await c.createRoute(OL_CHAT, ollama.id, OL_UPSTREAM);
  await c.createRoute(OL_EMBED, ollama.id, 'all-minilm');
  key = (await c.createKey(tenant.id, { name: 'cohere-ollama' })).key;
  for (const m of [CO_CHAT, CO_EMBED, OL_CHAT, OL_EMBED]) await c.waitModelVisible(key, m);
});

after(async () => {
  await c?.stop();
});

const openai = () => new OpenAI({ apiKey: key, baseURL: `${dp.url}/v1`, maxRetries: 0 });
const anthropic = () => new Anthropic({ apiKey: key, baseURL: `${dp.url}/anthropic`, maxRetries: 0 });
const gemini = () => new GoogleGenAI({ apiKey: key, httpOptions: { baseUrl: `${dp.url}/genai` } });
const last = async () => (await fetch(`${c.mockUrl}/__mock/last`)).json();

async function lastUsageRow(model) {
  for (let i = 0; i < 100; i++) {
    const rows = await c.sql('SELECT * FROM usage_events WHERE model = $1 ORDER BY ts DESC LIMIT 1', [model]);
    if (rows.length > 0) return rows[0];
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`no usage row for ${model}`);
}

async function collectOpenAIStream(stream) {
  let text = '';
  let finish = null;
  let usage = null;
  const args = {};
  const names = {};
  const ids = {};
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const ch of chunk.choices ?? []) {
      text += ch.delta?.content ?? '';
      for (const tc of ch.delta?.tool_calls ?? []) {
        args[tc.index] = (args[tc.index] ?? '') + (tc.function?.arguments ?? '');
        if (tc.function?.name) names[tc.index] = tc.function.name;
        if (tc.id) ids[tc.index] = tc.id;
      }
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  }
  return { text, finish, usage, args, names, ids };
}

describe('OpenAI SDK -> Cohere v2', () => {
  test('chat: text, billed usage, sampling and stop fields on the wire', async () => {
    const r = await openai().chat.completions.create({ model: CO_CHAT, max_tokens: 100, temperature: 0.5, top_p: 1,
      seed: 7, stop: ['END'], messages: [{ role: 'system', content: SYSTEM }, { role: 'user', content: USER }] });
    assert.equal(r.choices[0].message.content, mockText(16));
    assert.equal(r.choices[0].finish_reason, 'stop');
    assert.equal(r.usage.prompt_tokens, PROMPT_TOKENS, 'billed_units, not the raw tokens');
    assert.equal(r.usage.completion_tokens, 16);
    const l = await last();
    assert.equal(l.path, '/v2/chat');
    assert.equal(headerValue(l.headers, 'authorization'), `Bearer ${c.mockSecret}`);
    assert.equal(l.body.model, CO_UPSTREAM);
    assert.deepEqual(l.body.messages, [{ role: 'system', content: SYSTEM }, { role: 'user', content: USER }]);
    assert.equal(l.body.max_tokens, 100);
    assert.equal(l.body.temperature, 0.5);
    assert.equal(l.body.p, 0.99, 'top_p 1 clamped into Cohere p range');
    assert.equal(l.body.seed, 7);
    assert.deepEqual(l.body.stop_sequences, ['END']);
    assert.equal(l.body.stream, false);
    const row = await lastUsageRow(CO_CHAT);
    assert.equal(Number(row.input_tokens), PROMPT_TOKENS);
    assert.equal(Number(row.output_tokens), 16);
    assert.notEqual(Number(row.input_tokens), PROMPT_TOKENS + COHERE_TEMPLATE);
  });

  test('max_tokens below the reply: finish_reason length; json_object response_format', async () => {
    const r = await openai().chat.completions.create({ model: CO_CHAT, max_tokens: 3,
      response_format: { type: 'json_object' }, messages: [{ role: 'user', content: USER }] });
    assert.equal(r.choices[0].message.content, mockText(3));
    assert.equal(r.choices[0].finish_reason, 'length');
    assert.deepEqual((await last()).body.response_format, { type: 'json_object' });
  });

  test('stream: named SSE events become OpenAI chunks, usage at the end', async () => {
    const s = await openai().chat.completions.create({ model: CO_CHAT, stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: 'system', content: SYSTEM }, { role: 'user', content: `${USER} [mock:tokens=5]` }] });
    const got = await collectOpenAIStream(s);
    assert.equal(got.text, mockText(5));
    assert.equal(got.finish, 'stop');
    assert.equal(got.usage?.completion_tokens, 5);
    assert.equal(got.usage?.prompt_tokens, 6 + 10);
    assert.equal((await last()).body.stream, true);
  });

  test('tools: a call with parsed arguments, stream fragments joined, the result goes back', async () => {
    const body = { model: CO_CHAT, tools: TOOLS_OPENAI, tool_choice: 'required',
      messages: [{ role: 'user', content: 'weather in Paris? [mock:tool_calls=1]' }] };
    const r = await openai().chat.completions.create(body);
    const call = r.choices[0].message.tool_calls?.[0];
    assert.ok(call, JSON.stringify(r.choices[0]));
    assert.equal(call.function.name, 'get_weather');
    assert.deepEqual(JSON.parse(call.function.arguments), PARIS);
    assert.equal(call.id, 'get_weather_mock0');
    assert.equal(r.choices[0].finish_reason, 'tool_calls');
    let l = await last();
    assert.equal(l.body.tool_choice, 'REQUIRED');
    assert.equal(l.body.tools[0].function.name, 'get_weather');

    const got = await collectOpenAIStream(await openai().chat.completions.create({ ...body, stream: true }));
    assert.equal(got.names[0], 'get_weather');
    assert.deepEqual(JSON.parse(got.args[0]), PARIS);
    assert.equal(got.finish, 'tool_calls');

    await openai().chat.completions.create({ model: CO_CHAT, tools: TOOLS_OPENAI, messages: [
      body.messages[0],
      { role: 'assistant', content: null, tool_calls: [call] },
      { role: 'tool', tool_call_id: call.id, content: '18 C' },
    ] });
    l = await last();
    const assistant = l.body.messages.find((m) => m.role === 'assistant');
    assert.equal(assistant.tool_calls[0].id, call.id);
    assert.equal(typeof assistant.tool_calls[0].function.arguments, 'string', 'Cohere takes arguments as a string');
    assert.deepEqual(JSON.parse(assistant.tool_calls[0].function.arguments), PARIS);
    assert.deepEqual(l.body.messages.find((m) => m.role === 'tool'), { role: 'tool', tool_call_id: call.id,
      content: '18 C' });
  });

  test('errors: Cohere 429 and 401 reach the client as OpenAI errors', async () => {
    await assert.rejects(openai().chat.completions.create({ model: CO_CHAT,
      messages: [{ role: 'user', content: 'x [mock:status=429]' }] }), (err) => err.status === 429);
    await assert.rejects(openai().chat.completions.create({ model: CO_CHAT,
      messages: [{ role: 'user', content: 'x [mock:status=400]' }] }), (err) => err.status === 400);
  });

  test('a stream Cohere ends without message-end is an error, not a short answer', async () => {
    const s = await openai().chat.completions.create({ model: CO_CHAT, stream: true,
      messages: [{ role: 'user', content: 'x [mock:tokens=6,error_after=2]' }] });
    await assert.rejects(collectOpenAIStream(s));
  });

  test('embeddings: float vectors from /v2/embed, billed input tokens', async () => {
    const r = await openai().embeddings.create({ model: CO_EMBED, input: ['hello', 'world'], dimensions: 4 });
    assert.equal(r.data.length, 2);
    assert.deepEqual(Array.from(r.data[0].embedding), mockVector('hello', 4));
    assert.deepEqual(Array.from(r.data[1].embedding), mockVector('world', 4));
    assert.equal(r.usage.prompt_tokens, 4);
    const l = await last();
    assert.equal(l.path, '/v2/embed');
    assert.deepEqual(l.body.texts, ['hello', 'world']);
    assert.equal(l.body.input_type, 'search_document');
    assert.deepEqual(l.body.embedding_types, ['float']);
    assert.equal(l.body.output_dimension, 4);
  });
});

describe('Anthropic SDK -> Cohere v2', () => {
  test('messages.create: text and usage; system as a Cohere system message', async () => {
    const msg = await anthropic().messages.create({ model: CO_CHAT, max_tokens: 100, system: SYSTEM,
      messages: [{ role: 'user', content: USER }] });
    assert.equal(msg.content[0].text, mockText(16));
    assert.equal(msg.stop_reason, 'end_turn');
    assert.equal(msg.usage.input_tokens, PROMPT_TOKENS);
    assert.equal(msg.usage.output_tokens, 16);
    assert.equal((await last()).body.messages[0].role, 'system');
  });

  test('messages.stream with tools: the tool plan as text, a tool_use block from fragments', async () => {
    const final = await anthropic().messages.stream({ model: CO_CHAT, max_tokens: 100, tools: TOOLS_ANTHROPIC,
      messages: [{ role: 'user', content: 'weather? [mock:tool_calls=1]' }] }).finalMessage();
    const use = final.content.find((b) => b.type === 'tool_use');
    assert.ok(use, JSON.stringify(final.content));
    assert.equal(use.name, 'get_weather');
    assert.deepEqual(use.input, PARIS);
    assert.equal(final.stop_reason, 'tool_use');
    const text = final.content.find((b) => b.type === 'text');
    assert.equal(text?.text, 'I will look that up.');

    // the result goes back in a user turn; Cohere gets a tool message
    await anthropic().messages.create({ model: CO_CHAT, max_tokens: 50, tools: TOOLS_ANTHROPIC, messages: [
      { role: 'user', content: 'weather?' },
      { role: 'assistant', content: [{ type: 'tool_use', id: use.id, name: use.name, input: use.input }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: '18 C' }] },
    ] });
    const l = await last();
    assert.equal(l.body.messages.find((m) => m.role === 'tool')?.tool_call_id, use.id);
  });

  test('Cohere 500 reaches the client as an Anthropic api_error', async () => {
    await assert.rejects(anthropic().messages.create({ model: CO_CHAT, max_tokens: 5,
      messages: [{ role: 'user', content: 'x [mock:status=500]' }] }),
    (err) => err.status >= 500 && err.error?.type === 'error');
  });
});

describe('Google GenAI SDK -> Cohere v2', () => {
  test('generateContent: text and usageMetadata', async () => {
    const res = await gemini().models.generateContent({ model: CO_CHAT, contents: USER,
      config: { systemInstruction: SYSTEM, maxOutputTokens: 100, topK: 20 } });
    assert.equal(res.text, mockText(16));
    assert.equal(res.usageMetadata.promptTokenCount, PROMPT_TOKENS);
    assert.equal(res.usageMetadata.candidatesTokenCount, 16);
    assert.equal((await last()).body.k, 20);
  });

  // By hand: the SDK's embedContent calls batchEmbedContents, which the gateway does not serve (yet).
  test('embedContent: taskType RETRIEVAL_QUERY becomes input_type search_query', async () => {
    const res = await fetch(`${dp.url}/genai/v1beta/models/${CO_EMBED}:embedContent`, { method: 'POST',
      headers: { 'x-goog-api-key': key, 'content-type': 'application/json' },
      body: JSON.stringify({ content: { parts: [{ text: 'hello' }] }, taskType: 'RETRIEVAL_QUERY' }) });
    const body = await res.json();
    assert.equal(res.status, 200, JSON.stringify(body));
    assert.deepEqual(body.embedding.values, mockVector('hello', 8));
    assert.equal((await last()).body.input_type, 'search_query');
  });
});

describe('OpenAI SDK -> Ollama native', () => {
  test('chat: text, eval counts as usage, options on the wire, stream false explicit', async () => {
    const r = await openai().chat.completions.create({ model: OL_CHAT, max_tokens: 100, temperature: 0.5, top_p: 0.9,
      seed: 3, stop: ['END'], messages: [{ role: 'system', content: SYSTEM }, { role: 'user', content: USER }] });
    assert.equal(r.choices[0].message.content, mockText(16));
    assert.equal(r.choices[0].finish_reason, 'stop');
    assert.equal(r.usage.prompt_tokens, PROMPT_TOKENS);
    assert.equal(r.usage.completion_tokens, 16);
    const l = await last();
    assert.equal(l.path, '/api/chat');
    assert.equal(l.body.model, OL_UPSTREAM);
    assert.equal(l.body.stream, false);
    assert.deepEqual(l.body.options, { temperature: 0.5, top_p: 0.9, seed: 3, num_predict: 100, stop: ['END'] });
    const row = await lastUsageRow(OL_CHAT);
    assert.equal(Number(row.input_tokens), PROMPT_TOKENS);
    assert.equal(Number(row.output_tokens), 16);
  });

  test('num_predict cut: finish_reason length; json_schema becomes format', async () => {
    const schema = { type: 'object', properties: { a: { type: 'string' } } };
    const r = await openai().chat.completions.create({ model: OL_CHAT, max_tokens: 2,
      response_format: { type: 'json_schema', json_schema: { name: 'x', schema } },
      messages: [{ role: 'user', content: USER }] });
    assert.equal(r.choices[0].message.content, mockText(2));
    assert.equal(r.choices[0].finish_reason, 'length');
    assert.deepEqual((await last()).body.format, schema);
  });

  test('stream: NDJSON lines become OpenAI chunks, usage from the done line', async () => {
    const got = await collectOpenAIStream(await openai().chat.completions.create({ model: OL_CHAT, stream: true,
      stream_options: { include_usage: true }, messages: [{ role: 'user', content: `${USER} [mock:tokens=4]` }] }));
    assert.equal(got.text, mockText(4));
    assert.equal(got.finish, 'stop');
    assert.equal(got.usage?.completion_tokens, 4);
    assert.equal(got.usage?.prompt_tokens, 10);
    assert.equal((await last()).body.stream, true);
  });

  test('tools: calls without ids get ids; arguments go back as an object with tool_name', async () => {
    const body = { model: OL_CHAT, tools: TOOLS_OPENAI,
      messages: [{ role: 'user', content: 'weather? [mock:tool_calls=2]' }] };
    const r = await openai().chat.completions.create(body);
    const calls = r.choices[0].message.tool_calls;
    assert.equal(calls?.length, 2, JSON.stringify(r.choices[0]));
    assert.deepEqual(JSON.parse(calls[0].function.arguments), PARIS);
    assert.deepEqual(JSON.parse(calls[1].function.arguments), { location: 'Tokyo', unit: 'celsius' });
    assert.ok(calls[0].id && calls[1].id && calls[0].id !== calls[1].id, 'invented, distinct ids');
    assert.equal(r.choices[0].finish_reason, 'tool_calls');

    const got = await collectOpenAIStream(await openai().chat.completions.create({ ...body, stream: true }));
    assert.deepEqual(JSON.parse(got.args[0]), PARIS);
    assert.deepEqual(JSON.parse(got.args[1]), { location: 'Tokyo', unit: 'celsius' });
    assert.equal(got.finish, 'tool_calls');

    await openai().chat.completions.create({ model: OL_CHAT, tools: TOOLS_OPENAI, messages: [
      body.messages[0],
      { role: 'assistant', content: null, tool_calls: [calls[0]] },
      { role: 'tool', tool_call_id: calls[0].id, content: '18 C' },
    ] });
    const l = await last();
    assert.deepEqual(l.body.messages[1].tool_calls, [{ function: { name: 'get_weather', arguments: PARIS } }]);
    assert.deepEqual(l.body.messages[2], { role: 'tool', content: '18 C', tool_name: 'get_weather' });
  });

  test('images: base64 goes in images[], a URL is refused before the upstream', async () => {
    await openai().chat.completions.create({ model: OL_CHAT, messages: [{ role: 'user', content: [
      { type: 'text', text: 'what is this?' },
      { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } }] }] });
    assert.deepEqual((await last()).body.messages[0].images, ['iVBORw0KGgo=']);
    await assert.rejects(openai().chat.completions.create({ model: OL_CHAT, messages: [{ role: 'user', content: [
      { type: 'image_url', image_url: { url: 'https://example.com/cat.png' } }] }] }), (err) => err.status === 400);
  });

  test('errors: model not found 404; an {"error"} line mid-stream fails the stream', async () => {
    await assert.rejects(openai().chat.completions.create({ model: OL_CHAT,
      messages: [{ role: 'user', content: 'x [mock:status=404]' }] }), (err) => err.status === 404);
    const s = await openai().chat.completions.create({ model: OL_CHAT, stream: true,
      messages: [{ role: 'user', content: 'x [mock:tokens=6,error_after=2]' }] });
    await assert.rejects(collectOpenAIStream(s));
  });

  test('embeddings: /api/embed vectors and prompt_eval_count', async () => {
    const r = await openai().embeddings.create({ model: OL_EMBED, input: ['hello', 'world'] });
    assert.deepEqual(Array.from(r.data[0].embedding), mockVector('hello', 8));
    assert.deepEqual(Array.from(r.data[1].embedding), mockVector('world', 8));
    assert.equal(r.usage.prompt_tokens, 4);
    const l = await last();
    assert.equal(l.path, '/api/embed');
    assert.deepEqual(l.body.input, ['hello', 'world']);
  });
});

describe('Anthropic and Gemini SDKs -> Ollama native', () => {
  test('Anthropic messages.stream: text deltas, usage; a mid-stream error rejects', async () => {
    const stream = anthropic().messages.stream({ model: OL_CHAT, max_tokens: 100, system: SYSTEM,
      messages: [{ role: 'user', content: `${USER} [mock:tokens=5]` }] });
    const deltas = [];
    stream.on('text', (t) => deltas.push(t));
    const final = await stream.finalMessage();
    assert.equal(deltas.join(''), mockText(5));
    assert.equal(final.usage.output_tokens, 5);
    assert.equal(final.stop_reason, 'end_turn');
    await assert.rejects(anthropic().messages.stream({ model: OL_CHAT, max_tokens: 100,
      messages: [{ role: 'user', content: 'x [mock:tokens=6,error_after=2]' }] }).finalMessage());
  });

  test('Anthropic tool_use round trip: tool_name found from the call id', async () => {
    const msg = await anthropic().messages.create({ model: OL_CHAT, max_tokens: 100, tools: TOOLS_ANTHROPIC,
      messages: [{ role: 'user', content: 'weather? [mock:tool_calls=1]' }] });
    const use = msg.content.find((b) => b.type === 'tool_use');
    assert.ok(use, JSON.stringify(msg.content));
    assert.deepEqual(use.input, PARIS);
    assert.equal(msg.stop_reason, 'tool_use');
    await anthropic().messages.create({ model: OL_CHAT, max_tokens: 50, tools: TOOLS_ANTHROPIC, messages: [
      { role: 'user', content: 'weather?' },
      { role: 'assistant', content: [{ type: 'tool_use', id: use.id, name: use.name, input: use.input }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: '18 C' }] },
    ] });
    const tool = (await last()).body.messages.find((m) => m.role === 'tool');
    assert.equal(tool?.tool_name, 'get_weather');
  });

  test('Gemini generateContentStream: chunks join to the text, usage in the last chunk', async () => {
    const stream = await gemini().models.generateContentStream({ model: OL_CHAT, contents: `${USER} [mock:tokens=4]` });
    let text = '';
    let lastChunk;
    for await (const chunk of stream) {
      text += chunk.text ?? '';
      lastChunk = chunk;
    }
    assert.equal(text, mockText(4));
    assert.equal(lastChunk.usageMetadata.candidatesTokenCount, 4);
    assert.equal(lastChunk.usageMetadata.promptTokenCount, 10);
  });
});
