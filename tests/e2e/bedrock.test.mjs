// bedrock.test.mjs: AWS Bedrock as an upstream, behind the three official client SDKs (openai,
// @anthropic-ai/sdk, @google/genai) with only their base URL changed. A second mock provider process
// plays Bedrock Runtime and verifies every SigV4 signature with the account's secret (and accepts a
// Bedrock API key as Bearer): Converse, ConverseStream's binary event stream, tool calls with streamed
// argument fragments, usage with cache reads (Bedrock's inputTokens excludes them), errors before and
// after the 200, and Titan embeddings.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import { GoogleGenAI } from '@google/genai';
import OpenAI from 'openai';
import { BINS, Proc, freePort, mockText, randomHex, startCluster, waitHttp } from './harness.mjs';

const MODEL_ID = 'anthropic.claude-3-haiku-20240307-v1:0'; // the ':' must reach the wire as %3A
const WIRE_PATH = '/model/anthropic.claude-3-haiku-20240307-v1%3A0';
const SIGV4_MODEL = 'br-claude';
const APIKEY_MODEL = 'br-claude-apikey';
const BADSIG_MODEL = 'br-claude-badsig';
const EMBED_MODEL = 'br-titan';

// The mock counts 4 + ceil(bytes / 4) per message; the system prompt is one message.
const SYSTEM = 'be brief'; // 8 bytes -> 6
const USER = 'hi there'; // 8 bytes -> 6
const PROMPT_TOKENS = 12;
const TOOLS_OPENAI = [{ type: 'function', function: { name: 'get_weather', description: 'weather',
  parameters: { type: 'object', properties: { location: { type: 'string' } }, required: ['location'] } } }];
const TOOLS_ANTHROPIC = [{ name: 'get_weather', description: 'weather',
  input_schema: { type: 'object', properties: { location: { type: 'string' } }, required: ['location'] } }];

let c;
let dp;
let key;
let bedrock; // the Bedrock mock process
let bedrockUrl;
const awsSecret = `aws-secret-${randomHex(16)}`;
const apiKey = `bedrock-api-key-${randomHex(8)}`;

async function last() {
  return (await fetch(`${bedrockUrl}/__mock/last`)).json();
}

before(async () => {
  c = await startCluster({ dataplanes: 1, label: 'bedrock' });
  dp = c.dataplanes[0];
  const tenant = await c.createTenant('bedrock-tenant');

  const port = await freePort();
  bedrockUrl = `http://127.0.0.1:${port}`;
  bedrock = new Proc({ name: 'mock-bedrock', bin: BINS.mock,
    args: ['--listen', `127.0.0.1:${port}`, '--api-key', apiKey, '--aws-secret-access-key', awsSecret],
    logPath: path.join(c.logDir, 'mock-bedrock.log') }).start();
  await waitHttp(bedrock, `${bedrockUrl}/__mock/last`, 'any');

  const provider = (name, secret) => c.adminOk('POST', '/admin/v1/providers', {
    name, kind: 'bedrock', base_url: bedrockUrl, settings: { region: 'us-east-1' }, api_keys: [{ secret }] });
  const creds = (secret) => JSON.stringify({ access_key_id: 'AKIDEXAMPLE', secret_access_key: secret });
  const sigv4 = await provider('bedrock-sigv4', creds(awsSecret));
  const byKey = await provider('bedrock-apikey', apiKey);
  const badSig = await provider('bedrock-badsig', creds('not-the-secret'));
  await c.createRoute(SIGV4_MODEL, sigv4.id, MODEL_ID);
  await c.createRoute(APIKEY_MODEL, byKey.id, MODEL_ID);
  await c.createRoute(BADSIG_MODEL, badSig.id, MODEL_ID);
  await c.createRoute(EMBED_MODEL, sigv4.id, 'amazon.titan-embed-text-v2:0');
  key = (await c.createKey(tenant.id, { name: 'bedrock' })).key;
  for (const m of [SIGV4_MODEL, APIKEY_MODEL, BADSIG_MODEL, EMBED_MODEL]) await c.waitModelVisible(key, m);
});

after(async () => {
  await bedrock?.kill();
  await c?.stop();
});

const openai = () => new OpenAI({ apiKey: key, baseURL: `${dp.url}/v1`, maxRetries: 0 });
const anthropic = () => new Anthropic({ apiKey: key, baseURL: `${dp.url}/anthropic`, maxRetries: 0 });
const gemini = () => new GoogleGenAI({ apiKey: key, httpOptions: { baseUrl: `${dp.url}/genai` } });

describe('OpenAI SDK -> Bedrock Converse (SigV4)', () => {
  test('chat.completions.create: text and usage; the upstream got a signed Converse body', async () => {
    const r = await openai().chat.completions.create({ model: SIGV4_MODEL, max_tokens: 100, temperature: 0.5,
      stop: ['END'], messages: [{ role: 'system', content: SYSTEM }, { role: 'user', content: USER }] });
    assert.equal(r.choices[0].message.content, mockText(16));
    assert.equal(r.choices[0].finish_reason, 'stop');
    assert.equal(r.usage.prompt_tokens, PROMPT_TOKENS);
    assert.equal(r.usage.completion_tokens, 16);

    const l = await last();
    assert.equal(l.path, `${WIRE_PATH}/converse`);
    assert.match(l.headers.authorization, /^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/\d{8}\/us-east-1\/bedrock\/aws4_request, SignedHeaders=[a-z0-9;-]*host[a-z0-9;-]*, Signature=[0-9a-f]{64}$/);
    assert.ok(l.headers['x-amz-date']);
    assert.deepEqual(l.body.system, [{ text: SYSTEM }]);
    assert.deepEqual(l.body.messages, [{ role: 'user', content: [{ text: USER }] }]);
    assert.deepEqual(l.body.inferenceConfig, { maxTokens: 100, temperature: 0.5, stopSequences: ['END'] });
    assert.equal(l.body.model, undefined, 'Converse takes the model in the path');
  });

  test('max_tokens below the reply: finish_reason length', async () => {
    const r = await openai().chat.completions.create({ model: SIGV4_MODEL, max_tokens: 3,
      messages: [{ role: 'user', content: USER }] });
    assert.equal(r.choices[0].message.content, mockText(3));
    assert.equal(r.choices[0].finish_reason, 'length');
  });

  test('cache reads: OpenAI prompt_tokens includes them (Bedrock inputTokens does not)', async () => {
    const content = `${USER} [mock:cached=4]`; // 24 bytes -> 4 + 6 = 10
    const r = await openai().chat.completions.create({ model: SIGV4_MODEL,
      messages: [{ role: 'user', content }] });
    assert.equal(r.usage.prompt_tokens, 10);
    assert.equal(r.usage.prompt_tokens_details?.cached_tokens, 4);
  });

  test('stream: text deltas from the event stream, usage last', async () => {
    const stream = await openai().chat.completions.create({ model: SIGV4_MODEL, stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: 'system', content: SYSTEM }, { role: 'user', content: `${USER} [mock:tokens=5]` }] });
    let text = '';
    let finish = null;
    let usage = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
      usage = chunk.usage ?? usage;
    }
    assert.equal(text, mockText(5));
    assert.equal(finish, 'stop');
    assert.equal(usage.completion_tokens, 5);
    assert.equal(usage.prompt_tokens, 6 + 4 + Math.ceil(`${USER} [mock:tokens=5]`.length / 4));
    assert.equal((await last()).path, `${WIRE_PATH}/converse-stream`);
  });

  test('tools: definitions, two calls, arguments streamed in fragments, results sent back', async () => {
    const body = { model: SIGV4_MODEL, tools: TOOLS_OPENAI, tool_choice: 'auto',
      messages: [{ role: 'user', content: 'weather? [mock:tool_calls=2]' }] };
    const r = await openai().chat.completions.create(body);
    const calls = r.choices[0].message.tool_calls;
    assert.equal(r.choices[0].finish_reason, 'tool_calls');
    assert.equal(calls.length, 2);
    assert.equal(calls[0].function.name, 'get_weather');
    assert.deepEqual(JSON.parse(calls[0].function.arguments), { location: 'Paris', unit: 'celsius' });
    assert.deepEqual(JSON.parse(calls[1].function.arguments), { location: 'Tokyo', unit: 'celsius' });
    const l = await last();
    assert.equal(l.body.toolConfig.tools[0].toolSpec.name, 'get_weather');
    assert.deepEqual(l.body.toolConfig.toolChoice, { auto: {} });

    const stream = await openai().chat.completions.create({ ...body, stream: true });
    const args = ['', ''];
    let finish = null;
    for await (const chunk of stream) {
      for (const tc of chunk.choices[0]?.delta?.tool_calls ?? []) args[tc.index] += tc.function?.arguments ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    assert.deepEqual(args.map((a) => JSON.parse(a)), [{ location: 'Paris', unit: 'celsius' },
      { location: 'Tokyo', unit: 'celsius' }]);
    assert.equal(finish, 'tool_calls');

    // the results go back as toolResult blocks in one user turn
    await openai().chat.completions.create({ model: SIGV4_MODEL, tools: TOOLS_OPENAI, messages: [
      body.messages[0], r.choices[0].message,
      { role: 'tool', tool_call_id: calls[0].id, content: '18 C' },
      { role: 'tool', tool_call_id: calls[1].id, content: '22 C' }] });
    const sent = (await last()).body.messages;
    assert.equal(sent.length, 3);
    assert.equal(sent[1].role, 'assistant');
    assert.equal(sent[1].content.filter((b) => b.toolUse).length, 2);
    assert.equal(sent[2].role, 'user');
    assert.deepEqual(sent[2].content.map((b) => b.toolResult?.toolUseId), [calls[0].id, calls[1].id]);
  });

  test('an image goes up as bytes with its format', async () => {
    const png = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==';
    await openai().chat.completions.create({ model: SIGV4_MODEL, messages: [{ role: 'user', content: [
      { type: 'text', text: 'what is this?' }, { type: 'image_url', image_url: { url: `data:image/png;base64,${png}` } }] }] });
    const block = (await last()).body.messages[0].content.find((b) => b.image);
    assert.deepEqual(block, { image: { format: 'png', source: { bytes: png } } });
  });

  test('provider errors: 429 ThrottlingException, 503, and an exception frame after the 200', async () => {
    await assert.rejects(openai().chat.completions.create({ model: SIGV4_MODEL,
      messages: [{ role: 'user', content: 'x [mock:status=429]' }] }), (err) => err.status === 429);
    await assert.rejects(openai().chat.completions.create({ model: SIGV4_MODEL,
      messages: [{ role: 'user', content: 'x [mock:status=503]' }] }), (err) => err.status >= 500);
    const stream = await openai().chat.completions.create({ model: SIGV4_MODEL, stream: true,
      messages: [{ role: 'user', content: 'x [mock:error_after=2]' }] });
    let text = '';
    await assert.rejects((async () => {
      for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    })());
    assert.equal(text, mockText(2));
  });

  test('a wrong secret: Bedrock refuses the signature, the client gets an error', async () => {
    await assert.rejects(openai().chat.completions.create({ model: BADSIG_MODEL,
      messages: [{ role: 'user', content: USER }] }), (err) => err.status >= 400);
    const l = await last();
    assert.match(l.headers.authorization, /^AWS4-HMAC-SHA256 /);
  });

  test('a Bedrock API key goes as Bearer', async () => {
    const r = await openai().chat.completions.create({ model: APIKEY_MODEL,
      messages: [{ role: 'user', content: USER }] });
    assert.equal(r.choices[0].message.content, mockText(16));
    assert.equal((await last()).headers.authorization, `Bearer ${apiKey}`);
  });

  test('embeddings: Titan through InvokeModel', async () => {
    const r = await openai().embeddings.create({ model: EMBED_MODEL, input: 'hello', dimensions: 256 });
    assert.equal(r.data.length, 1);
    assert.equal(r.data[0].embedding.length, 256);
    assert.equal(r.usage.prompt_tokens, 4 + 2);
    const l = await last();
    assert.equal(l.path, '/model/amazon.titan-embed-text-v2%3A0/invoke');
    assert.deepEqual(l.body, { inputText: 'hello', dimensions: 256 });
    // Titan takes one input a call
    await assert.rejects(openai().embeddings.create({ model: EMBED_MODEL, input: ['a', 'b'] }),
      (err) => err.status === 400);
  });
});

describe('Anthropic SDK -> Bedrock Converse', () => {
  test('messages.create: text, usage in Anthropic semantics (cache reads beside input)', async () => {
    const content = `${USER} [mock:cached=4]`; // 24 bytes -> 10 tokens, 4 of them cached
    const msg = await anthropic().messages.create({ model: SIGV4_MODEL, max_tokens: 100, system: SYSTEM,
      messages: [{ role: 'user', content }] });
    assert.equal(msg.content[0].text, mockText(16));
    assert.equal(msg.stop_reason, 'end_turn');
    assert.equal(msg.usage.input_tokens, 6 + 10 - 4);
    assert.equal(msg.usage.cache_read_input_tokens, 4);
    assert.equal(msg.usage.output_tokens, 16);
  });

  test('messages.stream with a tool call: input_json deltas assemble to the arguments', async () => {
    const body = { model: SIGV4_MODEL, max_tokens: 100, tools: TOOLS_ANTHROPIC,
      messages: [{ role: 'user', content: 'weather? [mock:tool_calls=1]' }] };
    const final = await anthropic().messages.stream(body).finalMessage();
    const use = final.content.find((b) => b.type === 'tool_use');
    assert.ok(use, JSON.stringify(final.content));
    assert.equal(use.name, 'get_weather');
    assert.deepEqual(use.input, { location: 'Paris', unit: 'celsius' });
    assert.equal(final.stop_reason, 'tool_use');
  });

  test('an exception frame mid-stream becomes an Anthropic error event', async () => {
    const stream = anthropic().messages.stream({ model: SIGV4_MODEL, max_tokens: 100,
      messages: [{ role: 'user', content: 'x [mock:error_after=3]' }] });
    await assert.rejects(stream.finalMessage());
  });
});

describe('Gemini SDK -> Bedrock Converse', () => {
  test('generateContent: text and usage', async () => {
    const r = await gemini().models.generateContent({ model: SIGV4_MODEL, contents: USER,
      config: { systemInstruction: SYSTEM, maxOutputTokens: 100 } });
    assert.equal(r.text, mockText(16));
    assert.equal(r.usageMetadata.promptTokenCount, PROMPT_TOKENS);
    assert.equal(r.usageMetadata.candidatesTokenCount, 16);
  });

  test('generateContentStream: text in order', async () => {
    const stream = await gemini().models.generateContentStream({ model: SIGV4_MODEL,
      contents: `${USER} [mock:tokens=4]` });
    let text = '';
    for await (const chunk of stream) text += chunk.text ?? '';
    assert.equal(text, mockText(4));
  });
});
