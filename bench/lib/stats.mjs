// stats.mjs: medians and spreads over rounds, and the A/B round runner.
import { cpuOf } from './procfs.mjs';

export function median(xs) {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

// {median, min, max, n} of the finite numbers in xs.
export function spread(xs) {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x));
  if (v.length === 0) return { median: null, min: null, max: null, n: 0 };
  return { median: median(v), min: Math.min(...v), max: Math.max(...v), n: v.length };
}

export function percentile(xs, p) {
  const v = [...xs].sort((a, b) => a - b);
  if (v.length === 0) return null;
  return v[Math.min(v.length - 1, Math.max(0, Math.ceil((p / 100) * v.length) - 1))];
}

// Runs `rounds` rounds of every variant, alternating their order each round (A B, B A, A B, ...), so
// slow drift of a shared machine hits both sides alike. Each variant: {name, run: async () => result,
// pids: {role: pid}} — the CPU time of those processes over the run is added to the result as
// cpu_ns[role] and, per completed request, cpu_us_per_req[role]. Returns {rounds: [{name: result}]}.
export async function abRounds(variants, rounds, { log = () => {} } = {}) {
  const out = [];
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? variants : [...variants].reverse();
    const round = {};
    for (const v of order) {
      await v.settle?.();
      const before = cpuOf(v.pids ?? {});
      const t0 = performance.now();
      const res = await v.run();
      const wall = (performance.now() - t0) / 1000;
      const after = cpuOf(v.pids ?? {});
      res.cpu_ns = {};
      res.cpu_us_per_req = {};
      res.cpu_cores = {};
      const n = res.completed_total ?? res.completed ?? 0;
      for (const role of Object.keys(before)) {
        if (before[role] == null || after[role] == null) continue;
        const d = after[role] - before[role];
        res.cpu_ns[role] = d;
        res.cpu_cores[role] = d / 1e9 / wall;
        if (n > 0) res.cpu_us_per_req[role] = d / 1000 / n;
      }
      round[v.name] = res;
      log(`    round ${r + 1} ${v.name}: ${fmtResult(res)}`);
    }
    out.push(round);
  }
  return { rounds: out };
}

export function fmtResult(res) {
  if (res.failed) return `FAILED ${res.failed}`;
  const l = res.latency_us ?? {};
  const t = res.ttfb_us;
  const cpu = Object.entries(res.cpu_us_per_req ?? {}).map(([k, v]) => `${k} ${v.toFixed(1)} µs/req`).join(', ');
  return `${Math.round(res.rps)} req/s, p50 ${l.p50?.toFixed(1)} µs, p99 ${l.p99?.toFixed(1)} µs` +
    (t?.p50 != null ? `, ttfb p50 ${t.p50.toFixed(1)} µs` : '') + (res.non2xx ? `, non-2xx ${res.non2xx}` : '') +
    (res.errors ? `, errors ${res.errors}` : '') + (cpu ? `, ${cpu}` : '');
}
