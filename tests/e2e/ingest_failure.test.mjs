// ingest_failure.test.mjs: a usage batch whose transaction fails at any of its statements is stored not
// at all and not acknowledged, and the same batch sent again once the cause is gone is stored exactly
// once. The control plane sends a batch in three round trips (controlplane/usage_ingest.c: BEGIN +
// INSERT usage_batches + COPY start; COPY data; rollup + settlement + COMMIT pipelined), so a failure
// can come back in the middle of a multi-statement query or of a pipeline (where the statements after
// it come back aborted). Each case makes one statement fail for real with a PostgreSQL trigger that
// raises, installed by the test:
//   - usage_batches insert (round trip 1), usage_events COPY (round trip 2),
//   - the rollup upsert and the settlement (the pipeline, before COMMIT),
//   - COMMIT itself (a deferred constraint trigger: COMMIT answers an error, the transaction is gone),
//   - the connection itself, in the middle of the pipeline (the rollup trigger terminates its own
//     backend): the control plane drops the connection, reconnects, and stores the resent batch once.
// Batches are sent by tg-ingest-bench (bench/ingest/ingest_bench.c), which plays a dataplane's usage
// shipper and reports whether the control plane acknowledged each batch.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BUILD, sleep, startCluster } from './harness.mjs';

const DRIVER = path.join(BUILD, 'bench/tg-ingest-bench');
const START = Date.UTC(2026, 9, 14, 10, 30); // mid-month, mid-hour: one budget period, one rollup hour
const RECORDS = 40;

let c;
let tenant;
const keys = [];

// One batch of RECORDS records as instance `instance`, sequence 1; the same seed gives the same batch.
function send(instance) {
  let out;
  try {
    out = execFileSync(DRIVER, ['--url', c.cpEnv.TOLLGATE_CP_REP_URL, '--secret', c.clusterSecret,
      '--instance', instance, '--tenant', tenant.id, '--keys', keys.map((k) => k.id).join(','),
      '--batches', '1', '--records', String(RECORDS), '--start-ms', String(START), '--seed', '7', '--first-seq', '1'],
    { encoding: 'utf8', timeout: 60000, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    if (e.status !== 1 || !e.stdout) throw e; // 1 with a report: a batch was not acknowledged
    out = e.stdout;
  }
  return JSON.parse(out.trim());
}

// Everything a batch can leave behind, for the whole database.
async function footprint() {
  const [r] = await c.sql(`SELECT
      (SELECT count(*) FROM usage_events)::int AS events,
      (SELECT count(*) FROM usage_batches)::int AS batches,
      (SELECT coalesce(sum(requests), 0) FROM usage_rollups_hourly)::text AS rollup_requests,
      (SELECT coalesce(sum(settled), 0) FROM allowance_periods)::text AS settled`);
  return r;
}

const cpLog = () => fs.readFileSync(c.controlplane.logPath, 'utf8');

before(async () => {
  assert.ok(fs.existsSync(DRIVER), `${DRIVER} not built`);
  c = await startCluster({ dataplanes: 0, label: 'ingest-failure' });
  tenant = await c.adminOk('POST', '/admin/v1/tenants', { name: 'ingest-failure' });
  for (let i = 0; i < 2; i++) keys.push(await c.adminOk('POST', '/admin/v1/keys', { tenant_id: tenant.id, name: `k${i}` }));
  // a budget on k0 and one on the tenant, so the settlement statement writes allowance_periods
  await c.adminOk('POST', '/admin/v1/budgets', { tenant_id: tenant.id, scope: 'key', key_id: keys[0].id, period: 'monthly',
    hard_usd: '1000000000' });
  await c.adminOk('POST', '/admin/v1/budgets', { tenant_id: tenant.id, scope: 'tenant', period: 'monthly',
    hard_usd: '1000000000' });
  await c.sql(`CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'test_refuse: % on %', TG_OP, TG_TABLE_NAME; END $$`);
  await c.sql(`CREATE FUNCTION test_hang_up() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
      BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(5); RETURN NEW; END $$`);
});

after(async () => {
  await c?.stop();
});

const cases = [
  ['the usage_batches insert', 'usage_batches',
    'CREATE TRIGGER test_refuse BEFORE INSERT ON usage_batches FOR EACH ROW EXECUTE FUNCTION test_refuse()'],
  ['the usage_events COPY', 'usage_events',
    'CREATE TRIGGER test_refuse BEFORE INSERT ON usage_events FOR EACH ROW EXECUTE FUNCTION test_refuse()'],
  ['the rollup upsert', 'usage_rollups_hourly',
    'CREATE TRIGGER test_refuse BEFORE INSERT OR UPDATE ON usage_rollups_hourly FOR EACH ROW EXECUTE FUNCTION test_refuse()'],
  ['the settlement', 'allowance_periods',
    'CREATE TRIGGER test_refuse BEFORE INSERT OR UPDATE ON allowance_periods FOR EACH ROW EXECUTE FUNCTION test_refuse()'],
  ['COMMIT (a deferred constraint)', 'usage_batches',
    `CREATE CONSTRAINT TRIGGER test_refuse AFTER INSERT ON usage_batches DEFERRABLE INITIALLY DEFERRED
       FOR EACH ROW EXECUTE FUNCTION test_refuse()`],
  ['a connection lost in the pipeline', 'usage_rollups_hourly',
    'CREATE TRIGGER test_refuse BEFORE INSERT OR UPDATE ON usage_rollups_hourly FOR EACH ROW EXECUTE FUNCTION test_hang_up()',
    'cp\\.db\\.lost'],
];

cases.forEach(([what, table, ddl, logged], i) => {
  test(`a batch that fails at ${what} stores nothing, is not acknowledged, and is stored once when resent`, async () => {
    const instance = `fail-${i}`;
    await c.sql(ddl);
    const before = await footprint();
    const logBefore = cpLog().length;
    try {
      const r = send(instance);
      assert.equal(r.failed_batches, 1, 'the control plane did not acknowledge the batch');
      assert.equal(r.records, 0);
    } finally {
      await c.sql(`DROP TRIGGER test_refuse ON ${table}`);
    }
    // it failed where the test made it fail, and left nothing behind
    const log = cpLog().slice(logBefore);
    if (logged) {
      assert.match(log, new RegExp(`cp\\.usage\\.rejected instance=${instance} `));
      assert.match(log, new RegExp(logged));
    } else {
      assert.match(log, new RegExp(`cp\\.usage\\.rejected instance=${instance} .*test_refuse: \\w+ on ${table}`));
    }
    assert.deepEqual(await footprint(), before);

    // the same batch again, the trigger gone: stored once; and once more: a duplicate, acknowledged.
    // After a lost connection the control plane answers "database unavailable" until it has
    // reconnected (backoff from 250 ms): a few bounded retries, as a dataplane's shipper would.
    for (let round = 0; round < 2; round++) {
      let r = send(instance);
      for (let tries = 0; logged && r.failed_batches && tries < 40; tries++) {
        await sleep(250);
        r = send(instance);
      }
      assert.equal(r.failed_batches, 0);
      assert.equal(r.records, RECORDS);
    }
    const [s] = await c.sql(`SELECT count(*)::int AS n, count(DISTINCT request_id)::int AS ids,
        coalesce(sum(cost_nanousd), 0)::text AS cost, coalesce(sum(cost_nanousd) FILTER (WHERE key_id = $2), 0)::text AS k0
        FROM usage_events WHERE instance_id = $1`, [instance, keys[0].id]);
    assert.equal(s.n, RECORDS);
    assert.equal(s.ids, RECORDS);
    assert.ok(BigInt(s.k0) > 0n, 'the batch has records of the budgeted key');
    const after = await footprint();
    assert.equal(after.events, before.events + RECORDS);
    assert.equal(after.batches, before.batches + 1);
    assert.equal(BigInt(after.rollup_requests), BigInt(before.rollup_requests) + BigInt(RECORDS));
    // the tenant budget settles every record, the key budget k0's: exactly once each
    assert.equal(BigInt(after.settled), BigInt(before.settled) + BigInt(s.cost) + BigInt(s.k0));
    assert.match(cpLog().slice(logBefore), new RegExp(`cp\\.usage\\.duplicate instance=${instance} sequence=1`));
  });
});

test('the ledger equals the usage rows and the rollups a per-record rebuild, after all the failures', async () => {
  const [l] = await c.sql(`SELECT
      (SELECT sum(settled) FROM allowance_periods p JOIN budgets b ON b.id = p.limit_id WHERE b.scope = 'tenant')::text AS tenant,
      (SELECT sum(cost_nanousd) FROM usage_events)::text AS cost`);
  assert.equal(l.tenant, l.cost);
  await c.sql('CREATE TABLE test_grouped AS SELECT * FROM usage_rollups_hourly');
  await c.sql("SELECT tollgate_rollup_rebuild('-infinity', 'infinity')");
  const diff = await c.sql(`(SELECT * FROM test_grouped EXCEPT ALL SELECT * FROM usage_rollups_hourly)
      UNION ALL (SELECT * FROM usage_rollups_hourly EXCEPT ALL SELECT * FROM test_grouped)`);
  assert.deepEqual(diff, []);
});
