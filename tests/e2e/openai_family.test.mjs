// openai_family.test.mjs: the OpenAI dialect and the OpenAI-compatible family through the gateway's
// translation path, with the official client libraries.
//
//   - OpenAI SDK → Mistral and Groq (their own encoders: random_seed, 9-character tool-call ids, fields
//     each one rejects), chat, streams, tool calls, legacy completions, embeddings, errors;
//   - OpenAI SDK → Anthropic (the OpenAI dialect's stream and tool-call fragments, read back by the SDK's
//     own stream helper);
//   - Anthropic SDK → OpenAI-kind and Azure accounts, Gemini SDK → Azure (the OpenAI-family provider
//     adapter: usage with cache tokens, tool calls, Azure's deployment URL and empty first chunk, a
//     mid-stream error).
//
// The mock serves every flavour (tests/mock/README.md, "OpenAI family"): Mistral under /mistral/v1,
// Groq under /groq/openai/v1, Azure at the root. Token counts follow the mock's scenario, so usage
// assertions are exact.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { GoogleGenAI } from '@google/genai';
import { MODEL, UPSTREAM_MODEL, mockText, randomHex, startCluster, mockVector } from './harness.mjs';

const MISTRAL = 'mistral-mock';
const GROQ = 'groq-mock';
const AZURE = 'azure-mock';
const AZURE_DEPLOYMENT = 'dep-mock';
const CLAUDE = 'claude-family-mock';
let c;
let seed;
let openai;
let anthropic;
let genai;

// 4 + ceil(bytes / 4) per message; a system prompt counts as one message.
const tokens = (...texts) => texts.reduce((n, t) => n + 4 + Math.ceil(Buffer.byteLength(t, 'utf8') / 4), 0);
const mockLast = async () => (await fetch(`${c.mockUrl}/__mock/last`)).json();
const rid = () => `req_e2e_oaf_${randomHex(6)}`;
const ARGS = ['{"location":"Paris","unit":"celsius"}', '{"location":"Tokyo","unit":"celsius"}'];
const WEATHER = {
  type: 'function',
  function: {
    name: 'get_weather', description: 'Current weather for a city',
    parameters: { type: 'object', properties: { location: { type: 'string' }, unit: { type: 'string' } } },
  },
};
const isMistralId = (s) => /^[a-zA-Z0-9]{9}$/.test(s);

before(async () => {
  c = await startCluster({ dataplanes: 1, label: 'oaf' });
  seed = await c.seed();
  const provider = (body) => c.adminOk('POST', '/admin/v1/providers', { api_keys: [{ secret: c.mockSecret }], ...body });
  const mistral = await provider({ name: 'mock-mistral', kind: 'mistral', base_url: `${c.mockUrl}/mistral/v1`, settings: {} });
  const groq = await provider({ name: 'mock-groq', kind: 'groq', base_url: `${c.mockUrl}/groq/openai/v1`, settings: {} });
  const azure = await provider({ name: 'mock-azure', kind: 'azure', base_url: c.mockUrl, settings: { api_version: '2024-10-21' } });
  const claude = await provider({ name: 'mock-claude', kind: 'anthropic', base_url: c.mockUrl, settings: {} });
  await c.createRoute(MISTRAL, mistral.id, 'mistral-mock-upstream');
  await c.createRoute(GROQ, groq.id, 'groq-mock-upstream');
  await c.createRoute(AZURE, azure.id, AZURE_DEPLOYMENT);
  await c.createRoute(CLAUDE, claude.id, 'claude-family-upstream');
  for (const m of [MISTRAL, GROQ, AZURE, CLAUDE]) await c.waitModelVisible(seed.key.key, m);
  const dp = c.dataplanes[0].url;
  openai = new OpenAI({ apiKey: seed.key.key, baseURL: `${dp}/v1`, maxRetries: 0, timeout: 30000 });
  anthropic = new Anthropic({ apiKey: seed.key.key, baseURL: `${dp}/anthropic`, maxRetries: 0, timeout: 30000 });
  genai = new GoogleGenAI({ apiKey: seed.key.key, httpOptions: { baseUrl: `${dp}/genai` } });
});

after(async () => {
  await c?.stop();
});

describe('OpenAI SDK → Mistral', () => {
  test('chat: text, usage, seed as random_seed, no field Mistral rejects', async () => {
    const id = rid();
    const res = await openai.chat.completions.create({
      model: MISTRAL, seed: 7, temperature: 0.5, max_tokens: 50, user: 'u1', stop: ['ZZZ'],
      messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'hi there' }],
    }, { headers: { 'x-request-id': id } });
    assert.equal(res.object, 'chat.completion');
    assert.equal(res.choices[0].message.content, mockText(16));
    assert.equal(res.choices[0].finish_reason, 'stop');
    assert.equal(res.usage.prompt_tokens, tokens('be brief', 'hi there'));
    assert.equal(res.usage.completion_tokens, 16);
    assert.equal(res.usage.total_tokens, tokens('be brief', 'hi there') + 16);

    const last = await mockLast();
    assert.equal(last.path, '/mistral/v1/chat/completions');
    assert.equal(last.headers.authorization, `Bearer ${c.mockSecret}`);
    assert.equal(last.body.model, 'mistral-mock-upstream');
    assert.equal(last.body.random_seed, 7);
    assert.equal(last.body.seed, undefined);
    assert.equal(last.body.user, undefined);
    assert.equal(last.body.max_tokens, 50);
    assert.deepEqual(last.body.stop, ['ZZZ']);

    const [row] = await c.waitUsage([id]);
    assert.equal(row.input_tokens, tokens('be brief', 'hi there'));
    assert.equal(row.output_tokens, 16);
  });

  test('tool calls: a 9-character id comes back, and OpenAI-style ids in history are rewritten', async () => {
    const first = await openai.chat.completions.create({
      model: MISTRAL, tools: [WEATHER], tool_choice: 'required',
      messages: [{ role: 'user', content: 'weather in Paris? [mock:tool_calls=1]' }],
    });
    const call = first.choices[0].message.tool_calls[0];
    assert.equal(first.choices[0].finish_reason, 'tool_calls');
    assert.ok(isMistralId(call.id), call.id);
    assert.equal(call.function.name, 'get_weather');
    assert.deepEqual(JSON.parse(call.function.arguments), JSON.parse(ARGS[0]));
    assert.equal((await mockLast()).body.tool_choice, 'any');

    // history with ids Mistral would refuse (422 from the mock) must still go through
    const second = await openai.chat.completions.create({
      model: MISTRAL, tools: [WEATHER],
      messages: [
        { role: 'user', content: 'weather in Paris?' },
        { role: 'assistant', content: null, tool_calls: [
          { id: 'call_Jx3kXh2sBu8QfLq0VbDn6Tw1', type: 'function', function: { name: 'get_weather', arguments: ARGS[0] } }] },
        { role: 'tool', tool_call_id: 'call_Jx3kXh2sBu8QfLq0VbDn6Tw1', content: '18 C' },
      ],
    });
    assert.equal(second.choices[0].message.content, mockText(16));
    const body = (await mockLast()).body;
    const sent = body.messages[1].tool_calls[0].id;
    assert.ok(isMistralId(sent), sent);
    assert.equal(body.messages[2].tool_call_id, sent);
  });

  test('a stream: chunks, usage chunk, [DONE]; tool calls reassembled by the SDK', async () => {
    const stream = await openai.chat.completions.create({
      model: MISTRAL, stream: true, stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'stream [mock:tokens=5]' }],
    });
    let text = '';
    let usage = null;
    let finish = null;
    for await (const chunk of stream) {
      assert.equal(chunk.object, 'chat.completion.chunk');
      if (chunk.usage) usage = chunk.usage;
      for (const ch of chunk.choices) {
        text += ch.delta?.content ?? '';
        finish = ch.finish_reason ?? finish;
      }
    }
    assert.equal(text, mockText(5));
    assert.equal(finish, 'stop');
    assert.equal(usage.prompt_tokens, tokens('stream [mock:tokens=5]'));
    assert.equal(usage.completion_tokens, 5);
    assert.equal((await mockLast()).body.stream_options, undefined, 'Mistral rejects stream_options');

    const tools = openai.chat.completions.stream({
      model: MISTRAL, tools: [WEATHER],
      messages: [{ role: 'user', content: 'two calls [mock:tool_calls=2]' }],
    });
    const done = await tools.finalChatCompletion();
    const calls = done.choices[0].message.tool_calls;
    assert.equal(calls.length, 2);
    assert.deepEqual(calls.map((t) => JSON.parse(t.function.arguments)), ARGS.map((a) => JSON.parse(a)));
    assert.ok(calls.every((t) => isMistralId(t.id)));
    assert.equal(done.choices[0].finish_reason, 'tool_calls');
  });

  test('embeddings: base64 by default (as the SDK asks), exact vectors', async () => {
    const res = await openai.embeddings.create({ model: MISTRAL, input: ['hello', 'world!'] });
    assert.equal(res.data.length, 2);
    for (const [i, t] of ['hello', 'world!'].entries()) {
      assert.equal(res.data[i].index, i);
      assert.deepEqual(res.data[i].embedding, mockVector(t));
    }
    assert.equal(res.usage.prompt_tokens, 2 + 2);
    const last = await mockLast();
    assert.equal(last.path, '/mistral/v1/embeddings');
    assert.deepEqual(last.body.input, ['hello', 'world!']);
    assert.equal(last.body.encoding_format, undefined);
  });

  test('legacy completions become one chat turn', async () => {
    const res = await openai.completions.create({ model: MISTRAL, prompt: 'Say hi [mock:tokens=40]' });
    assert.equal(res.object, 'text_completion');
    assert.equal(res.choices[0].text, mockText(16)); // legacy default max_tokens is 16
    assert.equal(res.choices[0].finish_reason, 'length');
    const last = await mockLast();
    assert.deepEqual(last.body.messages, [{ role: 'user', content: 'Say hi [mock:tokens=40]' }]);
    assert.equal(last.body.max_tokens, 16);
  });

  test('errors: a 429 keeps its status; a mid-stream failure is an error, not a clean end', async () => {
    await assert.rejects(
      openai.chat.completions.create({ model: MISTRAL, messages: [{ role: 'user', content: 'x [mock:status=429]' }] }),
      (err) => err.status === 429 && typeof err.message === 'string');
    const stream = await openai.chat.completions.create({
      model: MISTRAL, stream: true, messages: [{ role: 'user', content: 'x [mock:tokens=4,error_after=2]' }],
    });
    let text = '';
    await assert.rejects(async () => {
      for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    });
    assert.equal(text, mockText(2));
  });
});

describe('OpenAI SDK → Groq', () => {
  test('fields Groq refuses are dropped; usage comes from x_groq in a stream', async () => {
    const res = await openai.chat.completions.create({
      model: GROQ, logprobs: true, top_logprobs: 2, logit_bias: { 50256: -100 }, n: 1,
      messages: [{ role: 'user', content: 'hi', name: 'bob' }],
    });
    assert.equal(res.choices[0].message.content, mockText(16));
    const body = (await mockLast()).body;
    for (const k of ['logprobs', 'top_logprobs', 'logit_bias', 'n']) assert.equal(body[k], undefined, k);
    assert.equal(body.messages[0].name, undefined);

    const stream = await openai.chat.completions.create({
      model: GROQ, stream: true, stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'hi [mock:tokens=3]' }],
    });
    let usage = null;
    let text = '';
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      text += chunk.choices[0]?.delta?.content ?? '';
    }
    assert.equal(text, mockText(3));
    assert.equal(usage.prompt_tokens, tokens('hi [mock:tokens=3]'));
    assert.equal(usage.completion_tokens, 3);
  });

  test('n > 1 and embeddings are refused with a clear 400', async () => {
    await assert.rejects(
      openai.chat.completions.create({ model: GROQ, n: 2, messages: [{ role: 'user', content: 'hi' }] }),
      (err) => err.status === 400 && /n > 1/.test(err.message));
    await assert.rejects(openai.embeddings.create({ model: GROQ, input: 'x' }),
      (err) => err.status === 400 && /embeddings/.test(err.message));
  });
});

describe('OpenAI SDK → Anthropic (the OpenAI dialect)', () => {
  test('streamed tool calls are put back together by the SDK; usage includes cache reads', async () => {
    const stream = openai.chat.completions.stream({
      model: CLAUDE, tools: [WEATHER], stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'weather twice [mock:tool_calls=2,cached=3]' }],
    });
    const done = await stream.finalChatCompletion();
    const msg = done.choices[0].message;
    assert.equal(done.choices[0].finish_reason, 'tool_calls');
    assert.equal(msg.tool_calls.length, 2);
    assert.deepEqual(msg.tool_calls.map((t) => JSON.parse(t.function.arguments)), ARGS.map((a) => JSON.parse(a)));
    assert.ok(msg.tool_calls.every((t) => t.id.startsWith('toolu_')));
    assert.equal(done.usage.prompt_tokens, tokens('weather twice [mock:tool_calls=2,cached=3]'));
    assert.equal(done.usage.prompt_tokens_details.cached_tokens, 3);
  });

  test('a tool result goes back as a tool_result block', async () => {
    const res = await openai.chat.completions.create({
      model: CLAUDE, tools: [WEATHER],
      messages: [
        { role: 'user', content: 'weather?' },
        { role: 'assistant', content: null, tool_calls: [
          { id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: ARGS[0] } }] },
        { role: 'tool', tool_call_id: 'call_1', content: '18 C' },
      ],
    });
    assert.equal(res.choices[0].message.content, mockText(16));
    const body = (await mockLast()).body;
    assert.deepEqual(body.messages[1].content[0], { type: 'tool_use', id: 'call_1', name: 'get_weather', input: JSON.parse(ARGS[0]) });
    assert.equal(body.messages[2].content[0].type, 'tool_result');
    assert.equal(body.messages[2].content[0].tool_use_id, 'call_1');
  });

  test('bad tool-call arguments are a 400 from the gateway', async () => {
    await assert.rejects(openai.chat.completions.create({
      model: CLAUDE,
      messages: [{ role: 'assistant', content: null, tool_calls: [
        { id: 'c', type: 'function', function: { name: 'f', arguments: '{not json' } }] }],
    }), (err) => err.status === 400 && (err.param ?? err.error?.param) === 'messages[0].tool_calls[0].function.arguments');
  });
});

describe('other dialects → the OpenAI family (the provider adapter)', () => {
  test('Anthropic SDK → OpenAI kind: usage in Anthropic semantics, tool use, stream', async () => {
    const id = rid();
    const text = 'hello [mock:cached=5,tokens=4]';
    const msg = await anthropic.messages.create({
      model: MODEL, max_tokens: 100, system: 'be brief', messages: [{ role: 'user', content: text }],
    }, { headers: { 'x-request-id': id } });
    assert.equal(msg.content[0].text, mockText(4));
    assert.equal(msg.usage.input_tokens, tokens('be brief', text) - 5);
    assert.equal(msg.usage.cache_read_input_tokens, 5);
    assert.equal(msg.usage.output_tokens, 4);
    const last = await mockLast();
    assert.equal(last.path, '/v1/chat/completions');
    assert.equal(last.body.model, UPSTREAM_MODEL);
    assert.deepEqual(last.body.messages[0], { role: 'system', content: 'be brief' });
    assert.equal(last.body.max_completion_tokens, 100);
    const [row] = await c.waitUsage([id]);
    assert.equal(row.input_tokens, tokens('be brief', text));
    assert.equal(row.cached_input_tokens, 5);

    const tools = await anthropic.messages.create({
      model: MODEL, max_tokens: 100, tools: [{ name: 'get_weather', input_schema: WEATHER.function.parameters }],
      messages: [{ role: 'user', content: 'weather [mock:tool_calls=2]' }],
    });
    assert.equal(tools.stop_reason, 'tool_use');
    assert.deepEqual(tools.content.map((b) => b.input), ARGS.map((a) => JSON.parse(a)));

    const stream = anthropic.messages.stream({
      model: MODEL, max_tokens: 100, tools: [{ name: 'get_weather', input_schema: WEATHER.function.parameters }],
      messages: [{ role: 'user', content: 'weather [mock:tool_calls=1]' }],
    });
    const final = await stream.finalMessage();
    assert.equal(final.stop_reason, 'tool_use');
    assert.deepEqual(final.content[0].input, JSON.parse(ARGS[0]));
    assert.match(final.content[0].id, /^call_mock_\d+_0$/);
    assert.equal((await mockLast()).body.stream_options.include_usage, true);
  });

  test('Anthropic SDK → OpenAI kind: a mid-stream error fails the stream', async () => {
    const stream = anthropic.messages.stream({
      model: MODEL, max_tokens: 100, messages: [{ role: 'user', content: 'x [mock:tokens=5,error_after=2]' }],
    });
    await assert.rejects(stream.finalMessage());
  });

  test('Anthropic SDK → Azure: the deployment URL, api-key, the empty first chunk', async () => {
    const msg = await anthropic.messages.create({
      model: AZURE, max_tokens: 100, messages: [{ role: 'user', content: 'hi azure [mock:tokens=3]' }],
    });
    assert.equal(msg.content[0].text, mockText(3));
    assert.equal(msg.usage.input_tokens, tokens('hi azure [mock:tokens=3]'));
    const last = await mockLast();
    assert.equal(last.path, `/openai/deployments/${AZURE_DEPLOYMENT}/chat/completions?api-version=2024-10-21`);
    assert.equal(last.headers['api-key'], c.mockSecret);

    const stream = anthropic.messages.stream({
      model: AZURE, max_tokens: 100, messages: [{ role: 'user', content: 'stream azure [mock:tokens=4]' }],
    });
    const final = await stream.finalMessage();
    assert.equal(final.content[0].text, mockText(4));
    assert.equal(final.stop_reason, 'end_turn');
    assert.equal(final.usage.output_tokens, 4);
  });

  test('Gemini SDK → Azure: text and usage, streamed too', async () => {
    const res = await genai.models.generateContent({ model: AZURE, contents: 'hi gemini [mock:tokens=2]' });
    assert.equal(res.text, mockText(2));
    assert.equal(res.usageMetadata.promptTokenCount, tokens('hi gemini [mock:tokens=2]'));
    assert.equal(res.usageMetadata.candidatesTokenCount, 2);
    let text = '';
    for await (const chunk of await genai.models.generateContentStream({ model: AZURE, contents: 'more [mock:tokens=3]' }))
      text += chunk.text ?? '';
    assert.equal(text, mockText(3));
  });
});
