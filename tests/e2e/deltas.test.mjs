// deltas.test.mjs: key changes travel as key deltas (migrations/0008, docs/architecture.md "Snapshots
// and deltas"). Keys created, changed, revoked and deleted through the admin API and through plain SQL
// are enforced on both dataplanes, and each dataplane's `tollgate_snapshot_updates_total` shows that a
// delta, not a full snapshot, carried the change. A dataplane that was down while deltas went out
// converges through the full snapshot it fetches, then follows deltas again.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { MODEL, OTHER_MODEL, metricSum, scrape, startCluster, waitFor } from './harness.mjs';

let c;
let seed;

before(async () => {
  c = await startCluster({ dataplanes: 2, label: 'delta' });
  seed = await c.seed();
});

after(async () => {
  await c?.stop();
});

// {full, delta, stale} config updates a dataplane has applied since it started.
async function updates(dp) {
  const prom = await scrape(dp.url);
  const n = (how) => metricSum(prom, 'tollgate_snapshot_updates_total', { how });
  return { full: n('full'), delta: n('delta'), stale: n('delta_stale') };
}

const all = () => Promise.all(c.dataplanes.map(updates));

// Status of GET /v1/models with the key on a dataplane, and the model ids it lists.
async function models(dp, key) {
  const res = await fetch(`${dp.url}/v1/models`, { headers: { authorization: `Bearer ${key}` },
    signal: AbortSignal.timeout(2000) });
  const body = await res.json().catch(() => null);
  return { status: res.status, ids: (body?.data ?? []).map((m) => m.id).sort() };
}

async function waitStatus(key, status, what) {
  for (const dp of c.dataplanes) {
    await waitFor(async () => (await models(dp, key)).status === status, 5000, { what: `${dp.name}: ${what}` });
  }
}

// Runs change(), waits until every dataplane enforces it, and asserts that deltas (and no full snapshot)
// carried it.
async function viaDelta(change, enforced, what) {
  const before = await all();
  await change();
  for (const dp of c.dataplanes) await waitFor(() => enforced(dp), 5000, { what: `${dp.name}: ${what}` });
  const after = await all();
  for (let i = 0; i < after.length; i++) {
    assert.equal(after[i].full, before[i].full, `${c.dataplanes[i].name} applied a full snapshot for: ${what}`);
    assert.ok(after[i].delta > before[i].delta, `${c.dataplanes[i].name} applied no delta for: ${what}`);
    assert.equal(after[i].stale, before[i].stale, `${c.dataplanes[i].name} had a stale delta`);
  }
}

// A key inserted with plain SQL, as an operator's script would: returns {id, key}.
async function sqlKey(tenantId) {
  const key = `tg-${crypto.randomBytes(24).toString('hex')}`;
  const hash = crypto.createHash('sha256').update(key).digest();
  const [row] = await c.sql(
    `INSERT INTO virtual_keys (tenant_id, name, key_hash, prefix) VALUES ($1, 'sql', $2, $3) RETURNING id::text`,
    [tenantId, hash, key.slice(0, 11)]);
  return { id: row.id, key };
}

describe('key deltas', () => {
  test('a key created, restricted and revoked through the admin API', async () => {
    let key;
    await viaDelta(async () => {
      key = await c.adminOk('POST', '/admin/v1/keys', { tenant_id: seed.tenant.id, name: 'delta-api' });
    }, async (dp) => (await models(dp, key.key)).status === 200, 'new key accepted');
    await viaDelta(() => c.adminOk('PATCH', `/admin/v1/keys/${key.id}`, { allowed_models: [OTHER_MODEL] }),
      async (dp) => JSON.stringify((await models(dp, key.key)).ids) === JSON.stringify([OTHER_MODEL]),
      'allowed_models narrowed');
    const chat = await c.chat(0, key.key, { model: MODEL, messages: [{ role: 'user', content: 'x' }] });
    assert.equal(chat.status, 403, chat.text);
    await viaDelta(() => c.adminOk('POST', `/admin/v1/keys/${key.id}/revoke`, undefined, 200),
      async (dp) => (await models(dp, key.key)).status === 401, 'revoked key refused');
    // the seeded key was never touched
    for (const dp of c.dataplanes) assert.equal((await models(dp, seed.key.key)).status, 200);
  });

  test('keys inserted, revoked and deleted with plain SQL', async () => {
    const a = await sqlKey(seed.tenant.id);
    let b;
    await viaDelta(async () => { b = await sqlKey(seed.tenant.id); },
      async (dp) => (await models(dp, b.key)).status === 200, 'SQL key accepted');
    await waitStatus(a.key, 200, 'first SQL key accepted');
    await viaDelta(() => c.sql(`UPDATE virtual_keys SET status = 'revoked' WHERE id = $1`, [a.id]),
      async (dp) => (await models(dp, a.key)).status === 401, 'SQL-revoked key refused');
    await viaDelta(() => c.sql('DELETE FROM virtual_keys WHERE id = $1', [b.id]),
      async (dp) => (await models(dp, b.key)).status === 401, 'SQL-deleted key refused');
    const tomb = await c.sql('SELECT count(*)::int AS n FROM virtual_key_tombstones WHERE key_id = $1', [b.id]);
    assert.equal(tomb[0].n, 1);
  });

  test('many keys in one statement travel as one delta and all are enforced', async () => {
    const keys = Array.from({ length: 50 }, () => `tg-${crypto.randomBytes(24).toString('hex')}`);
    await viaDelta(() => c.sql(
      `INSERT INTO virtual_keys (tenant_id, name, key_hash, prefix)
         SELECT $1, 'bulk', sha256(convert_to(k, 'UTF8')), left(k, 11) FROM unnest($2::text[]) AS k`,
      [seed.tenant.id, keys]),
    async (dp) => (await models(dp, keys[keys.length - 1])).status === 200, 'bulk keys accepted');
    for (const dp of c.dataplanes) {
      for (const k of [keys[0], keys[17], keys[33]]) assert.equal((await models(dp, k)).status, 200);
    }
  });

  test('a non-key change still sends a full snapshot, and keys survive it', async () => {
    const key = await c.createKey(seed.tenant.id, { name: 'survivor' });
    const before = await all();
    await c.createRoute(`delta-route-${crypto.randomBytes(3).toString('hex')}`, seed.provider.id, 'x-upstream');
    for (let i = 0; i < c.dataplanes.length; i++) {
      await waitFor(async () => (await updates(c.dataplanes[i])).full > before[i].full, 5000,
        { what: `${c.dataplanes[i].name} to apply the full snapshot` });
      assert.equal((await models(c.dataplanes[i], key.key)).status, 200);
    }
    // and deltas apply on top of it
    await viaDelta(() => c.adminOk('POST', `/admin/v1/keys/${key.id}/revoke`, undefined, 200),
      async (dp) => (await models(dp, key.key)).status === 401, 'revoked after a full snapshot');
  });

  test('a dataplane that was down while deltas went out converges, then follows deltas', async () => {
    const dp1 = c.dataplanes[1];
    await dp1.stop();
    const missed = await c.adminOk('POST', '/admin/v1/keys', { tenant_id: seed.tenant.id, name: 'missed' });
    await waitFor(async () => (await models(c.dataplanes[0], missed.key)).status === 200, 5000,
      { what: 'dataplane-0 to accept the key' });
    dp1.start();
    await waitFor(async () => {
      try { return (await fetch(`${dp1.url}/readyz`)).status === 200; } catch { return false; }
    }, 20000, { what: 'dataplane-1 ready again' });
    assert.equal((await models(dp1, missed.key)).status, 200, 'the restarted dataplane has the missed key');
    const fresh = await updates(dp1);
    assert.equal(fresh.delta, 0);
    assert.ok(fresh.full >= 1);
    let next;
    await viaDelta(async () => {
      next = await c.adminOk('POST', '/admin/v1/keys', { tenant_id: seed.tenant.id, name: 'after-restart' });
    }, async (dp) => (await models(dp, next.key)).status === 200, 'key after the restart');
  });
});

// Belt and braces: a change that bypasses the triggers (no stamp, no notification) is still picked up by
// the periodic full read of the keys (TOLLGATE_SNAPSHOT_RELOAD_S, 1 s here).
describe('periodic full reload', () => {
  let r;
  before(async () => {
    r = await startCluster({ dataplanes: 1, label: 'reload', cpEnv: { TOLLGATE_SNAPSHOT_RELOAD_S: '1' } });
  });
  after(async () => {
    await r?.stop();
  });

  test('a revocation made with the triggers disabled is enforced after the next reload', async () => {
    const s = await r.seed();
    const key = await r.createKey(s.tenant.id, { name: 'behind-the-back' });
    const dp = r.dataplanes[0];
    const before = await updates(dp);
    await r.sql('ALTER TABLE virtual_keys DISABLE TRIGGER USER');
    try {
      await r.sql(`UPDATE virtual_keys SET status = 'revoked' WHERE id = $1`, [key.id]);
    } finally {
      await r.sql('ALTER TABLE virtual_keys ENABLE TRIGGER USER');
    }
    await waitFor(async () => (await models(dp, key.key)).status === 401, 10000,
      { what: 'the reload to drop the revoked key' });
    const after = await updates(dp);
    assert.ok(after.full > before.full, 'a full snapshot carried it');
    assert.equal((await models(dp, s.key.key)).status, 200);
  });
});
