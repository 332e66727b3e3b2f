// usage_report.mjs: loads USAGE_ROWS (default 10,000,000) synthetic usage rows into a throwaway
// cluster's usage_events with generate_series (60 days, 2 tenants, 10 teams, 100 keys, 2 providers,
// 4 models), builds the hourly rollups from them (tollgate_rollup_rebuild, the same SQL the migration
// uses), then times GET /admin/v1/usage/report through the real admin API: ROUNDS calls per shape,
// median and min-max. Not a test: `node bench/usage_report.mjs` after `make build` (TOLLGATE_BUILD to
// pick the build). Prints a JSON summary; docs/performance.md records the figures.
import { startCluster } from '../tests/e2e/harness.mjs';

const ROWS = Number(process.env.USAGE_ROWS ?? 10_000_000);
const ROUNDS = Number(process.env.ROUNDS ?? 7);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const c = await startCluster({ dataplanes: 0, label: 'bench-usage' });
try {
  const t0 = Date.now();
  await c.sql(`INSERT INTO usage_events (ts, request_id, instance_id, tenant_id, team_id, key_id, model,
      provider_id, upstream_model, input_tokens, output_tokens, cached_input_tokens, cost_nanousd, status,
      stream, latency_ms, endpoint)
    SELECT now() - (g % 5184000) * interval '1 second', 'bench-' || g, 'bench',
      ('00000000-0000-4000-8000-00000000000' || (g % 2))::uuid,
      ('00000000-0000-4000-8000-0000000001' || lpad((g % 10)::text, 2, '0'))::uuid,
      ('00000000-0000-4000-8000-000000002' || lpad((g % 100)::text, 3, '0'))::uuid,
      'model-' || (g % 4), ('00000000-0000-4000-8000-00000000030' || (g % 2))::uuid, 'up-' || (g % 4),
      100 + g % 900, 10 + g % 300, g % 50, 1000 * (g % 5000), CASE WHEN g % 97 = 0 THEN 500 ELSE 200 END,
      g % 3 = 0, 50 + (g * 7919) % 5000, '/v1/chat/completions'
    FROM generate_series(1, $1::bigint) g`, [ROWS]);
  const loadMs = Date.now() - t0;
  const t1 = Date.now();
  const [{ n }] = await c.sql(`SELECT tollgate_rollup_rebuild('-infinity', 'infinity') AS n`);
  const rollupMs = Date.now() - t1;
  await c.sql('ANALYZE usage_rollups_hourly');
  const tenant = '00000000-0000-4000-8000-000000000001';
  const shapes = {
    'all tenants, 60 days, by month': '/admin/v1/usage/report?from=-infinity&granularity=month&group_by=tenant',
    'one tenant, 30 days, by day x team x model': `/admin/v1/usage/report?tenant_id=${tenant}&granularity=day&group_by=team,model`,
    'one tenant, 30 days, by key (CSV)': `/admin/v1/usage/report?tenant_id=${tenant}&granularity=month&group_by=key&format=csv`,
    'one tenant, 1 day, by hour x key': `/admin/v1/usage/report?tenant_id=${tenant}&from=${new Date(Date.now() - 86400e3).toISOString()}&granularity=hour&group_by=key`,
  };
  const results = {};
  for (const [name, path] of Object.entries(shapes)) {
    const times = [];
    let rows = 0;
    for (let i = 0; i < ROUNDS; i++) {
      const s = process.hrtime.bigint();
      const res = await fetch(`${c.adminUrl}${path}`, { headers: { authorization: `Bearer ${c.adminToken}` } });
      const text = await res.text();
      times.push(Number(process.hrtime.bigint() - s) / 1e6);
      if (res.status !== 200) throw new Error(`${path}: ${res.status} ${text.slice(0, 200)}`);
      rows = path.includes('csv') ? text.trim().split('\n').length - 1 : JSON.parse(text).data.length;
    }
    results[name] = { median_ms: +median(times).toFixed(1), min_ms: +Math.min(...times).toFixed(1),
      max_ms: +Math.max(...times).toFixed(1), rows };
  }
  const [{ requests }] = await c.sql('SELECT sum(requests)::bigint AS requests FROM usage_rollups_hourly');
  console.log(JSON.stringify({ usage_rows: ROWS, rollup_rows: Number(n), rollup_requests: Number(requests),
    load_ms: loadMs, rollup_build_ms: rollupMs, report: results }, null, 2));
} finally {
  await c.stop();
}
