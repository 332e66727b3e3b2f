// profile-cluster.mjs: starts the benchmark cluster (release build, seeded) and keeps it up for
// profiling by hand (perf, callgrind, strace), then stops it: after BENCH_HOLD_S seconds (600 by
// default) or on SIGINT/SIGTERM. Writes the addresses, pids and key to var/bench/profile.env.
//
//   node bench/profile-cluster.mjs &  . var/bench/profile.env
//   wrk -c 32 -d 10s -s "$BENCH_DIR/gw.lua" "$TG_URL/v1/chat/completions"
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
process.env.TOLLGATE_BUILD ??= path.join(ROOT, 'build-bench');
const { BenchCluster, MOCK_SECRET } = await import('./lib/cluster.mjs');
const { wrkScript } = await import('./lib/load.mjs');

const c = await new BenchCluster({ build: path.resolve(ROOT, process.env.TOLLGATE_BUILD),
  dataplanes: Number(process.env.BENCH_DATAPLANES ?? 1), workers: process.env.TOLLGATE_WORKERS }).start();
await c.seed();
const body = fs.readFileSync(path.join(ROOT, 'bench/upstream/request-1k.json'), 'utf8').trim();
const dir = path.join(ROOT, 'var/bench');
fs.mkdirSync(dir, { recursive: true });
wrkScript(dir, 'gw', { body, headers: { authorization: `Bearer ${c.seeded.key}`, 'content-type': 'application/json' } });
wrkScript(dir, 'direct', { body, headers: { authorization: `Bearer ${MOCK_SECRET}`, 'content-type': 'application/json' } });
fs.writeFileSync(path.join(dir, 'profile.env'), [
  `export BENCH_DIR=${dir}`, `export TG_URL=${c.dataplanes[0].url}`, `export TG_KEY=${c.seeded.key}`,
  `export MOCK_URL=${c.mockUrl}`, `export DP_PID=${c.dataplanes[0].pid}`, `export MOCK_PID=${c.mock.pid}`,
  `export CP_PID=${c.controlplane.pid}`, `export CLUSTER_DIR=${c.dir}`,
  `export TOLLGATE_CLUSTER_SECRET=${c.clusterSecret}`, `export TOLLGATE_CP_PUB_URL=${c.cpEnv.TOLLGATE_CP_PUB_URL}`,
  `export TOLLGATE_CP_REP_URL=${c.cpEnv.TOLLGATE_CP_REP_URL}`, ''].join('\n'));
console.log(`profile cluster up: ${c.dataplanes[0].url} (pid ${c.dataplanes[0].pid}); var/bench/profile.env`);
let done;
const stop = new Promise((resolve) => { done = resolve; });
process.once('SIGINT', done);
process.once('SIGTERM', done);
const timer = setTimeout(done, Number(process.env.BENCH_HOLD_S ?? 600) * 1000);
await stop;
clearTimeout(timer);
await c.stop();
console.log('profile cluster stopped');
