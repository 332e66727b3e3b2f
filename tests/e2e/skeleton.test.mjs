// skeleton.test.mjs: the walking skeleton end to end. Keys and tenants made through the admin API,
// chat completions (plain and streamed, raw and through the official `openai` SDK) through two
// dataplanes to the mock provider, /v1/models filtering, and exact usage rows and reports in
// PostgreSQL. Every request carries its own x-request-id so its usage row can be found.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import OpenAI from 'openai';
import {
  MODEL, OTHER_MODEL, UPSTREAM_MODEL, expectedCost, headerValue, mockText, promptTokens, readSSE,
  startCluster,
} from './harness.mjs';

let c;
let seed;
// Every successful chat request made with seed.key: {id, input, cached, output, stream}.
const ledger = [];

const rid = () => `e2e-${crypto.randomUUID()}`;

before(async () => {
  c = await startCluster({ dataplanes: 2, label: 'skel' });
  seed = await c.seed();
});

after(async () => {
  await c?.stop();
});

describe('admin API', () => {
  test('creates a tenant and a key with the documented shape', async () => {
    const tenant = await c.adminOk('POST', '/admin/v1/tenants', { name: 'acme' });
    assert.match(tenant.id, /^[0-9a-f-]{36}$/);
    assert.equal(tenant.name, 'acme');
    const key = await c.adminOk('POST', '/admin/v1/keys', { tenant_id: tenant.id, name: 'k1' });
    assert.match(key.key, /^tg-[0-9a-f]{48}$/);
    assert.equal(key.prefix, key.key.slice(0, 11));
    assert.equal(key.status, 'active');
    assert.equal(key.tenant_id, tenant.id);
    const fetched = await c.adminOk('GET', `/admin/v1/keys/${key.id}`);
    assert.equal(fetched.key, undefined, 'the plaintext key is returned only at creation');
    const unauth = await c.admin('GET', '/admin/v1/tenants', undefined, { token: 'wrong-token' });
    assert.equal(unauth.status, 401);
  });
});

describe('chat completions', () => {
  for (const dp of [0, 1]) {
    test(`non-streaming through dataplane ${dp}`, async () => {
      const messages = [
        { role: 'system', content: 'You are terse.' },
        { role: 'user', content: `Say hello to dataplane ${dp}.` },
      ];
      const id = rid();
      const res = await c.chat(dp, seed.key.key, { model: MODEL, messages }, { headers: { 'x-request-id': id } });
      assert.equal(res.status, 200, res.text);
      assert.equal(res.headers.get('x-request-id'), id);
      const b = res.body;
      assert.equal(b.object, 'chat.completion');
      assert.equal(typeof b.id, 'string');
      assert.equal(b.choices.length, 1);
      assert.equal(b.choices[0].message.role, 'assistant');
      assert.equal(b.choices[0].message.content, mockText(16));
      assert.equal(b.choices[0].finish_reason, 'stop');
      const input = promptTokens(messages);
      assert.equal(b.usage.prompt_tokens, input);
      assert.equal(b.usage.completion_tokens, 16);
      assert.equal(b.usage.total_tokens, input + 16);
      ledger.push({ id, input, cached: 0, output: 16, stream: false });
    });
  }

  test('x-api-key authentication and cached tokens', async () => {
    const messages = [{ role: 'user', content: 'Reuse the cache please [mock:cached=8] [mock:tokens=5]' }];
    const id = rid();
    const res = await c.chat(0, null, { model: MODEL, messages },
      { headers: { 'x-request-id': id, 'x-api-key': seed.key.key } });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.choices[0].message.content, mockText(5));
    assert.equal(res.body.usage.prompt_tokens_details?.cached_tokens, 8);
    ledger.push({ id, input: promptTokens(messages), cached: 8, output: 5, stream: false });
  });

  for (const dp of [0, 1]) {
    test(`streaming through dataplane ${dp} with the openai SDK`, async () => {
      const client = new OpenAI({ baseURL: `${c.dataplanes[dp].url}/v1`, apiKey: seed.key.key, maxRetries: 0 });
      const messages = [{ role: 'user', content: `Stream to me, dataplane ${dp}. [mock:tokens=20]` }];
      const id = rid();
      const stream = await client.chat.completions.create(
        { model: MODEL, messages, stream: true }, { headers: { 'x-request-id': id } });
      let text = '';
      let finish = null;
      let chunks = 0;
      for await (const chunk of stream) {
        chunks++;
        assert.equal(chunk.object, 'chat.completion.chunk');
        assert.ok(chunk.choices.length > 0, 'without include_usage every chunk has a choice');
        text += chunk.choices[0].delta?.content ?? '';
        finish = chunk.choices[0].finish_reason ?? finish;
      }
      assert.equal(text, mockText(20));
      assert.equal(finish, 'stop');
      assert.ok(chunks >= 20, `one chunk per token at least, got ${chunks}`);
      ledger.push({ id, input: promptTokens(messages), cached: 0, output: 20, stream: true });

      // With include_usage the SDK sees the usage chunk.
      const id2 = rid();
      const messages2 = [{ role: 'user', content: 'Count me. [mock:tokens=3]' }];
      const stream2 = await client.chat.completions.create(
        { model: MODEL, messages: messages2, stream: true, stream_options: { include_usage: true } },
        { headers: { 'x-request-id': id2 } });
      let usage = null;
      let text2 = '';
      for await (const chunk of stream2) {
        if (chunk.usage) usage = chunk.usage;
        text2 += chunk.choices[0]?.delta?.content ?? '';
      }
      assert.equal(text2, mockText(3));
      assert.ok(usage, 'usage chunk arrived');
      assert.equal(usage.prompt_tokens, promptTokens(messages2));
      assert.equal(usage.completion_tokens, 3);
      ledger.push({ id: id2, input: promptTokens(messages2), cached: 0, output: 3, stream: true });
    });
  }

  test('raw SSE: no usage chunk unless asked, exactly one when asked', async () => {
    for (const includeUsage of [false, true]) {
      for (const dp of [0, 1]) {
        const id = rid();
        const messages = [{ role: 'user', content: `raw ${includeUsage} ${dp} [mock:tokens=4]` }];
        const body = { model: MODEL, messages, stream: true };
        if (includeUsage) body.stream_options = { include_usage: true };
        const res = await fetch(`${c.dataplanes[dp].url}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${seed.key.key}`, 'content-type': 'application/json', 'x-request-id': id },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(20000),
        });
        assert.equal(res.status, 200);
        assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
        const sse = await readSSE(res);
        assert.equal(sse.error, null, `stream failed: ${sse.error}`);
        assert.ok(sse.done, 'stream ends with [DONE]');
        assert.ok(sse.json.every((j) => j !== null), 'every event is JSON');
        const empty = sse.json.filter((j) => Array.isArray(j.choices) && j.choices.length === 0);
        const withUsage = sse.json.filter((j) => j.usage);
        const text = sse.json.map((j) => j.choices?.[0]?.delta?.content ?? '').join('');
        assert.equal(text, mockText(4));
        if (!includeUsage) {
          assert.equal(empty.length, 0, `no choices:[] chunk without include_usage: ${sse.events.join(' | ')}`);
          assert.equal(withUsage.length, 0, 'no usage without include_usage');
        } else {
          assert.equal(empty.length, 1, 'exactly one usage chunk');
          assert.equal(withUsage.length, 1);
          assert.equal(withUsage[0].usage.prompt_tokens, promptTokens(messages));
          assert.equal(withUsage[0].usage.completion_tokens, 4);
          assert.equal(sse.json.at(-1), withUsage[0], 'the usage chunk is the last one');
        }
        ledger.push({ id, input: promptTokens(messages), cached: 0, output: 4, stream: true });
      }
    }
  });

  test('the upstream sees the upstream model, include_usage and the provider secret', async () => {
    const id = rid();
    const messages = [{ role: 'user', content: 'inspect me [mock:tokens=2]' }];
    const res = await fetch(`${c.dataplanes[1].url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${seed.key.key}`, 'content-type': 'application/json', 'x-request-id': id },
      body: JSON.stringify({ model: MODEL, messages, stream: true }),
      signal: AbortSignal.timeout(20000),
    });
    const sse = await readSSE(res);
    assert.ok(sse.done);
    ledger.push({ id, input: promptTokens(messages), cached: 0, output: 2, stream: true });

    const last = await (await fetch(`${c.mockUrl}/__mock/last`)).json();
    assert.equal(last.method, 'POST');
    assert.match(last.path, /\/v1\/chat\/completions$/);
    assert.equal(last.body.model, UPSTREAM_MODEL);
    assert.deepEqual(last.body.messages, messages);
    assert.equal(last.body.stream, true);
    assert.equal(last.body.stream_options?.include_usage, true);
    assert.equal(headerValue(last.headers, 'authorization'), `Bearer ${c.mockSecret}`);
    const allHeaders = JSON.stringify(last.headers);
    assert.ok(!allHeaders.includes(seed.key.key), 'the virtual key never reaches the provider');
  });
});

describe('models', () => {
  test('/v1/models lists only the models a key may use', async () => {
    const restricted = await c.createKey(seed.tenant.id, { allowedModels: [MODEL] });
    for (const dp of c.dataplanes) {
      const all = await (await fetch(`${dp.url}/v1/models`, { headers: { authorization: `Bearer ${seed.key.key}` } })).json();
      assert.equal(all.object, 'list');
      const allIds = all.data.map((m) => m.id).sort();
      assert.deepEqual(allIds, [MODEL, OTHER_MODEL].sort());
      assert.ok(all.data.every((m) => m.object === 'model'));

      const res = await fetch(`${dp.url}/v1/models`, { headers: { authorization: `Bearer ${restricted.key}` } });
      assert.equal(res.status, 200);
      const some = await res.json();
      assert.deepEqual(some.data.map((m) => m.id), [MODEL]);
    }
  });
});

describe('usage', () => {
  test('one exact usage row per request', async () => {
    assert.ok(ledger.length >= 10, `the chat tests above ran (${ledger.length} requests)`);
    const rows = await c.waitUsage(ledger.map((l) => l.id));
    assert.equal(rows.length, ledger.length, 'exactly one row per request');
    const byId = new Map(rows.map((r) => [r.request_id, r]));
    for (const l of ledger) {
      const r = byId.get(l.id);
      const what = `request ${l.id}`;
      assert.equal(r.input_tokens, l.input, `${what}: input_tokens`);
      assert.equal(r.output_tokens, l.output, `${what}: output_tokens`);
      assert.equal(r.cached_input_tokens, l.cached, `${what}: cached_input_tokens`);
      assert.equal(BigInt(r.cost_nanousd), expectedCost(l), `${what}: cost_nanousd`);
      assert.equal(r.tenant_id, seed.tenant.id, `${what}: tenant_id`);
      assert.equal(r.key_id, seed.key.id, `${what}: key_id`);
      assert.equal(r.model, MODEL, `${what}: model`);
      assert.equal(r.upstream_model, UPSTREAM_MODEL, `${what}: upstream_model`);
      assert.equal(r.status, 200, `${what}: status`);
      assert.equal(r.stream, l.stream, `${what}: stream`);
    }
    // The worked example from the contract: 30 prompt + 16 completion tokens at 2.5/10 USD per Mtok.
    assert.equal(expectedCost({ input: 30, output: 16 }), 235000n);
  });

  test('the usage report sums match the requests', async () => {
    const tenant = await c.createTenant('report-tenant');
    const key = await c.createKey(tenant.id);
    const made = [];
    for (let i = 0; i < 6; i++) {
      const messages = [{ role: 'user', content: `report ${i} ${'x'.repeat(i * 7)} [mock:tokens=${3 + i}] [mock:cached=${i}]` }];
      const id = rid();
      const res = await c.chat(i % 2, key.key, { model: MODEL, messages }, { headers: { 'x-request-id': id } });
      assert.equal(res.status, 200, res.text);
      made.push({ id, input: promptTokens(messages), cached: i, output: 3 + i });
    }
    await c.waitUsage(made.map((m) => m.id));
    const want = {
      requests: made.length,
      input_tokens: made.reduce((s, m) => s + m.input, 0),
      output_tokens: made.reduce((s, m) => s + m.output, 0),
      cached_input_tokens: made.reduce((s, m) => s + m.cached, 0),
      cost_nanousd: made.reduce((s, m) => s + expectedCost(m), 0n),
    };
    const report = await c.adminOk('GET', `/admin/v1/usage?tenant_id=${tenant.id}&group_by=key,model`);
    assert.deepEqual(report.group_by, ['key', 'model']);
    assert.equal(report.data.length, 1, JSON.stringify(report));
    const row = report.data[0];
    assert.equal(row.key_id, key.id);
    assert.equal(row.model, MODEL);
    assert.equal(Number(row.requests), want.requests);
    assert.equal(Number(row.input_tokens), want.input_tokens);
    assert.equal(Number(row.output_tokens), want.output_tokens);
    assert.equal(Number(row.cached_input_tokens), want.cached_input_tokens);
    assert.equal(BigInt(row.cost_nanousd), want.cost_nanousd);
    const usd = want.cost_nanousd.toString().padStart(10, '0');
    assert.equal(row.cost_usd, `${usd.slice(0, -9)}.${usd.slice(-9)}`);
  });
});
