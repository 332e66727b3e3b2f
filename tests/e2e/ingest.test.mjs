// ingest.test.mjs: the usage ingest path groups each batch in C (rollups per hour, tenant, team, key,
// provider and model; settlement per key, model and start second) before PostgreSQL sees it. Grouping
// must change nothing: after batches that straddle a UTC hour boundary (rollup rows split) and an
// hour boundary of a tenant in Asia/Kathmandu (UTC+05:45, so its hourly budget periods start at :15
// UTC), with many records per rollup row, records without a team (the key's team applies) and a
// model-restricted budget:
//   - the rollups equal tollgate_rollup_rebuild() from usage_events (the per-record computation),
//   - every budget's ledger equals, per period and to the nano-USD, the per-record attribution of the
//     stored usage rows (each row's own millisecond start time through tollgate_allowance_period()),
//   - the rollup report and the exact report (usage_events) agree.
// Batches are sent by tg-ingest-bench (bench/ingest/ingest_bench.c), a signed UsageBatch client of
// the control plane's REP socket, so the start times can be placed on the boundaries.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BUILD, startCluster } from './harness.mjs';

const DRIVER = path.join(BUILD, 'bench/tg-ingest-bench');
const HOUR = Date.UTC(2026, 9, 14, 10); // 2026-10-14 10:00 UTC; 15:45 in Kathmandu
const KTM_HOUR = HOUR + 15 * 60 * 1000; // 16:00 in Kathmandu

let c;
let tenant;
const keys = [];
const teams = [];

function drive(instance, startMs, seed) {
  // start times over [startMs - 4 s, startMs): 2 s either side of the boundary at startMs - 2 s
  const out = execFileSync(DRIVER, ['--url', c.cpEnv.TOLLGATE_CP_REP_URL, '--secret', c.clusterSecret,
    '--instance', instance, '--tenant', tenant.id, '--keys', keys.map((k) => k.id).join(','),
    '--teams', [teams[0].id, '-', teams[1].id, teams[1].id, '-', '-'].join(','),
    '--batches', '12', '--records', '700', '--spread-ms', '4000', '--start-ms', String(startMs), '--seed', String(seed)],
  { encoding: 'utf8', timeout: 120000 });
  const r = JSON.parse(out.trim());
  assert.equal(r.failed_batches, 0);
  assert.equal(r.records, 12 * 700);
}

before(async () => {
  assert.ok(fs.existsSync(DRIVER), `${DRIVER} not built`);
  c = await startCluster({ dataplanes: 0, label: 'ingest' });
  tenant = await c.adminOk('POST', '/admin/v1/tenants', { name: 'ingest', time_zone: 'Asia/Kathmandu' });
  for (let i = 0; i < 2; i++) teams.push(await c.adminOk('POST', '/admin/v1/teams', { tenant_id: tenant.id, name: `t${i}` }));
  // k0, k1 in team 0 (k1's records carry no team), k2, k3 in team 1, k4, k5 in none
  const teamOf = [0, 0, 1, 1, null, null];
  for (let i = 0; i < 6; i++) {
    const body = { tenant_id: tenant.id, name: `k${i}` };
    if (teamOf[i] !== null) body.team_id = teams[teamOf[i]].id;
    keys.push(await c.adminOk('POST', '/admin/v1/keys', body));
  }
  const big = '1000000000';
  const budgets = [
    { scope: 'key', key_id: keys[0].id, period: 'hourly' },
    { scope: 'key', key_id: keys[2].id, period: 'hourly', model: 'mock-gpt' },
    { scope: 'key', key_id: keys[4].id, period: 'daily' },
    { scope: 'team', team_id: teams[0].id, period: 'daily' },
    { scope: 'team', team_id: teams[1].id, period: 'hourly' },
    { scope: 'tenant', period: 'hourly' },
    { scope: 'tenant', period: 'monthly' },
    { scope: 'tenant', period: 'total' },
  ];
  for (const b of budgets) await c.adminOk('POST', '/admin/v1/budgets', { tenant_id: tenant.id, hard_usd: big, ...b });
  drive('ingest-utc-hour', HOUR + 2000, 11);
  drive('ingest-ktm-hour', KTM_HOUR + 2000, 12);
});

after(async () => {
  await c?.stop();
});

test('every record is stored once, on both sides of each boundary', async () => {
  const rows = await c.sql(`SELECT count(*)::int AS n, count(DISTINCT request_id)::int AS ids,
      count(*) FILTER (WHERE ts < to_timestamp($1 / 1000.0))::int AS before_utc,
      count(*) FILTER (WHERE ts >= to_timestamp($1 / 1000.0) AND ts < to_timestamp($2 / 1000.0))::int AS after_utc,
      count(*) FILTER (WHERE ts >= to_timestamp($2 / 1000.0))::int AS after_ktm FROM usage_events`, [HOUR, KTM_HOUR]);
  assert.equal(rows[0].n, 2 * 12 * 700);
  assert.equal(rows[0].ids, rows[0].n);
  for (const k of ['before_utc', 'after_utc', 'after_ktm']) assert.ok(rows[0][k] > 500, `${k}: ${rows[0][k]}`);
});

test('the rollups equal a per-record rebuild from usage_events', async () => {
  const hours = await c.sql('SELECT count(DISTINCT hour)::int AS n, max(requests)::int AS biggest FROM usage_rollups_hourly');
  assert.equal(hours[0].n, 2); // 09:00 and 10:00 UTC
  assert.ok(hours[0].biggest > 100, 'many records folded into one rollup row');
  const noTeam = await c.sql(`SELECT count(*)::int AS n FROM usage_rollups_hourly WHERE key_id = $1
      AND team_id <> $2`, [keys[1].id, teams[0].id]);
  assert.equal(noTeam[0].n, 0, "a record without a team counts for its key's team");
  await c.sql('CREATE TABLE ingest_grouped AS SELECT * FROM usage_rollups_hourly');
  await c.sql("SELECT tollgate_rollup_rebuild('-infinity', 'infinity')");
  const diff = await c.sql(`(SELECT 'grouped' AS side, * FROM (SELECT * FROM ingest_grouped EXCEPT ALL
        SELECT * FROM usage_rollups_hourly) a)
      UNION ALL (SELECT 'rebuilt', * FROM (SELECT * FROM usage_rollups_hourly EXCEPT ALL SELECT * FROM ingest_grouped) b)`);
  assert.deepEqual(diff, []);
  const n = await c.sql('SELECT count(*)::int AS n FROM ingest_grouped');
  assert.ok(n[0].n >= 2 * 10, `rollup rows: ${n[0].n}`);
});

test('every budget ledger equals the per-record attribution of the usage rows, per period', async () => {
  const diff = await c.sql(`WITH per AS (
      SELECT b.id AS limit_id, pb.ps, sum(e.cost_nanousd)::bigint AS cost
        FROM usage_events e
        JOIN virtual_keys k ON k.id = e.key_id
        JOIN budgets b ON b.tenant_id = k.tenant_id
             AND (b.scope = 'tenant' OR (b.scope = 'team' AND b.team_id = k.team_id) OR (b.scope = 'key' AND b.key_id = k.id))
             AND (b.model IS NULL OR b.model = e.model)
        JOIN tenants t ON t.id = b.tenant_id
        CROSS JOIN LATERAL tollgate_allowance_period(b.period, e.ts, t.time_zone) pb
       WHERE e.cost_nanousd > 0
       GROUP BY 1, 2)
    SELECT coalesce(per.limit_id, ap.limit_id)::text AS limit_id, coalesce(per.ps, ap.period_start) AS ps,
           per.cost::text AS per_record, ap.settled::text AS ledger
      FROM per FULL JOIN (SELECT * FROM allowance_periods WHERE kind = 'budget') ap
        ON ap.limit_id = per.limit_id AND ap.period_start = per.ps
     WHERE per.cost IS DISTINCT FROM ap.settled`);
  assert.deepEqual(diff, []);
  // the boundaries were exercised: the tenant's hourly budget has periods starting 09:15, 10:15 UTC
  const periods = await c.sql(`SELECT count(*)::int AS n FROM allowance_periods p JOIN budgets b ON b.id = p.limit_id
      WHERE b.scope = 'tenant' AND b.period = 'hourly'`);
  assert.equal(periods[0].n, 2);
  const settled = await c.sql(`SELECT count(*)::int AS n, sum(settled)::text AS s FROM allowance_periods p
      JOIN budgets b ON b.id = p.limit_id WHERE b.scope = 'key' AND b.model IS NOT NULL`);
  assert.ok(settled[0].n >= 1 && BigInt(settled[0].s) > 0n);
});

test('the rollup report and the exact report agree to the nano-USD', async () => {
  const from = new Date(HOUR - 3600 * 1000).toISOString();
  const to = new Date(HOUR + 2 * 3600 * 1000).toISOString();
  const q = `tenant_id=${tenant.id}&from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`;
  const exact = await c.adminOk('GET', `/admin/v1/usage?${q}&group_by=key,model`);
  const report = await c.adminOk('GET', `/admin/v1/usage/report?${q}&granularity=day&group_by=key,model`);
  const norm = (rows) => rows.map((r) => `${r.key_id}|${r.model}|${r.requests}|${r.input_tokens}|${r.output_tokens}|` +
    `${r.cached_input_tokens}|${r.cost_nanousd}`).sort();
  assert.ok(exact.data.length >= 6);
  assert.deepEqual(norm(report.data), norm(exact.data));
});
