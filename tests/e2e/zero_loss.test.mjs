// zero_loss.test.mjs: usage survives crashes and restarts, exactly (issue 5, "Zero loss").
//
// Continuous traffic (streams and non-streams, several keys, over every dataplane in rotation) runs
// while, in turn, the control plane is killed with SIGKILL and started again, PostgreSQL is restarted,
// and a dataplane gets SIGTERM in the middle of streams (it drains, exits 0, a replacement takes its
// place). Afterwards the token totals in usage_events must equal, exactly, what the mock provider says it
// served (GET /__mock/served), no request id may appear twice, and the successful client responses must
// be exactly the rows with status 200. A second part kills a dataplane with SIGKILL: it may lose its
// unacknowledged usage (docs/operations.md, "What can be lost"), and nothing may be counted twice.
//
// Load is bounded in count and time; every wait is bounded; nothing asserts on timing.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { MODEL, promptTokens, readSSE, sleep, startCluster, waitFor, waitHttp } from './harness.mjs';

const DATAPLANES = 3;
const CONCURRENCY = 6;
const MAX_REQUESTS = 5000; // a bound; the phases below finish long before it
const MAX_LOAD_MS = 180000;
const STEP = 40; // client responses to see between two disruptions

let c;
let keys;

before(async () => {
  // Two mock threads: the served totals are summed across threads.
  // Every dataplane spools to one shared folder (as processes on one host may), and gives up resending at
  // exit after 2 s, so the spool test below is quick.
  c = await startCluster({ dataplanes: DATAPLANES, label: 'zeroloss', mockThreads: 2,
    dpEnv: (cl) => {
      fs.mkdirSync(spoolDir(cl), { recursive: true });
      return { TOLLGATE_DRAIN_TIMEOUT_MS: '30000', TOLLGATE_USAGE_SPOOL_DIR: spoolDir(cl),
        TOLLGATE_USAGE_DRAIN_TIMEOUT_MS: '2000' };
    } });
  const seed = await c.seed();
  keys = [seed.key.key];
  for (let i = 0; i < 2; i++) keys.push((await c.createKey(seed.tenant.id, { name: `zl-${i}` })).key);
});

after(async () => {
  await c?.stop();
});

const spoolDir = (cl) => path.join(cl.dir, 'spool');
const spoolFiles = () => fs.readdirSync(spoolDir(c)).filter((f) => f.endsWith('.spool'));
// How often a log line with this event name appears in a process's log (all its lives).
const logCount = (proc, event) => (fs.readFileSync(proc.logPath, 'utf8').match(new RegExp(`\\b${event}\\b`, 'g')) ?? []).length;

async function served() {
  const res = await fetch(`${c.mockUrl}/__mock/served`, { signal: AbortSignal.timeout(5000) });
  const s = await res.json();
  return { requests: s.requests, input: s.input_tokens, output: s.output_tokens, cached: s.cached_tokens };
}

async function resetServed() {
  const res = await fetch(`${c.mockUrl}/__mock/served/reset`, { method: 'POST', signal: AbortSignal.timeout(5000) });
  await res.arrayBuffer();
}

// What usage_events holds (the whole table: this cluster's traffic only).
async function stored() {
  const [r] = await c.sql(`SELECT count(*)::int AS rows, count(DISTINCT request_id)::int AS ids,
      (count(*) FILTER (WHERE status = 200))::int AS ok_rows,
      coalesce(sum(input_tokens), 0)::bigint::text AS input, coalesce(sum(output_tokens), 0)::bigint::text AS output,
      coalesce(sum(cached_input_tokens), 0)::bigint::text AS cached FROM usage_events`);
  return { rows: r.rows, ids: r.ids, okRows: r.ok_rows, input: Number(r.input), output: Number(r.output),
    cached: Number(r.cached) };
}

// One request through dataplane `dp` (a Proc). Never throws. The prompt makes the mock's answer known:
// tokens, cached tokens, and for streams a delay between events so that streams are in flight when a
// process is stopped.
async function oneRequest(dp, n, tag) {
  const stream = n % 2 === 0;
  const tokens = 2 + (n % 9);
  const cached = n % 5 === 0 ? 3 : 0;
  const directives = [`tokens=${tokens}`];
  if (cached) directives.push(`cached=${cached}`);
  if (stream) directives.push('chunk_delay_ms=40');
  else directives.push('delay_ms=5');
  const messages = [{ role: 'user', content: `${tag} ${n} [mock:${directives.join(',')}]` }];
  const input = promptTokens(messages);
  const id = `${tag}-${n}-${crypto.randomUUID()}`;
  const body = { model: MODEL, messages };
  if (stream) {
    body.stream = true;
    if (n % 4 === 0) body.stream_options = { include_usage: true }; // the gateway asks upstream either way
  }
  const r = { id, n, dp: dp.name, pid: dp.pid, stream, expect: { input, output: tokens, cached }, ok: false };
  try {
    const res = await fetch(`${dp.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${keys[n % keys.length]}`, 'content-type': 'application/json',
        'x-request-id': id },
      body: JSON.stringify(body), signal: AbortSignal.timeout(30000) });
    r.status = res.status;
    if (stream) {
      const sse = await readSSE(res);
      r.ok = res.status === 200 && sse.done && sse.error === null;
      r.detail = sse.error?.message;
    } else {
      const j = await res.json().catch(() => null);
      r.ok = res.status === 200 && j?.usage?.completion_tokens === tokens;
    }
  } catch (err) {
    r.detail = err.cause?.code ?? err.message;
  }
  return r;
}

// Bounded load over the dataplanes in `rotation` (indexes into c.dataplanes). Returns a controller:
// results, per-dataplane streams in flight, stop() to end it and wait for every worker.
function startLoad(tag, rotation) {
  const results = [];
  const streamsInFlight = new Map();
  const deadline = Date.now() + MAX_LOAD_MS;
  let next = 0;
  let stopping = false;
  const worker = async () => {
    while (!stopping && next < MAX_REQUESTS && Date.now() < deadline) {
      const n = next++;
      const live = [...rotation];
      const dp = c.dataplanes[live[crypto.randomInt(live.length)]]; // not round robin: n's parity picks the kind
      const stream = n % 2 === 0;
      if (stream) streamsInFlight.set(dp.name, (streamsInFlight.get(dp.name) ?? 0) + 1);
      const r = await oneRequest(dp, n, tag);
      if (stream) streamsInFlight.set(dp.name, streamsInFlight.get(dp.name) - 1);
      results.push(r);
    }
  };
  const workers = Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return {
    results,
    streamsInFlight,
    // Waits until `count` more responses arrived than when called (bounded).
    async more(count, what) {
      const want = results.length + count;
      await waitFor(() => results.length >= want, 60000, { intervalMs: 20, what: `${count} more responses ${what}` });
    },
    async stop() {
      stopping = true;
      await workers;
      return results;
    },
  };
}

// Takes dataplane i out of the rotation the way a pod leaves its Service: no new requests, then a short
// preStop pause so that requests already on their way connect. Retries (bounded) until streams are still
// running on it after the pause, so that the signal that follows lands in the middle of streams.
async function leaveRotation(load, rotation, i) {
  const name = c.dataplanes[i].name;
  const inFlight = () => load.streamsInFlight.get(name) ?? 0;
  for (let attempt = 0; attempt < 20; attempt++) {
    rotation.add(i);
    await waitFor(() => inFlight() >= 2, 30000, { intervalMs: 5, what: `streams in flight on ${name}` });
    rotation.delete(i);
    await sleep(100);
    if (inFlight() >= 1) return;
  }
  throw new Error(`no stream was still running on ${name} after leaving the rotation, 20 times`);
}

function sum(list, field) {
  return list.reduce((a, r) => a + r.expect[field], 0);
}

// Once the queues drain (bounded), PostgreSQL must hold exactly what the mock served: the same token
// totals, one row per request id, a status-200 row for every successful client response and no other.
async function assertStoredEqualsServed(results) {
  const failed = results.filter((r) => !r.ok);
  const ok = results.filter((r) => r.ok);
  const want = await served();
  let have;
  try {
    await waitFor(async () => {
      have = await stored();
      return have.okRows >= ok.length && have.input >= want.input && have.output >= want.output;
    }, 60000, { intervalMs: 200, what: 'usage to reach PostgreSQL' });
  } catch (err) {
    assert.fail(`${err.message}\nstored ${JSON.stringify(have)}\nserved ${JSON.stringify(want)}\n` +
      `${c.dataplanes.map((d) => d.describe('state')).join('\n')}\n${c.controlplane.describe('state')}`);
  }
  await sleep(1000); // a late duplicate (a resend taken for a new batch) would show up here
  have = await stored();
  const rowsByStatus = await c.sql('SELECT status, count(*)::int AS n FROM usage_events GROUP BY status');
  const doubles = await c.sql(
    'SELECT request_id, count(*)::int AS n FROM usage_events GROUP BY request_id HAVING count(*) > 1 LIMIT 5');
  assert.deepEqual(doubles, [], 'no request id is stored twice');
  assert.equal(have.ids, have.rows, 'request ids are unique');
  assert.equal(have.okRows, ok.length,
    `successful client responses = rows with status 200 (statuses ${JSON.stringify(rowsByStatus)}, ` +
    `failed requests ${JSON.stringify(failed.slice(0, 5))})`);
  assert.deepEqual({ input: have.input, output: have.output, cached: have.cached },
    { input: want.input, output: want.output, cached: want.cached }, 'tokens stored = tokens served, exactly');
  // And they are the tokens the clients were promised (the mock's formula), request by request.
  assert.equal(want.requests, ok.length, 'every reply the mock completed reached its client');
  assert.deepEqual({ input: want.input, output: want.output, cached: want.cached },
    { input: sum(ok, 'input'), output: sum(ok, 'output'), cached: sum(ok, 'cached') });
  const stored200 = await c.sql('SELECT request_id FROM usage_events WHERE status = 200');
  const storedIds = new Set(stored200.map((r) => r.request_id));
  assert.deepEqual(ok.filter((r) => !storedIds.has(r.id)).map((r) => r.id), [], 'every success is stored');
  console.log(`# ${results.length} requests (${failed.length} failed at the client), ` +
    `${have.rows} rows, ${want.output} output tokens`);
}

describe('zero loss', () => {
  test('the mock counts what it served, through the gateway', async () => {
    await resetServed();
    const dp = c.dataplanes[0];
    // A stream whose client did not ask for usage (the gateway asks upstream), a non-stream, and a stream
    // the mock cuts (reset_after: no usage ever went out, so nothing is served).
    const a = await oneRequest(dp, 0, 'served'); // stream with include_usage
    const b = await oneRequest(dp, 1, 'served'); // non-stream
    const d = await oneRequest(dp, 2, 'served'); // stream without include_usage from the client
    assert.ok(a.ok && b.ok && d.ok, JSON.stringify([a, b, d]));
    await c.chat(0, keys[0], { model: MODEL, stream: true,
      messages: [{ role: 'user', content: 'cut [mock:tokens=6,reset_after=2]' }] }).catch(() => null);
    const s = await served();
    assert.deepEqual(s, { requests: 3, input: sum([a, b, d], 'input'), output: sum([a, b, d], 'output'),
      cached: sum([a, b, d], 'cached') });
  });

  test('the mock counts served usage in every wire format, and never a cut reply', async () => {
    await resetServed();
    const key = c.mockSecret;
    const text = (d) => `served check [mock:${d}]`;
    const P = (d) => promptTokens([{ role: 'user', content: text(d) }]);
    // [name, path, headers, body(directives, stream), stream?, cached reported?]
    const formats = [
      ['openai', '/v1/chat/completions', { authorization: `Bearer ${key}` },
        (d, st) => ({ model: 'm', stream: st, stream_options: st ? { include_usage: true } : undefined,
          messages: [{ role: 'user', content: text(d) }] }), true],
      ['anthropic', '/v1/messages', { 'x-api-key': key, 'anthropic-version': '2023-06-01' },
        (d, st) => ({ model: 'm', max_tokens: 100, stream: st, messages: [{ role: 'user', content: text(d) }] }), true],
      ['gemini', null, { 'x-goog-api-key': key },
        (d) => ({ contents: [{ role: 'user', parts: [{ text: text(d) }] }] }), true],
      ['bedrock', null, { authorization: `Bearer ${key}` },
        (d) => ({ messages: [{ role: 'user', content: [{ text: text(d) }] }] }), true],
      ['cohere', '/v2/chat', { authorization: `Bearer ${key}` },
        (d, st) => ({ model: 'm', stream: st, messages: [{ role: 'user', content: text(d) }] }), false],
      ['ollama', '/api/chat', {},
        (d, st) => ({ model: 'm', stream: st, messages: [{ role: 'user', content: text(d) }] }), false],
    ];
    const pathOf = (name, fixed, st) => fixed ?? (name === 'gemini'
      ? `/v1beta/models/m:${st ? 'streamGenerateContent?alt=sse' : 'generateContent'}`
      : `/model/m/${st ? 'converse-stream' : 'converse'}`);
    const want = { requests: 0, input: 0, output: 0, cached: 0 };
    let i = 0;
    for (const [name, fixed, headers, body, cachedReported] of formats) {
      for (const st of [false, true]) {
        for (const cut of [false, true]) {
          i++;
          const d = `tokens=${3 + i},cached=2${cut ? ',reset_after=1' : ''}`;
          const res = await fetch(`${c.mockUrl}${pathOf(name, fixed, st)}`, { method: 'POST',
            headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body(d, st)),
            signal: AbortSignal.timeout(10000) }).catch((err) => ({ status: 0, err }));
          assert.equal(res.status, 200, `${name} stream=${st}: ${res.err?.message}`);
          await res.arrayBuffer().catch(() => null); // a cut reply ends in a transport error
          if (cut) continue;
          want.requests++;
          want.input += P(d);
          want.output += 3 + i;
          want.cached += cachedReported ? 2 : 0;
          assert.deepEqual(await served(), want, `after ${name} stream=${st}`);
        }
      }
    }
    assert.deepEqual(await served(), want, 'the cut replies counted nothing');
  });

  test('control plane SIGKILL, PostgreSQL restart, dataplane SIGTERM mid-stream: tokens stored = tokens served', async () => {
    // Start from a clean slate: what the previous test left is billed and stored first.
    await waitFor(async () => (await stored()).rows >= 4, 20000, { what: 'the first test\'s usage' });
    await c.sql('TRUNCATE usage_events');
    await resetServed();

    const rotation = new Set(c.dataplanes.map((_, i) => i));
    const load = startLoad('zl', rotation);
    await load.more(STEP, 'before any disruption');

    // 1. The control plane dies without warning and comes back.
    const killed = await c.controlplane.kill();
    assert.equal(killed.signal, 'SIGKILL');
    await load.more(STEP, 'while the control plane is down');
    await c.startControlPlane();
    await load.more(STEP, 'after the control plane restart');

    // 2. PostgreSQL crashes and comes back (same port, same data); the control plane must reconnect,
    // lead again and take usage again.
    const retriesBefore = logCount(c.controlplane, 'cp.db.connect_failed');
    await c.stopPostgres('immediate'); // a crash, as the sessions see it
    await load.more(STEP, 'while PostgreSQL is down');
    // Down long enough for the control plane to be in its reconnect backoff, not just between two tries.
    await waitFor(() => logCount(c.controlplane, 'cp.db.connect_failed') >= retriesBefore + 2, 30000,
      { what: 'the control plane to retry its database connection twice' });
    await c.startPostgres();
    assert.ok(c.controlplane.alive, c.controlplane.describe('died while PostgreSQL was away'));
    await c.waitControlPlane(60000);
    await load.more(STEP, 'after the PostgreSQL restart');

    // 3. A dataplane gets SIGTERM while streams run through it: it leaves the rotation (as a pod leaves its
    // Service), drains them to their end, ships their usage and exits 0; a replacement takes its place.
    const victim = DATAPLANES - 1;
    const dp = c.dataplanes[victim];
    await leaveRotation(load, rotation, victim);
    const oldPid = dp.pid;
    const exit = await dp.stop(40000);
    assert.equal(exit.forced, false, dp.describe('did not exit after SIGTERM'));
    assert.equal(exit.code, 0, dp.describe(`exit ${JSON.stringify(exit)}`));
    const onVictim = load.results.filter((r) => r.pid === oldPid && r.stream);
    assert.ok(onVictim.length > 0);
    dp.start();
    await waitHttp(dp, `${dp.url}/readyz`, 200);
    rotation.add(victim);
    await load.more(STEP, 'after the dataplane replacement');

    const results = await load.stop();
    assert.ok(results.length < MAX_REQUESTS, 'the phases finished within the request bound');
    const failed = results.filter((r) => !r.ok);
    const ok = results.filter((r) => r.ok);
    // Streams cut by the drain would be failures here: every one of them must have completed.
    const victimFailed = failed.filter((r) => r.pid === oldPid);
    assert.deepEqual(victimFailed, [], 'streams on the draining dataplane completed');

    await assertStoredEqualsServed(results);
  });

  test('dataplane SIGKILL: at most its unacknowledged usage is lost, nothing is counted twice', async () => {
    await c.sql('TRUNCATE usage_events');
    await resetServed();
    const rotation = new Set([0, 1]);
    const load = startLoad('kill', rotation);
    await load.more(STEP, 'before the kill');
    const dp = c.dataplanes[1];
    const killedPid = dp.pid;
    // The kill lands with responses just finished (their usage still in the worker buffer or the shipper
    // queue) and streams in flight.
    await leaveRotation(load, rotation, 1);
    const k = await dp.kill();
    assert.equal(k.signal, 'SIGKILL');
    dp.start();
    await waitHttp(dp, `${dp.url}/readyz`, 200);
    rotation.add(1);
    await load.more(STEP, 'after the restart');
    const results = await load.stop();

    const ok = results.filter((r) => r.ok);
    const survivors = ok.filter((r) => r.pid !== killedPid);
    // Everything the processes that were not killed answered lands, exactly once.
    await c.waitUsage(survivors.map((r) => r.id), 30000);
    await sleep(1000);
    const doubles = await c.sql(
      'SELECT request_id, count(*)::int AS n FROM usage_events GROUP BY request_id HAVING count(*) > 1 LIMIT 5');
    assert.deepEqual(doubles, [], 'nothing is counted twice');
    const rows = await c.sql('SELECT request_id, status FROM usage_events');
    const byId = new Map(rows.map((r) => [r.request_id, r.status]));
    assert.deepEqual(survivors.filter((r) => byId.get(r.id) !== 200).map((r) => r.id), []);
    // Whatever is missing belongs to the killed process.
    const sent = new Map(results.map((r) => [r.id, r]));
    const strangers = rows.filter((r) => !sent.has(r.request_id));
    assert.deepEqual(strangers, [], 'no row for a request nobody sent');
    const lost = ok.filter((r) => !byId.has(r.id));
    assert.ok(lost.every((r) => r.pid === killedPid), 'only the killed dataplane lost usage');
    // Tokens: stored ≤ served; the gap is the killed process's unacknowledged or in-flight requests.
    const want = await served();
    const have = await stored();
    assert.ok(have.output <= want.output && have.input <= want.input, JSON.stringify({ have, want }));
    const killedUnstored = results.filter((r) => r.pid === killedPid && !byId.has(r.id));
    assert.ok(want.output - have.output <= sum(killedUnstored, 'output'),
      `the missing tokens are the killed process's: ${JSON.stringify({ have, want })}`);
    console.log(`# SIGKILL lost ${lost.length} of ${ok.filter((r) => r.pid === killedPid).length} successful ` +
      `responses of the killed process (${want.output - have.output} output tokens)`);
  });

  test('dataplane SIGTERM while the control plane is down: usage spooled, restored across a SIGKILL, stored once', async () => {
    await c.sql('TRUNCATE usage_events');
    await resetServed();
    assert.deepEqual(spoolFiles(), [], 'no spool file left by the earlier tests');
    const killed = await c.controlplane.kill();
    assert.equal(killed.signal, 'SIGKILL');
    const rotation = new Set(c.dataplanes.map((_, i) => i));
    const load = startLoad('spool', rotation);
    await load.more(STEP, 'with the control plane down');

    // The dataplane drains its streams, cannot get its usage acknowledged, and spools it.
    const victim = DATAPLANES - 1;
    const dp = c.dataplanes[victim];
    await leaveRotation(load, rotation, victim);
    const firstPid = dp.pid;
    const exit = await dp.stop(40000);
    assert.equal(exit.forced, false, dp.describe('did not exit after SIGTERM'));
    assert.equal(exit.code, 0, dp.describe(`exit ${JSON.stringify(exit)}`));
    const spooled = spoolFiles();
    assert.equal(spooled.length, 1, dp.describe(`one spool file (${spooled})`));

    // Its successor reads the spool and is killed before the control plane is back: the file must still
    // be there, or that usage would die with it.
    const loadedBefore = logCount(dp, 'dp.usage.spool_loaded');
    dp.start();
    await waitFor(() => logCount(dp, 'dp.usage.spool_loaded') > loadedBefore, 20000,
      { what: `${dp.name} to load the spool` });
    await dp.kill();
    assert.deepEqual(spoolFiles(), spooled, 'a spool file stays until its batches are acknowledged');

    // A third life, the control plane back: everything lands once, and the spool file goes.
    dp.start();
    await load.more(STEP, 'before the control plane returns');
    await c.startControlPlane();
    await waitHttp(dp, `${dp.url}/readyz`, 200);
    rotation.add(victim);
    await load.more(STEP, 'with the control plane back');
    const results = await load.stop();
    assert.deepEqual(results.filter((r) => !r.ok && r.pid === firstPid), [], 'the drained streams completed');
    await assertStoredEqualsServed(results);
    await waitFor(() => spoolFiles().length === 0, 20000, { what: 'the spool file to be released' });
  });

  test('a batch whose transaction fails at COMMIT is not acknowledged: resent, then stored once', async () => {
    // A deferred constraint trigger fails the COMMIT of any batch holding a `refuse-` request while the
    // switch row exists: the whole batch must be rolled back, answered with an error and sent again.
    await c.sql(`CREATE TABLE zl_refuse_switch (x int);
      INSERT INTO zl_refuse_switch VALUES (1);
      CREATE FUNCTION zl_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.request_id LIKE 'refuse-%' AND EXISTS (SELECT 1 FROM zl_refuse_switch) THEN
          RAISE EXCEPTION 'zero-loss test: refused at commit';
        END IF;
        RETURN NULL;
      END $$;
      CREATE CONSTRAINT TRIGGER zl_refuse AFTER INSERT ON usage_events DEFERRABLE INITIALLY DEFERRED
        FOR EACH ROW EXECUTE FUNCTION zl_refuse();`);
    try {
      const rejectedBefore = logCount(c.controlplane, 'refused at commit');
      const ids = [];
      for (let i = 0; i < 6; i++) {
        const id = `${i % 2 ? 'refuse' : 'pass'}-${crypto.randomUUID()}`;
        const res = await c.chat(0, keys[0], { model: MODEL, messages: [{ role: 'user', content: `refuse ${i}` }] },
          { headers: { 'x-request-id': id } });
        assert.equal(res.status, 200);
        ids.push(id);
      }
      await waitFor(() => logCount(c.controlplane, 'refused at commit') >= rejectedBefore + 2, 20000,
        { what: 'the control plane to refuse the batch twice (a resend)' });
      const early = await c.usageRows(ids.filter((id) => id.startsWith('refuse-')));
      assert.deepEqual(early, [], 'nothing of a rolled-back batch is stored');
      await c.sql('DELETE FROM zl_refuse_switch');
      const rows = await c.waitUsage(ids, 20000);
      await sleep(500);
      const all = await c.usageRows(ids);
      assert.equal(all.length, ids.length, `each request once: ${JSON.stringify(rows.map((r) => r.request_id))}`);
    } finally {
      await c.sql(`DROP TRIGGER zl_refuse ON usage_events; DROP FUNCTION zl_refuse(); DROP TABLE zl_refuse_switch;`);
    }
  });
});
