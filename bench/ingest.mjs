// ingest.mjs: usage ingestion capacity, control plane + PostgreSQL only (docs/performance.md, "Usage
// ingestion").
//
//   node bench/ingest.mjs            (TOLLGATE_BUILD, INGEST_BATCHES (200), INGEST_RECORDS (2000),
//                                     INGEST_KEYS (20), INGEST_ROUNDS (3), INGEST_CP_BIN, INGEST_MIGRATIONS,
//                                     INGEST_STRACE=1: round trips per batch, counted with strace)
//
// Starts PostgreSQL and the control plane (no dataplane, no mock traffic), seeds a tenant with two
// teams and INGEST_KEYS keys, and drives tg-ingest-bench (signed UsageBatches over the REP socket, one
// in flight, as a dataplane's shipper sends them) twice per round: without budgets, then with a
// monthly budget on every key, one per team and one on the tenant (so every record settles into three
// budgets). For each run: records/s of wall time, CPU µs per record of the control plane and of
// PostgreSQL (all its processes, from /proc schedstat), and the median time per phase of a batch from
// the control plane's cp.usage.stored lines. Rounds alternate the two variants on the same cluster.
// Then checks exactness: the ledger's settled amounts equal the sum of the usage rows' costs.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');
process.env.TOLLGATE_BUILD ??= path.join(ROOT, 'build-bench');
const BUILD = path.resolve(ROOT, process.env.TOLLGATE_BUILD);
const { BenchCluster } = await import('./lib/cluster.mjs');
const { cpuNs, cpuNsTree } = await import('./lib/procfs.mjs');
const { median } = await import('./lib/stats.mjs');
const { waitHttp } = await import('../tests/e2e/harness.mjs');

const env = (k, d) => (process.env[k] ? Number(process.env[k]) : d);
const BATCHES = env('INGEST_BATCHES', 200);
const RECORDS = env('INGEST_RECORDS', 2000);
const NKEYS = env('INGEST_KEYS', 20);
const ROUNDS = env('INGEST_ROUNDS', 3);
const driver = path.join(BUILD, 'bench/tg-ingest-bench');

// INGEST_CP_BIN / INGEST_MIGRATIONS: another control plane build and its migrations (a before/after
// comparison on the same machine in one sitting)
const c = new BenchCluster({ build: BUILD, dataplanes: 0, migrationsDir: process.env.INGEST_MIGRATIONS || undefined });
if (process.env.INGEST_CP_BIN) c.bins.controlplane = path.resolve(process.env.INGEST_CP_BIN);
let seq = 1;
const results = [];
try {
  await c.start();
  const seeded = await c.seed();
  const tenant = seeded.tenant.id;
  const teams = [];
  for (let i = 0; i < 2; i++) teams.push((await c.admin('POST', '/admin/v1/teams', { tenant_id: tenant, name: `t${i}` })).id);
  const keys = [];
  for (let i = 0; i < NKEYS; i++) {
    keys.push((await c.admin('POST', '/admin/v1/keys', { tenant_id: tenant, name: `k${i}`, team_id: teams[i % 2] })).id);
  }
  // A keep-alive connection the admin server closed while a long run went on fails the next call once
  // ("other side closed"); one retry on a fresh connection.
  const admin = async (...a) => {
    try {
      return await c.admin(...a);
    } catch (e) {
      if (!/fetch failed/.test(e.message)) throw e;
      return c.admin(...a);
    }
  };
  const stored = () => c.logText('controlplane').split('\n').filter((l) => l.includes('cp.usage.stored')).length;

  // INGEST_PERF=1: `perf record` of the control plane and every PostgreSQL process during each run
  // (var/ingest-perf-<run>.data), for `perf report --no-children --sort dso,symbol`
  const pgPids = () => {
    try {
      return fs.readFileSync(`/proc/${c.pgPid}/task/${c.pgPid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
    } catch {
      return [];
    }
  };
  // n batches of RECORDS records from the driver, sequence numbers continuing; its JSON report
  function drive(n) {
    const out = execFileSync(driver, ['--url', c.cpEnv.TOLLGATE_CP_REP_URL, '--secret', c.clusterSecret,
      '--instance', 'ingest-bench', '--tenant', tenant, '--keys', keys.join(','),
      '--teams', keys.map((_, i) => teams[i % 2]).join(','), '--provider', seeded.provider.id,
      '--batches', String(n), '--records', String(RECORDS), '--first-seq', String(seq)],
    { encoding: 'utf8', timeout: 600000 });
    seq += n;
    return JSON.parse(out.trim());
  }

  // INGEST_STRACE=1: PostgreSQL round trips per batch, counted rather than guessed. strace of the
  // control plane's sendto/recvfrom (libpq's send()/recv(); NNG and libuv use other calls) over 20
  // batches. A round trip is a flight of sends on one socket answered by a receive that returned data;
  // a batch's are those from the flight that sends its BEGIN to the one that sends its COMMIT (the
  // control plane's other queries, e.g. the leader's heartbeat on its own connection, fall outside).
  async function roundTrips(label) {
    const out = path.join(ROOT, `var/ingest-strace-${label.replace(/\W+/g, '_')}.txt`);
    fs.mkdirSync(path.dirname(out), { recursive: true });
    const st = spawn('strace', ['-f', '-s', '1000000', '-e', 'trace=sendto,recvfrom', '-o', out,
      '-p', String(c.controlplane.pid)], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 1000));
    const n = 20;
    drive(n);
    st.kill('SIGINT');
    await new Promise((r) => st.on('exit', r));
    const sent = new Map(); // fd -> what was sent since its last answer
    let inBatch = false;
    let rts = 0;
    let batches = 0;
    for (const l of fs.readFileSync(out, 'utf8').split('\n')) {
      const m = l.match(/(sendto|recvfrom)\((\d+), (.*)\) += (-?\d+)/);
      if (!m || Number(m[4]) <= 0) continue;
      if (m[1] === 'sendto') {
        sent.set(m[2], (sent.get(m[2]) ?? '') + m[3]);
        continue;
      }
      const flight = sent.get(m[2]);
      if (flight === undefined) continue;
      sent.delete(m[2]);
      if (!inBatch && /BEGIN/.test(flight)) inBatch = true;
      if (!inBatch) continue;
      rts++;
      if (/COMMIT/.test(flight)) {
        inBatch = false;
        batches++;
      }
    }
    const row = { label: `round trips (${label})`, batches, round_trips_per_batch: +(rts / Math.max(batches, 1)).toFixed(2) };
    results.push(row);
    console.log(JSON.stringify(row));
  }

  let nrun = 0;
  async function run(label) {
    let perf = null;
    if (process.env.INGEST_PERF === '1') {
      const out = path.join(ROOT, `var/ingest-perf-${nrun}.data`);
      perf = spawn('perf', ['record', '-F', '2000', '-g', '-o', out, '-p', [c.controlplane.pid, c.pgPid, ...pgPids()].join(',')],
        { stdio: 'ignore' });
      await new Promise((r) => setTimeout(r, 500));
    }
    nrun++;
    const before = stored();
    const cp0 = cpuNs(c.controlplane.pid);
    const pg0 = cpuNsTree(c.pgPid);
    const r = drive(BATCHES);
    const cp = cpuNs(c.controlplane.pid) - cp0;
    const pgc = cpuNsTree(c.pgPid) - pg0;
    if (perf) {
      perf.kill('SIGINT');
      await new Promise((r) => perf.on('exit', r));
    }
    // phases of the batches of this run, as the control plane logged them
    const lines = c.logText('controlplane').split('\n').filter((l) => l.includes('cp.usage.stored')).slice(before);
    const phases = {};
    for (const l of lines) {
      for (const m of l.matchAll(/ (encode|begin|copy|prep|rollup|settle|commit|ms)=([\d.]+)/g)) (phases[m[1]] ??= []).push(Number(m[2]));
    }
    const row = { label, records: r.records, records_per_s: Math.round(r.records_per_s),
      batches_per_s: +(r.batches / (r.wall_ms / 1000)).toFixed(1),
      cp_us_per_record: +(cp / 1000 / r.records).toFixed(2), pg_us_per_record: +(pgc / 1000 / r.records).toFixed(2),
      cp_us_per_batch: Math.round(cp / 1000 / r.batches), pg_us_per_batch: Math.round(pgc / 1000 / r.batches),
      batch_ms_p50: Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, +median(v).toFixed(2)])) };
    results.push(row);
    console.log(JSON.stringify(row));
  }

  const indexes = await c.sql(`SELECT i.indexrelid::regclass::text AS name FROM pg_index i
      WHERE i.indrelid = 'usage_events'::regclass`);
  console.log(JSON.stringify({ usage_events_indexes: indexes.map((r) => r.name) }));
  // warm-up: caches, plans, the partition of this month
  await run('warm-up');
  results.length = 0;
  if (process.env.INGEST_STRACE === '1') await roundTrips('no budgets');
  let budgets = false;
  for (let round = 0; round < ROUNDS; round++) {
    if (budgets) {
      await c.sql('DELETE FROM budgets');
      budgets = false;
    }
    await run('no budgets');
    for (const k of keys) {
      await admin('POST', '/admin/v1/budgets', { tenant_id: tenant, scope: 'key', key_id: k, period: 'monthly', hard_usd: '1000000000' });
    }
    for (const t of teams) {
      await admin('POST', '/admin/v1/budgets', { tenant_id: tenant, scope: 'team', team_id: t, period: 'daily', hard_usd: '1000000000' });
    }
    await admin('POST', '/admin/v1/budgets', { tenant_id: tenant, scope: 'tenant', period: 'monthly', hard_usd: '1000000000' });
    budgets = true;
    // exactness over this run: the budgets are new, so each one's ledger is this run's records alone
    const costSum = async () => (await c.sql('SELECT coalesce(sum(cost_nanousd), 0)::text AS s FROM usage_events'))[0].s;
    const cost0 = BigInt(await costSum());
    if (round === 0 && process.env.INGEST_STRACE === '1') await roundTrips('budgets');
    await run('budgets (key + team + tenant)');
    const runCost = (BigInt(await costSum()) - cost0).toString();
    const ledger = await c.sql(`SELECT b.scope, sum(p.settled)::text AS settled FROM allowance_periods p
        JOIN budgets b ON b.id = p.limit_id WHERE p.kind = 'budget' GROUP BY b.scope ORDER BY 1`);
    const check = { usage_cost: runCost, ...Object.fromEntries(ledger.map((r) => [r.scope, r.settled])) };
    if (check.tenant !== runCost || check.team !== runCost || check.key !== runCost) {
      throw new Error(`ledger differs from the usage rows: ${JSON.stringify(check)}`);
    }
    console.log(JSON.stringify({ exactness: check }));
  }
  if (process.env.INGEST_EXPLAIN === '1') {
    // plans of every statement of a few batches (nested ones inside tollgate_settle() too), with
    // timings and buffers, into PostgreSQL's log: auto_explain in the control plane's next session
    await c.sql("LOAD 'auto_explain'");
    await c.sql("ALTER SYSTEM SET session_preload_libraries = 'auto_explain'");
    for (const [k, v] of [['log_min_duration', '0'], ['log_analyze', 'on'], ['log_buffers', 'on'],
      ['log_nested_statements', 'on'], ['log_timing', 'on']]) await c.sql(`ALTER SYSTEM SET auto_explain.${k} = '${v}'`);
    await c.sql('SELECT pg_reload_conf()');
    await c.controlplane.stop(10000); // its new sessions load auto_explain
    c.controlplane.start();
    await waitHttp(c.controlplane, `${c.adminUrl}/readyz`, 200);
    const saved = BATCHES;
    execFileSync(driver, ['--url', c.cpEnv.TOLLGATE_CP_REP_URL, '--secret', c.clusterSecret, '--instance', 'ingest-bench',
      '--tenant', tenant, '--keys', keys.join(','), '--teams', keys.map((_, i) => teams[i % 2]).join(','),
      '--provider', seeded.provider.id, '--batches', '3', '--records', String(RECORDS), '--first-seq', String(seq)],
    { encoding: 'utf8', timeout: 600000 });
    seq += 3;
    fs.copyFileSync(path.join(c.pgDir, 'log'), path.join(ROOT, 'var/ingest-explain.log'));
    console.log(`plans in var/ingest-explain.log (${saved} batches per run)`);
  }
  const byLabel = {};
  for (const r of results) (byLabel[r.label] ??= []).push(r);
  console.log('\nmedian over rounds:');
  for (const [label, rows] of Object.entries(byLabel)) {
    if (rows[0].round_trips_per_batch !== undefined) {
      console.log(`${label}: ${rows[0].round_trips_per_batch} per batch`);
      continue;
    }
    const m = (k) => median(rows.map((r) => r[k]));
    console.log(`${label}: ${m('records_per_s')} records/s, ${m('batches_per_s')} batches/s, control plane ` +
      `${m('cp_us_per_record')} µs + PostgreSQL ${m('pg_us_per_record')} µs CPU per record, ` +
      `${m('cp_us_per_batch')} + ${m('pg_us_per_batch')} µs per batch`);
  }
  const dir = path.join(ROOT, 'var/bench', `${new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)}Z-ingest`);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'results.json'), JSON.stringify({ batches: BATCHES, records: RECORDS, keys: NKEYS, results }, null, 2));
  c.saveLogs(path.join(dir, 'logs'));
  console.log(`written ${dir}`);
} finally {
  await c.stop();
}
