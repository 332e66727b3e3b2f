// cluster.mjs: a Tollgate cluster for the benchmarks, on free loopback ports, plus the upstreams and
// peers they measure against.
//
// Built on the end-to-end harness (tests/e2e/harness.mjs: Proc, waitHttp, freePort), so processes are
// started, logged and killed the same way, and nothing outlives the runner. Differences from the
// test cluster: release binaries (TOLLGATE_BUILD, default build-bench), known secrets for the mock, an
// nginx that serves a canned answer (the second upstream, written by no one here), an nginx reverse
// proxy in front of the mock (what one plain HTTP hop costs here), the Portkey
// gateway as a peer, optional CPU pinning per role (BENCH_CPUS_DP, _MOCK, _CP, _PG, _LOAD, _PEER: a
// taskset list such as "1" or "0-1") and niceness per role (BENCH_NICE_<ROLE>, e.g. BENCH_NICE_CP=10
// BENCH_NICE_PG=10: the control plane and PostgreSQL yield the CPU to the request path, as they would
// on machines of their own), and a PostgreSQL client for bulk seeding.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { Proc, waitHttp, freePort, randomHex, sleep, ROOT } from '../../tests/e2e/harness.mjs';

const require = createRequire(path.join(ROOT, 'tests/e2e/package.json'));
const pg = require('pg');
const PG_SH = path.join(ROOT, 'deploy/local/pg.sh');

export const MOCK_SECRET = 'sk-bench-mock';
export const MODEL = 'mock-gpt';

// taskset and nice prefixes for a role, from BENCH_CPUS_<ROLE> and BENCH_NICE_<ROLE>; none when unset.
// Both exec the command, so the pid stays the process's own.
export function pinned(role, cmd, args) {
  const r = role.toUpperCase();
  let out = [cmd, args];
  const cpus = process.env[`BENCH_CPUS_${r}`];
  if (cpus) out = ['/usr/bin/taskset', ['-c', cpus, out[0], ...out[1]]];
  const nice = process.env[`BENCH_NICE_${r}`];
  if (nice) out = ['/usr/bin/nice', ['-n', nice, out[0], ...out[1]]];
  return out;
}

const liveClusters = new Set();
process.on('exit', () => { for (const c of liveClusters) c.stopSync(); });

export class BenchCluster {
  constructor({ build, dataplanes = 2, workers, mockThreads = 1, dpEnv = {}, logLevel = 'info', migrationsDir } = {}) {
    this.build = build;
    this.migrationsDir = migrationsDir ?? path.join(ROOT, 'migrations');
    this.nDataplanes = dataplanes;
    this.workers = workers;
    this.mockThreads = mockThreads;
    this.dpEnv = dpEnv;
    this.logLevel = logLevel;
    this.dataplanes = [];
    this.extra = []; // nginx, peers
    this.bins = {
      controlplane: path.join(build, 'controlplane/tollgate-controlplane'),
      dataplane: path.join(build, 'dataplane/tollgate-dataplane'),
      mock: path.join(build, 'tests/mock/tollgate-mock-provider'),
      loadgen: path.join(build, 'bench/tg-loadgen'),
    };
  }

  proc(name, role, bin, args, env = {}) {
    const [cmd, a] = pinned(role, bin, args);
    return new Proc({ name, bin: cmd, args: a, env,
      logPath: path.join(this.logDir, `${name}.log`) });
  }

  async start() {
    for (const [k, b] of Object.entries(this.bins)) {
      if (!fs.existsSync(b)) throw new Error(`${k} not built: ${b}`);
    }
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-bench-'));
    fs.chmodSync(this.dir, 0o755);
    liveClusters.add(this);
    this.pgDir = path.join(this.dir, 'pg');
    this.logDir = path.join(this.dir, 'log');
    fs.mkdirSync(this.logDir);
    const ports = await Promise.all(Array.from({ length: 5 }, () => freePort()));
    [this.pgPort, this.adminPort, this.pubPort, this.repPort, this.mockPort] = ports;
    this.adminUrl = `http://127.0.0.1:${this.adminPort}`;
    this.mockUrl = `http://127.0.0.1:${this.mockPort}`;
    this.adminToken = `tga-${randomHex(24)}`;
    this.clusterSecret = randomHex(32);

    const [pgCmd, pgArgs] = pinned('pg', 'bash', [PG_SH, 'start', this.pgDir, String(this.pgPort)]);
    const out = execFileSync(pgCmd, pgArgs, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60000 });
    this.databaseUrl = out.trim().split('\n').pop();
    this.pgStarted = true;
    this.pgPid = Number(fs.readFileSync(path.join(this.pgDir, 'data/postmaster.pid'), 'utf8').split('\n')[0]);

    this.cpEnv = {
      DATABASE_URL: this.databaseUrl,
      TOLLGATE_ADMIN_TOKEN: this.adminToken,
      TOLLGATE_CLUSTER_SECRET: this.clusterSecret,
      TOLLGATE_MASTER_KEY: randomHex(32),
      TOLLGATE_ADMIN_LISTEN: `127.0.0.1:${this.adminPort}`,
      TOLLGATE_CP_PUB_URL: `tcp://127.0.0.1:${this.pubPort}`,
      TOLLGATE_CP_REP_URL: `tcp://127.0.0.1:${this.repPort}`,
      TOLLGATE_MIGRATIONS_DIR: this.migrationsDir,
      TOLLGATE_LOG_LEVEL: this.logLevel,
    };
    const migrate = this.proc('controlplane-migrate', 'cp', this.bins.controlplane, ['migrate'], this.cpEnv).start();
    const mig = await migrate.waitExit(60000);
    if (!mig || mig.code !== 0) throw new Error(migrate.describe('migrate failed'));
    this.controlplane = this.proc('controlplane', 'cp', this.bins.controlplane, ['serve'], this.cpEnv).start();
    this.mock = this.proc('mock', 'mock', this.bins.mock, ['--listen', `127.0.0.1:${this.mockPort}`, '--api-key',
      MOCK_SECRET, '--threads', String(this.mockThreads)]).start();
    await Promise.all([waitHttp(this.controlplane, `${this.adminUrl}/readyz`, 200),
      waitHttp(this.mock, `${this.mockUrl}/__mock/last`, 'any')]);
    for (let i = 0; i < this.nDataplanes; i++) await this.addDataplane();
    return this;
  }

  async addDataplane() {
    const i = this.dataplanes.length;
    const port = await freePort();
    const env = {
      TOLLGATE_LISTEN: `127.0.0.1:${port}`,
      TOLLGATE_CP_PUB_URL: this.cpEnv.TOLLGATE_CP_PUB_URL,
      TOLLGATE_CP_REP_URL: this.cpEnv.TOLLGATE_CP_REP_URL,
      TOLLGATE_CLUSTER_SECRET: this.clusterSecret,
      TOLLGATE_INSTANCE_ID: `bench-dp-${i}`,
      TOLLGATE_LOG_LEVEL: this.logLevel,
      ...(this.workers ? { TOLLGATE_WORKERS: String(this.workers) } : {}),
      ...this.dpEnv,
    };
    const dp = this.proc(`dataplane-${i}`, 'dp', this.bins.dataplane, [], env);
    dp.port = port;
    dp.url = `http://127.0.0.1:${port}`;
    dp.start();
    this.dataplanes.push(dp);
    await waitHttp(dp, `${dp.url}/readyz`, 200);
    return dp;
  }

  // Restarts dataplane i (SIGTERM, then the same command again) and waits until it is ready: a clean
  // heap before a memory measurement.
  async restartDataplane(i) {
    const dp = this.dataplanes[i];
    await dp.stop(40000);
    dp.start();
    await waitHttp(dp, `${dp.url}/readyz`, 200);
  }

  // An nginx from Debian under this.dir/<name>, listening on a free loopback port, with `workers`
  // processes and `httpBlock` (upstreams, locations) inside its http block; waits until it answers.
  async startNginxProc(name, role, workers, httpBlock) {
    const port = await freePort();
    const dir = path.join(this.dir, name);
    fs.mkdirSync(dir, { recursive: true });
    const conf = `worker_processes ${workers};
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 20000; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  client_body_buffer_size 64k;
${httpBlock.replaceAll('$PORT', String(port))}
}
`;
    fs.writeFileSync(path.join(dir, 'nginx.conf'), conf);
    const nginxBin = fs.existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx';
    const p = this.proc(name, role, nginxBin, ['-p', dir, '-c', path.join(dir, 'nginx.conf')]).start();
    p.port = port;
    p.url = `http://127.0.0.1:${port}`;
    this.extra.push(p);
    await waitHttp(p, `${p.url}/`, 'any');
    return p;
  }

  // nginx from Debian answering every chat request with the canned body (non-streaming).
  async startNginx(cannedBody) {
    this.nginx = await this.startNginxProc('nginx', 'mock', 1, `  server {
    listen 127.0.0.1:$PORT reuseport;
    location / {
      default_type application/json;
      return 200 '${cannedBody.replace(/'/g, "\\'")}';
    }
  }`);
    return this.nginx;
  }

  // nginx from Debian as a plain reverse proxy in front of the mock (keep-alive upstream connections,
  // no buffering, so streamed events pass as they come): the cost of one more HTTP hop on this VM,
  // measured in the same rounds as Tollgate, which has to pay at least that much. As many workers as
  // the dataplane has threads.
  async startNginxProxy() {
    this.nginxProxy = await this.startNginxProc('nginx-proxy', 'dp', this.workers ?? os.cpus().length,
      `  upstream mock { server ${new URL(this.mockUrl).host}; keepalive 256; keepalive_requests 10000000; }
  server {
    listen 127.0.0.1:$PORT reuseport;
    location / {
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }`);
    return this.nginxProxy;
  }

  // The Portkey gateway (bench/peers), kept on 127.0.0.1 by a preload that fixes the listen address.
  async startPortkey() {
    const entry = path.join(ROOT, 'bench/peers/node_modules/@portkey-ai/gateway/build/start-server.js');
    if (!fs.existsSync(entry)) throw new Error('Portkey gateway not installed (bash bench/install-deps.sh --peers)');
    const port = await freePort();
    const preload = path.join(ROOT, 'bench/peers/loopback-only.mjs');
    this.portkey = this.proc('portkey', 'peer', process.execPath, ['--import', preload, entry, `--port=${port}`,
      '--headless'], { NODE_ENV: 'production', BENCH_LISTEN_HOST: '127.0.0.1' });
    this.portkey.port = port;
    this.portkey.url = `http://127.0.0.1:${port}`;
    this.portkey.start();
    this.extra.push(this.portkey);
    await waitHttp(this.portkey, `${this.portkey.url}/`, 'any', 30000);
    return this.portkey;
  }

  // ---- admin API and SQL

  async admin(method, urlPath, body) {
    const res = await fetch(`${this.adminUrl}${urlPath}`, {
      method,
      headers: { authorization: `Bearer ${this.adminToken}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined, signal: AbortSignal.timeout(60000) });
    const text = await res.text();
    if (res.status >= 400) throw new Error(`admin ${method} ${urlPath}: ${res.status} ${text.slice(0, 300)}`);
    return text ? JSON.parse(text) : null;
  }

  async sql(query, params = []) {
    if (!this.pg) {
      this.pg = new pg.Client({ host: this.pgDir, port: this.pgPort, user: 'postgres', database: 'postgres' });
      this.pg.on('error', () => {});
      await this.pg.connect();
    }
    return (await this.pg.query(query, params)).rows;
  }

  // Tenant, provider "mock", route mock-gpt -> mock-gpt, its price, one key; waits until every
  // dataplane serves it.
  async seed() {
    const tenant = await this.admin('POST', '/admin/v1/tenants', { name: 'bench' });
    const provider = await this.admin('POST', '/admin/v1/providers',
      { name: 'mock', kind: 'openai', base_url: `${this.mockUrl}/v1`, api_keys: [{ secret: MOCK_SECRET }] });
    await this.admin('POST', '/admin/v1/routes', { name: MODEL, targets: [{ provider_id: provider.id, model: MODEL }] });
    await this.admin('PUT', '/admin/v1/prices',
      { model: MODEL, provider_id: provider.id, input_per_mtok: 2.5, output_per_mtok: 10 });
    const key = await this.admin('POST', '/admin/v1/keys', { tenant_id: tenant.id, name: 'bench' });
    this.seeded = { tenant, provider, key: key.key, keyId: key.id };
    await this.waitKey(key.key, 200);
    return this.seeded;
  }

  async seedNginxRoute() {
    const provider = await this.admin('POST', '/admin/v1/providers',
      { name: 'nginx', kind: 'openai', base_url: `${this.nginx.url}/v1`, api_keys: [{ secret: 'unused' }] });
    await this.admin('POST', '/admin/v1/routes', { name: 'nginx-gpt', targets: [{ provider_id: provider.id, model: 'nginx-gpt' }] });
    await this.waitModel(this.seeded.key, 'nginx-gpt');
  }

  // Polls GET /v1/models with `key` on every dataplane until it answers `status`. Returns the ms from
  // `since` (performance.now()) to the moment the last dataplane did, and per dataplane.
  async waitKey(key, status, { since = performance.now(), timeoutMs = 20000, intervalMs = 1 } = {}) {
    const per = await Promise.all(this.dataplanes.map(async (dp) => {
      const deadline = since + timeoutMs;
      for (let i = 0; i < timeoutMs / intervalMs + 100 && performance.now() < deadline; i++) {
        try {
          const res = await fetch(`${dp.url}/v1/models`, { headers: { authorization: `Bearer ${key}` },
            signal: AbortSignal.timeout(2000) });
          await res.arrayBuffer();
          if (res.status === status) return performance.now() - since;
        } catch { /* retry */ }
        await sleep(intervalMs);
      }
      throw new Error(`${dp.name} did not answer ${status} for a key within ${timeoutMs} ms`);
    }));
    return { ms: Math.max(...per), per };
  }

  async waitModel(key, model, timeoutMs = 10000) {
    for (const dp of this.dataplanes) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const res = await fetch(`${dp.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } });
        const body = await res.json().catch(() => null);
        if (body?.data?.some((m) => m.id === model)) break;
        if (Date.now() > deadline) throw new Error(`${dp.name} does not list ${model}`);
        await sleep(20);
      }
    }
  }

  logText(name) {
    try {
      return fs.readFileSync(path.join(this.logDir, `${name}.log`), 'utf8');
    } catch {
      return '';
    }
  }

  // Copies every log into `dest` (the run's folder), so a run can be inspected afterwards.
  saveLogs(dest) {
    fs.mkdirSync(dest, { recursive: true });
    for (const f of fs.readdirSync(this.logDir)) fs.copyFileSync(path.join(this.logDir, f), path.join(dest, f));
  }

  async stop() {
    if (this.stopped) return;
    this.stopped = true;
    const procs = [...this.dataplanes, ...this.extra, this.mock, this.controlplane].filter(Boolean);
    await Promise.all(procs.map((p) => p.stop(5000).catch(() => p.kill())));
    if (this.pg) await this.pg.end().catch(() => {});
    this.stopSync();
    liveClusters.delete(this);
  }

  stopSync() {
    for (const p of [...this.dataplanes, ...this.extra, this.mock, this.controlplane].filter(Boolean)) {
      if (p.alive) try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
    }
    if (this.pgStarted) {
      try {
        execFileSync('bash', [PG_SH, 'stop', this.pgDir, 'immediate'], { stdio: 'ignore', timeout: 30000 });
      } catch { /* best effort */ }
      this.pgStarted = false;
    }
    if (this.dir && fs.existsSync(this.dir) && process.env.BENCH_KEEP !== '1') {
      fs.rmSync(this.dir, { recursive: true, force: true });
    }
  }
}
