// routing.test.mjs: retries, key rotation and fallbacks before the first byte reaches the client
// (docs/reliability.md). Failures are injected with the mock provider's directives; a provider on a
// closed port stands for one that cannot be reached. Checked: the number of upstream attempts (the
// mock counts them), the final answer or error, the x-tollgate-attempts header, and that failed
// attempts bill nothing (one usage row, for the target that answered).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { freePort, mockText, randomHex, startCluster } from './harness.mjs';

let c;
let key;
let mock;
let dead;

async function mockRequests() {
  return (await (await fetch(`${c.mockUrl}/__mock/stats`)).json()).requests;
}

async function resetMock() {
  await fetch(`${c.mockUrl}/__mock/reset`, { method: 'POST' });
}

async function provider(name, baseUrl, { secrets = [c.mockSecret], settings } = {}) {
  return c.adminOk('POST', '/admin/v1/providers', { name, kind: 'openai', base_url: baseUrl, settings,
    api_keys: secrets.map((secret) => ({ secret })) });
}

async function route(name, targets) {
  await c.adminOk('POST', '/admin/v1/routes', { name, targets });
  await c.waitModelVisible(key, name);
}

const ask = (model, text, headers = {}) => c.chat(0, key, { model, messages: [{ role: 'user', content: text }] }, { headers });

before(async () => {
  c = await startCluster({ dataplanes: 1, label: 'routing' });
  const tenant = await c.createTenant('routing');
  key = (await c.createKey(tenant.id)).key;
  mock = await provider('mock-r1', `${c.mockUrl}/v1`, { settings: { max_retries: '2' } });
  const port = await freePort(); // nothing listens there
  dead = await provider('dead', `http://127.0.0.1:${port}/v1`, { settings: { max_retries: '1' } });
  await route('r-mock', [{ provider_id: mock.id, model: 'm1' }]);
  // weight 0: only a fallback (both weighted would split first tries between them)
  await route('r-fallback', [{ provider_id: dead.id, model: 'd1' }, { provider_id: mock.id, model: 'm2', weight: 0 }]);
});

after(async () => {
  await c?.stop();
});

describe('retries on the same target', () => {
  test('503 is retried max_retries times, then the client gets the provider error', async () => {
    await resetMock();
    const res = await ask('r-mock', 'x [mock:status=503]');
    assert.equal(res.status, 503);
    assert.equal(res.body.error.code, 'overloaded');
    assert.equal(await mockRequests(), 3, '1 try + 2 retries');
    assert.match(res.headers.get('x-tollgate-attempts'), /^mock-r1\/m1=503, mock-r1\/m1=503, mock-r1\/m1=503$/);
  });

  test('400 and 404 are never retried', async () => {
    for (const status of [400, 404]) {
      await resetMock();
      const res = await ask('r-mock', `x [mock:status=${status}]`);
      assert.equal(res.status, status);
      assert.equal(await mockRequests(), 1, `no retry after ${status}`);
      assert.equal(res.headers.get('x-tollgate-attempts'), null);
    }
  });

  test('401 rotates to another key at once; the successful attempt is billed once', async () => {
    // a provider whose first key is refused: 401 rotates to the other key at once
    const rotating = await provider('rotating', `${c.mockUrl}/v1`, { secrets: ['sk-wrong-key', c.mockSecret] });
    await route('r-rotate', [{ provider_id: rotating.id, model: 'rot' }]);
    const ids = [];
    for (let i = 0; i < 8; i++) {
      const rid = `rot-${randomHex(6)}`;
      const res = await ask('r-rotate', 'hello', { 'x-request-id': rid });
      assert.equal(res.status, 200, 'every request succeeds on the good key');
      assert.equal(res.body.choices[0].message.content, mockText(16));
      ids.push(rid);
    }
    const rows = await c.waitUsage(ids);
    assert.equal(rows.length, ids.length, 'one usage row per request, none for the refused attempts');
    for (const r of rows) assert.equal(Number(r.output_tokens), 16);
  });
});

describe('fallbacks', () => {
  test('an unreachable first target falls back to the next one', async () => {
    await resetMock();
    const rid = `fb-${randomHex(6)}`;
    const res = await ask('r-fallback', 'hello', { 'x-request-id': rid });
    assert.equal(res.status, 200);
    assert.equal(res.body.choices[0].message.content, mockText(16));
    assert.match(res.headers.get('x-tollgate-attempts'), /^dead\/d1=0, dead\/d1=0$/);
    const last = await (await fetch(`${c.mockUrl}/__mock/last`)).json();
    assert.equal(last.body.model, 'm2', 'the fallback target got its own upstream model');
    await c.waitUsage([rid]);
    const rows = await c.sql('SELECT provider_id::text AS provider_id, upstream_model, output_tokens FROM usage_events WHERE request_id = $1', [rid]);
    assert.equal(rows.length, 1, 'the failed attempts bill nothing');
    assert.equal(rows[0].upstream_model, 'm2');
    assert.equal(rows[0].provider_id, mock.id);
  });

  test('when every target fails the client gets the first target\'s error', async () => {
    await resetMock();
    const res = await ask('r-fallback', 'x [mock:status=500]');
    // the first target could not be reached at all: its failure is what the client hears about
    assert.equal(res.status, 502);
    assert.equal(res.body.error.code, 'upstream_unreachable');
    assert.match(res.headers.get('x-tollgate-attempts'), /^dead\/d1=0, dead\/d1=0, mock-r1\/m2=500, mock-r1\/m2=500, mock-r1\/m2=500$/);
  });
});
