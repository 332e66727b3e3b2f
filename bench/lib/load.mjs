// load.mjs: the load generators the benchmarks drive, each bounded in time, and their output parsed
// into one shape: {rps, completed, errors, non2xx, latency_us: {p50, p90, p99, p999?, max}, ...}.
//
//   wrk      (Debian) closed loop: throughput and latency at a fixed number of connections
//   h2load   (Debian, nghttp2-client) HTTP/2: many concurrent streams over few connections
//   tg-loadgen (bench/loadgen) open loop at a constant rate, time to first byte, held connections
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

// A load generator's command line, behind `taskset -c $BENCH_CPUS_LOAD` when that is set.
export function pinLoad(cmd, args) {
  const cpus = process.env.BENCH_CPUS_LOAD;
  return cpus ? ['taskset', ['-c', cpus, cmd, ...args]] : [cmd, args];
}

// Runs a command, bounded by timeoutMs (SIGKILL after). Resolves {code, stdout, stderr}.
// onStderrLine, if given, sees stderr line by line as it arrives.
export function run(cmd, args, { timeoutMs = 120000, onStderrLine, env } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
    let stdout = '';
    let stderr = '';
    let partial = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => {
      stderr += d;
      if (!onStderrLine) return;
      partial += d;
      let i;
      while ((i = partial.indexOf('\n')) >= 0) {
        onStderrLine(partial.slice(0, i));
        partial = partial.slice(i + 1);
      }
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (err) => { clearTimeout(timer); reject(err); });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, pid: child.pid });
    });
  });
}

// ---------------------------------------------------------------- wrk

const luaString = (s) => {
  let eq = '';
  while (s.includes(`]${eq}]`)) eq += '=';
  return `[${eq}[${s}]${eq}]`;
};

// Writes a wrk Lua script for one request shape; returns its path.
export function wrkScript(dir, name, { method = 'POST', body, headers = {} }) {
  const lines = [`wrk.method = "${method}"`];
  if (body !== undefined) lines.push(`wrk.body = ${luaString(body)}`);
  for (const [k, v] of Object.entries(headers)) lines.push(`wrk.headers[ ${luaString(k)} ] = ${luaString(v)}`);
  const file = path.join(dir, `${name}.lua`);
  fs.writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}

const toUs = (v, unit) => Number(v) * ({ us: 1, ms: 1000, s: 1e6, m: 6e7 }[unit] ?? NaN);

export function parseWrk(text) {
  const out = { tool: 'wrk', latency_us: {} };
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(text);
  out.rps = rps ? Number(rps[1]) : 0;
  const total = /(\d+) requests in ([\d.]+)(\w+)/.exec(text);
  out.completed = total ? Number(total[1]) : 0;
  const non = /Non-2xx or 3xx responses:\s+(\d+)/.exec(text);
  out.non2xx = non ? Number(non[1]) : 0;
  const se = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  out.errors = se ? se.slice(1).reduce((a, b) => a + Number(b), 0) : 0;
  for (const m of text.matchAll(/^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$/gm)) {
    out.latency_us[`p${m[1]}`] = toUs(m[2], m[3]);
  }
  const lat = /Latency\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)/.exec(text);
  if (lat) {
    out.latency_us.mean = toUs(lat[1], lat[2]);
    out.latency_us.max = toUs(lat[5], lat[6]);
  }
  return out;
}

// Closed loop with wrk: conns connections, one thread per 16 connections (at most 2).
export async function wrk({ url, script, conns, seconds, timeoutS = 10 }) {
  const threads = Math.max(1, Math.min(2, Math.ceil(conns / 16)));
  const args = ['-t', String(threads), '-c', String(conns), '-d', `${seconds}s`, '--latency', '--timeout',
    `${timeoutS}s`, '-s', script, url];
  const res = await run(...pinLoad('wrk', args), { timeoutMs: (seconds + timeoutS + 15) * 1000 });
  const parsed = parseWrk(res.stdout);
  parsed.raw = res.stdout;
  if (res.code !== 0) parsed.failed = `wrk exited ${res.code}: ${res.stderr.trim()}`;
  return parsed;
}

// ---------------------------------------------------------------- tg-loadgen

// Runs tg-loadgen. opts: url, bodyFile, headers {}, conns, rate, seconds, warmup, perConn,
// connectRate, timeoutS, maxRequests, onReady (called when every connection has its response head).
export async function loadgen(bin, opts) {
  const args = ['--url', opts.url, '--conns', String(opts.conns ?? 1), '--duration', String(opts.seconds),
    '--warmup', String(opts.warmup ?? 0), '--rate', String(opts.rate ?? 0), '--timeout', String(opts.timeoutS ?? 30)];
  if (opts.bodyFile) args.push('--body', opts.bodyFile);
  if (opts.method) args.push('--method', opts.method);
  for (const [k, v] of Object.entries(opts.headers ?? {})) args.push('-H', `${k}: ${v}`);
  if (opts.perConn) args.push('--per-conn', String(opts.perConn));
  if (opts.connectRate) args.push('--connect-rate', String(opts.connectRate));
  if (opts.maxRequests) args.push('--max-requests', String(opts.maxRequests));
  if (opts.label) args.push('--label', opts.label);
  const res = await run(...pinLoad(bin, args), {
    timeoutMs: (opts.seconds + (opts.timeoutS ?? 30) + 30) * 1000,
    onStderrLine: (line) => { if (line.startsWith('READY') && opts.onReady) opts.onReady(); },
  });
  let parsed;
  try {
    parsed = JSON.parse(res.stdout);
  } catch {
    return { tool: 'tg-loadgen', failed: `tg-loadgen exited ${res.code}: ${res.stderr.trim().slice(0, 500)}`, rps: 0,
      latency_us: {} };
  }
  parsed.tool = 'tg-loadgen';
  return parsed;
}

// ---------------------------------------------------------------- h2load

export function parseH2load(text) {
  const out = { tool: 'h2load', latency_us: {} };
  const fin = /finished in ([\d.]+)(s|ms), ([\d.]+) req\/s/.exec(text);
  out.rps = fin ? Number(fin[3]) : 0;
  const req = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/
    .exec(text);
  if (req) Object.assign(out, { completed: Number(req[3]), succeeded: Number(req[4]), errors: Number(req[5]) });
  const st = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(text);
  if (st) out.non2xx = Number(st[2]) + Number(st[3]) + Number(st[4]);
  const row = (name) => new RegExp(`${name}\\s+([\\d.]+)(us|ms|s)\\s+([\\d.]+)(us|ms|s)\\s+([\\d.]+)(us|ms|s)`).exec(text);
  const r = row('time for request:');
  if (r) out.latency_us = { min: toUs(r[1], r[2]), max: toUs(r[3], r[4]), mean: toUs(r[5], r[6]) };
  const t = row('time to 1st byte:');
  if (t) out.ttfb_us = { min: toUs(t[1], t[2]), max: toUs(t[3], t[4]), mean: toUs(t[5], t[6]) };
  return out;
}

// HTTP/2 (h2c, prior knowledge): conns connections × streams concurrent streams, n requests in all.
export async function h2load({ url, bodyFile, headers = {}, conns, streams, n, timeoutS = 120, onStart }) {
  const args = ['-c', String(conns), '-m', String(streams), '-n', String(n), '-t', '1', '-d', bodyFile,
    '-T', String(timeoutS)];
  for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`);
  args.push(url);
  const p = run(...pinLoad('h2load', args), { timeoutMs: (timeoutS + 30) * 1000 });
  if (onStart) onStart();
  const res = await p;
  const parsed = parseH2load(res.stdout);
  parsed.raw = res.stdout.slice(-2000);
  if (res.code !== 0) parsed.failed = `h2load exited ${res.code}: ${res.stderr.trim().slice(0, 300)}`;
  return parsed;
}
