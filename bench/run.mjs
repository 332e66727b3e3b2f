// run.mjs: Tollgate's benchmark suite (`make bench`, `make bench-peers`, `make bench-soak`).
//
//   node bench/run.mjs [main|peers|soak]
//
// Starts a release-build cluster on loopback (bench/lib/cluster.mjs), measures every scenario as
// alternating A/B rounds against a baseline taken in the same run (direct to the mock provider, or to
// nginx), and writes var/bench/<timestamp>-<suite>/results.json and results.md. Nothing here is a
// test: it fails only when it cannot measure, never because a figure misses a target.
//
// Knobs (environment): TOLLGATE_BUILD (build-bench), BENCH_ROUNDS (3), BENCH_SECONDS (5 per run),
// BENCH_OPEN_RPS (5000), BENCH_IDLE_CONNS (10000), BENCH_STREAMS (10000), BENCH_KEYS (100000),
// BENCH_PROPAGATIONS (20), SOAK_MINUTES (30), SOAK_RPS (2000), BENCH_ONLY (comma list of scenario
// ids), BENCH_CPUS_<ROLE> (pinning, see cluster.mjs).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');
process.env.TOLLGATE_BUILD ??= path.join(ROOT, 'build-bench');
const BUILD = path.resolve(ROOT, process.env.TOLLGATE_BUILD);

const { BenchCluster, MOCK_SECRET, MODEL } = await import('./lib/cluster.mjs');
const { wrk, wrkScript, loadgen, h2load } = await import('./lib/load.mjs');
const { abRounds, spread, median, percentile, fmtResult } = await import('./lib/stats.mjs');
const { rssBytes, openFds, cpuNs, machineInfo } = await import('./lib/procfs.mjs');
const { renderMarkdown } = await import('./lib/report.mjs');
const { sleep } = await import('../tests/e2e/harness.mjs');

const suite = process.argv[2] ?? 'main';
const env = (k, d) => (process.env[k] !== undefined && process.env[k] !== '' ? Number(process.env[k]) : d);
const CFG = {
  rounds: env('BENCH_ROUNDS', 3),
  seconds: env('BENCH_SECONDS', 5),
  openRps: env('BENCH_OPEN_RPS', 5000),
  idleConns: env('BENCH_IDLE_CONNS', 10000),
  streams: env('BENCH_STREAMS', 10000),
  keys: env('BENCH_KEYS', 100000),
  propagations: env('BENCH_PROPAGATIONS', 20),
  soakMinutes: env('SOAK_MINUTES', 30),
  soakRps: env('SOAK_RPS', 2000),
};
// Extra dataplane environment for experiments, e.g. BENCH_DP_ENV=TOLLGATE_USAGE_FLUSH_MS=60000,TOLLGATE_WORKERS=1
// (the cluster does not pass the runner's own TOLLGATE_* variables through).
const DP_ENV = Object.fromEntries((process.env.BENCH_DP_ENV ?? '').split(',').filter(Boolean).map((kv) => {
  const i = kv.indexOf('=');
  return [kv.slice(0, i), kv.slice(i + 1)];
}));
const ONLY = process.env.BENCH_ONLY ? new Set(process.env.BENCH_ONLY.split(',')) : null;
const want = (id) => !ONLY || ONLY.has(id);

const stamp = new Date().toISOString().replace(/[:.]/g, '-').replace(/-\d+Z$/, 'Z');
const OUT = path.join(ROOT, 'var/bench', `${stamp}-${suite}`);
fs.mkdirSync(OUT, { recursive: true });
const logFile = fs.openSync(path.join(OUT, 'run.log'), 'a');
function log(msg) {
  const line = `${new Date().toISOString().slice(11, 19)} ${msg}`;
  process.stdout.write(`${line}\n`);
  fs.writeSync(logFile, `${line}\n`);
}

function git(args) {
  try {
    return execFileSync('git', ['-C', ROOT, ...args], { encoding: 'utf8' }).trim();
  } catch {
    return '';
  }
}

const results = {
  suite,
  date: new Date().toISOString(),
  commit: git(['rev-parse', 'HEAD']),
  dirty: git(['status', '--porcelain', '--untracked-files=no']) !== '',
  machine: machineInfo(),
  config: CFG,
  build: BUILD,
  tools: {},
  scenarios: [],
  extras: {},
};
try {
  results.tools.wrk = execFileSync('wrk', ['-v'], { encoding: 'utf8' }).split('\n')[0];
} catch (e) {
  results.tools.wrk = (e.stdout ?? '').toString().split('\n')[0];
}

// ---------------------------------------------------------------- request bodies

function chatBody(bytes, { stream = false, directive = '' } = {}) {
  const head = { model: MODEL, messages: [{ role: 'system', content: 'You are a benchmark.' },
    { role: 'user', content: '' }] };
  if (stream) head.stream = true;
  const base = JSON.stringify(head).length + directive.length;
  const words = 'The quick brown fox jumps over the lazy dog while the gateway measures itself. ';
  let text = '';
  while (base + text.length < bytes) text += words;
  text = text.slice(0, Math.max(0, bytes - base)) + directive;
  head.messages[1].content = text;
  return JSON.stringify(head);
}

function anthropicBody(bytes) {
  const head = { model: MODEL, max_tokens: 256, system: 'You are a benchmark.', messages: [{ role: 'user', content: '' }] };
  const base = JSON.stringify(head).length;
  let text = '';
  while (base + text.length < bytes) text += 'The quick brown fox jumps over the lazy dog. ';
  head.messages[0].content = text.slice(0, bytes - base);
  return JSON.stringify(head);
}

const BODIES = {
  chat1k: chatBody(1024),
  chat16k: chatBody(16384),
  // 50 events: the role chunk, 48 content chunks, the closing chunk (then [DONE])
  stream50: chatBody(1024, { stream: true, directive: ' [mock:tokens=48]' }),
  // the same stream, paced 1 ms per event so that the first byte is distinct from the last
  streamPaced: chatBody(1024, { stream: true, directive: ' [mock:tokens=48,chunk_delay_ms=1]' }),
  // slow streams for the memory measurement: 20 events 500 ms apart (~10 s each)
  streamSlow: chatBody(512, { stream: true, directive: ' [mock:tokens=18,chunk_delay_ms=500]' }),
  anthropic1k: anthropicBody(1024),
};
const bodyFiles = {};
for (const [k, v] of Object.entries(BODIES)) {
  bodyFiles[k] = path.join(OUT, `body-${k}.json`);
  fs.writeFileSync(bodyFiles[k], v);
}

// ---------------------------------------------------------------- targets of a run

const CHAT = '/v1/chat/completions';
function directMock(c) {
  return { url: `${c.mockUrl}${CHAT}`, headers: { authorization: `Bearer ${MOCK_SECRET}`, 'content-type': 'application/json' } };
}
function viaGateway(c, dp = c.dataplanes[0]) {
  return { url: `${dp.url}${CHAT}`, headers: { authorization: `Bearer ${c.seeded.key}`, 'content-type': 'application/json' } };
}
// nginx as a plain reverse proxy to the mock: the floor any proxy pays here (an extra hop, two more
// process wake-ups per request, loopback TCP both ways), measured in the same rounds as Tollgate.
function viaNginxProxy(c) {
  return { ...directMock(c), url: `${c.nginxProxy.url}${CHAT}` };
}
function proxyPids(c) {
  return { proxy: c.nginxProxy.pid, mock: c.mock?.pid, controlplane: c.controlplane?.pid, postgres: c.pgPid };
}

// Waits (at most 10 s) until the control plane has logged nothing for 300 ms, i.e. the usage of the
// previous run is stored, so that one side's PostgreSQL work does not land in the other side's round.
async function settle(c) {
  const file = path.join(c.logDir, 'controlplane.log');
  let size = -1;
  let stableSince = performance.now();
  for (let i = 0; i < 200; i++) {
    const now = fs.statSync(file).size;
    if (now !== size) {
      size = now;
      stableSince = performance.now();
    } else if (performance.now() - stableSince >= 300) {
      return;
    }
    await sleep(50);
  }
}

function loadPids(c) {
  return { dataplane: c.dataplanes[0]?.pid, mock: c.mock?.pid, controlplane: c.controlplane?.pid, postgres: c.pgPid };
}

// A closed-loop wrk variant.
function wrkVariant(c, name, target, bodyKey, conns, { pids, body, seconds = CFG.seconds } = {}) {
  const script = wrkScript(OUT, `${name}-${bodyKey}`, { body: body ?? BODIES[bodyKey], headers: target.headers });
  return { name, pids: pids ?? loadPids(c), settle: () => settle(c),
    run: () => wrk({ url: target.url, script, conns, seconds }) };
}

function loadgenVariant(c, name, target, bodyKey, opts, pids) {
  return {
    name, pids: pids ?? loadPids(c), settle: () => settle(c),
    run: () => loadgen(c.bins.loadgen, { url: target.url, headers: target.headers, bodyFile: bodyFiles[bodyKey], ...opts }),
  };
}

// ---------------------------------------------------------------- scenario bookkeeping

// Summarises A/B rounds of `base` vs `subject`: medians and spreads of throughput and latency, and
// per-round deltas (added latency) and ratios, whose medians are the headline figures.
function summarise(rounds, base, subject) {
  const pick = (name, f) => rounds.map((r) => (r[name] && !r[name].failed ? f(r[name]) : null));
  const s = {};
  for (const name of [base, subject]) {
    s[name] = {
      rps: spread(pick(name, (x) => x.rps)),
      p50: spread(pick(name, (x) => x.latency_us?.p50)),
      p90: spread(pick(name, (x) => x.latency_us?.p90)),
      p99: spread(pick(name, (x) => x.latency_us?.p99)),
      p999: spread(pick(name, (x) => x.latency_us?.p999)),
      ttfb_p50: spread(pick(name, (x) => x.ttfb_us?.p50)),
      ttfb_p99: spread(pick(name, (x) => x.ttfb_us?.p99)),
      errors: rounds.reduce((a, r) => a + (r[name]?.errors ?? 0) + (r[name]?.non2xx ?? 0), 0),
      cpu_us_per_req: {},
    };
    for (const role of ['dataplane', 'proxy', 'mock', 'controlplane', 'postgres', 'portkey', 'nginx']) {
      const v = pick(name, (x) => x.cpu_us_per_req?.[role]);
      if (v.some((x) => x != null)) s[name].cpu_us_per_req[role] = spread(v);
    }
  }
  const d = (f) => spread(rounds.map((r) => (r[base] && r[subject] && !r[base].failed && !r[subject].failed
    ? f(r[subject]) - f(r[base]) : null)));
  s.added_us = {
    p50: d((x) => x.latency_us?.p50),
    p99: d((x) => x.latency_us?.p99),
    ttfb_p50: d((x) => x.ttfb_us?.p50 ?? NaN),
    ttfb_p99: d((x) => x.ttfb_us?.p99 ?? NaN),
  };
  s.ratio_rps = spread(rounds.map((r) => (r[base]?.rps && r[subject]?.rps ? r[subject].rps / r[base].rps : null)));
  return s;
}

// `also`: more subjects measured in the same rounds (the nginx proxy floor), each summarised against the
// same baseline into entry.also[name].
async function scenario(spec, variants, baseName, subjectName, also = []) {
  log(`scenario ${spec.id} (${spec.mode}): ${spec.title}`);
  // one short warm-up of each side (connections, caches), not recorded
  for (const v of variants) await v.warm?.();
  const { rounds } = await abRounds(variants, CFG.rounds, { log });
  const summary = summarise(rounds, baseName, subjectName);
  const entry = { ...spec, base: baseName, subject: subjectName, summary,
    also: Object.fromEntries(also.map((name) => [name, summarise(rounds, baseName, name)])),
    rounds: rounds.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, { ...v, raw: undefined }]))) };
  results.scenarios.push(entry);
  const a = summary.added_us;
  log(`  => ${subjectName}/${baseName} rps ratio ${summary.ratio_rps.median?.toFixed(2)}, added p50 ` +
    `${a.p50.median?.toFixed(1)} µs, p99 ${a.p99.median?.toFixed(1)} µs`);
  for (const [name, x] of Object.entries(entry.also)) {
    log(`  => ${name}/${baseName} rps ratio ${x.ratio_rps.median?.toFixed(2)}, added p50 ${x.added_us.p50.median?.toFixed(1)} µs, ` +
      `p99 ${x.added_us.p99.median?.toFixed(1)} µs` +
      (x.added_us.ttfb_p50.median != null ? `, ttfb p50 ${x.added_us.ttfb_p50.median.toFixed(1)} µs` : ''));
  }
  save();
  return entry;
}

function unavailable(spec, why) {
  log(`scenario ${spec.id}: not available in this build (${why})`);
  results.scenarios.push({ ...spec, unavailable: why });
  save();
}

function save() {
  fs.writeFileSync(path.join(OUT, 'results.json'), JSON.stringify(results, null, 2));
  fs.writeFileSync(path.join(OUT, 'results.md'), renderMarkdown(results));
}

// A short run of a variant before its rounds, so connection setup and first-touch costs are not measured.
function withWarmup(v, warm) {
  return { ...v, warm };
}

// ---------------------------------------------------------------- the measurements

// floor: also measure the nginx reverse proxy in the same rounds (c.nginxProxy must be running).
async function closedLoopPair(c, id, title, bodyKey, conns, { base = 'direct', baseTarget, subjectTarget, floor = false } = {}) {
  const bt = baseTarget ?? directMock(c);
  const st = subjectTarget ?? viaGateway(c);
  const mode = `${conns} conn${conns > 1 ? 's' : ''}, closed loop (wrk)`;
  const variant = (name, target, pids) => withWarmup(wrkVariant(c, name, target, bodyKey, conns, { pids }),
    wrkVariant(c, name, target, bodyKey, conns, { pids, seconds: 1 }).run);
  const variants = [variant(base, bt), variant('tollgate', st)];
  if (floor) variants.push(variant('nginx-proxy', viaNginxProxy(c), proxyPids(c)));
  return scenario({ id, title, mode, conns }, variants, base, 'tollgate', floor ? ['nginx-proxy'] : []);
}

async function openLoopPair(c, id, title, bodyKey, rate, conns, { floor = false } = {}) {
  const opts = { conns, rate, seconds: CFG.seconds + 1, warmup: 1, timeoutS: 10 };
  const variant = (name, target, pids) => withWarmup(loadgenVariant(c, name, target, bodyKey, opts, pids),
    () => loadgenVariant(c, 'w', target, bodyKey, { ...opts, seconds: 1, warmup: 0 }).run());
  const variants = [variant('direct', directMock(c)), variant('tollgate', viaGateway(c))];
  if (floor) variants.push(variant('nginx-proxy', viaNginxProxy(c), proxyPids(c)));
  return scenario({ id, title, mode: `open loop ${rate} req/s over ${conns} conns (tg-loadgen)`, rate, conns },
    variants, 'direct', 'tollgate', floor ? ['nginx-proxy'] : []);
}

// RSS of the dataplane with many idle keep-alive connections, on a freshly restarted dataplane: each
// connection makes one authenticated request (GET /v1/models: no upstream call, so what is measured is
// the connections, not a burst of upstream transfers), then stays open and idle; sampled once every
// connection has its answer (h2o closes idle HTTP/1.1 connections after 10 s; the sample comes first).
async function idleConnections(c) {
  await c.restartDataplane(0);
  const dp = c.dataplanes[0];
  await sleep(300);
  const before = { rss: rssBytes(dp.pid), fds: openFds(dp.pid) };
  let sample = null;
  const target = viaGateway(c);
  const res = await loadgen(c.bins.loadgen, {
    url: `${dp.url}/v1/models`, method: 'GET', headers: { authorization: target.headers.authorization },
    conns: CFG.idleConns, perConn: 1, connectRate: 2500, seconds: 8, timeoutS: 10,
    onReady: () => { setTimeout(() => { sample = { rss: rssBytes(dp.pid), fds: openFds(dp.pid) }; }, 500); },
  });
  await sleep(50);
  const entry = { conns: CFG.idleConns, before, during: sample, completed: res.completed, errors: res.errors,
    ready: res.ready, connected_at_end: res.connected_at_end };
  if (sample) entry.rss_added_per_conn_bytes = (sample.rss - before.rss) / CFG.idleConns;
  results.extras.idle_connections = entry;
  log(`idle connections: ${CFG.idleConns}, RSS ${mb(before.rss)} -> ${mb(sample?.rss)} MB, fds ${sample?.fds}, ` +
    `ready ${res.ready}, errors ${res.errors}`);
  save();
}

const mb = (b) => (b == null ? 'n/a' : (b / 1048576).toFixed(1));

// RSS with many concurrent slow streams. HTTP/2 from h2load: CFG.streams streams over streams/100
// connections (each stream also holds one upstream connection to the mock, so 10,000 streams need
// ~10,000 descriptors in the dataplane; HTTP/1.1 clients would need 20,000 and this sandbox caps a
// process at 20,000). Sampled every 200 ms; the peak is reported with the descriptor count.
async function slowStreams(c) {
  await c.restartDataplane(0);
  const dp = c.dataplanes[0];
  await sleep(300);
  const before = { rss: rssBytes(dp.pid), fds: openFds(dp.pid) };
  const conns = Math.max(1, Math.ceil(CFG.streams / 100));
  let peak = { rss: 0, fds: 0 };
  let running = true;
  const sampler = (async () => {
    while (running) {
      const rss = rssBytes(dp.pid);
      const fds = openFds(dp.pid);
      if (fds > peak.fds) peak = { ...peak, fds, rss_at_peak_fds: rss };
      if (rss > peak.rss) peak.rss = rss;
      await sleep(200);
    }
  })();
  const target = viaGateway(c);
  const t0 = performance.now();
  const res = await h2load({ url: target.url, headers: target.headers, bodyFile: bodyFiles.streamSlow, conns,
    streams: 100, n: CFG.streams, timeoutS: 90 });
  running = false;
  await sampler;
  const entry = { streams: CFG.streams, transport: `HTTP/2, ${conns} connections x 100 streams (h2load)`,
    stream_seconds: 9.5, before, peak, completed: res.completed, succeeded: res.succeeded, errors: res.errors,
    non2xx: res.non2xx, seconds: (performance.now() - t0) / 1000, ttfb_us: res.ttfb_us, failed: res.failed };
  results.extras.slow_streams = entry;
  log(`slow streams: ${CFG.streams} (h2), RSS ${mb(before.rss)} -> peak ${mb(peak.rss)} MB, peak fds ${peak.fds}, ` +
    `succeeded ${res.succeeded}/${CFG.streams}${res.failed ? ` (${res.failed})` : ''}`);
  save();
}

// Config change -> enforced on every dataplane: create a key and poll each dataplane until it accepts
// it; revoke it and poll until each refuses it. Times run from just before the admin call. Starts once
// the previous scenario's usage is stored: otherwise the first changes queue behind that backlog on the
// control plane's one thread and measure the backlog, not propagation.
async function propagation(c, label) {
  await settle(c);
  const create = [];
  const revoke = [];
  for (let i = 0; i < CFG.propagations; i++) {
    let since = performance.now();
    const k = await c.admin('POST', '/admin/v1/keys', { tenant_id: c.seeded.tenant.id, name: `prop-${label}-${i}` });
    create.push((await c.waitKey(k.key, 200, { since })).ms);
    since = performance.now();
    await c.admin('POST', `/admin/v1/keys/${k.id}/revoke`);
    revoke.push((await c.waitKey(k.key, 401, { since })).ms);
  }
  const all = [...create, ...revoke];
  const entry = { dataplanes: c.dataplanes.length, changes: all.length,
    create_ms: { p50: percentile(create, 50), p99: percentile(create, 99), max: Math.max(...create) },
    revoke_ms: { p50: percentile(revoke, 50), p99: percentile(revoke, 99), max: Math.max(...revoke) },
    all_ms: { p50: percentile(all, 50), p99: percentile(all, 99), max: Math.max(...all) } };
  log(`propagation (${label}): ${all.length} changes to ${c.dataplanes.length} dataplanes, p50 ` +
    `${entry.all_ms.p50.toFixed(1)} ms, p99 ${entry.all_ms.p99.toFixed(1)} ms, max ${entry.all_ms.max.toFixed(1)} ms`);
  return entry;
}

// Snapshot figures from the logs: control-plane build (cp.snapshot.published) and dataplane apply
// (dp.snapshot.applied), grouped by key count; the same for key deltas.
function snapshotFigures(c) {
  const cp = [...c.logText('controlplane').matchAll(/cp\.snapshot\.published .*?keys=(\d+) .*?bytes=(\d+) build_ms=([\d.]+)/g)]
    .map((m) => ({ keys: Number(m[1]), bytes: Number(m[2]), build_ms: Number(m[3]) }));
  const dp = [];
  for (const d of c.dataplanes) {
    for (const m of c.logText(d.name).matchAll(/dp\.snapshot\.applied .*?keys=(\d+) .*?build_us=(\d+)/g)) {
      dp.push({ keys: Number(m[1]), apply_ms: Number(m[2]) / 1000 });
    }
  }
  const group = (rows, f) => {
    const by = {};
    for (const r of rows) (by[r.keys >= 1000 ? `${Math.round(r.keys / 1000)}k` : 'small'] ??= []).push(f(r));
    return Object.fromEntries(Object.entries(by).map(([k, v]) => [k, { n: v.length, median: median(v), max: Math.max(...v) }]));
  };
  // key deltas: control-plane select + publish (cp.snapshot.delta_published) and dataplane apply
  // (dp.snapshot.delta_applied), grouped by the size of the key set they apply to
  const cpDelta = [...c.logText('controlplane').matchAll(/cp\.snapshot\.delta_published .*?keys=(\d+) bytes=(\d+) us=(\d+)/g)]
    .map((m) => ({ keys: Number(m[1]), bytes: Number(m[2]), ms: Number(m[3]) / 1000 }));
  const dpDelta = [];
  for (const d of c.dataplanes) {
    for (const m of c.logText(d.name).matchAll(/dp\.snapshot\.delta_applied .*?keys=(\d+) build_us=(\d+)/g)) {
      dpDelta.push({ keys: Number(m[1]), ms: Number(m[2]) / 1000 });
    }
  }
  return { cp_build_ms: group(cp, (r) => r.build_ms), cp_bytes: group(cp, (r) => r.bytes),
    dp_apply_ms: group(dp, (r) => r.apply_ms), cp_delta_ms: group(cpDelta, (r) => r.ms),
    cp_delta_bytes: group(cpDelta, (r) => r.bytes), dp_delta_apply_ms: group(dpDelta, (r) => r.ms) };
}

// Usage ingestion into PostgreSQL, from the control plane's own log: records stored and the time
// each batch transaction took. Capacity = records / busy time; also the largest batch seen.
function ingestFigures(c) {
  const rows = [...c.logText('controlplane').matchAll(/cp\.usage\.stored .*?records=(\d+) ms=([\d.]+)/g)]
    .map((m) => ({ records: Number(m[1]), ms: Number(m[2]) }));
  const records = rows.reduce((a, r) => a + r.records, 0);
  const ms = rows.reduce((a, r) => a + r.ms, 0);
  const big = rows.filter((r) => r.records >= 500);
  const bigRecords = big.reduce((a, r) => a + r.records, 0);
  const bigMs = big.reduce((a, r) => a + r.ms, 0);
  return { batches: rows.length, records, busy_ms: ms, records_per_s: ms > 0 ? (records / ms) * 1000 : null,
    batches_ge_500: big.length, records_per_s_ge_500: bigMs > 0 ? (bigRecords / bigMs) * 1000 : null,
    max_batch: Math.max(0, ...rows.map((r) => r.records)),
    per_batch_ms_p50: percentile(rows.map((r) => r.ms), 50), per_batch_ms_p99: percentile(rows.map((r) => r.ms), 99) };
}

// Rows in usage_events must end up equal to what the dataplanes served: waits (bounded) until the
// count stops moving, and reports how long the tail took after load ended.
async function usageCatchUp(c, expectAtLeast) {
  const t0 = performance.now();
  let n = 0;
  for (let i = 0; i < 300; i++) {
    n = Number((await c.sql('SELECT count(*)::bigint AS n FROM usage_events'))[0].n);
    if (n >= expectAtLeast) break;
    await sleep(100);
  }
  return { rows: n, expected_at_least: expectAtLeast, catch_up_ms: performance.now() - t0 };
}

async function probe(url, init) {
  try {
    const res = await fetch(url, { ...init, signal: AbortSignal.timeout(5000) });
    const text = await res.text();
    return { status: res.status, text };
  } catch (e) {
    return { status: 0, text: e.message };
  }
}

// Seeds `n` extra virtual keys straight into PostgreSQL (key_hash = sha256 of the plaintext, as the
// admin API stores it), in one statement; returns one plaintext to use.
async function seedKeys(c, n) {
  const t0 = performance.now();
  await c.sql(`INSERT INTO virtual_keys (tenant_id, name, key_hash, prefix)
    SELECT $1::uuid, 'bulk-' || i, sha256(convert_to('tg-bench-' || lpad(i::text, 8, '0'), 'UTF8')), 'tg-bench'
    FROM generate_series(1, $2::int) AS i`, [c.seeded.tenant.id, n]);
  const key = `tg-bench-${String(Math.ceil(n * 0.61)).padStart(8, '0')}`;
  const inserted = performance.now() - t0;
  const since = performance.now();
  const w = await c.waitKey(key, 200, { timeoutMs: 120000, intervalMs: 20 });
  log(`seeded ${n} keys in ${inserted.toFixed(0)} ms (SQL); enforced on every dataplane ${(performance.now() - since).toFixed(0)} ms later`);
  return { key, insert_ms: inserted, visible_ms: w.ms };
}

// ---------------------------------------------------------------- suites

async function mainSuite() {
  const c = await new BenchCluster({ build: BUILD, dataplanes: 2, dpEnv: DP_ENV }).start();
  results.dp_env = DP_ENV;
  try {
    await c.seed();
    results.cluster = { dataplanes: c.dataplanes.length, workers: c.workers ?? 'default (one per CPU)',
      mock_threads: c.mockThreads };
    log(`cluster up in ${c.dir}: dataplanes ${c.dataplanes.map((d) => d.url).join(', ')}, mock ${c.mockUrl}`);

    const floor = want('chat-1k') || want('open-5000') || want('stream-ttfb') || want('chat-idle');
    if (floor) await c.startNginxProxy();
    if (want('chat-1k')) {
      await closedLoopPair(c, 'chat-1k', 'non-streaming chat, 1 KB body', 'chat1k', 1, { floor });
      await closedLoopPair(c, 'chat-1k', 'non-streaming chat, 1 KB body', 'chat1k', 32, { floor });
    }
    if (want('open-5000')) {
      await openLoopPair(c, 'open-5000', `non-streaming chat, 1 KB body, ${CFG.openRps} req/s`, 'chat1k', CFG.openRps, 64,
        { floor });
    }
    if (want('chat-idle')) {
      // the same request on a machine idle between requests: what waking a sleeping process costs here,
      // for the mock alone (direct) and for every extra hop (Tollgate, the nginx proxy)
      await openLoopPair(c, 'chat-idle', 'non-streaming chat, 1 KB body, 50 req/s (idle between requests)', 'chat1k',
        50, 1, { floor });
    }
    if (want('chat-16k')) {
      await closedLoopPair(c, 'chat-16k', 'non-streaming chat, 16 KB body', 'chat16k', 1);
      await closedLoopPair(c, 'chat-16k', 'non-streaming chat, 16 KB body', 'chat16k', 32);
    }
    if (want('stream-50')) {
      await closedLoopPair(c, 'stream-50', 'streaming chat, 50 chunks', 'stream50', 1);
      await closedLoopPair(c, 'stream-50', 'streaming chat, 50 chunks', 'stream50', 32);
    }
    if (want('stream-ttfb')) {
      await openLoopPair(c, 'stream-ttfb', 'streaming chat, 50 chunks 1 ms apart: time to first byte', 'streamPaced',
        200, 32, { floor });
    }
    if (want('nginx')) {
      const canned = fs.readFileSync(path.join(HERE, 'upstream/answer.json'), 'utf8').trim();
      await c.startNginx(canned);
      await c.seedNginxRoute();
      const body = BODIES.chat1k.replace(`"model":"${MODEL}"`, '"model":"nginx-gpt"');
      const nginxDirect = { url: `${c.nginx.url}${CHAT}`, headers: { authorization: 'Bearer unused', 'content-type': 'application/json' } };
      for (const conns of [1, 32]) {
        const pids = { dataplane: c.dataplanes[0].pid, nginx: c.nginx.pid, controlplane: c.controlplane.pid, postgres: c.pgPid };
        const A = wrkVariant(c, 'nginx', nginxDirect, 'nginx1k', conns, { pids, body });
        const B = wrkVariant(c, 'tollgate', viaGateway(c), 'nginx1k', conns, { pids, body });
        await scenario({ id: 'nginx-1k', title: 'non-streaming chat, 1 KB body, nginx as the upstream',
          mode: `${conns} conn${conns > 1 ? 's' : ''}, closed loop (wrk)`, conns },
        [withWarmup(A, wrkVariant(c, 'nginx', nginxDirect, 'nginx1k', conns, { pids, body, seconds: 1 }).run),
          withWarmup(B, wrkVariant(c, 'tollgate', viaGateway(c), 'nginx1k', conns, { pids, body, seconds: 1 }).run)],
        'nginx', 'tollgate');
      }
    }
    if (want('anthropic')) {
      const spec = { id: 'anthropic', title: 'Anthropic inbound (/anthropic/v1/messages) -> OpenAI-shaped upstream, 1 KB' };
      const dp = c.dataplanes[0];
      const headers = { 'x-api-key': c.seeded.key, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' };
      const p = await probe(`${dp.url}/anthropic/v1/messages`, { method: 'POST', headers, body: BODIES.anthropic1k });
      if (p.status !== 200) {
        unavailable(spec, `probe answered ${p.status}: ${p.text.slice(0, 120)}`);
      } else {
        const target = { url: `${dp.url}/anthropic/v1/messages`, headers };
        for (const conns of [1, 32]) {
          const A = wrkVariant(c, 'direct', directMock(c), 'chat1k', conns);
          const B = wrkVariant(c, 'tollgate', target, 'anthropic1k', conns);
          await scenario({ ...spec, mode: `${conns} conn${conns > 1 ? 's' : ''}, closed loop (wrk); baseline: the ` +
            'same prompt sent OpenAI-shaped straight to the mock', conns },
          [withWarmup(A, wrkVariant(c, 'direct', directMock(c), 'chat1k', conns, { seconds: 1 }).run),
            withWarmup(B, wrkVariant(c, 'tollgate', target, 'anthropic1k', conns, { seconds: 1 }).run)],
          'direct', 'tollgate');
        }
      }
    }
    if (want('budgets')) {
      // Budgets and rate limits (issue 5): the bench key gets a budget at every level it can (key, and its
      // tenant) and a rate limit, all far above what the run spends, so every request is admitted through
      // reservation and settlement against leased allowances; measured like chat-1k.
      const spec = { id: 'budgets', title: 'non-streaming chat, 1 KB, with budgets and a rate limit on the key' };
      const tenantId = c.seeded.tenant.id;
      await c.admin('POST', '/admin/v1/budgets',
        { tenant_id: tenantId, scope: 'key', key_id: c.seeded.keyId, period: 'monthly', hard_usd: '1000000' });
      await c.admin('POST', '/admin/v1/budgets',
        { tenant_id: tenantId, scope: 'tenant', period: 'monthly', hard_usd: '1000000' });
      await c.admin('POST', '/admin/v1/rate-limits',
        { tenant_id: tenantId, scope: 'key', key_id: c.seeded.keyId, window_s: 60, requests_per_window: 1000000000 });
      await sleep(500);
      for (const conns of [1, 32]) await closedLoopPair(c, 'budgets', spec.title, 'chat1k', conns);
    }

    const ingestBefore = ingestFigures(c);
    if (want('usage')) {
      const served = Number((await c.sql('SELECT count(*)::bigint AS n FROM usage_events'))[0].n);
      results.extras.usage_catch_up = await usageCatchUp(c, served);
    }

    if (want('idle')) await idleConnections(c);
    if (want('streams')) await slowStreams(c);

    if (want('propagation')) {
      results.extras.propagation = { small: await propagation(c, 'small') };
      save();
    }

    if (want('keys-100k')) {
      const seeded = await seedKeys(c, CFG.keys);
      results.extras.keys = { n: CFG.keys, ...seeded };
      const target = { ...viaGateway(c), headers: { ...viaGateway(c).headers, authorization: `Bearer ${seeded.key}` } };
      for (const conns of [1, 32]) {
        await closedLoopPair(c, 'keys-100k', `non-streaming chat, 1 KB, ${CFG.keys} virtual keys in the snapshot`,
          'chat1k', conns, { subjectTarget: target });
      }
      if (want('propagation')) results.extras.propagation[`keys_${CFG.keys}`] = await propagation(c, `${CFG.keys} keys`);
    }
    results.extras.snapshots = snapshotFigures(c);
    results.extras.ingest = ingestFigures(c);
    results.extras.ingest_during_throughput = ingestBefore;
    for (const d of c.dataplanes) {
      results.extras[`${d.name}_final`] = { rss: rssBytes(d.pid), fds: openFds(d.pid), cpu_ns: cpuNs(d.pid) };
    }
    save();
  } finally {
    c.saveLogs(path.join(OUT, 'logs'));
    await c.stop();
  }
}

async function peersSuite() {
  const c = await new BenchCluster({ build: BUILD, dataplanes: 1, dpEnv: DP_ENV }).start();
  try {
    await c.seed();
    await c.startPortkey();
    results.peers = { portkey: '@portkey-ai/gateway 1.15.2 (@hono/node-server 1.13.5), Node ' + process.version };
    const pk = { url: `${c.portkey.url}${CHAT}`, headers: { authorization: `Bearer ${MOCK_SECRET}`,
      'content-type': 'application/json', 'x-portkey-provider': 'openai', 'x-portkey-custom-host': `${c.mockUrl}/v1` } };
    const p = await probe(pk.url, { method: 'POST', headers: pk.headers, body: BODIES.chat1k });
    if (p.status !== 200) throw new Error(`Portkey probe answered ${p.status}: ${p.text.slice(0, 200)}`);
    const pids = { dataplane: c.dataplanes[0].pid, portkey: c.portkey.pid, mock: c.mock.pid };
    const variants = (bodyKey, conns) => {
      const mk = (name, t, seconds) => wrkVariant(c, name, t, bodyKey, conns, { pids, seconds });
      return [
        withWarmup(mk('direct', directMock(c)), mk('direct', directMock(c), 1).run),
        withWarmup(mk('tollgate', viaGateway(c)), mk('tollgate', viaGateway(c), 1).run),
        withWarmup(mk('portkey', pk), mk('portkey', pk, 1).run),
      ];
    };
    for (const [bodyKey, title] of [['chat1k', 'non-streaming chat, 1 KB body'], ['stream50', 'streaming chat, 50 chunks']]) {
      for (const conns of [1, 32]) {
        const spec = { id: `peers-${bodyKey}`, title, mode: `${conns} conn${conns > 1 ? 's' : ''}, closed loop (wrk)`, conns };
        log(`scenario ${spec.id} (${spec.mode})`);
        const vs = variants(bodyKey, conns);
        for (const v of vs) await v.warm();
        const { rounds } = await abRounds(vs, CFG.rounds, { log });
        const summary = { tollgate: summarise(rounds, 'direct', 'tollgate'), portkey: summarise(rounds, 'direct', 'portkey') };
        summary.tollgate_over_portkey_rps = spread(rounds.map((r) => (r.portkey?.rps ? r.tollgate.rps / r.portkey.rps : null)));
        results.scenarios.push({ ...spec, peers: true, summary,
          rounds: rounds.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, { ...v, raw: undefined }]))) });
        log(`  => tollgate/portkey throughput ${summary.tollgate_over_portkey_rps.median?.toFixed(1)}x`);
        save();
      }
    }
    // open loop at a rate Portkey can sustain, for its latency next to ours
    const rate = env('BENCH_PEER_OPEN_RPS', 500);
    const opts = { conns: 32, rate, seconds: CFG.seconds + 1, warmup: 1, timeoutS: 10 };
    const vs = [loadgenVariant(c, 'direct', directMock(c), 'chat1k', opts, pids),
      loadgenVariant(c, 'tollgate', viaGateway(c), 'chat1k', opts, pids),
      loadgenVariant(c, 'portkey', pk, 'chat1k', opts, pids)];
    log(`scenario peers-open (${rate} req/s)`);
    const { rounds } = await abRounds(vs, CFG.rounds, { log });
    results.scenarios.push({ id: 'peers-open', title: `non-streaming chat, 1 KB, open loop ${rate} req/s`, peers: true,
      mode: `open loop ${rate} req/s over 32 conns (tg-loadgen)`,
      summary: { tollgate: summarise(rounds, 'direct', 'tollgate'), portkey: summarise(rounds, 'direct', 'portkey') },
      rounds });
    results.extras.portkey_final = { rss: rssBytes(c.portkey.pid) };
    results.extras.tollgate_final = { rss: rssBytes(c.dataplanes[0].pid) };
    save();
  } finally {
    c.saveLogs(path.join(OUT, 'logs'));
    await c.stop();
  }
}

// Soak: SOAK_RPS open loop for SOAK_MINUTES, half non-streaming, half streams (50 chunks), sampling the
// dataplane's RSS and open descriptors every 10 s. Flat means: the last fifth's median within a few
// percent of the second fifth's (the first is warm-up).
async function soakSuite() {
  const c = await new BenchCluster({ build: BUILD, dataplanes: 1 }).start();
  try {
    await c.seed();
    const dp = c.dataplanes[0];
    const seconds = Math.round(CFG.soakMinutes * 60);
    const half = CFG.soakRps / 2;
    const samples = [];
    let running = true;
    const t0 = performance.now();
    const sampler = (async () => {
      while (running) {
        samples.push({ t_s: (performance.now() - t0) / 1000, rss: rssBytes(dp.pid), fds: openFds(dp.pid) });
        const until = performance.now() + 10000;
        while (running && performance.now() < until) await sleep(200);
      }
    })();
    log(`soak: ${CFG.soakRps} req/s (half streams) for ${CFG.soakMinutes} min`);
    const target = viaGateway(c);
    const maxRequests = Math.ceil(half * (seconds + 5));
    const [json, stream] = await Promise.all([
      loadgen(c.bins.loadgen, { url: target.url, headers: target.headers, bodyFile: bodyFiles.chat1k, conns: 64,
        rate: half, seconds, warmup: 0, timeoutS: 10, maxRequests }),
      loadgen(c.bins.loadgen, { url: target.url, headers: target.headers, bodyFile: bodyFiles.stream50, conns: 64,
        rate: half, seconds, warmup: 0, timeoutS: 10, maxRequests }),
    ]);
    running = false;
    await sampler;
    samples.push({ t_s: (performance.now() - t0) / 1000, rss: rssBytes(dp.pid), fds: openFds(dp.pid) });
    const n = samples.length;
    const fifth = (k) => samples.slice(Math.floor((k * n) / 5), Math.floor(((k + 1) * n) / 5));
    const med = (xs, f) => median(xs.map(f));
    const early = fifth(1);
    const late = fifth(4);
    results.extras.soak = {
      minutes: CFG.soakMinutes, rps: CFG.soakRps, samples,
      json: { ...json }, stream: { ...stream },
      rss_mb: { early: med(early, (s) => s.rss) / 1048576, late: med(late, (s) => s.rss) / 1048576,
        max: Math.max(...samples.map((s) => s.rss)) / 1048576 },
      fds: { early: med(early, (s) => s.fds), late: med(late, (s) => s.fds), max: Math.max(...samples.map((s) => s.fds)) },
    };
    const s = results.extras.soak;
    log(`soak done: json ${fmtResult(json)}; stream ${fmtResult(stream)}; RSS ${s.rss_mb.early.toFixed(1)} -> ` +
      `${s.rss_mb.late.toFixed(1)} MB (max ${s.rss_mb.max.toFixed(1)}), fds ${s.fds.early} -> ${s.fds.late}`);
    results.extras.ingest = ingestFigures(c);
    save();
  } finally {
    c.saveLogs(path.join(OUT, 'logs'));
    await c.stop();
  }
}

log(`tollgate bench: suite ${suite}, build ${BUILD}, commit ${results.commit.slice(0, 12)}${results.dirty ? ' (dirty)' : ''}, ` +
  `${CFG.rounds} rounds x ${CFG.seconds} s; output ${OUT}`);
const t0 = performance.now();
try {
  if (suite === 'main') await mainSuite();
  else if (suite === 'peers') await peersSuite();
  else if (suite === 'soak') await soakSuite();
  else throw new Error(`unknown suite ${suite} (main, peers, soak)`);
} catch (err) {
  results.error = String(err.stack ?? err);
  save();
  log(`FAILED: ${err.stack ?? err}`);
  process.exitCode = 1;
}
results.elapsed_s = (performance.now() - t0) / 1000;
save();
log(`done in ${results.elapsed_s.toFixed(0)} s: ${path.relative(ROOT, path.join(OUT, 'results.md'))}`);
