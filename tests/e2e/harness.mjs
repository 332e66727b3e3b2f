// harness.mjs: starts and drives a real Tollgate cluster for the end-to-end tests.
//
// A cluster is: a throwaway PostgreSQL (deploy/local/pg.sh in a temp dir), the control plane
// (`migrate`, then `serve`), the mock provider and N dataplanes, all on free loopback ports, each
// process's stdout/stderr captured to a log file in the temp dir. Tests get handles to stop (SIGTERM),
// kill (SIGKILL) and restart any one process, an admin client, a SQL helper and a seed helper.
//
// Invariants: every wait is bounded in time and in iterations, and a timeout error names the process
// and carries the tail of its log; only 127.0.0.1 is used; whatever happens (a failing test, an
// exception in `before`, the runner exiting), every process we started is killed and the temp dir is
// removed (set TOLLGATE_E2E_KEEP=1 to keep the dir and its logs).
import assert from 'node:assert/strict';
import { spawn, execFile, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BUILD = path.resolve(ROOT, process.env.TOLLGATE_BUILD ?? 'build');
export const BINS = {
  controlplane: path.join(BUILD, 'controlplane/tollgate-controlplane'),
  dataplane: path.join(BUILD, 'dataplane/tollgate-dataplane'),
  mock: path.join(BUILD, 'tests/mock/tollgate-mock-provider'),
};
const PG_SH = path.join(ROOT, 'deploy/local/pg.sh');
const KEEP = process.env.TOLLGATE_E2E_KEEP === '1';

// The public model names the seed creates, and the upstream names they map to (deliberately
// different, so a test can see the gateway rewrite `model`).
export const MODEL = 'mock-gpt';
export const UPSTREAM_MODEL = 'mock-gpt-upstream';
export const OTHER_MODEL = 'mock-other';
export const OTHER_UPSTREAM_MODEL = 'mock-other-upstream';
// USD per million tokens for UPSTREAM_MODEL, and the same in micro-USD per Mtok (the billing unit).
export const PRICE = { input_per_mtok: 2.5, output_per_mtok: 10, cached_input_per_mtok: 1.25 };
export const PRICE_MICRO = { input: 2500000n, output: 10000000n, cached: 1250000n };

// ---------------------------------------------------------------- small helpers

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
// Resolves with null after ms without keeping the process alive (for races against an exit).
const expiry = (ms) => new Promise((resolve) => setTimeout(resolve, ms, null).unref());
export const randomHex = (bytes) => crypto.randomBytes(bytes).toString('hex');

// Polls fn (sync or async) every intervalMs until it returns a truthy value, which is returned.
// Throws after timeoutMs, with the last value or error in the message. Bounded in time and count.
export async function waitFor(fn, timeoutMs = 5000, { intervalMs = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  const maxIterations = Math.ceil(timeoutMs / intervalMs) + 10;
  let last;
  let lastErr;
  for (let i = 0; i < maxIterations; i++) {
    try {
      last = await fn();
      lastErr = undefined;
      if (last) return last;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() >= deadline) break;
    await sleep(intervalMs);
  }
  const detail = lastErr ? `last error: ${lastErr.message}` : `last value: ${JSON.stringify(last)}`;
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (${detail})`);
}

// The mock's token accounting (tests/mock/README.md): 4 + ceil(bytes/4) per message.
export function promptTokens(messages) {
  let n = 0;
  for (const m of messages) {
    const text =
      typeof m.content === 'string'
        ? m.content
        : (m.content ?? []).filter((p) => p.type === 'text').map((p) => p.text).join('');
    n += 4 + Math.ceil(Buffer.byteLength(text, 'utf8') / 4);
  }
  return n;
}

// The mock's reply text for n tokens: token i is WORDS[i % 16].
const MOCK_WORDS = ['Hello', ' from', ' the', ' mock', ' provider', '.', ' This', ' reply', ' is',
  ' deterministic', ' for', ' gateway', ' tests', ' and', ' benchmarks', '.'];
// The mock's embedding of a text, the same in every wire format (tests/mock/README.md): FNV-1a 32 of
// the UTF-8 bytes, value j = ((h + j * 40503) mod 2^32 mod 2049 - 1024) / 1024.
export function mockVector(text, dims = 8) {
  let h = 2166136261;
  for (const b of Buffer.from(text, 'utf8')) h = Math.imul((h ^ b) >>> 0, 16777619) >>> 0;
  return Array.from({ length: dims }, (_, j) => ((((h + j * 40503) >>> 0) % 2049) - 1024) / 1024);
}

export function mockText(n = 16) {
  let s = '';
  for (let i = 0; i < n; i++) s += MOCK_WORDS[i % 16];
  return s;
}

// Cost in nano-USD: (uncached × in + cached × cached_price + output × out) / 1000, truncated once.
export function expectedCost({ input, cached = 0, output }, price = PRICE_MICRO) {
  const uncached = BigInt(input - cached);
  return (uncached * price.input + BigInt(cached) * price.cached + BigInt(output) * price.output) / 1000n;
}

// Reads an SSE response to its end. Never throws: a transport error ends the read and is returned.
// events: the `data:` payloads in order (strings); done: whether `data: [DONE]` arrived.
export async function readSSE(res, { onEvent } = {}) {
  const events = [];
  let done = false;
  let error = null;
  let buf = '';
  const decoder = new TextDecoder();
  const flush = (block) => {
    const data = block
      .split(/\r\n|\r|\n/)
      .filter((l) => l.startsWith('data:'))
      .map((l) => l.slice(5).replace(/^ /, ''))
      .join('\n');
    if (data === '') return;
    if (data === '[DONE]') done = true;
    else {
      events.push(data);
      onEvent?.(data, events.length);
    }
  };
  try {
    for await (const chunk of res.body) {
      buf += decoder.decode(chunk, { stream: true });
      let m;
      while ((m = /\r\n\r\n|\n\n|\r\r/.exec(buf))) {
        flush(buf.slice(0, m.index));
        buf = buf.slice(m.index + m[0].length);
      }
    }
    if (buf.trim() !== '') flush(buf);
  } catch (err) {
    error = err;
  }
  return { events, json: events.map((e) => { try { return JSON.parse(e); } catch { return null; } }), done, error };
}

// Header lookup in the mock's recorded request (`/__mock/last` reports an object of lower-case names).
export function headerValue(headers, name) {
  if (!headers) return undefined;
  const want = name.toLowerCase();
  for (const [k, v] of Object.entries(headers)) if (k.toLowerCase() === want) return v;
  return undefined;
}

// ---------------------------------------------------------------- /metrics

// Parses Prometheus text 0.0.4 strictly enough to fail on a malformed line. Returns
// {samples: [{name, labels, value}], types: {name: type}}.
export function parseProm(text) {
  const samples = [];
  const types = {};
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('# TYPE ')) {
      const [, , name, type] = line.split(' ');
      types[name] = type;
      continue;
    }
    if (line.startsWith('# HELP ')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `malformed exposition line: ${line}`);
    const labels = {};
    if (m[3]) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/g;
      let lm;
      let consumed = 0;
      while ((lm = re.exec(m[3]))) {
        labels[lm[1]] = lm[2].replace(/\\(.)/g, (_, ch) => (ch === 'n' ? '\n' : ch));
        consumed += lm[0].length;
      }
      assert.equal(consumed, m[3].length, `malformed labels: ${line}`);
    }
    const value = m[4] === '+Inf' ? Infinity : Number(m[4]);
    assert.ok(!Number.isNaN(value), `bad value: ${line}`);
    samples.push({ name: m[1], labels, value });
  }
  return { samples, types };
}

// GET {url}/metrics (a dataplane or the control plane), parsed; the ops token when one is set.
export async function scrape(url, { token } = {}) {
  const res = await fetch(`${url}/metrics`, {
    headers: token ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(5000) });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  assert.match(res.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
  return parseProm(text);
}

// Sum of the samples named `name` whose labels include `want`.
export function metricSum(prom, name, want = {}) {
  return prom.samples
    .filter((s) => s.name === name && Object.entries(want).every(([k, v]) => s.labels[k] === v))
    .reduce((a, s) => a + s.value, 0);
}

// ---------------------------------------------------------------- ports

const takenPorts = new Set();

function canListen(port) {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

// A free loopback port below Linux's ephemeral range (32768+), so outgoing connections cannot take it.
export async function freePort() {
  for (let i = 0; i < 200; i++) {
    const port = 20000 + crypto.randomInt(12000);
    if (takenPorts.has(port)) continue;
    if (await canListen(port)) {
      takenPorts.add(port);
      return port;
    }
  }
  throw new Error('no free loopback port found after 200 tries');
}

// ---------------------------------------------------------------- processes

// The environment our processes start from: the runner's, minus anything Tollgate reads, so a
// developer's shell settings cannot leak into a test.
function baseEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('TOLLGATE_') || k === 'DATABASE_URL' || k.startsWith('PG')) continue;
    env[k] = v;
  }
  return env;
}

const liveProcs = new Set();

export class Proc {
  constructor({ name, bin, args = [], env = {}, logPath }) {
    Object.assign(this, { name, bin, args, env, logPath });
    this.child = null;
    this.exitInfo = null; // {code, signal} once exited
    this.expectExit = false; // set when we stop or kill it on purpose
  }

  start() {
    if (this.alive) throw new Error(`${this.name} is already running`);
    if (!fs.existsSync(this.bin)) throw new Error(`${this.name}: binary not found: ${this.bin}`);
    const fd = fs.openSync(this.logPath, 'a');
    fs.writeSync(fd, `--- ${new Date().toISOString()} start: ${this.bin} ${this.args.join(' ')}\n`);
    this.exitInfo = null;
    this.expectExit = false;
    const child = spawn(this.bin, this.args, { env: { ...baseEnv(), ...this.env }, stdio: ['ignore', fd, fd] });
    fs.closeSync(fd);
    this.child = child;
    liveProcs.add(this);
    this.exited = new Promise((resolve) => {
      const finish = (info) => {
        if (this.child !== child || this.exitInfo) return;
        this.exitInfo = info;
        liveProcs.delete(this);
        resolve(info);
      };
      child.once('exit', (code, signal) => finish({ code, signal }));
      child.once('error', (err) => finish({ code: null, signal: null, error: err }));
    });
    return this;
  }

  get pid() {
    return this.child?.pid;
  }

  get alive() {
    return this.child !== null && this.exitInfo === null;
  }

  // Sends SIGTERM and waits for the exit (SIGKILL after timeoutMs). Returns {code, signal, forced}.
  async stop(timeoutMs = 15000) {
    if (!this.alive) return { ...this.exitInfo, forced: false };
    this.expectExit = true;
    this.child.kill('SIGTERM');
    const info = await Promise.race([this.exited, expiry(timeoutMs)]);
    if (info) return { ...info, forced: false };
    this.child.kill('SIGKILL');
    return { ...(await this.exited), forced: true };
  }

  async kill() {
    if (!this.alive) return this.exitInfo;
    this.expectExit = true;
    this.child.kill('SIGKILL');
    return this.exited;
  }

  // Resolves with the exit info once the process exits, or null after timeoutMs.
  async waitExit(timeoutMs = 15000) {
    if (!this.alive) return this.exitInfo;
    return Promise.race([this.exited, expiry(timeoutMs)]);
  }

  logTail(lines = 40) {
    try {
      const text = fs.readFileSync(this.logPath, 'utf8');
      return text.split('\n').slice(-lines - 1).join('\n');
    } catch {
      return '(no log)';
    }
  }

  describe(why) {
    const state = this.alive ? 'running' : `exited ${JSON.stringify(this.exitInfo)}`;
    return `${this.name}: ${why} [${state}]\n---- last lines of ${this.logPath} ----\n${this.logTail()}\n----`;
  }
}

// Polls url until it answers `want` (a status, or 'any' for any HTTP answer). Fails early, with the
// log tail, if the process exits.
export async function waitHttp(proc, url, want = 200, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  for (let i = 0; i < Math.ceil(timeoutMs / 50) + 10 && Date.now() < deadline; i++) {
    if (!proc.alive) throw new Error(proc.describe(`exited while waiting for ${url}`));
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (want === 'any' || res.status === want) return;
      last = `status ${res.status}`;
    } catch (err) {
      last = err.cause?.code ?? err.message;
    }
    await sleep(50);
  }
  throw new Error(proc.describe(`${url} not ${want} after ${timeoutMs} ms (last: ${last})`));
}

// ---------------------------------------------------------------- cluster

const clusters = new Set();

export class Cluster {
  constructor({ dataplanes = 2, dpEnv = {}, cpEnv = {}, label = 'e2e', mockThreads = 1 } = {}) {
    this.nDataplanes = dataplanes;
    this.mockThreads = mockThreads;
    this.dpEnv = dpEnv;
    this.extraCpEnv = cpEnv; // e.g. TOLLGATE_TEST_HOOKS, lease settings
    this.label = label;
    this.dataplanes = [];
    this.stopped = false;
    this.seeded = null;
  }

  async start() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), `tollgate-${this.label}-`));
    fs.chmodSync(this.dir, 0o755); // the postgres user must traverse it
    this.pgDir = path.join(this.dir, 'pg');
    this.logDir = path.join(this.dir, 'log');
    fs.mkdirSync(this.logDir);

    const [pgPort, adminPort, pubPort, repPort, mockPort] = await Promise.all(
      Array.from({ length: 5 }, () => freePort()));
    Object.assign(this, { pgPort, adminPort, pubPort, repPort, mockPort });
    this.adminUrl = `http://127.0.0.1:${adminPort}`;
    this.mockUrl = `http://127.0.0.1:${mockPort}`;
    this.adminToken = `tga-${randomHex(24)}`;
    this.clusterSecret = randomHex(32);
    this.masterKey = randomHex(32);
    this.mockSecret = `sk-mock-${randomHex(12)}`;

    // PostgreSQL
    try {
      const out = execFileSync('bash', [PG_SH, 'start', this.pgDir, String(pgPort)], {
        encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60000 });
      this.databaseUrl = out.trim().split('\n').pop();
      this.pgStarted = true;
    } catch (err) {
      throw new Error(`PostgreSQL did not start: ${err.stderr ?? err.message}`);
    }

    this.cpEnv = {
      DATABASE_URL: this.databaseUrl,
      TOLLGATE_ADMIN_TOKEN: this.adminToken,
      TOLLGATE_CLUSTER_SECRET: this.clusterSecret,
      TOLLGATE_MASTER_KEY: this.masterKey,
      TOLLGATE_ADMIN_LISTEN: `127.0.0.1:${adminPort}`,
      TOLLGATE_CP_PUB_URL: `tcp://127.0.0.1:${pubPort}`,
      TOLLGATE_CP_REP_URL: `tcp://127.0.0.1:${repPort}`,
      TOLLGATE_MIGRATIONS_DIR: path.join(ROOT, 'migrations'),
      ...this.extraCpEnv,
    };

    // Control plane: migrate, then serve.
    const migrate = new Proc({ name: 'controlplane-migrate', bin: BINS.controlplane, args: ['migrate'],
      env: this.cpEnv, logPath: path.join(this.logDir, 'controlplane.log') }).start();
    const mig = await migrate.waitExit(60000);
    if (!mig || mig.code !== 0) {
      await migrate.kill();
      throw new Error(migrate.describe('`tollgate-controlplane migrate` failed'));
    }
    this.controlplane = new Proc({ name: 'controlplane', bin: BINS.controlplane, args: ['serve'],
      env: this.cpEnv, logPath: path.join(this.logDir, 'controlplane.log') });
    // Mock provider.
    this.mock = new Proc({ name: 'mock', bin: BINS.mock,
      args: ['--listen', `127.0.0.1:${mockPort}`, '--api-key', this.mockSecret, '--threads', String(this.mockThreads)],
      logPath: path.join(this.logDir, 'mock.log') });
    this.controlplane.start();
    this.mock.start();
    await Promise.all([this.waitControlPlane(), waitHttp(this.mock, `${this.mockUrl}/__mock/last`, 'any')]);

    // Dataplanes.
    for (let i = 0; i < this.nDataplanes; i++) {
      const port = await freePort();
      const dp = new Proc({ name: `dataplane-${i}`, bin: BINS.dataplane,
        env: {
          TOLLGATE_LISTEN: `127.0.0.1:${port}`,
          TOLLGATE_WORKERS: '2',
          TOLLGATE_CP_PUB_URL: this.cpEnv.TOLLGATE_CP_PUB_URL,
          TOLLGATE_CP_REP_URL: this.cpEnv.TOLLGATE_CP_REP_URL,
          TOLLGATE_CLUSTER_SECRET: this.clusterSecret,
          TOLLGATE_INSTANCE_ID: `${this.label}-dp-${i}-${randomHex(3)}`,
          // Circuit breakers only where a provider's settings ask for them: suites that inject failures
          // on purpose must not open breakers for the tests after them. reliability.test.mjs turns the
          // production defaults back on.
          TOLLGATE_BREAKER_DEFAULTS: 'off',
          // dpEnv may be a function of the cluster, for values known only once it started (its ports).
          ...(typeof this.dpEnv === 'function' ? this.dpEnv(this) : this.dpEnv),
        },
        logPath: path.join(this.logDir, `dataplane-${i}.log`) });
      dp.port = port;
      dp.url = `http://127.0.0.1:${port}`;
      this.dataplanes.push(dp.start());
    }
    await Promise.all(this.dataplanes.map((dp) => waitHttp(dp, `${dp.url}/readyz`, 200)));
    return this;
  }

  get procs() {
    return [this.controlplane, this.mock, ...this.dataplanes].filter(Boolean);
  }

  async waitControlPlane(timeoutMs = 20000) {
    await waitHttp(this.controlplane, `${this.adminUrl}/readyz`, 200, timeoutMs);
  }

  // Starts the control plane again (serve only; the schema is already there) and waits for /readyz.
  async startControlPlane({ wait = true } = {}) {
    this.controlplane.start();
    if (wait) await this.waitControlPlane();
  }

  // Stops PostgreSQL (mode: 'fast' closes the sessions cleanly, 'immediate' is a crash as the clients see
  // it) and starts it again on the same port and data dir, without blocking the event loop, so traffic
  // driven by the test keeps flowing. startPostgres() waits until it accepts connections.
  async stopPostgres(mode = 'fast') {
    if (this.pg) {
      const client = this.pg;
      this.pg = null;
      await client.end().catch(() => {});
    }
    await runPgSh(['stop', this.pgDir, mode]);
    this.pgStarted = false;
  }

  async startPostgres() {
    await runPgSh(['start', this.pgDir, String(this.pgPort)]);
    this.pgStarted = true;
  }

  async restartDataplane(i) {
    const dp = this.dataplanes[i];
    await dp.stop();
    dp.start();
    await waitHttp(dp, `${dp.url}/readyz`, 200);
  }

  // ---- admin API

  // Returns {status, body, headers}; body is parsed JSON when possible, else the text.
  async admin(method, urlPath, body, { token = this.adminToken } = {}) {
    const headers = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(`${this.adminUrl}${urlPath}`, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(10000) });
    const text = await res.text();
    let parsed = text;
    try { parsed = text === '' ? null : JSON.parse(text); } catch { /* keep the text */ }
    return { status: res.status, body: parsed, headers: res.headers };
  }

  // Like admin(), but throws unless the status is `expect`; returns the body.
  async adminOk(method, urlPath, body, expect) {
    const res = await this.admin(method, urlPath, body);
    const want = expect ?? (method === 'POST' ? 201 : 200);
    if (res.status !== want) {
      throw new Error(`admin ${method} ${urlPath} answered ${res.status} (wanted ${want}): ` +
        `${JSON.stringify(res.body)}\n${this.controlplane.describe('admin call failed')}`);
    }
    return res.body;
  }

  // ---- gateway

  // POSTs a chat completion to dataplane i (or a URL). Returns {status, body, headers, text}.
  async chat(dp, key, body, { headers = {}, raw } = {}) {
    const url = typeof dp === 'number' ? this.dataplanes[dp].url : dp;
    const h = { 'content-type': 'application/json', ...headers };
    if (key) h.authorization = `Bearer ${key}`;
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST', headers: h, body: raw ?? JSON.stringify(body), signal: AbortSignal.timeout(30000) });
    const text = await res.text();
    let parsed = null;
    try { parsed = JSON.parse(text); } catch { /* not JSON */ }
    return { status: res.status, body: parsed, text, headers: res.headers };
  }

  // ---- PostgreSQL

  async sql(query, params = []) {
    if (!this.pg) {
      const client = new pg.Client({ host: this.pgDir, port: this.pgPort, user: 'postgres', database: 'postgres' });
      // A server stopped or restarted under us must not crash the runner; the next call reconnects.
      const forget = () => { if (this.pg === client) this.pg = null; };
      client.on('error', forget);
      client.on('end', forget);
      await client.connect();
      this.pg = client;
    }
    return (await this.pg.query(query, params)).rows;
  }

  // Usage rows (from usage_events) for the given request ids, oldest first.
  async usageRows(requestIds) {
    return this.sql(
      `SELECT request_id, instance_id, tenant_id::text, key_id::text, model, upstream_model,
              input_tokens::int, output_tokens::int, cached_input_tokens::int,
              cost_nanousd::text AS cost_nanousd, status, stream, endpoint
         FROM usage_events WHERE request_id = ANY($1::text[]) ORDER BY id`,
      [requestIds]);
  }

  // Waits until every id has at least one usage row; returns all rows for them.
  async waitUsage(requestIds, timeoutMs = 10000) {
    let rows = [];
    try {
      await waitFor(async () => {
        rows = await this.usageRows(requestIds);
        return new Set(rows.map((r) => r.request_id)).size >= requestIds.length;
      }, timeoutMs, { intervalMs: 100, what: `${requestIds.length} usage rows` });
    } catch (err) {
      const have = new Set(rows.map((r) => r.request_id));
      const missing = requestIds.filter((id) => !have.has(id));
      throw new Error(`${err.message}; ${missing.length} missing, e.g. ${missing.slice(0, 3).join(', ')}`);
    }
    return rows;
  }

  // ---- seeding

  async createTenant(name = `tenant-${randomHex(4)}`) {
    return this.adminOk('POST', '/admin/v1/tenants', { name });
  }

  // Creates a key and waits until every running dataplane accepts it.
  async createKey(tenantId, { allowedModels, name = `key-${randomHex(4)}` } = {}) {
    const body = { tenant_id: tenantId, name };
    if (allowedModels) body.allowed_models = allowedModels;
    const key = await this.adminOk('POST', '/admin/v1/keys', body);
    await this.waitKeyUsable(key.key);
    return key;
  }

  async waitKeyUsable(key, timeoutMs = 5000) {
    for (const dp of this.dataplanes.filter((d) => d.alive)) {
      await waitFor(async () => {
        const res = await fetch(`${dp.url}/v1/models`, { headers: { authorization: `Bearer ${key}` },
          signal: AbortSignal.timeout(2000) });
        await res.arrayBuffer();
        return res.status === 200;
      }, timeoutMs, { what: `${dp.name} to accept a new key` });
    }
  }

  // Waits until the models a key sees on every dataplane include `model`.
  async waitModelVisible(key, model, timeoutMs = 5000) {
    for (const dp of this.dataplanes.filter((d) => d.alive)) {
      await waitFor(async () => {
        const res = await fetch(`${dp.url}/v1/models`, { headers: { authorization: `Bearer ${key}` },
          signal: AbortSignal.timeout(2000) });
        const body = await res.json().catch(() => null);
        return res.status === 200 && body?.data?.some((m) => m.id === model);
      }, timeoutMs, { what: `${dp.name} to list model ${model}` });
    }
  }

  async createProvider(name, baseUrl, secret = this.mockSecret) {
    return this.adminOk('POST', '/admin/v1/providers',
      { name, kind: 'openai', base_url: baseUrl, api_keys: [{ secret }] });
  }

  async createRoute(name, providerId, upstreamModel) {
    return this.adminOk('POST', '/admin/v1/routes', { name, targets: [{ provider_id: providerId, model: upstreamModel }] });
  }

  // Tenant, provider "mock", routes MODEL → UPSTREAM_MODEL and OTHER_MODEL → OTHER_UPSTREAM_MODEL,
  // PRICE for UPSTREAM_MODEL, and an unrestricted key; waits until both dataplanes serve them.
  // Idempotent per cluster.
  async seed() {
    if (this.seeded) return this.seeded;
    const tenant = await this.createTenant(`${this.label}-tenant`);
    const provider = await this.createProvider('mock', `${this.mockUrl}/v1`);
    const route = await this.createRoute(MODEL, provider.id, UPSTREAM_MODEL);
    const otherRoute = await this.createRoute(OTHER_MODEL, provider.id, OTHER_UPSTREAM_MODEL);
    await this.adminOk('PUT', '/admin/v1/prices', { model: UPSTREAM_MODEL, provider_id: provider.id, ...PRICE });
    const key = await this.createKey(tenant.id, { name: 'e2e' });
    await this.waitModelVisible(key.key, MODEL);
    await this.waitModelVisible(key.key, OTHER_MODEL);
    this.seeded = { tenant, provider, route, otherRoute, key };
    return this.seeded;
  }

  // ---- teardown

  // Kills everything, stops PostgreSQL and removes the temp dir. Prints the log tail of any process
  // that died without being asked to. Idempotent.
  async stop() {
    if (this.stopped) return;
    this.stopped = true;
    clusters.delete(this);
    for (const p of this.procs) {
      if (p.exitInfo && !p.expectExit) process.stderr.write(`${p.describe('died unexpectedly')}\n`);
    }
    await Promise.all(this.procs.map((p) => p.kill()));
    if (this.pg) await this.pg.end().catch(() => {});
    this.stopSync();
  }

  // The synchronous part of teardown, also used from the process 'exit' handler.
  stopSync() {
    for (const p of this.procs) {
      if (p.alive) try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
    }
    if (this.pgStarted) {
      try {
        execFileSync('bash', [PG_SH, 'stop', this.pgDir, 'immediate'], { stdio: 'ignore', timeout: 30000 });
      } catch { /* best effort */ }
      this.pgStarted = false;
    }
    if (this.dir && fs.existsSync(this.dir)) {
      if (KEEP) process.stderr.write(`harness: kept ${this.dir}\n`);
      else fs.rmSync(this.dir, { recursive: true, force: true });
    }
  }
}

// deploy/local/pg.sh, asynchronously; rejects with its stderr.
function runPgSh(args) {
  return new Promise((resolve, reject) => {
    execFile('bash', [PG_SH, ...args], { encoding: 'utf8', timeout: 60000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`pg.sh ${args[0]} failed: ${stderr || err.message}`));
      else resolve(stdout);
    });
  });
}

// Starts a cluster; if any part fails to start, everything already started is torn down first.
export async function startCluster(opts) {
  const missing = Object.values(BINS).filter((b) => !fs.existsSync(b));
  if (missing.length) throw new Error(`binaries not built: ${missing.join(', ')} (TOLLGATE_BUILD=${BUILD})`);
  const cluster = new Cluster(opts);
  clusters.add(cluster);
  try {
    await cluster.start();
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}

process.on('exit', () => {
  for (const c of clusters) c.stopSync();
  for (const p of liveProcs) try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => process.exit(128 + os.constants.signals[sig]));
}
