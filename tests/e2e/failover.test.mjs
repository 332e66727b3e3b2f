// failover.test.mjs: two control planes on one PostgreSQL, one leader (advisory lock), the other
// standing by. Dataplanes dial both (comma-separated TOLLGATE_CP_*_URL). Killing the leader mid-traffic:
// the standby leads within 5 s, dataplanes never stop serving and resync with the new leader, and every
// usage record lands exactly once. A graceful handover (SIGTERM) and a leader whose lock session is
// terminated by the database (fencing) behave the same way.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import path from 'node:path';
import { BINS, MODEL, Proc, freePort, mockText, readSSE, sleep, startCluster, waitFor, waitHttp } from './harness.mjs';

// The requirement: a standby takes over within this bound after the leader dies.
const TAKEOVER_MS = 5000;
// The leader lock's key (controlplane/leader.c): pg_locks shows it as classid (high half), objid (low).
const LOCK_KEY = 8387722774581437554n;

let c;
let seed;
let cps; // [first, second]: the harness's control plane and a second one on its own ports
const rid = () => `fo-${crypto.randomUUID()}`;

before(async () => {
  const [adminPort, pubPort, repPort] = [await freePort(), await freePort(), await freePort()];
  const second = { adminPort, pubPort, repPort };
  c = await startCluster({
    dataplanes: 2,
    label: 'failover',
    dpEnv: (cl) => ({
      TOLLGATE_CP_PUB_URL: `${cl.cpEnv.TOLLGATE_CP_PUB_URL},tcp://127.0.0.1:${pubPort}`,
      TOLLGATE_CP_REP_URL: `${cl.cpEnv.TOLLGATE_CP_REP_URL}, tcp://127.0.0.1:${repPort}`,
    }),
  });
  seed = await c.seed();
  const cp2 = new Proc({
    name: 'controlplane-2', bin: BINS.controlplane, args: ['serve'],
    env: {
      ...c.cpEnv,
      TOLLGATE_ADMIN_LISTEN: `127.0.0.1:${adminPort}`,
      TOLLGATE_CP_PUB_URL: `tcp://127.0.0.1:${pubPort}`,
      TOLLGATE_CP_REP_URL: `tcp://127.0.0.1:${repPort}`,
    },
    logPath: path.join(c.logDir, 'controlplane-2.log'),
  });
  cp2.adminUrl = `http://127.0.0.1:${second.adminPort}`;
  c.controlplane.adminUrl = c.adminUrl;
  cps = [c.controlplane, cp2];
  cp2.start();
  await waitHttp(cp2, `${cp2.adminUrl}/healthz`, 200);
});

after(async () => {
  await cps?.[1]?.kill();
  await c?.stop();
});

// {status, role} of one control plane's /readyz; status 0 when it does not answer.
async function readyz(cp) {
  try {
    const res = await fetch(`${cp.adminUrl}/readyz`, { signal: AbortSignal.timeout(1000) });
    const body = await res.json().catch(() => ({}));
    return { status: res.status, role: body.role };
  } catch {
    return { status: 0, role: undefined };
  }
}

// Waits until exactly one running control plane is ready (the leader) and returns it.
async function waitLeader(timeoutMs, what = 'a leader') {
  return waitFor(async () => {
    const states = await Promise.all(cps.map((cp) => (cp.alive ? readyz(cp) : { status: 0 })));
    const leaders = cps.filter((_, i) => states[i].status === 200);
    return leaders.length === 1 ? leaders[0] : null;
  }, timeoutMs, { intervalMs: 50, what });
}

// One request through dataplane i; a stream every third request. Never throws.
async function oneRequest(i, n) {
  const id = rid();
  const stream = n % 3 === 0;
  const body = { model: MODEL, stream, messages: [{ role: 'user', content: `failover ${n} [mock:tokens=6] [mock:delay_ms=5]` }] };
  try {
    const res = await fetch(`${c.dataplanes[i].url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${seed.key.key}`, 'content-type': 'application/json', 'x-request-id': id },
      body: JSON.stringify(body), signal: AbortSignal.timeout(20000) });
    if (!stream) {
      const j = await res.json().catch(() => null);
      return { id, ok: res.status === 200 && j?.choices?.[0]?.message?.content === mockText(6), status: res.status };
    }
    const sse = await readSSE(res);
    const text = sse.json.map((e) => e?.choices?.[0]?.delta?.content ?? '').join('');
    return { id, ok: res.status === 200 && sse.done && !sse.error && text === mockText(6), status: res.status };
  } catch (err) {
    return { id, ok: false, status: err.cause?.code ?? err.message };
  }
}

// Bounded load over both dataplanes: at most `total` requests, `concurrency` at a time, until stop()
// is called. Resolves with every result.
function startLoad({ total = 3000, concurrency = 4 } = {}) {
  const results = [];
  let next = 0;
  let stopped = false;
  const worker = async () => {
    while (!stopped && next < total) {
      const n = next++;
      results.push(await oneRequest(n % 2, n));
    }
  };
  const done = Promise.all(Array.from({ length: concurrency }, worker));
  return { results, stop: async () => { stopped = true; await done; return results; } };
}

async function assertExactlyOnce(ids, timeoutMs = 30000) {
  await c.waitUsage(ids, timeoutMs);
  await sleep(500); // a late duplicate would show up here
  const rows = await c.usageRows(ids);
  const counts = new Map();
  for (const r of rows) counts.set(r.request_id, (counts.get(r.request_id) ?? 0) + 1);
  assert.deepEqual([...counts].filter(([, k]) => k > 1), [], 'no request is counted twice');
  assert.equal(rows.length, ids.length, 'one usage row per request');
}

// A key created now must reach every dataplane: proof that they follow the current leader.
async function assertDataplanesFollow(adminUrl) {
  const res = await fetch(`${adminUrl}/admin/v1/keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${c.adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ tenant_id: seed.tenant.id, name: `fo-${crypto.randomBytes(3).toString('hex')}` }) });
  assert.equal(res.status, 201, `key created through ${adminUrl}`);
  const key = await res.json();
  await c.waitKeyUsable(key.key, 10000);
}

// Kills (or stops) the leader under load and checks everything the failover promises.
async function failoverUnderLoad(how) {
  const leader = await waitLeader(10000);
  const standby = cps.find((cp) => cp !== leader);
  assert.equal((await readyz(standby)).role, 'standby');

  const load = startLoad();
  await waitFor(() => load.results.length >= 30, 20000, { what: '30 requests before the failover' });
  const t0 = Date.now();
  if (how === 'kill') {
    const info = await leader.kill();
    assert.equal(info.signal, 'SIGKILL');
  } else {
    const info = await leader.stop();
    assert.equal(info.code, 0, leader.describe('exit code after SIGTERM'));
  }
  const atFailover = load.results.length;
  const newLeader = await waitLeader(TAKEOVER_MS, `the standby to lead within ${TAKEOVER_MS} ms of the ${how}`);
  const takeoverMs = Date.now() - t0;
  assert.equal(newLeader, standby);
  console.log(`# ${how}: the standby led after ${takeoverMs} ms`);

  // Traffic goes on after the takeover; then the dataplanes must pick up a change made now.
  await waitFor(() => load.results.length >= atFailover + 30, 20000, { what: '30 requests after the failover' });
  await assertDataplanesFollow(newLeader.adminUrl);
  const results = await load.stop();

  const failed = results.filter((r) => !r.ok);
  assert.deepEqual(failed, [], 'every request during the failover succeeded');
  for (const dp of c.dataplanes) assert.ok(dp.alive, dp.describe('died during the failover'));
  await assertExactlyOnce(results.map((r) => r.id));
  return { oldLeader: leader, newLeader };
}

describe('control-plane leader election', () => {
  test('one leader; the standby answers the admin API but is not ready', async () => {
    const leader = await waitLeader(10000);
    assert.equal(leader, cps[0], 'the first control plane, started alone, leads');
    assert.deepEqual(await readyz(cps[1]), { status: 503, role: 'standby' });
    assert.equal((await readyz(cps[0])).role, 'leader');
    // Writes through the standby land in PostgreSQL; the leader publishes them.
    await assertDataplanesFollow(cps[1].adminUrl);
  });

  test('leader killed mid-traffic: the standby leads within 5 s, nothing is lost', async () => {
    const { oldLeader } = await failoverUnderLoad('kill');
    // The old leader comes back as a standby.
    oldLeader.start();
    await waitFor(async () => (await readyz(oldLeader)).role === 'standby', 20000,
      { what: 'the restarted control plane to stand by' });
  });

  test('leader stopped (SIGTERM) mid-traffic: a clean handover', async () => {
    const { oldLeader } = await failoverUnderLoad('stop');
    oldLeader.start();
    await waitFor(async () => (await readyz(oldLeader)).role === 'standby', 20000,
      { what: 'the restarted control plane to stand by' });
  });

  test('fencing: a leader whose lock session is terminated stops leading at once', async () => {
    const leader = await waitLeader(10000);
    const load = startLoad();
    await waitFor(() => load.results.length >= 20, 20000, { what: '20 requests first' });
    const killed = await c.sql(
      `SELECT pg_terminate_backend(l.pid) AS done FROM pg_locks l
        WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 1`,
      [String(LOCK_KEY >> 32n), String(LOCK_KEY & 0xffffffffn)]);
    assert.equal(killed.length, 1, 'exactly one session holds the leader lock');
    // The old leader notices at once: the lock is gone, so it must not be ready any more (it may win
    // the next election, which is fine: then it is ready again with a fresh session).
    await waitFor(() => /cp\.leader\.lost/.test(leader.logTail(200)), TAKEOVER_MS, { what: 'cp.leader.lost in the log' });
    await waitLeader(TAKEOVER_MS, 'a leader after the lock session was terminated');
    const at = load.results.length;
    await waitFor(() => load.results.length >= at + 20, 20000, { what: '20 requests after' });
    const results = await load.stop();
    assert.deepEqual(results.filter((r) => !r.ok), [], 'every request succeeded');
    await assertExactlyOnce(results.map((r) => r.id));
    for (const cp of cps) assert.ok(cp.alive, cp.describe('a control plane exited'));
  });

  test('both stop cleanly', async () => {
    for (const cp of [...cps].reverse()) {
      const info = await cp.stop();
      assert.equal(info.code, 0, cp.describe(`exit ${JSON.stringify(info)}`));
      assert.equal(info.forced, false);
    }
  });
});
