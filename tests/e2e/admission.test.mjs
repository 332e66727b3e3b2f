// admission.test.mjs: budgets and rate limits that cannot overshoot, across 4 dataplanes
// (docs/admission.md). Budgets, teams and limits are created with SQL (the admin API for them is another
// branch's); every other part is real: PostgreSQL, the control plane granting leases over NNG, the
// dataplanes reserving and settling, the mock provider billing predictable tokens.
//
// Time is moved with the governance clock (TOLLGATE_TEST_HOOKS=1: PUT /admin/v1/_test/clock on the
// control plane, PUT /__test/clock on each dataplane), never by sleeping.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MODEL, OTHER_MODEL, randomHex, sleep, startCluster, waitFor } from './harness.mjs';

const N_DP = 4;
const DOLLAR = 1_000_000_000n; // nano-USD
const LEASE_TTL_MS = 5000;
const MAX_REQUEST_MS = 5000;
let c;
let seed;

before(async () => {
  c = await startCluster({
    dataplanes: N_DP, label: 'adm',
    dpEnv: { TOLLGATE_TEST_HOOKS: '1', TOLLGATE_USAGE_FLUSH_MS: '20' },
    cpEnv: { TOLLGATE_TEST_HOOKS: '1', TOLLGATE_LEASE_TTL_MS: String(LEASE_TTL_MS),
      TOLLGATE_MAX_REQUEST_MS: String(MAX_REQUEST_MS) },
  });
  seed = await c.seed();
});

after(async () => {
  await c?.stop();
});

// ---------------------------------------------------------------- helpers

async function setClock(offsetMs, { dataplanes = true } = {}) {
  await c.adminOk('PUT', '/admin/v1/_test/clock', { offset_ms: offsetMs }, 200);
  if (!dataplanes) return;
  for (const dp of c.dataplanes.filter((d) => d.alive)) {
    const res = await fetch(`${dp.url}/__test/clock`, { method: 'PUT', body: JSON.stringify({ offset_ms: offsetMs }),
      signal: AbortSignal.timeout(5000) });
    assert.equal(res.status, 200, await res.text());
  }
}

async function newTeam() {
  const [row] = await c.sql('INSERT INTO teams (tenant_id, name) VALUES ($1, $2) RETURNING id::text',
    [seed.tenant.id, `team-${randomHex(4)}`]);
  return row.id;
}

async function newKey({ team = null, allowedModels } = {}) {
  const key = await c.createKey(seed.tenant.id, { allowedModels });
  if (team) await c.sql('UPDATE virtual_keys SET team_id = $1 WHERE id = $2', [team, key.id]);
  return key;
}

async function newBudget({ scope, team = null, key = null, period = 'total', hard }) {
  const [row] = await c.sql(
    `INSERT INTO budgets (tenant_id, scope, team_id, key_id, period, hard_nanousd)
     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id::text`,
    [seed.tenant.id, scope, team, key, period, String(hard)]);
  return row.id;
}

// A probe whose worst case ($100) exceeds any budget here: refused at once by a dataplane that knows
// the budget, so a 402 proves the snapshot carrying it arrived. It costs a few tokens otherwise.
const probe = { model: MODEL, max_tokens: 10_000_000, messages: [{ role: 'user', content: '[mock:tokens=1] probe' }] };

async function waitBudgetKnown(key, what) {
  for (const [i, dp] of c.dataplanes.entries()) {
    if (!dp.alive) continue;
    await waitFor(async () => (await c.chat(i, key, probe)).status === 402, 10000,
      { intervalMs: 100, what: `${dp.name} to know ${what}` });
  }
}

// One chat request of predictable cost: 100 completion tokens, max_tokens 100 (the mock obeys it).
const costly = (tag = '') => ({ model: MODEL, max_tokens: 100,
  messages: [{ role: 'user', content: `[mock:tokens=100] spend ${tag}`.trim() }] });
// Its worst case W as the gateway computes it: body bytes as prompt tokens, at the seeded prices.
const worstCase = (body) => (BigInt(Buffer.byteLength(JSON.stringify(body))) * 2_500_000n + 100n * 10_000_000n + 999n) / 1000n;

async function settled(budgetId) {
  const rows = await c.sql(
    `SELECT coalesce(sum(settled), 0)::text AS s FROM allowance_periods WHERE limit_id = $1 AND kind = 'budget'`,
    [budgetId]);
  return BigInt(rows[0].s);
}

async function spentByKeys(keyIds) {
  const rows = await c.sql(
    `SELECT coalesce(sum(cost_nanousd), 0)::text AS s, count(*) FILTER (WHERE status = 200)::int AS n
       FROM usage_events WHERE key_id = ANY($1::uuid[])`,
    [keyIds]);
  return { cost: BigInt(rows[0].s), n: rows[0].n };
}

// Waits until every request answered 200 has its usage row (bounded). Refused requests have none.
async function waitUsageCount(keyIds, atLeast) {
  await waitFor(async () => (await spentByKeys(keyIds)).n >= atLeast, 20000,
    { intervalMs: 100, what: `${atLeast} usage rows` });
}

// ---------------------------------------------------------------- tests

describe('a $1.00 team budget across 4 dataplanes', () => {
  test('hundreds of concurrent requests: the final spend is within one request of $1.00, never over', async (t) => {
    const team = await newTeam();
    const keys = [];
    for (let i = 0; i < 4; i++) keys.push(await newKey({ team }));
    const budget = await newBudget({ scope: 'team', team, hard: DOLLAR });
    await waitBudgetKnown(keys[0].key, 'the team budget');
    const keyIds = keys.map((k) => k.id);

    const W = worstCase(costly('w-00000'));
    const refusedBy = new Set();
    let ok = 0;
    let sent = 0;
    const other = new Map();
    const MAX_REQUESTS = 3000; // about 1000 fit in $1.00; the bound keeps a broken gateway from looping
    const deadline = Date.now() + 180000;
    async function worker(w) {
      for (let i = 0; sent < MAX_REQUESTS && Date.now() < deadline; i++) {
        if (refusedBy.size === N_DP && i > 0) break;
        sent++;
        const dp = (w + i) % N_DP;
        const res = await c.chat(dp, keys[(w + i) % keys.length].key, costly(`w-${String(w).padStart(2, '0')}${String(i % 1000).padStart(3, '0')}`));
        if (res.status === 200) ok++;
        else if (res.status === 402) refusedBy.add(dp);
        else other.set(res.status, (other.get(res.status) ?? 0) + 1);
      }
    }
    await Promise.all(Array.from({ length: 48 }, (_, w) => worker(w)));
    assert.equal(refusedBy.size, N_DP, `every dataplane answered 402 (sent ${sent}, ok ${ok})`);
    assert.deepEqual([...other.entries()], [], 'no status other than 200 and 402');
    assert.ok(ok > 500, `hundreds of requests were served before the budget ran out (${ok})`);

    // Then until one full pass over the dataplanes is refused everywhere: what a refused dataplane gives
    // back pools on the control plane, where another request's worth may be granted again.
    for (let pass = 0, refusedAll = false; !refusedAll; pass++) {
      assert.ok(pass < 50, 'the dataplanes kept serving after 50 passes');
      // a dataplane believes a refusal for 200 ms before asking again (docs/admission.md): let it lapse
      await sleep(300);
      refusedAll = true;
      for (let i = 0; i < N_DP; i++) {
        const res = await c.chat(i, keys[i].key, costly('final'));
        if (res.status === 200) {
          ok++;
          refusedAll = false;
        } else {
          assert.equal(res.status, 402, `dataplane ${i} final answer: ${res.text}`);
        }
      }
    }
    await waitUsageCount(keyIds, ok);
    await waitFor(async () => (await settled(budget)) === (await spentByKeys(keyIds)).cost, 10000,
      { what: 'the ledger to settle every usage row' });
    const spent = await settled(budget);
    const byRows = (await spentByKeys(keyIds)).cost;
    assert.equal(spent, byRows, 'the ledger equals the sum of the usage rows');
    t.diagnostic(`served ${ok} of ${sent}; spent ${spent} nano-USD of ${DOLLAR}; W = ${W}; short by ${DOLLAR - spent}`);
    assert.ok(spent <= DOLLAR, `spend ${spent} must not exceed ${DOLLAR}`);
    assert.ok(spent >= DOLLAR - W, `spend ${spent} is within one request's worst case (${W}) of the limit`);
    // and the invariant in the ledger itself: settled + outstanding <= hard
    const [inv] = await c.sql(
      `SELECT p.hard::text, p.settled::text, coalesce(sum(l.outstanding), 0)::text AS out
         FROM allowance_periods p LEFT JOIN allowance_leases l USING (limit_id, kind, period_start)
        WHERE p.limit_id = $1 GROUP BY p.hard, p.settled`, [budget]);
    assert.ok(BigInt(inv.settled) + BigInt(inv.out) <= BigInt(inv.hard), JSON.stringify(inv));
  });
});

describe('a per-second rate limit across 4 dataplanes', () => {
  test('200s per window, over all dataplanes, never exceed the limit; 429s carry the headers', async () => {
    const LIMIT = 15;
    const team = await newTeam();
    const key = await newKey({ team });
    await c.sql(
      `INSERT INTO rate_limits (tenant_id, scope, team_id, window_s, requests_per_window)
       VALUES ($1, 'team', $2, 1, $3)`, [seed.tenant.id, team, LIMIT]);
    const [{ id: limitId }] = await c.sql('SELECT id::text FROM rate_limits WHERE team_id = $1', [team]);
    const quick = { model: MODEL, messages: [{ role: 'user', content: '[mock:tokens=1] rl' }] };
    // Until a dataplane has the snapshot with the limit, it admits freely: count only the windows after
    // every dataplane has asked for a lease of it.
    await waitFor(async () => {
      await Promise.all(c.dataplanes.map((_, i) => c.chat(i, key.key, quick)));
      const [{ n }] = await c.sql(
        'SELECT count(DISTINCT instance_id)::int AS n FROM allowance_leases WHERE limit_id = $1', [limitId]);
      return n === N_DP;
    }, 10000, { intervalMs: 200, what: 'every dataplane to lease the rate limit' });
    const knownSec = Math.floor(Date.now() / 1000) + 1;
    let sample429 = null;
    const statuses = new Map();
    const deadline = Date.now() + 60000;
    let rounds = 0;
    // A window in use is leased shortly before it starts (docs/admission.md, prefetching the next
    // window): seen as a lease of a window that has not begun yet, on the control plane's clock (no
    // offset in this part of the file, so PostgreSQL's now() is that clock).
    let prefetched = 0;
    while (Date.now() < deadline && rounds < 40) {
      rounds++;
      const paced = sleep(100); // at least 100 ms a round: the 40 rounds span several windows however fast
      const results = await Promise.all(Array.from({ length: 64 }, (_, i) => c.chat(i % N_DP, key.key, quick)));
      await paced;
      for (const r of results) {
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        if (r.status === 429 && !sample429) sample429 = r;
      }
      const [{ n }] = await c.sql(
        'SELECT count(*)::int AS n FROM allowance_leases WHERE limit_id = $1 AND period_start > now()', [limitId]);
      prefetched += n;
      if ((statuses.get(429) ?? 0) > 100 && (statuses.get(200) ?? 0) > 3 * LIMIT && prefetched > 0) break;
    }
    assert.ok(prefetched > 0, 'the next window was leased before it began');
    assert.ok(sample429, `some requests were limited: ${JSON.stringify([...statuses])}`);
    assert.deepEqual([...statuses.keys()].filter((s) => s !== 200 && s !== 429), [], 'only 200 and 429');
    assert.equal(sample429.headers.get('x-ratelimit-limit-requests'), String(LIMIT));
    assert.equal(sample429.headers.get('x-ratelimit-remaining-requests'), '0');
    assert.match(sample429.headers.get('x-ratelimit-reset-requests') ?? '', /^\d+s$/);
    assert.ok(Number(sample429.headers.get('retry-after')) >= 1);
    assert.equal(sample429.body.error.type, 'requests');
    assert.equal(sample429.body.error.code, 'rate_limit_exceeded');

    await waitUsageCount([key.id], statuses.get(200)); // at least: the warm-up requests add some
    // each 200 is stamped with the governance clock at admission, inside its window's lease
    const perWindow = await c.sql(
      `SELECT floor(extract(epoch FROM ts))::bigint AS w, count(*)::int AS n FROM usage_events
        WHERE key_id = $1 AND status = 200 AND ts >= to_timestamp($2) GROUP BY 1 ORDER BY 2 DESC`, [key.id, knownSec]);
    assert.ok(perWindow.length >= 2, 'several windows were used');
    for (const row of perWindow) assert.ok(row.n <= LIMIT, `window ${row.w}: ${row.n} > ${LIMIT}`);
    // nothing over-granted, early or not: every window's leases together stay within the limit
    const ledger = await c.sql(
      `SELECT p.period_start::text AS w, p.hard::int AS hard, coalesce(sum(l.outstanding), 0)::int AS out
         FROM allowance_periods p LEFT JOIN allowance_leases l USING (limit_id, kind, period_start)
        WHERE p.limit_id = $1 GROUP BY 1, 2`, [limitId]);
    assert.ok(ledger.length >= 2);
    for (const row of ledger) assert.ok(row.out <= row.hard, `window ${row.w}: ${row.out} leased > ${row.hard}`);
  });
});

describe('a concurrency limit across 2 dataplanes', () => {
  test('never more than N requests hold a slot at once; 429s for the rest; the slots come back', async () => {
    const N = 3;
    const DELAY = 1500; // the mock holds each request this long
    const dps = [0, 1];
    const key = await newKey();
    // concurrent = 0 first: refused at once (one slot can never fit), so a 429 proves a dataplane has the
    // limit; then N, and a 200 on each proves the new value arrived
    await c.sql(`INSERT INTO rate_limits (tenant_id, scope, key_id, concurrent) VALUES ($1, 'key', $2, 0)`,
      [seed.tenant.id, key.id]);
    const [{ id: limitId }] = await c.sql('SELECT id::text FROM rate_limits WHERE key_id = $1', [key.id]);
    const quick = { model: MODEL, messages: [{ role: 'user', content: '[mock:tokens=1] slot' }] };
    for (const i of dps) {
      await waitFor(async () => (await c.chat(i, key.key, quick)).status === 429, 10000,
        { intervalMs: 100, what: `dataplane ${i} to know the concurrency limit` });
    }
    await c.sql('UPDATE rate_limits SET concurrent = $1 WHERE id = $2', [N, limitId]);
    for (const i of dps) {
      await waitFor(async () => (await c.chat(i, key.key, quick)).status === 200, 10000,
        { intervalMs: 100, what: `dataplane ${i} to admit under the raised limit` });
    }

    // A request holds its slot from admission to settlement, which contains the mock's delay; the mock's
    // delay lies inside what the client saw, [sent, received]. So each 200 certainly held its slot over
    // [received - DELAY, sent + DELAY] (when that is not empty): more than N of those intervals sharing
    // an instant would prove more than N slots held at once. No timing is assumed for the check to hold.
    const held = { model: MODEL, messages: [{ role: 'user', content: `[mock:tokens=1,delay_ms=${DELAY}] held` }] };
    async function burst(n) {
      return Promise.all(Array.from({ length: n }, async (_, j) => {
        const sent = performance.now();
        const r = await c.chat(dps[j % dps.length], key.key, held);
        return { ...r, sent, received: performance.now() };
      }));
    }
    const maxCertainOverlap = (oks) => {
      const edges = [];
      for (const r of oks) {
        const from = r.received - DELAY;
        const to = r.sent + DELAY;
        if (from < to) edges.push([from, 1], [to, -1]);
      }
      edges.sort((a, b) => a[0] - b[0] || a[1] - b[1]); // an end before a start at the same instant
      let cur = 0;
      let max = 0;
      for (const [, d] of edges) max = Math.max(max, (cur += d));
      return max;
    };

    const results = await burst(4 * N);
    const oks = results.filter((r) => r.status === 200);
    const limited = results.filter((r) => r.status === 429);
    assert.equal(oks.length + limited.length, results.length,
      `only 200 and 429: ${JSON.stringify(results.map((r) => r.status))}`);
    assert.ok(oks.length >= 1 && limited.length >= 1, `${oks.length} served, ${limited.length} limited`);
    const overlap = maxCertainOverlap(oks);
    assert.ok(overlap <= N, `${overlap} requests certainly held a slot at the same time (limit ${N})`);
    const r429 = limited[0];
    assert.equal(r429.body.error.code, 'rate_limit_exceeded', r429.text);
    assert.equal(r429.body.error.type, 'requests');
    assert.match(r429.body.error.message, /concurrent requests/);
    assert.ok(Number(r429.headers.get('retry-after')) >= 1);

    // The ledger never leased more slots than the limit, over both dataplanes.
    const [{ out }] = await c.sql(
      `SELECT coalesce(sum(outstanding), 0)::int AS out FROM allowance_leases WHERE limit_id = $1 AND kind = 'concurrent'`,
      [limitId]);
    assert.ok(out <= N, `${out} slots leased > ${N}`);

    // Slots come back when requests end: twice N more requests, one after the other, are all served (a
    // leaked slot would leave none after N). A dataplane believes a refusal for 200 ms: retry past it.
    for (let j = 0; j < 2 * N; j++) {
      const dp = dps[j % dps.length];
      let last;
      await waitFor(async () => (last = await c.chat(dp, key.key, quick)).status === 200, 5000,
        { intervalMs: 100, what: `sequential request ${j} on dataplane ${dp}` })
        .catch((err) => {
          const leases = [c.controlplane, ...c.dataplanes].map((p) => p.logTail(400).split('\n').filter((x) => /lease/.test(x)).slice(-5));
          throw new Error(`${err.message}; last answer ${last?.status} ${last?.text}; lease log lines: ` +
            JSON.stringify(leases));
        });
    }
    // and a second burst is limited the same way
    const again = await burst(2 * N);
    const oks2 = again.filter((r) => r.status === 200);
    assert.deepEqual(again.filter((r) => r.status !== 200 && r.status !== 429).map((r) => r.text), []);
    assert.ok(oks2.length >= 1, 'the second burst was served too');
    assert.ok(maxCertainOverlap(oks2) <= N);
  });
});

describe('a per-second token limit across 4 dataplanes', () => {
  test('the tokens of the 200s in each window never exceed the limit; 429s carry the -tokens headers', async (t) => {
    const LIMIT = 2000; // about 8 of the requests below by their worst case (body bytes + max_tokens)
    const team = await newTeam();
    const key = await newKey({ team });
    await c.sql(
      `INSERT INTO rate_limits (tenant_id, scope, team_id, window_s, tokens_per_window)
       VALUES ($1, 'team', $2, 1, $3)`, [seed.tenant.id, team, LIMIT]);
    // the probe's worst case (10M tokens) can never fit: a 429 proves the dataplane has the limit
    for (const [i] of c.dataplanes.entries()) {
      await waitFor(async () => (await c.chat(i, key.key, probe)).status === 429, 10000,
        { intervalMs: 100, what: `dataplane ${i} to know the token limit` });
    }
    const knownSec = Math.floor(Date.now() / 1000) + 1;
    const body = { model: MODEL, max_tokens: 100, messages: [{ role: 'user', content: '[mock:tokens=100] tokens' }] };
    let sample429 = null;
    const statuses = new Map();
    const deadline = Date.now() + 60000;
    for (let rounds = 0; Date.now() < deadline && rounds < 40; rounds++) {
      // a round lasts at least 100 ms, so the 40 rounds span several windows even when 429s come fast
      const paced = sleep(100);
      const results = await Promise.all(Array.from({ length: 48 }, (_, i) => c.chat(i % N_DP, key.key, body)));
      await paced;
      for (const r of results) {
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        if (r.status === 429 && !sample429) sample429 = r;
      }
      // enough of both, over at least two whole windows after every dataplane knew the limit
      if ((statuses.get(429) ?? 0) > 100 && (statuses.get(200) ?? 0) > 20 && Date.now() > (knownSec + 2) * 1000) break;
    }
    assert.ok(sample429, `some requests were limited: ${JSON.stringify([...statuses])}`);
    assert.deepEqual([...statuses.keys()].filter((s) => s !== 200 && s !== 429), [], 'only 200 and 429');
    assert.equal(sample429.headers.get('x-ratelimit-limit-tokens'), String(LIMIT));
    assert.equal(sample429.headers.get('x-ratelimit-remaining-tokens'), '0');
    assert.match(sample429.headers.get('x-ratelimit-reset-tokens') ?? '', /^\d+s$/);
    assert.equal(sample429.headers.get('x-ratelimit-limit-requests'), null);
    assert.ok(Number(sample429.headers.get('retry-after')) >= 1);
    assert.equal(sample429.body.error.code, 'rate_limit_exceeded');

    await waitUsageCount([key.id], statuses.get(200));
    const perWindow = await c.sql(
      `SELECT floor(extract(epoch FROM ts))::bigint AS w, count(*)::int AS n,
              sum(input_tokens + output_tokens)::int AS tokens
         FROM usage_events WHERE key_id = $1 AND status = 200 AND ts >= to_timestamp($2)
        GROUP BY 1 ORDER BY 3 DESC`, [key.id, knownSec]);
    assert.ok(perWindow.length >= 2, 'several windows were used');
    t.diagnostic(`per window (requests, tokens): ${perWindow.map((r) => `${r.n}/${r.tokens}`).join(' ')}`);
    for (const row of perWindow) assert.ok(row.tokens <= LIMIT, `window ${row.w}: ${row.tokens} tokens > ${LIMIT}`);
    assert.ok(perWindow[0].n >= 2, 'a window admitted several requests');
  });
});

describe('429 in every dialect', () => {
  test('Anthropic and Gemini get their own rate-limit error bodies and the x-ratelimit-* headers', async () => {
    const key = await newKey();
    // one request an hour: the first is served, the next ones are refused on every dataplane
    await c.sql(`INSERT INTO rate_limits (tenant_id, scope, key_id, window_s, requests_per_window)
                 VALUES ($1, 'key', $2, 3600, 1)`, [seed.tenant.id, key.id]);
    const aBody = { model: MODEL, max_tokens: 5, messages: [{ role: 'user', content: '[mock:tokens=1] hi' }] };
    const gBody = { contents: [{ role: 'user', parts: [{ text: '[mock:tokens=1] hi' }] }] };
    const anthropic = () => fetch(`${c.dataplanes[1].url}/anthropic/v1/messages`, {
      method: 'POST', headers: { 'x-api-key': key.key, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
      body: JSON.stringify(aBody), signal: AbortSignal.timeout(10000) });
    const gemini = () => fetch(`${c.dataplanes[2].url}/genai/v1beta/models/${MODEL}:generateContent`, {
      method: 'POST', headers: { 'x-goog-api-key': key.key, 'content-type': 'application/json' },
      body: JSON.stringify(gBody), signal: AbortSignal.timeout(10000) });
    // bounded: a window boundary (or the snapshot arriving) can let one more through
    const until429 = async (send, what) => waitFor(async () => {
      const r = await send();
      return r.status === 429 ? r : (assert.equal(r.status, 200, await r.text()), null);
    }, 10000, { intervalMs: 100, what });
    const checkHeaders = (r) => {
      assert.equal(r.headers.get('x-ratelimit-limit-requests'), '1');
      assert.equal(r.headers.get('x-ratelimit-remaining-requests'), '0');
      assert.match(r.headers.get('x-ratelimit-reset-requests') ?? '', /^\d+s$/);
      const retry = Number(r.headers.get('retry-after'));
      assert.ok(retry >= 1 && retry <= 3600, `retry-after ${retry}`);
    };
    const a = await until429(anthropic, 'an Anthropic 429');
    checkHeaders(a);
    const ab = await a.json();
    assert.equal(ab.type, 'error');
    assert.equal(ab.error.type, 'rate_limit_error');
    assert.match(ab.error.message, /Rate limit/);
    const g = await until429(gemini, 'a Gemini 429');
    checkHeaders(g);
    const gb = await g.json();
    assert.equal(gb.error.code, 429);
    assert.equal(gb.error.status, 'RESOURCE_EXHAUSTED');
    assert.match(gb.error.message, /Rate limit/);
  });
});

describe('the soft threshold of a budget', () => {
  test('once the settled spend crosses it, responses carry x-tollgate-budget-warning naming the budget', async () => {
    const key = await newKey();
    const other = await newKey(); // same tenant, no budget: never warned
    const SOFT = 5_000_000n; // $0.005: about five of the requests below
    const HARD = 40_000_000n;
    const [{ id: budget }] = await c.sql(
      `INSERT INTO budgets (tenant_id, scope, key_id, period, hard_nanousd, soft_nanousd)
       VALUES ($1, 'key', $2, 'total', $3, $4) RETURNING id::text`,
      [seed.tenant.id, key.id, String(HARD), String(SOFT)]);
    await waitBudgetKnown(key.key, 'the key budget');
    const first = await c.chat(0, key.key, costly());
    assert.equal(first.status, 200, first.text);
    assert.equal(first.headers.get('x-tollgate-budget-warning'), null, 'nothing is spent yet');
    // spend past the threshold, then wait for the ledger to settle it
    for (let i = 0; i < 20 && (await settled(budget)) < SOFT; i++) {
      const r = await c.chat(i % N_DP, key.key, costly());
      assert.equal(r.status, 200, r.text);
      if (i % 4 === 3) await waitUsageCount([key.id], i + 2);
    }
    await waitFor(async () => (await settled(budget)) >= SOFT, 10000, { what: 'the spend to cross the soft threshold' });
    // every dataplane learns the settled spend with its next lease answer (renewals included)
    const small = { model: MODEL, max_tokens: 5, messages: [{ role: 'user', content: '[mock:tokens=1] warn?' }] };
    for (let i = 0; i < N_DP; i++) {
      const r = await waitFor(async () => {
        const res = await c.chat(i, key.key, small);
        assert.equal(res.status, 200, res.text);
        return res.headers.get('x-tollgate-budget-warning') ? res : null;
      }, 10000, { intervalMs: 100, what: `dataplane ${i} to warn` });
      const m = /^budget=([0-9a-f-]{36}); spent_usd=([0-9.]+); soft_usd=([0-9.]+); hard_usd=([0-9.]+)$/
        .exec(r.headers.get('x-tollgate-budget-warning'));
      assert.ok(m, r.headers.get('x-tollgate-budget-warning'));
      assert.equal(m[1], budget);
      assert.equal(m[3], '0.005');
      assert.equal(m[4], '0.04');
      const spent = BigInt(Math.round(Number(m[2]) * 1e9));
      assert.ok(spent >= SOFT && spent <= (await settled(budget)), `spent ${m[2]}`);
    }
    // a stream carries it in its response headers too
    const res = await fetch(`${c.dataplanes[0].url}/v1/chat/completions`, {
      method: 'POST', headers: { authorization: `Bearer ${key.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ ...small, stream: true }), signal: AbortSignal.timeout(10000) });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('x-tollgate-budget-warning') ?? '', new RegExp(`^budget=${budget};`));
    await res.text();
    // another key of the same tenant is not told about this key's budget
    const o = await c.chat(1, other.key, small);
    assert.equal(o.status, 200, o.text);
    assert.equal(o.headers.get('x-tollgate-budget-warning'), null);
  });
});

describe('key restrictions and error bodies in each dialect', () => {
  const anthropic = (dp, key, body) => fetch(`${c.dataplanes[dp].url}/anthropic/v1/messages`, {
    method: 'POST', headers: { 'x-api-key': key, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
    body: JSON.stringify(body), signal: AbortSignal.timeout(10000) });
  const gemini = (dp, key, model, body) => fetch(
    `${c.dataplanes[dp].url}/genai/v1beta/models/${model}:generateContent`, {
      method: 'POST', headers: { 'x-goog-api-key': key, 'content-type': 'application/json' },
      body: JSON.stringify(body), signal: AbortSignal.timeout(10000) });
  // worst cases of about $0.005: more than the $0.001 budget below
  const aBody = (model = MODEL) => ({ model, max_tokens: 500, messages: [{ role: 'user', content: '[mock:tokens=5] hi' }] });
  const gBody = { contents: [{ role: 'user', parts: [{ text: '[mock:tokens=5] hi' }] }],
    generationConfig: { maxOutputTokens: 500 } };

  test('model patterns: allowed by glob → 200, other models → 403 in every dialect', async () => {
    const key = await newKey({ allowedModels: ['mock-g*'] });
    assert.equal((await c.chat(0, key.key, { model: MODEL, messages: [{ role: 'user', content: 'x' }] })).status, 200);
    const o = await c.chat(1, key.key, { model: OTHER_MODEL, messages: [{ role: 'user', content: 'x' }] });
    assert.equal(o.status, 403, o.text);
    assert.equal(o.body.error.type, 'permission_error');
    assert.equal(o.body.error.code, 'model_not_allowed');
    const a = await anthropic(2, key.key, aBody(OTHER_MODEL));
    const ab = await a.json();
    assert.equal(a.status, 403);
    assert.equal(ab.type, 'error');
    assert.equal(ab.error.type, 'permission_error');
    const g = await gemini(3, key.key, OTHER_MODEL, gBody);
    const gb = await g.json();
    assert.equal(g.status, 403);
    assert.equal(gb.error.status, 'PERMISSION_DENIED');
  });

  test('provider restrictions: a key limited to another provider gets 403', async () => {
    const key = await newKey();
    await c.sql('UPDATE virtual_keys SET allowed_providers = ARRAY[gen_random_uuid()] WHERE id = $1', [key.id]);
    const body = { model: MODEL, messages: [{ role: 'user', content: 'x' }] };
    for (let i = 0; i < N_DP; i++) {
      const res = await waitFor(async () => {
        const r = await c.chat(i, key.key, body);
        return r.status === 200 ? null : r;
      }, 5000, { what: `dataplane ${i} to apply the provider restriction` });
      assert.equal(res.status, 403, res.text);
      assert.equal(res.body.error.code, 'provider_not_allowed');
    }
    // the provider it is allowed: served again
    await c.sql('UPDATE virtual_keys SET allowed_providers = ARRAY[$1::uuid] WHERE id = $2', [seed.provider.id, key.id]);
    await waitFor(async () => (await c.chat(0, key.key, body)).status === 200, 5000,
      { what: 'the allowed provider to serve the key' });
  });

  test('a spent budget: 402 in every dialect, nothing reaches the provider', async () => {
    const key = await newKey();
    await newBudget({ scope: 'key', key: key.id, hard: 1_000_000n }); // $0.001: less than one request
    await waitBudgetKnown(key.key, 'the key budget');
    const o = await c.chat(0, key.key, costly());
    assert.equal(o.status, 402, o.text);
    assert.equal(o.body.error.type, 'insufficient_quota');
    assert.equal(o.body.error.code, 'budget_exceeded');
    const a = await anthropic(1, key.key, aBody());
    const ab = await a.json();
    assert.equal(a.status, 402, JSON.stringify(ab));
    assert.equal(ab.type, 'error');
    assert.equal(ab.error.type, 'billing_error');
    const g = await gemini(2, key.key, MODEL, gBody);
    const gb = await g.json();
    assert.equal(g.status, 402, JSON.stringify(gb));
    assert.equal(gb.error.code, 402);
    assert.equal(gb.error.status, 'FAILED_PRECONDITION');
  });
});

describe('periods and expiry on the controllable clock', () => {
  test('a daily budget resets at midnight in the tenant time zone; an expired key gets 401', async () => {
    await c.sql(`UPDATE tenants SET time_zone = 'Asia/Tokyo' WHERE id = $1`, [seed.tenant.id]);
    const key = await newKey();
    const budget = await newBudget({ scope: 'key', key: key.id, period: 'daily', hard: 4_000_000n }); // ~3 requests
    await waitBudgetKnown(key.key, 'the daily budget');
    let ok = 0;
    for (let i = 0; i < 20; i++) {
      const res = await c.chat(i % N_DP, key.key, costly());
      if (res.status === 402) break;
      assert.equal(res.status, 200, res.text);
      ok++;
    }
    // The first 402 may leave crumbs held elsewhere; the next renewal pools them, which can fit one
    // more request. Then every dataplane refuses, and the day held no more than its budget allows.
    for (let i = 0; i < N_DP; i++) {
      await waitFor(async () => {
        const res = await c.chat(i, key.key, costly());
        if (res.status === 200) ok++;
        else assert.equal(res.status, 402, res.text);
        return res.status === 402;
      }, 5000, { what: `dataplane ${i} to refuse the spent day` });
    }
    assert.ok(ok >= 2 && ok <= 3, `${ok} requests fit in the day`);

    // the next day in Tokyo: the periods' starts are Tokyo midnights
    const [{ ms }] = await c.sql(
      `SELECT (extract(epoch FROM (date_trunc('day', now() AT TIME ZONE 'Asia/Tokyo') + interval '1 day')
               AT TIME ZONE 'Asia/Tokyo') * 1000 - extract(epoch FROM now()) * 1000)::bigint::text AS ms`);
    await setClock(Number(ms) + 1000);
    const res = await waitFor(async () => {
      const r = await c.chat(1, key.key, costly());
      return r.status === 200 ? r : null;
    }, 10000, { what: 'the new day to admit the key again' });
    assert.equal(res.status, 200);
    await waitFor(async () => (await c.sql(
      `SELECT count(*)::int AS n FROM allowance_periods WHERE limit_id = $1`, [budget]))[0].n === 2, 10000,
    { what: 'a second period in the ledger' });
    const periods = await c.sql(
      `SELECT to_char(period_start AT TIME ZONE 'Asia/Tokyo', 'HH24:MI') AS local, settled::text
         FROM allowance_periods WHERE limit_id = $1 ORDER BY period_start`, [budget]);
    assert.deepEqual(periods.map((p) => p.local), ['00:00', '00:00']);
    assert.ok(BigInt(periods[0].settled) <= 4_000_000n);

    // expiry: an hour from now on the governance clock, then the clock moves past it
    const [{ at }] = await c.sql(`SELECT (now() + make_interval(secs => $1::bigint / 1000.0 + 3600))::text AS at`, [ms]);
    await c.sql('UPDATE virtual_keys SET expires_at = $1 WHERE id = $2', [at, key.id]);
    const small = { model: MODEL, max_tokens: 5, messages: [{ role: 'user', content: '[mock:tokens=5] x' }] };
    await waitFor(async () => (await c.chat(2, key.key, small)).status === 200, 5000,
      { what: 'the key with a future expiry' });
    await setClock(Number(ms) + 2 * 3600 * 1000);
    // the dataplane checks expiry on its clock, and the control plane drops the key from the next
    // snapshot on its own: either way every dataplane refuses it promptly
    for (let i = 0; i < N_DP; i++) {
      const r = await waitFor(async () => {
        const res = await c.chat(i, key.key, small);
        return res.status === 200 ? null : res;
      }, 5000, { what: `dataplane ${i} to refuse the expired key` });
      assert.equal(r.status, 401, r.text);
      assert.equal(r.body.error.code, 'invalid_api_key');
    }
  });
});

describe('a dataplane dies holding a lease', () => {
  test('its share comes back once the lease expired (clock moved), not before', async () => {
    const key = await newKey();
    const budget = await newBudget({ scope: 'key', key: key.id, hard: 20_000_000n }); // ~16 requests' worst case
    await waitBudgetKnown(key.key, 'the key budget');
    // dataplane 0 takes a lease (one request, plus its prefetch)
    assert.equal((await c.chat(0, key.key, costly())).status, 200);
    const victim = c.dataplanes[0];
    const [held] = await c.sql(
      `SELECT outstanding::text FROM allowance_leases WHERE limit_id = $1 AND outstanding > 0`, [budget]);
    assert.ok(held && BigInt(held.outstanding) > 0n, 'dataplane 0 holds an allowance');
    await victim.kill();

    let before = 0;
    for (let i = 0; i < 40; i++) {
      const r = await c.chat(1, key.key, costly());
      if (r.status === 402) break;
      assert.equal(r.status, 200, r.text);
      before++;
    }
    assert.equal((await c.chat(2, key.key, costly())).status, 402, 'the dead dataplane\'s share is still held');
    // past the lease's expiry plus the longest request: the control plane reclaims it
    const now = await c.admin('GET', '/admin/v1/_test/clock');
    await setClock(Number(now.body.offset_ms) + LEASE_TTL_MS + MAX_REQUEST_MS + 2000, { dataplanes: false });
    let afterMove = 0;
    await waitFor(async () => {
      const r = await c.chat(1, key.key, costly());
      if (r.status === 200) afterMove++;
      return afterMove >= 3;
    }, 15000, { intervalMs: 300, what: 'the reclaimed share to be granted again' });
    assert.ok(before >= 1 && afterMove >= 3, `before ${before}, after ${afterMove}`);
    await waitFor(async () => (await settled(budget)) === (await spentByKeys([key.id])).cost, 10000,
      { what: 'the ledger to settle' });
    assert.ok((await settled(budget)) <= 20_000_000n);
  });
});
