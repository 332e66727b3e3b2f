// errors.test.mjs: bad input and bad upstreams. Each case must produce the documented status and an
// OpenAI-shaped error body (docs/api.md), and none may take a dataplane down: the file ends by
// checking both dataplanes are still running and healthy. The dataplanes run with a 64 KiB body cap.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  MODEL, OTHER_MODEL, freePort, mockText, randomHex, readSSE, sleep, startCluster,
} from './harness.mjs';

const MAX_BODY = 65536;
let c;
let seed;

before(async () => {
  c = await startCluster({ dataplanes: 2, label: 'errs', dpEnv: { TOLLGATE_MAX_BODY_BYTES: String(MAX_BODY) } });
  seed = await c.seed();
});

after(async () => {
  await c?.stop();
});

const hello = (extra = '') => ({ model: MODEL, messages: [{ role: 'user', content: `hello ${extra}`.trim() }] });

// Asserts the OpenAI error shape, and type/code when given.
function assertOpenAIError(res, { status, type, code }) {
  assert.equal(res.status, status, `status (body: ${res.text})`);
  assert.ok(res.body && typeof res.body.error === 'object', `OpenAI error body, got: ${res.text}`);
  assert.equal(typeof res.body.error.message, 'string');
  assert.ok(res.body.error.message.length > 0);
  if (type !== undefined) assert.equal(res.body.error.type, type);
  if (code !== undefined) assert.equal(res.body.error.code, code);
}

describe('requests the gateway rejects', () => {
  for (const dp of [0, 1]) {
    test(`malformed JSON and missing fields → 400 (dataplane ${dp})`, async () => {
      assertOpenAIError(await c.chat(dp, seed.key.key, null, { raw: '{"model": "mock-gpt", "messages": [' }),
        { status: 400, type: 'invalid_request_error' });
      assertOpenAIError(await c.chat(dp, seed.key.key, null, { raw: 'not json at all' }),
        { status: 400, type: 'invalid_request_error' });
      assertOpenAIError(await c.chat(dp, seed.key.key, { messages: [{ role: 'user', content: 'hi' }] }),
        { status: 400, type: 'invalid_request_error' });
      assertOpenAIError(await c.chat(dp, seed.key.key, { model: MODEL }),
        { status: 400, type: 'invalid_request_error' });
    });
  }

  test('missing or unknown key → 401', async () => {
    for (const dp of [0, 1]) {
      assertOpenAIError(await c.chat(dp, null, hello()),
        { status: 401, type: 'authentication_error', code: 'missing_api_key' });
      assertOpenAIError(await c.chat(dp, `tg-${randomHex(24)}`, hello()),
        { status: 401, type: 'authentication_error', code: 'invalid_api_key' });
      assertOpenAIError(await c.chat(dp, 'not-even-a-key', hello()),
        { status: 401, type: 'authentication_error', code: 'invalid_api_key' });
    }
  });

  test('a revoked key is rejected by both dataplanes within 1 s', async () => {
    const key = await c.createKey(seed.tenant.id);
    for (const dp of [0, 1]) assert.equal((await c.chat(dp, key.key, hello())).status, 200);

    const t0 = Date.now();
    const revoked = await c.adminOk('POST', `/admin/v1/keys/${key.id}/revoke`, undefined, 200);
    assert.equal(revoked.status, 'revoked');
    const rejectedAt = [null, null];
    // Poll both dataplanes every 50 ms; bounded at 3 s so a failure reports how late it was.
    for (let i = 0; i < 60 && rejectedAt.includes(null); i++) {
      for (const dp of [0, 1]) {
        if (rejectedAt[dp] !== null) continue;
        const res = await c.chat(dp, key.key, hello());
        if (res.status === 401) rejectedAt[dp] = Date.now() - t0;
        else assert.equal(res.status, 200, `before the revoke lands the key still works: ${res.text}`);
      }
      if (Date.now() - t0 > 3000) break;
      await sleep(50);
    }
    for (const dp of [0, 1]) {
      assert.notEqual(rejectedAt[dp], null, `dataplane ${dp} never rejected the revoked key`);
      // The contract (docs/api.md): every dataplane rejects a revoked key within a second.
      assert.ok(rejectedAt[dp] < 1000, `dataplane ${dp} rejected the key after ${rejectedAt[dp]} ms`);
    }
    assertOpenAIError(await c.chat(0, key.key, hello()), { status: 401, type: 'authentication_error', code: 'invalid_api_key' });
  });

  test('unknown model → 404 model_not_found', async () => {
    for (const dp of [0, 1]) {
      assertOpenAIError(await c.chat(dp, seed.key.key, { ...hello(), model: 'no-such-model' }),
        { status: 404, type: 'invalid_request_error', code: 'model_not_found' });
    }
  });

  test('model not allowed for the key → 403 model_not_allowed', async () => {
    const key = await c.createKey(seed.tenant.id, { allowedModels: [MODEL] });
    for (const dp of [0, 1]) {
      assert.equal((await c.chat(dp, key.key, hello())).status, 200, 'the allowed model works');
      assertOpenAIError(await c.chat(dp, key.key, { ...hello(), model: OTHER_MODEL }),
        { status: 403, type: 'permission_error', code: 'model_not_allowed' });
    }
  });

  test('body over TOLLGATE_MAX_BODY_BYTES → 413', async () => {
    const big = JSON.stringify(hello('x'.repeat(MAX_BODY + 1024)));
    for (const dp of [0, 1]) {
      let res;
      try {
        res = await c.chat(dp, seed.key.key, null, { raw: big });
      } catch (err) {
        assert.fail(`the gateway must answer 413, not drop the connection: ${err.cause?.code ?? err.message}`);
      }
      assertOpenAIError(res, { status: 413, type: 'invalid_request_error', code: 'request_too_large' });
      // A body just under the cap still works.
      const fits = JSON.stringify(hello('y'.repeat(MAX_BODY - 1024)));
      assert.equal((await c.chat(dp, seed.key.key, null, { raw: fits })).status, 200);
    }
  });
});

describe('upstream failures', () => {
  test('provider unreachable → 502 upstream_unreachable', async () => {
    const closedPort = await freePort(); // nothing listens there
    const dead = await c.createProvider('dead', `http://127.0.0.1:${closedPort}/v1`);
    await c.createRoute('dead-gpt', dead.id, 'dead-model');
    await c.waitModelVisible(seed.key.key, 'dead-gpt');
    for (const dp of [0, 1]) {
      assertOpenAIError(await c.chat(dp, seed.key.key, { ...hello(), model: 'dead-gpt' }),
        { status: 502, type: 'upstream_error', code: 'upstream_unreachable' });
      const res = await fetch(`${c.dataplanes[dp].url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${seed.key.key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ ...hello(), model: 'dead-gpt', stream: true }),
        signal: AbortSignal.timeout(20000),
      });
      assert.equal(res.status, 502, 'a stream that never started fails with a plain 502');
      const body = await res.json();
      assert.equal(body.error.code, 'upstream_unreachable');
    }
  });

  test('an upstream error status is passed through with its body', async () => {
    for (const dp of [0, 1]) {
      const res = await c.chat(dp, seed.key.key, hello('[mock:status=503]'));
      assert.equal(res.status, 503, res.text);
      assert.ok(res.body?.error, `provider error body passed through: ${res.text}`);
      const bad = await c.chat(dp, seed.key.key, hello('[mock:status=429]'));
      assert.equal(bad.status, 429, bad.text);
      assert.ok(bad.body?.error, `provider error body passed through: ${bad.text}`);
    }
  });

  for (const directive of ['reset_after=3', 'error_after=3']) {
    test(`a stream that breaks mid-way (${directive}) does not end cleanly`, async () => {
      for (const dp of [0, 1]) {
        const res = await fetch(`${c.dataplanes[dp].url}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${seed.key.key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ ...hello(`[mock:tokens=10] [mock:${directive}]`), stream: true }),
          signal: AbortSignal.timeout(20000),
        });
        assert.equal(res.status, 200, 'the stream had started');
        const sse = await readSSE(res);
        assert.equal(sse.done, false, `no clean [DONE] after a broken upstream (events: ${sse.events.join(' | ')})`);
        const errorEvent = sse.json.some((j) => j && j.error);
        assert.ok(sse.error !== null || errorEvent,
          'the client sees an error: a transport error or an error event');
        const text = sse.json.map((j) => j?.choices?.[0]?.delta?.content ?? '').join('');
        assert.ok(mockText(10).startsWith(text) && text.length < mockText(10).length,
          `a prefix of the reply, not all of it: ${JSON.stringify(text)}`);
      }
    });
  }

  test('a non-streaming reply cut by the upstream → 502', async () => {
    for (const dp of [0, 1]) {
      assertOpenAIError(await c.chat(dp, seed.key.key, hello('[mock:reset_after=1]')),
        { status: 502, type: 'upstream_error', code: 'upstream_unreachable' });
    }
  });
});

describe('after all of that', () => {
  test('both dataplanes are still up and healthy', async () => {
    for (const dp of c.dataplanes) {
      assert.ok(dp.alive, dp.describe('died'));
      const res = await fetch(`${dp.url}/healthz`);
      assert.equal(res.status, 200);
      assert.equal((await c.chat(c.dataplanes.indexOf(dp), seed.key.key, hello())).status, 200);
    }
  });
});
