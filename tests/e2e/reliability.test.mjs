// reliability.test.mjs: routing choices, per-request fallbacks, session stickiness, timeouts, client
// cancellation and circuit breakers (docs/reliability.md), against the mock provider with injected
// faults. Plain retries, key rotation and route fallbacks are in routing.test.mjs.
//
// Several provider accounts point at the one mock: the upstream model name (echoed back by the mock as
// `model`) says which target answered. `/__mock/fail` fails the next N requests of one upstream model
// only, which the prompt directives (seen by every target alike) cannot do.
//
// Metrics: each failure kind is checked against the dataplane's /metrics too (counter deltas between a
// scrape before and one after the request; providers named `mx-*` exist for one scenario each, so that
// their series move only when it runs).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  freePort, metricSum, mockText, randomHex, readSSE, scrape, startCluster, waitFor,
} from './harness.mjs';

const OPS_TOKEN = `ops-${randomHex(8)}`;
let c;
let key;
let tenant;
const P = {}; // provider accounts by name

async function mockPost(path, body) {
  const res = await fetch(`${c.mockUrl}${path}`, { method: 'POST', body: body && JSON.stringify(body) });
  assert.equal(res.status, 200);
  await res.arrayBuffer();
}
const mockStats = async () => (await fetch(`${c.mockUrl}/__mock/stats`)).json();
const mockLast = async () => (await fetch(`${c.mockUrl}/__mock/last`)).json();

async function provider(name, settings, baseUrl = `${c.mockUrl}/v1`, keys = [{ secret: c.mockSecret }]) {
  P[name] = await c.adminOk('POST', '/admin/v1/providers', { name, kind: 'openai', base_url: baseUrl, settings,
    api_keys: keys });
  return P[name];
}

async function route(name, targets) {
  await c.adminOk('POST', '/admin/v1/routes', { name, targets });
  await c.waitModelVisible(key, name);
}

const dp = () => c.dataplanes[0].url;

function chat(body, headers = {}, k = key) {
  return c.chat(0, k, body, { headers });
}

const msg = (text) => [{ role: 'user', content: text }];

// A streaming chat request; returns {status, headers, sse}.
async function stream(body, headers = {}) {
  const res = await fetch(`${dp()}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}`, ...headers },
    body: JSON.stringify({ ...body, stream: true }),
    signal: AbortSignal.timeout(30000),
  });
  if (res.status !== 200) return { status: res.status, headers: res.headers, body: await res.json().catch(() => null) };
  return { status: 200, headers: res.headers, sse: await readSSE(res) };
}

const metrics = () => scrape(dp(), { token: OPS_TOKEN });

// Runs fn (which makes `n` requests for the public model `model`), then scrapes until they are counted
// (a request's samples are recorded when it ends, just after its last byte went out; its
// tollgate_requests_total sample last). Returns fn's result, the last scrape, and d(name, labels): the
// change of a metric over fn.
async function measured(model, fn, n = 1) {
  const before = await metrics();
  const r = await fn();
  const counted = (p) => metricSum(p, 'tollgate_requests_total', { model }) - metricSum(before, 'tollgate_requests_total', { model });
  const after = await waitFor(async () => {
    const p = await metrics();
    return counted(p) >= n ? p : null;
  }, 5000, { what: `${n} request(s) for ${model} in /metrics` });
  assert.equal(counted(after), n, `${model}: requests counted`);
  return { r, after, d: (name, want) => metricSum(after, name, want) - metricSum(before, name, want) };
}

// The breaker gauges of one provider account and upstream model, by key id.
function breakerGauges(prom, provider, model) {
  const out = {};
  for (const s of prom.samples) {
    if (s.labels.provider !== provider || s.labels.model !== model) continue;
    if (s.name === 'tollgate_circuit_breaker_state') (out[s.labels.key_id] ??= {}).state = s.value;
    if (s.name === 'tollgate_circuit_breaker_consecutive_failures') (out[s.labels.key_id] ??= {}).failures = s.value;
  }
  return out;
}

async function breakers(token = OPS_TOKEN) {
  const res = await fetch(`${dp()}/tollgate/v1/breakers`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  return { status: res.status, body: await res.json() };
}

before(async () => {
  c = await startCluster({ dataplanes: 1, label: 'reliab', dpEnv: { TOLLGATE_OPS_TOKEN: OPS_TOKEN, TOLLGATE_BREAKER_DEFAULTS: 'on' } });
  tenant = await c.createTenant('reliab');
  key = (await c.createKey(tenant.id)).key;
  // breakers off where a test does not look at them, so that failures of one test do not skip targets in another
  const noBreaker = { breaker_consecutive_failures: '0', breaker_error_rate_pct: '0' };
  await provider('acct-a', { max_retries: '0', ...noBreaker });
  await provider('acct-b', { max_retries: '0', ...noBreaker });
  await provider('dead', { max_retries: '0', connect_timeout_ms: '1000', ...noBreaker },
    `http://127.0.0.1:${await freePort()}/v1`);
  await provider('slow', { max_retries: '1', first_byte_timeout_ms: '300', ...noBreaker });
  await provider('idle', { max_retries: '1', idle_timeout_ms: '300', ...noBreaker });
  await provider('total', { max_retries: '0', total_timeout_ms: '1500', ...noBreaker });
  // total_timeout_ms bounds the whole request; attempt_timeout_ms one attempt
  await provider('tot-hang', { max_retries: '2', total_timeout_ms: '1500', ...noBreaker });
  await provider('tot-429', { max_retries: '5', total_timeout_ms: '1500', ...noBreaker });
  await provider('tot-att', { max_retries: '1', total_timeout_ms: '8000', attempt_timeout_ms: '400', ...noBreaker });
  await provider('brk', { max_retries: '0', breaker_consecutive_failures: '2', breaker_cooldown_ms: '1000',
    breaker_probe_successes: '1', breaker_error_rate_pct: '0' });
  await provider('chaos', { max_retries: '2', ...noBreaker });
  await route('r-weighted', [{ provider_id: P['acct-a'].id, model: 'w-a' }, { provider_id: P['acct-b'].id, model: 'w-b' }]);
  await route('r-dead', [{ provider_id: P.dead.id, model: 'd1' }]);
  await route('r-ok', [{ provider_id: P['acct-b'].id, model: 'ok-b' }]);
  await route('r-slow', [{ provider_id: P.slow.id, model: 's1' }, { provider_id: P['acct-b'].id, model: 's-fb', weight: 0 }]);
  await route('r-idle', [{ provider_id: P.idle.id, model: 'i1' }]);
  await route('r-total', [{ provider_id: P.total.id, model: 't1' }]);
  await route('r-tot-att', [{ provider_id: P['tot-att'].id, model: 'ta1' }, { provider_id: P['acct-b'].id, model: 'ta-fb', weight: 0 }]);
  await route('r-brk', [{ provider_id: P.brk.id, model: 'b1' }, { provider_id: P['acct-b'].id, model: 'b-fb', weight: 0 }]);
  await route('r-chaos', [{ provider_id: P.chaos.id, model: 'c1' }]);
  // metrics scenarios: breakers count failures (visible in the gauges) but never open
  const counting = { breaker_consecutive_failures: '100', breaker_error_rate_pct: '0' };
  await provider('mx-retry', { max_retries: '2', ...counting });
  // weight 0: the second key is only used once the first is marked bad, so the rotation is certain
  await provider('mx-429', { max_retries: '2', ...counting }, undefined,
    [{ secret: c.mockSecret, weight: 1 }, { secret: c.mockSecret, weight: 0 }]);
  await provider('mx-401', { max_retries: '2', ...counting }, undefined,
    [{ secret: 'sk-refused-key', weight: 1 }, { secret: c.mockSecret, weight: 0 }]);
  await provider('mx-400', { max_retries: '2', ...counting });
  await provider('mx-dead', { max_retries: '1', connect_timeout_ms: '1000', ...counting },
    `http://127.0.0.1:${await freePort()}/v1`);
  await provider('mx-fb', { max_retries: '0', ...counting });
  await route('rm-retry', [{ provider_id: P['mx-retry'].id, model: 'mr1' }]);
  await route('rm-429', [{ provider_id: P['mx-429'].id, model: 'm429' }]);
  await route('rm-401', [{ provider_id: P['mx-401'].id, model: 'm401' }]);
  await route('rm-400', [{ provider_id: P['mx-400'].id, model: 'm400' }]);
  await route('rm-dead', [{ provider_id: P['mx-dead'].id, model: 'md1' }]);
  await route('rm-fb', [{ provider_id: P['mx-dead'].id, model: 'md2' }, { provider_id: P['mx-fb'].id, model: 'mfb', weight: 0 }]);
});

after(async () => {
  await c?.stop();
});

describe('routing', () => {
  test('weighted targets: both get first tries (bounded sample)', async () => {
    const seen = new Map();
    for (let i = 0; i < 40; i++) {
      const res = await chat({ model: 'r-weighted', messages: msg('w [mock:tokens=1]') });
      assert.equal(res.status, 200);
      seen.set(res.body.model, (seen.get(res.body.model) ?? 0) + 1);
    }
    assert.deepEqual([...seen.keys()].sort(), ['w-a', 'w-b'], `first tries went to ${JSON.stringify([...seen])}`);
  });

  test('account/model names reach the account directly, billed to it', async () => {
    const rid = `direct-${randomHex(6)}`;
    const res = await chat({ model: 'acct-a/direct-model', messages: msg('hi') }, { 'x-request-id': rid });
    assert.equal(res.status, 200);
    assert.equal(res.body.model, 'direct-model');
    assert.equal(res.body.choices[0].message.content, mockText(16));
    const [row] = await c.waitUsage([rid]);
    assert.equal(row.model, 'acct-a/direct-model');
    assert.equal(row.upstream_model, 'direct-model');
    const unknown = await chat({ model: 'no-such-acct/x', messages: msg('hi') });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.error.code, 'model_not_found');
  });

  test('session stickiness: one session keeps its target; sessions spread', async () => {
    const firstOf = new Map();
    for (let s = 0; s < 20; s++) {
      const session = `sess-${s}`;
      const models = new Set();
      for (let i = 0; i < 4; i++) {
        const res = await chat({ model: 'r-weighted', messages: msg('s [mock:tokens=1]') }, { 'x-tollgate-session-id': session });
        assert.equal(res.status, 200);
        models.add(res.body.model);
      }
      assert.equal(models.size, 1, `session ${session} moved between ${[...models]}`);
      firstOf.set(session, [...models][0]);
    }
    assert.equal(new Set(firstOf.values()).size, 2, 'twenty sessions all landed on one target');
  });
});

describe('per-request fallbacks', () => {
  test('body `fallbacks` (OpenAI): tried after the route, never sent upstream, failed attempt bills nothing', async () => {
    const rid = `fb-body-${randomHex(6)}`;
    const res = await chat({ model: 'r-dead', fallbacks: ['no-such-model', 'acct-b/fb-direct'], messages: msg('hi') },
      { 'x-request-id': rid });
    assert.equal(res.status, 200);
    assert.equal(res.body.model, 'fb-direct');
    assert.equal(res.headers.get('x-tollgate-attempts'), 'dead/d1=0');
    const last = await mockLast();
    assert.equal(last.body.model, 'fb-direct');
    assert.equal('fallbacks' in last.body, false, 'the gateway field is cut out of the upstream body');
    const rows = await c.waitUsage([rid]);
    assert.equal(rows.length, 1);
    assert.equal(rows[0].upstream_model, 'fb-direct');
    assert.equal(rows[0].output_tokens, 16);
  });

  test('header x-tollgate-fallbacks, streaming', async () => {
    const r = await stream({ model: 'r-dead', messages: msg('hi [mock:tokens=3]') }, { 'x-tollgate-fallbacks': ' nope , r-ok' });
    assert.equal(r.status, 200);
    assert.equal(r.sse.done, true);
    assert.equal(r.sse.json.map((e) => e?.choices?.[0]?.delta?.content ?? '').join(''), mockText(3));
    assert.equal(r.sse.json[0].model, 'ok-b');
  });

  test('Anthropic dialect: `fallbacks` works and is not forwarded', async () => {
    const res = await fetch(`${dp()}/anthropic/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': key, 'anthropic-version': '2023-06-01' },
      body: JSON.stringify({ model: 'r-dead', max_tokens: 64, fallbacks: ['r-ok'], messages: msg('hi') }),
    });
    const body = await res.json();
    assert.equal(res.status, 200, JSON.stringify(body));
    assert.equal(body.type, 'message');
    assert.equal(body.content[0].text, mockText(16));
    const last = await mockLast();
    assert.equal(last.body.model, 'ok-b');
    assert.equal('fallbacks' in last.body, false);
  });

  test('a fallback the key may not use is skipped', async () => {
    const limited = (await c.createKey(tenant.id, { allowedModels: ['r-dead'] })).key;
    const res = await chat({ model: 'r-dead', fallbacks: ['r-ok'], messages: msg('hi') }, {}, limited);
    assert.equal(res.status, 502);
    assert.equal(res.body.error.code, 'upstream_unreachable');
    assert.equal(res.headers.get('x-tollgate-attempts'), null, 'one attempt only: the fallback was not tried');
  });
});

describe('metrics per failure kind', () => {
  test('5xx retried, then a success: two upstream responses, one retry, one 200 request', async () => {
    await mockPost('/__mock/fail', { model: 'mr1', status: 500, count: 1 });
    const { r, d } = await measured('rm-retry', () => chat({ model: 'rm-retry', messages: msg('x [mock:tokens=3]') }));
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('x-tollgate-attempts'), 'mx-retry/mr1=500');
    assert.equal(d('tollgate_upstream_responses_total', { provider: 'mx-retry', code: '500' }), 1);
    assert.equal(d('tollgate_upstream_responses_total', { provider: 'mx-retry', code: '200' }), 1);
    assert.equal(d('tollgate_upstream_responses_total', { provider: 'mx-retry' }), 2);
    assert.equal(d('tollgate_retries_total', { provider: 'mx-retry', model: 'rm-retry' }), 1);
    assert.equal(d('tollgate_fallbacks_total', { model: 'rm-retry' }), 0);
    assert.equal(d('tollgate_requests_total', { tenant: tenant.id, provider: 'mx-retry', model: 'rm-retry',
      endpoint: 'chat.completions', code: '200' }), 1);
    assert.equal(d('tollgate_tokens_total', { provider: 'mx-retry', model: 'rm-retry', type: 'output' }), 3,
      'the failed attempt bills nothing');
    assert.equal(d('tollgate_upstream_duration_seconds_count', { provider: 'mx-retry', model: 'rm-retry' }), 1,
      'one observation per request, all attempts together');
  });

  test('429 rotates to the other key: the refused key\'s breaker counts the failure', async () => {
    await mockPost('/__mock/fail', { model: 'm429', status: 429, count: 1 });
    const { r, d, after } = await measured('rm-429', () => chat({ model: 'rm-429', messages: msg('x [mock:tokens=2]') }));
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('x-tollgate-attempts'), 'mx-429/m429=429');
    assert.equal(d('tollgate_upstream_responses_total', { provider: 'mx-429', code: '429' }), 1);
    assert.equal(d('tollgate_upstream_responses_total', { provider: 'mx-429', code: '200' }), 1);
    assert.equal(d('tollgate_retries_total', { provider: 'mx-429', model: 'rm-429' }), 1, 'another key, same target');
    assert.equal(d('tollgate_requests_total', { provider: 'mx-429', model: 'rm-429', code: '200' }), 1);
    const [k1, k2] = P['mx-429'].api_keys.map((k) => k.id);
    const g = breakerGauges(after, 'mx-429', 'm429');
    assert.deepEqual(g[k1], { state: 0, failures: 1 }, 'the first key got the 429');
    assert.deepEqual(g[k2], { state: 0, failures: 0 }, 'the second key answered');
  });

  test('401 marks the key bad and rotates at once', async () => {
    const { r, d, after } = await measured('rm-401', () => chat({ model: 'rm-401', messages: msg('x [mock:tokens=2]') }));
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('x-tollgate-attempts'), 'mx-401/m401=401');
    assert.equal(d('tollgate_upstream_responses_total', { provider: 'mx-401', code: '401' }), 1);
    assert.equal(d('tollgate_upstream_responses_total', { provider: 'mx-401', code: '200' }), 1);
    assert.equal(d('tollgate_retries_total', { provider: 'mx-401', model: 'rm-401' }), 1);
    assert.equal(d('tollgate_requests_total', { provider: 'mx-401', model: 'rm-401', code: '200' }), 1);
    const [bad, good] = P['mx-401'].api_keys.map((k) => k.id);
    const g = breakerGauges(after, 'mx-401', 'm401');
    assert.equal(g[bad].failures, 1);
    assert.equal(g[good].failures, 0);
  });

  test('400 is never retried: one upstream response, no retry, the request counted as 400', async () => {
    const { r, d, after } = await measured('rm-400', () => chat({ model: 'rm-400', messages: msg('x [mock:status=400]') }));
    assert.equal(r.status, 400);
    assert.equal(r.headers.get('x-tollgate-attempts'), null);
    assert.equal(d('tollgate_upstream_responses_total', { provider: 'mx-400' }), 1);
    assert.equal(d('tollgate_upstream_responses_total', { provider: 'mx-400', code: '400' }), 1);
    assert.equal(d('tollgate_retries_total', { provider: 'mx-400' }), 0);
    assert.equal(d('tollgate_requests_total', { provider: 'mx-400', model: 'rm-400', code: '400' }), 1);
    assert.equal(d('tollgate_tokens_total', { provider: 'mx-400' }), 0);
    const [k] = P['mx-400'].api_keys.map((x) => x.id);
    assert.equal(breakerGauges(after, 'mx-400', 'm400')[k].failures, 0, 'the client\'s mistake is not the provider\'s failure');
  });

  test('connection refused: conn_error per attempt, retries, a 502 request', async () => {
    const { r, d } = await measured('rm-dead', () => chat({ model: 'rm-dead', messages: msg('x') }));
    assert.equal(r.status, 502);
    assert.equal(r.body.error.code, 'upstream_unreachable');
    assert.equal(d('tollgate_upstream_responses_total', { provider: 'mx-dead', code: 'conn_error' }), 2);
    assert.equal(d('tollgate_upstream_responses_total', { provider: 'mx-dead' }), 2);
    assert.equal(d('tollgate_retries_total', { provider: 'mx-dead', model: 'rm-dead' }), 1);
    assert.equal(d('tollgate_requests_total', { provider: 'mx-dead', model: 'rm-dead', code: '502' }), 1);
    assert.equal(d('tollgate_time_to_first_token_seconds_count', { model: 'rm-dead' }), 0, 'no upstream answer');
  });

  test('fallback to the next target: counted from one provider to the other; the request is the answering one\'s', async () => {
    const { r, d } = await measured('rm-fb', () => chat({ model: 'rm-fb', messages: msg('x [mock:tokens=2]') }));
    assert.equal(r.status, 200);
    assert.equal(r.body.model, 'mfb');
    assert.equal(d('tollgate_upstream_responses_total', { provider: 'mx-dead', code: 'conn_error' }), 2);
    assert.equal(d('tollgate_upstream_responses_total', { provider: 'mx-fb', code: '200' }), 1);
    assert.equal(d('tollgate_retries_total', { provider: 'mx-dead', model: 'rm-fb' }), 1);
    assert.equal(d('tollgate_retries_total', { provider: 'mx-fb', model: 'rm-fb' }), 0);
    assert.equal(d('tollgate_fallbacks_total', { model: 'rm-fb', from: 'mx-dead', to: 'mx-fb' }), 1);
    assert.equal(d('tollgate_fallbacks_total', { model: 'rm-fb' }), 1);
    assert.equal(d('tollgate_requests_total', { model: 'rm-fb', code: '200' }), 1);
    assert.equal(d('tollgate_requests_total', { provider: 'mx-fb', model: 'rm-fb', code: '200' }), 1);
    assert.equal(d('tollgate_tokens_total', { provider: 'mx-fb', model: 'rm-fb', type: 'output' }), 2);
  });
});

describe('timeouts', () => {
  test('first-byte timeout: retried, then the weight-0 fallback answers', async () => {
    await mockPost('/__mock/reset');
    // the delay applies to every target alike: s1 times out twice (300 ms), the fallback waits it out
    const rid = `ttfb-${randomHex(6)}`;
    const { r, d } = await measured('r-slow', () =>
      stream({ model: 'r-slow', messages: msg('x [mock:delay_ms=1000,tokens=2]') }, { 'x-request-id': rid }));
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('x-tollgate-attempts'), 'slow/s1=0, slow/s1=0');
    assert.equal(d('tollgate_upstream_responses_total', { provider: 'slow', code: 'timeout' }), 2);
    assert.equal(d('tollgate_upstream_responses_total', { provider: 'slow' }), 2);
    assert.equal(d('tollgate_upstream_responses_total', { provider: 'acct-b', code: '200' }), 1);
    assert.equal(d('tollgate_retries_total', { provider: 'slow', model: 'r-slow' }), 1);
    assert.equal(d('tollgate_fallbacks_total', { model: 'r-slow', from: 'slow', to: 'acct-b' }), 1);
    assert.equal(d('tollgate_requests_total', { provider: 'acct-b', model: 'r-slow', code: '200' }), 1);
    assert.equal(d('tollgate_time_to_first_token_seconds_count', { provider: 'acct-b', model: 'r-slow' }), 1);
    assert.equal(r.sse.done, true);
    assert.equal(r.sse.json[0].model, 's-fb');
    const rows = await c.waitUsage([rid]);
    assert.equal(rows.length, 1);
    assert.equal(rows[0].upstream_model, 's-fb');
    assert.equal(rows[0].output_tokens, 2);
  });

  test('first-byte timeout on every attempt: a 502 in the client\'s dialect naming the timeout', async () => {
    const r = await stream({ model: 'slow/s2', messages: msg('x [mock:delay_ms=1000]') });
    assert.equal(r.status, 502);
    assert.equal(r.body.error.code, 'upstream_unreachable');
    assert.match(r.body.error.message, /first-byte timeout/);
    assert.equal(r.headers.get('x-tollgate-attempts'), 'slow/s2=0, slow/s2=0');
  });

  test('idle gap mid-stream ends the stream with an error event, not a short success', async () => {
    const rid = `idle-${randomHex(6)}`;
    const { r, d } = await measured('r-idle', () =>
      stream({ model: 'r-idle', messages: msg('x [mock:tokens=4,chunk_delay_ms=1500]') }, { 'x-request-id': rid }));
    assert.equal(r.status, 200);
    // one attempt, cut by the timeout; no retry once the stream has started; the request ends as a 502
    // (as its usage row), though the client saw a 200 status line
    assert.equal(d('tollgate_upstream_responses_total', { provider: 'idle', code: 'timeout' }), 1);
    assert.equal(d('tollgate_upstream_responses_total', { provider: 'idle' }), 1);
    assert.equal(d('tollgate_retries_total', { provider: 'idle' }), 0);
    assert.equal(d('tollgate_requests_total', { provider: 'idle', model: 'r-idle', code: '502' }), 1);
    assert.equal(d('tollgate_time_to_first_token_seconds_count', { provider: 'idle', model: 'r-idle' }), 1,
      'the first event came');
    assert.equal(r.sse.done, false, 'no [DONE] after a failure');
    const lastEvent = r.sse.json.at(-1);
    assert.equal(lastEvent.error.code, 'upstream_stream_failed');
    assert.match(lastEvent.error.message, /idle timeout/);
    const rows = await c.waitUsage([rid]);
    assert.equal(rows[0].status, 502);
  });

  test('total timeout ends a started stream with an error event', async () => {
    const r = await stream({ model: 'r-total', messages: msg('x [mock:tokens=20,chunk_delay_ms=200]') });
    assert.equal(r.status, 200);
    assert.equal(r.sse.done, false);
    assert.equal(r.sse.json.at(-1).error.code, 'upstream_stream_failed');
    assert.match(r.sse.json.at(-1).error.message, /total timeout \(1500 ms\)/);
    const words = r.sse.json.filter((e) => e?.choices?.[0]?.delta?.content).length;
    assert.ok(words < 20, `the stream was cut (${words} words)`);
  });

  test('the total timeout bounds the request, not each attempt: a hung call is not retried past it', async () => {
    await mockPost('/__mock/reset');
    // each attempt would hang 3 s; 1.5 s for the whole request leaves no time for the 2 retries
    const r = await chat({ model: 'tot-hang/h1', messages: msg('x [mock:delay_ms=3000]') });
    assert.equal(r.status, 502);
    assert.equal(r.body.error.code, 'upstream_unreachable');
    assert.match(r.body.error.message, /total timeout \(1500 ms\)/);
    assert.equal(r.headers.get('x-tollgate-attempts'), null, 'one attempt');
    assert.equal((await mockStats()).requests, 1);
  });

  test('the total timeout covers backoff waits: no retry whose wait would end past it', async () => {
    await mockPost('/__mock/reset');
    // the mock's 429 says retry-after: 1, so each retry waits 1 s; max_retries 5 would take 5 s and 6
    // attempts, the 1.5 s deadline leaves room for one retry at most
    const r = await chat({ model: 'tot-429/q1', messages: msg('x [mock:status=429]') });
    assert.equal(r.status, 429);
    assert.equal(r.body.error.code, 'rate_limit_exceeded');
    const n = (await mockStats()).requests;
    assert.ok(n >= 1 && n <= 2, `${n} attempts within the deadline`);
    assert.equal(r.headers.get('x-tollgate-attempts').split(', ').length, n);
  });

  test('attempt_timeout_ms bounds each attempt, leaving the rest of the total for the fallback', async () => {
    await mockPost('/__mock/reset');
    const rid = `att-${randomHex(6)}`;
    const r = await chat({ model: 'r-tot-att', messages: msg('x [mock:delay_ms=1200,tokens=2]') }, { 'x-request-id': rid });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.model, 'ta-fb', 'the fallback had the time to answer');
    assert.equal(r.headers.get('x-tollgate-attempts'), 'tot-att/ta1=0, tot-att/ta1=0');
    assert.equal((await mockStats()).requests, 3);
    const rows = await c.waitUsage([rid]);
    assert.equal(rows.length, 1);
    assert.equal(rows[0].upstream_model, 'ta-fb');
  });
});

describe('client disconnect', () => {
  test('a client that leaves mid-stream cancels the upstream call', async () => {
    await mockPost('/__mock/reset');
    const ac = new AbortController();
    const res = await fetch(`${dp()}/v1/chat/completions`, {
      method: 'POST', signal: ac.signal,
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify({ model: 'r-ok', stream: true, messages: msg('x [mock:tokens=200,chunk_delay_ms=100]') }),
    });
    assert.equal(res.status, 200);
    const reader = res.body.getReader();
    await reader.read(); // the stream has started
    ac.abort();
    await waitFor(async () => (await mockStats()).cancelled === 1, 5000, { what: 'the mock to see the cancel' });
  });

  test('a client that leaves before the answer cancels the upstream call', async () => {
    await mockPost('/__mock/reset');
    const ac = new AbortController();
    const pending = fetch(`${dp()}/v1/chat/completions`, {
      method: 'POST', signal: ac.signal,
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify({ model: 'r-ok', messages: msg('x [mock:delay_ms=20000]') }),
    }).catch((err) => err);
    await waitFor(async () => (await mockStats()).requests === 1, 5000, { what: 'the request upstream' });
    ac.abort();
    await pending;
    await waitFor(async () => (await mockStats()).cancelled === 1, 5000, { what: 'the mock to see the cancel' });
  });
});

describe('circuit breaker', () => {
  test('opens after consecutive failures, is skipped, then recovers through a half-open probe', async () => {
    await mockPost('/__mock/reset');
    await mockPost('/__mock/fail', { model: 'b1', status: 500, count: 2 });
    for (let i = 0; i < 2; i++) {
      const res = await chat({ model: 'r-brk', messages: msg('b [mock:tokens=1]') });
      assert.equal(res.status, 200);
      assert.equal(res.body.model, 'b-fb');
      assert.equal(res.headers.get('x-tollgate-attempts'), 'brk/b1=500');
    }
    // open: b1 is not called at all
    const before = (await mockStats()).requests;
    const { r: skipped, d, after } = await measured('r-brk', () => chat({ model: 'r-brk', messages: msg('b [mock:tokens=1]') }));
    assert.equal(skipped.status, 200);
    const [brkKey] = P.brk.api_keys.map((k) => k.id);
    assert.deepEqual(breakerGauges(after, 'brk', 'b1')[brkKey], { state: 2, failures: 2 }, 'open, after 2 failures');
    assert.equal(d('tollgate_upstream_responses_total', { provider: 'brk' }), 0, 'no attempt on the open target');
    assert.equal(d('tollgate_upstream_responses_total', { provider: 'acct-b', code: '200' }), 1);
    assert.equal(d('tollgate_requests_total', { provider: 'acct-b', model: 'r-brk', code: '200' }), 1);
    assert.equal(skipped.body.model, 'b-fb');
    assert.equal(skipped.headers.get('x-tollgate-attempts'), 'brk/b1=open');
    assert.equal((await mockStats()).requests, before + 1, 'only the fallback was called');

    assert.equal((await breakers(null)).status, 401, 'the ops token is required');
    assert.equal((await breakers('wrong')).status, 401);
    const open = await breakers();
    assert.equal(open.status, 200);
    const mine = () => open.body.breakers.find((b) => b.provider === 'brk' && b.model === 'b1');
    assert.equal(mine().state, 'open');
    assert.equal(mine().provider_id, P.brk.id);
    assert.ok(mine().consecutive_failures >= 2);

    // after the cool-down one probe goes through; it succeeds (the failure plan is spent) and closes it
    await waitFor(async () => (await breakers()).body.breakers.find((b) => b.model === 'b1').state === 'half_open',
      10000, { what: 'the breaker to turn half-open' });
    assert.equal(breakerGauges(await metrics(), 'brk', 'b1')[brkKey].state, 1, 'half-open in /metrics too');
    const probed = await measured('r-brk', () => chat({ model: 'r-brk', messages: msg('b [mock:tokens=1]') }));
    const probe = probed.r;
    assert.equal(probe.status, 200);
    assert.equal(probe.body.model, 'b1');
    assert.equal(probe.headers.get('x-tollgate-attempts'), null);
    const closed = (await breakers()).body.breakers.find((b) => b.model === 'b1');
    assert.equal(closed.state, 'closed');
    assert.equal(closed.consecutive_failures, 0);
    assert.deepEqual(breakerGauges(probed.after, 'brk', 'b1')[brkKey], { state: 0, failures: 0 }, 'closed again');
    assert.equal(probed.d('tollgate_upstream_responses_total', { provider: 'brk', code: '200' }), 1);
    assert.equal(probed.d('tollgate_requests_total', { provider: 'brk', model: 'r-brk', code: '200' }), 1);
  });

  test('a failed probe opens it again; with every target open the client gets a fast 503', async () => {
    await mockPost('/__mock/fail', { model: 'b2', status: 503, count: 100 });
    await route('r-brk-only', [{ provider_id: P.brk.id, model: 'b2' }]);
    for (let i = 0; i < 2; i++) assert.equal((await chat({ model: 'r-brk-only', messages: msg('b') })).status, 503);
    const { r: fast, d, after } = await measured('r-brk-only', () => chat({ model: 'r-brk-only', messages: msg('b') }));
    assert.equal(fast.status, 503);
    assert.equal(d('tollgate_upstream_responses_total', { provider: 'brk' }), 0, 'fail fast: no upstream call');
    assert.equal(d('tollgate_requests_total', { model: 'r-brk-only', code: '503' }), 1);
    assert.equal(breakerGauges(after, 'brk', 'b2')[P.brk.api_keys[0].id].state, 2);
    assert.equal(fast.body.error.code, 'upstream_unavailable');
    assert.equal(fast.headers.get('x-tollgate-attempts'), 'brk/b2=open');
    assert.ok(fast.headers.get('retry-after'));
    await waitFor(async () => (await breakers()).body.breakers.find((b) => b.model === 'b2').state === 'half_open',
      10000, { what: 'the breaker to turn half-open' });
    const probe = await chat({ model: 'r-brk-only', messages: msg('b') });
    assert.equal(probe.status, 503, 'the probe reached the still failing provider');
    assert.equal(probe.body.error.code, 'overloaded');
    assert.equal((await breakers()).body.breakers.find((b) => b.model === 'b2').state, 'open');
    await mockPost('/__mock/fail', { status: 500, count: 0 });
  });
});

describe('load', () => {
  test('200 concurrent streams with random upstream failures all end correctly', async () => {
    const kinds = ['ok', 'ok', 'reset', 'error', 'status', 'slow'];
    const jobs = Array.from({ length: 200 }, (_, i) => {
      const kind = kinds[i % kinds.length];
      const k = 1 + (i % 4);
      const directive = {
        ok: `tokens=${k + 2}`,
        reset: `tokens=6,reset_after=${k}`,
        error: `tokens=6,error_after=${k}`,
        status: 'status=503',
        slow: `tokens=${k + 2},chunk_delay_ms=20`,
      }[kind];
      return { kind, k, text: `load ${i} [mock:${directive}]`, tokens: kind === 'ok' || kind === 'slow' ? k + 2 : 6 };
    });
    const results = await Promise.all(jobs.map(async (j) => {
      const r = await stream({ model: 'r-chaos', messages: msg(j.text) });
      return { j, r };
    }));
    for (const { j, r } of results) {
      if (j.kind === 'status') {
        assert.equal(r.status, 503, 'retries spent: the provider\'s error');
        assert.equal(r.body.error.code, 'overloaded');
        continue;
      }
      assert.equal(r.status, 200);
      const text = r.sse.json.map((e) => e?.choices?.[0]?.delta?.content ?? '').join('');
      const err = r.sse.json.find((e) => e && e.error);
      if (j.kind === 'ok' || j.kind === 'slow') {
        assert.equal(r.sse.error, null, 'the stream ended properly');
        assert.equal(text, mockText(j.tokens));
        assert.equal(r.sse.done, true);
        assert.equal(err, undefined);
      } else {
        // a failure after the first byte: an error event ends it (and the response is cut without its
        // chunked terminator, which the client may report as a transport error), never a clean end
        assert.ok(err, `${j.kind}: an error event`);
        assert.ok(mockText(j.tokens).startsWith(text) && text.length < mockText(j.tokens).length, 'a prefix only');
        assert.equal(r.sse.done, false);
        assert.equal(r.sse.json.at(-1), err, 'nothing after the error event');
      }
    }
  });
});
