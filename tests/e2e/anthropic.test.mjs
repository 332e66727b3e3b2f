// anthropic.test.mjs: the Anthropic wire format both ways, with the official client libraries. An
// Anthropic-kind provider account points at the mock's Anthropic surface (tests/mock/README.md,
// "Anthropic Messages"); the Anthropic SDK reaches it through /anthropic/v1/messages, the OpenAI SDK
// through /v1/chat/completions and the Gemini SDK through /genai; the Anthropic SDK also reaches the
// OpenAI-kind mock account. Token counts are predicted from the mock's scenario, so every assertion is
// exact: the usage the client sees and the usage row the gateway records.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { GoogleGenAI } from '@google/genai';
import { MODEL, UPSTREAM_MODEL, mockText, randomHex, startCluster } from './harness.mjs';

const CLAUDE = 'claude-mock';
const CLAUDE_UPSTREAM = 'claude-mock-upstream';
let c;
let seed;
let anthropic;
let openai;
let genai;

// 4 + ceil(bytes / 4) per message; the system prompt counts as one message.
const tokens = (...texts) => texts.reduce((n, t) => n + 4 + Math.ceil(Buffer.byteLength(t, 'utf8') / 4), 0);
const WEATHER_TOOL = {
  name: 'get_weather',
  description: 'Current weather for a city',
  input_schema: { type: 'object', properties: { location: { type: 'string' }, unit: { type: 'string' } } },
};
const mockLast = async () => (await fetch(`${c.mockUrl}/__mock/last`)).json();
const rid = () => `req_e2e_anth_${randomHex(6)}`;

before(async () => {
  c = await startCluster({ dataplanes: 1, label: 'anth' });
  seed = await c.seed();
  const provider = await c.adminOk('POST', '/admin/v1/providers', {
    name: 'mock-anthropic', kind: 'anthropic', base_url: c.mockUrl, settings: {},
    api_keys: [{ secret: c.mockSecret }],
  });
  await c.createRoute(CLAUDE, provider.id, CLAUDE_UPSTREAM);
  await c.waitModelVisible(seed.key.key, CLAUDE);
  const dp = c.dataplanes[0].url;
  anthropic = new Anthropic({ apiKey: seed.key.key, baseURL: `${dp}/anthropic`, maxRetries: 0, timeout: 30000 });
  openai = new OpenAI({ apiKey: seed.key.key, baseURL: `${dp}/v1`, maxRetries: 0, timeout: 30000 });
  genai = new GoogleGenAI({ apiKey: seed.key.key, httpOptions: { baseUrl: `${dp}/genai` } });
});

after(async () => {
  await c?.stop();
});

describe('Anthropic SDK → Anthropic provider', () => {
  test('a message: text, usage, the upstream request', async () => {
    const id = rid();
    const msg = await anthropic.messages.create({
      model: CLAUDE, max_tokens: 100, system: 'be brief', temperature: 0.2, top_k: 5, stop_sequences: ['ZZZ'],
      metadata: { user_id: 'user-1' }, messages: [{ role: 'user', content: 'hi there' }],
    }, { headers: { 'x-request-id': id } });
    assert.equal(msg.type, 'message');
    assert.equal(msg.role, 'assistant');
    assert.equal(msg.model, CLAUDE);
    assert.match(msg.id, /^msg_/);
    assert.deepEqual(msg.content, [{ type: 'text', text: mockText(16) }]);
    assert.equal(msg.stop_reason, 'end_turn');
    assert.equal(msg.stop_sequence, null);
    assert.equal(msg.usage.input_tokens, tokens('be brief', 'hi there'));
    assert.equal(msg.usage.output_tokens, 16);
    assert.equal(msg.usage.cache_read_input_tokens, 0);

    const last = await mockLast();
    assert.equal(last.path, '/v1/messages');
    assert.equal(last.headers['x-api-key'], c.mockSecret);
    assert.ok(last.headers['anthropic-version']);
    assert.equal(last.body.model, CLAUDE_UPSTREAM);
    assert.equal(last.body.system, 'be brief');
    assert.equal(last.body.max_tokens, 100);
    assert.equal(last.body.top_k, 5);
    assert.deepEqual(last.body.stop_sequences, ['ZZZ']);
    assert.deepEqual(last.body.metadata, { user_id: 'user-1' });

    const [row] = await c.waitUsage([id]);
    assert.equal(row.input_tokens, tokens('be brief', 'hi there'));
    assert.equal(row.output_tokens, 16);
    assert.equal(row.upstream_model, CLAUDE_UPSTREAM);
  });

  test('cache reads: input_tokens excludes them, the usage row includes them', async () => {
    const id = rid();
    const text = 'cached prompt [mock:cached=3,tokens=4]';
    const msg = await anthropic.messages.create({
      model: CLAUDE, max_tokens: 100, messages: [{ role: 'user', content: text }],
    }, { headers: { 'x-request-id': id } });
    assert.equal(msg.usage.input_tokens, tokens(text) - 3);
    assert.equal(msg.usage.cache_read_input_tokens, 3);
    assert.equal(msg.usage.output_tokens, 4);
    const [row] = await c.waitUsage([id]);
    assert.equal(row.input_tokens, tokens(text));
    assert.equal(row.cached_input_tokens, 3);
  });

  test('max_tokens cut → stop_reason max_tokens', async () => {
    const msg = await anthropic.messages.create({
      model: CLAUDE, max_tokens: 3, messages: [{ role: 'user', content: 'long please' }],
    });
    assert.equal(msg.content[0].text, mockText(3));
    assert.equal(msg.stop_reason, 'max_tokens');
  });

  test('a stream: events in order, final message and usage', async () => {
    const stream = anthropic.messages.stream({
      model: CLAUDE, max_tokens: 100, messages: [{ role: 'user', content: 'stream [mock:tokens=5]' }],
    });
    const types = [];
    for await (const ev of stream) types.push(ev.type);
    const msg = await stream.finalMessage();
    assert.equal(types[0], 'message_start');
    assert.equal(types.at(-1), 'message_stop');
    assert.equal(types.filter((t) => t === 'content_block_delta').length, 5);
    assert.equal(msg.content[0].text, mockText(5));
    assert.equal(msg.stop_reason, 'end_turn');
    assert.equal(msg.usage.output_tokens, 5);
    assert.equal(msg.usage.input_tokens, tokens('stream [mock:tokens=5]'));
  });

  test('tool calls, plain and streamed, and a tool result back', async () => {
    const body = {
      model: CLAUDE, max_tokens: 100, tools: [WEATHER_TOOL], tool_choice: { type: 'any' },
      messages: [{ role: 'user', content: 'weather? [mock:tool_calls=2]' }],
    };
    const msg = await anthropic.messages.create(body);
    assert.equal(msg.stop_reason, 'tool_use');
    assert.equal(msg.content.length, 2);
    assert.equal(msg.content[0].type, 'tool_use');
    assert.equal(msg.content[0].name, 'get_weather');
    assert.deepEqual(msg.content[0].input, { location: 'Paris', unit: 'celsius' });
    assert.deepEqual(msg.content[1].input, { location: 'Tokyo', unit: 'celsius' });
    assert.deepEqual((await mockLast()).body.tool_choice, { type: 'any' });

    const streamed = await anthropic.messages.stream(body).finalMessage();
    assert.equal(streamed.stop_reason, 'tool_use');
    assert.deepEqual(streamed.content.map((b) => b.input), [
      { location: 'Paris', unit: 'celsius' }, { location: 'Tokyo', unit: 'celsius' }]);

    const next = await anthropic.messages.create({
      model: CLAUDE, max_tokens: 100, tools: [WEATHER_TOOL],
      messages: [
        { role: 'user', content: 'weather?' },
        { role: 'assistant', content: msg.content },
        { role: 'user', content: [
          { type: 'tool_result', tool_use_id: msg.content[0].id, content: '18 C' },
          { type: 'tool_result', tool_use_id: msg.content[1].id, content: '25 C', is_error: true },
          { type: 'text', text: 'thanks' }] },
      ],
    });
    assert.equal(next.content[0].text, mockText(16));
    const sent = (await mockLast()).body.messages;
    assert.equal(sent.length, 3);
    assert.equal(sent[2].content[0].type, 'tool_result');
    assert.equal(sent[2].content[0].tool_use_id, msg.content[0].id);
    assert.equal(sent[2].content[1].is_error, true);
    assert.equal(sent[2].content[2].text, 'thanks');
  });

  test('count_tokens', async () => {
    const res = await anthropic.messages.countTokens({
      model: CLAUDE, system: 'be brief', messages: [{ role: 'user', content: 'hi there' }],
    });
    assert.equal(res.input_tokens, tokens('be brief', 'hi there'));
    assert.equal((await mockLast()).path, '/v1/messages/count_tokens');
  });

  test('provider errors keep their Anthropic type and status (529 overloaded)', async () => {
    for (const [status, type] of [[529, 'overloaded_error'], [429, 'rate_limit_error'], [400, 'invalid_request_error']]) {
      await assert.rejects(
        anthropic.messages.create({
          model: CLAUDE, max_tokens: 10, messages: [{ role: 'user', content: `x [mock:status=${status}]` }] }),
        (err) => {
          assert.ok(err instanceof Anthropic.APIError, String(err));
          assert.equal(err.status, status);
          assert.equal(err.error?.error?.type, type);
          return true;
        });
    }
  });

  test('a request the gateway rejects gets an Anthropic-shaped 400', async () => {
    await assert.rejects(
      anthropic.messages.create({ model: CLAUDE, messages: [{ role: 'user', content: 'no max_tokens' }] }),
      (err) => {
        assert.equal(err.status, 400);
        assert.equal(err.error?.type, 'error');
        assert.equal(err.error?.error?.type, 'invalid_request_error');
        return true;
      });
  });

  test('an error in the middle of a stream reaches the client as an error', async () => {
    const stream = anthropic.messages.stream({
      model: CLAUDE, max_tokens: 100, messages: [{ role: 'user', content: 'x [mock:tokens=6,error_after=2]' }],
    });
    let deltas = 0;
    await assert.rejects(async () => {
      for await (const ev of stream) if (ev.type === 'content_block_delta') deltas++;
    }, (err) => {
      assert.match(String(err.message ?? err), /Overloaded|overloaded/);
      return true;
    });
    assert.equal(deltas, 2);
  });
});

describe('other SDKs → Anthropic provider', () => {
  test('OpenAI SDK: chat completion with usage (prompt_tokens include cache)', async () => {
    const text = 'hello [mock:cached=2,tokens=5]';
    const res = await openai.chat.completions.create({
      model: CLAUDE, max_tokens: 50,
      messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: text }],
    });
    assert.equal(res.choices[0].message.content, mockText(5));
    assert.equal(res.choices[0].finish_reason, 'stop');
    assert.equal(res.usage.prompt_tokens, tokens('be brief', text));
    assert.equal(res.usage.completion_tokens, 5);
    assert.equal(res.usage.prompt_tokens_details?.cached_tokens, 2);
    const last = await mockLast();
    assert.equal(last.body.system, 'be brief');
    assert.equal(last.body.max_tokens, 50);
  });

  test('OpenAI SDK: streamed tool calls, then tool messages merged into one user turn', async () => {
    const tools = [{ type: 'function', function: { name: 'get_weather', parameters: WEATHER_TOOL.input_schema } }];
    const stream = await openai.chat.completions.create({
      model: CLAUDE, stream: true, stream_options: { include_usage: true }, tools,
      messages: [{ role: 'user', content: 'weather [mock:tool_calls=2]' }],
    });
    const calls = [];
    let finish;
    let usage;
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      const ch = chunk.choices[0];
      if (!ch) continue;
      if (ch.finish_reason) finish = ch.finish_reason;
      for (const tc of ch.delta?.tool_calls ?? []) {
        calls[tc.index] ??= { id: '', name: '', args: '' };
        if (tc.id) calls[tc.index].id = tc.id;
        if (tc.function?.name) calls[tc.index].name = tc.function.name;
        calls[tc.index].args += tc.function?.arguments ?? '';
      }
    }
    assert.equal(finish, 'tool_calls');
    assert.equal(calls.length, 2);
    assert.deepEqual(JSON.parse(calls[0].args), { location: 'Paris', unit: 'celsius' });
    assert.deepEqual(JSON.parse(calls[1].args), { location: 'Tokyo', unit: 'celsius' });
    assert.equal(usage?.completion_tokens, 16);
    // default max_tokens (4096) is added on the way to Anthropic
    assert.equal((await mockLast()).body.max_tokens, 4096);

    await openai.chat.completions.create({
      model: CLAUDE, tools,
      messages: [
        { role: 'user', content: 'weather' },
        { role: 'assistant', content: null, tool_calls: calls.map((x) => ({
          id: x.id, type: 'function', function: { name: x.name, arguments: x.args } })) },
        { role: 'tool', tool_call_id: calls[0].id, content: '18 C' },
        { role: 'tool', tool_call_id: calls[1].id, content: '25 C' },
      ],
    });
    const sent = (await mockLast()).body.messages;
    assert.equal(sent.length, 3);
    assert.equal(sent[2].role, 'user');
    assert.deepEqual(sent[2].content.map((b) => [b.type, b.tool_use_id]),
      [['tool_result', calls[0].id], ['tool_result', calls[1].id]]);
  });

  test('OpenAI SDK: a 529 from Anthropic is an overload the OpenAI way', async () => {
    await assert.rejects(
      openai.chat.completions.create({ model: CLAUDE, messages: [{ role: 'user', content: 'x [mock:status=529]' }] }),
      (err) => {
        assert.ok(err.status >= 500, `status ${err.status}`);
        return true;
      });
  });

  test('Gemini SDK: generateContent', async () => {
    const res = await genai.models.generateContent({ model: CLAUDE, contents: 'hi there [mock:tokens=4]' });
    assert.equal(res.text, mockText(4));
    assert.equal(res.usageMetadata?.promptTokenCount, tokens('hi there [mock:tokens=4]'));
    assert.equal(res.usageMetadata?.candidatesTokenCount, 4);
  });
});

describe('Anthropic SDK → OpenAI provider', () => {
  test('a message and a stream through the OpenAI-kind mock account', async () => {
    const text = 'hello openai [mock:tokens=6]';
    const msg = await anthropic.messages.create({
      model: MODEL, max_tokens: 100, system: 'sys', messages: [{ role: 'user', content: text }],
    });
    assert.equal(msg.content[0].text, mockText(6));
    assert.equal(msg.usage.input_tokens, tokens('sys', text));
    assert.equal(msg.usage.output_tokens, 6);
    const last = await mockLast();
    assert.equal(last.body.model, UPSTREAM_MODEL);
    assert.equal(last.body.messages[0].role, 'system');

    const stream = anthropic.messages.stream({
      model: MODEL, max_tokens: 100, messages: [{ role: 'user', content: text }],
    });
    const final = await stream.finalMessage();
    assert.equal(final.content[0].text, mockText(6));
    assert.equal(final.stop_reason, 'end_turn');
    assert.equal(final.usage.output_tokens, 6);
  });
});
