// governance_admin.test.mjs: the governance side of the admin API against a real cluster. Tenant-scoped
// admin and viewer tokens can never see or touch another tenant (every endpoint probed), bad input is
// refused with 4xx and writes nothing, every change leaves one audit row carrying the request id, key
// rotation keeps the old key working only for its grace period, and the rollup report equals what was
// sent through a real dataplane (JSON and CSV).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { MODEL, startCluster, waitFor } from './harness.mjs';

let c;
let seed;
// Two tenants, each with a team, a key, a budget, a rate limit and admin + viewer tokens.
const T = {};

const rid = () => `gov-${crypto.randomUUID()}`;
const as = (token) => (method, path, body) => c.admin(method, path, body, { token });

async function makeTenant(label) {
  const tenant = await c.adminOk('POST', '/admin/v1/tenants', { name: `${label}-${crypto.randomUUID().slice(0, 6)}` });
  const admin = await c.adminOk('POST', '/admin/v1/admin-tokens', { tenant_id: tenant.id, name: 'adm', role: 'admin' });
  const viewer = await c.adminOk('POST', '/admin/v1/admin-tokens', { tenant_id: tenant.id, name: 'view', role: 'viewer' });
  const team = await c.adminOk('POST', '/admin/v1/teams', { tenant_id: tenant.id, name: 'team-a' });
  const key = await c.adminOk('POST', '/admin/v1/keys', { tenant_id: tenant.id, team_id: team.id, name: 'k' });
  const budget = await c.adminOk('POST', '/admin/v1/budgets',
    { tenant_id: tenant.id, scope: 'team', team_id: team.id, period: 'monthly', hard_usd: '10.5', soft_usd: 8 });
  const limit = await c.adminOk('POST', '/admin/v1/rate-limits',
    { tenant_id: tenant.id, scope: 'key', key_id: key.id, window_s: 60, requests_per_window: 100 });
  return { tenant, admin, viewer, team, key, budget, limit };
}

const counts = async () => (await c.sql(`SELECT
  (SELECT count(*) FROM tenants)::int AS tenants, (SELECT count(*) FROM teams)::int AS teams,
  (SELECT count(*) FROM virtual_keys)::int AS keys, (SELECT count(*) FROM budgets)::int AS budgets,
  (SELECT count(*) FROM rate_limits)::int AS limits, (SELECT count(*) FROM admin_tokens)::int AS tokens,
  (SELECT count(*) FROM audit_log)::int AS audit, (SELECT count(*) FROM providers)::int AS providers,
  (SELECT count(*) FROM routes)::int AS routes, (SELECT count(*) FROM prices)::int AS prices`))[0];

before(async () => {
  c = await startCluster({ dataplanes: 1, label: 'gov' });
  seed = await c.seed();
  T.a = await makeTenant('a');
  T.b = await makeTenant('b');
});

after(async () => {
  await c?.stop();
});

describe('tokens and roles', () => {
  test('admin tokens are shown once and only their hash is stored', async () => {
    assert.match(T.a.admin.token, /^tgt-[0-9a-f]{48}$/);
    const got = await c.adminOk('GET', `/admin/v1/admin-tokens/${T.a.admin.id}`);
    assert.equal(got.token, undefined);
    const rows = await c.sql('SELECT encode(token_hash, \'hex\') AS h FROM admin_tokens WHERE id = $1', [T.a.admin.id]);
    assert.equal(rows[0].h, crypto.createHash('sha256').update(T.a.admin.token).digest('hex'));
  });

  test('a tenant token sees only its tenant in lists', async () => {
    const a = as(T.a.admin.token);
    for (const path of ['/admin/v1/tenants', '/admin/v1/teams', '/admin/v1/keys', '/admin/v1/budgets',
      '/admin/v1/rate-limits', '/admin/v1/admin-tokens', '/admin/v1/audit']) {
      const res = await a('GET', path);
      assert.equal(res.status, 200, `${path}: ${JSON.stringify(res.body)}`);
      assert.ok(res.body.data.length > 0, path);
      for (const o of res.body.data) {
        assert.equal(o.tenant_id ?? o.id, T.a.tenant.id, `${path} leaked ${JSON.stringify(o)}`);
      }
      const other = await a('GET', `${path}?tenant_id=${T.b.tenant.id}`);
      if (path === '/admin/v1/tenants') {
        assert.equal(other.status, 400); // tenants takes no filter: unknown query parameter
      } else {
        assert.equal(other.status, 200);
        assert.deepEqual(other.body.data, [], `${path} with another tenant_id`);
      }
    }
  });

  test('every object of another tenant is 404 for its admin and viewer tokens, and unchanged', async () => {
    const before = await counts();
    const auditBefore = before.audit;
    const b = T.b;
    const probes = [
      ['GET', `/admin/v1/tenants/${b.tenant.id}`],
      ['PATCH', `/admin/v1/tenants/${b.tenant.id}`, { name: 'stolen' }],
      ['GET', `/admin/v1/teams/${b.team.id}`],
      ['PATCH', `/admin/v1/teams/${b.team.id}`, { name: 'stolen' }],
      ['DELETE', `/admin/v1/teams/${b.team.id}`],
      ['GET', `/admin/v1/keys/${b.key.id}`],
      ['PATCH', `/admin/v1/keys/${b.key.id}`, { name: 'stolen' }],
      ['POST', `/admin/v1/keys/${b.key.id}/revoke`],
      ['DELETE', `/admin/v1/keys/${b.key.id}`],
      ['POST', `/admin/v1/keys/${b.key.id}/rotate`, { grace_seconds: 0 }],
      ['GET', `/admin/v1/budgets/${b.budget.id}`],
      ['PATCH', `/admin/v1/budgets/${b.budget.id}`, { hard_usd: 1 }],
      ['DELETE', `/admin/v1/budgets/${b.budget.id}`],
      ['GET', `/admin/v1/rate-limits/${b.limit.id}`],
      ['PATCH', `/admin/v1/rate-limits/${b.limit.id}`, { window_s: 1 }],
      ['DELETE', `/admin/v1/rate-limits/${b.limit.id}`],
      ['GET', `/admin/v1/admin-tokens/${b.viewer.id}`],
      ['POST', `/admin/v1/admin-tokens/${b.viewer.id}/revoke`],
      ['DELETE', `/admin/v1/admin-tokens/${b.viewer.id}`],
      ['GET', `/admin/v1/usage?tenant_id=${b.tenant.id}`],
      ['GET', `/admin/v1/usage/report?tenant_id=${b.tenant.id}`],
      ['POST', '/admin/v1/teams', { tenant_id: b.tenant.id, name: 'intruder' }],
      ['POST', '/admin/v1/keys', { tenant_id: b.tenant.id, name: 'intruder' }],
      ['POST', '/admin/v1/budgets', { tenant_id: b.tenant.id, scope: 'tenant', period: 'daily', hard_usd: 1 }],
      ['POST', '/admin/v1/rate-limits', { tenant_id: b.tenant.id, scope: 'tenant', concurrent: 1 }],
      ['POST', '/admin/v1/admin-tokens', { tenant_id: b.tenant.id, name: 'x', role: 'viewer' }],
    ];
    for (const role of ['admin', 'viewer']) {
      const call = as(T.a[role].token);
      for (const [method, path, body] of probes) {
        const res = await call(method, path, body);
        const isWrite = method !== 'GET';
        // A viewer is refused any write first (403); otherwise another tenant's object is not found.
        const want = role === 'viewer' && isWrite ? 403 : 404;
        assert.equal(res.status, want, `${role} ${method} ${path}: ${JSON.stringify(res.body)}`);
      }
    }
    // Referring to another tenant's team or key from inside one's own tenant is refused too.
    const a = as(T.a.admin.token);
    for (const body of [
      { scope: 'team', team_id: b.team.id, period: 'daily', hard_usd: 1 },
      { scope: 'key', key_id: b.key.id, period: 'daily', hard_usd: 1 },
    ]) {
      const res = await a('POST', '/admin/v1/budgets', body);
      assert.equal(res.status, 400, JSON.stringify(res.body));
    }
    assert.equal((await a('POST', '/admin/v1/keys', { name: 'x', team_id: b.team.id })).status, 400);
    assert.deepEqual(await counts(), { ...before, audit: auditBefore });
    const bKey = await c.adminOk('GET', `/admin/v1/keys/${b.key.id}`);
    assert.equal(bKey.status, 'active');
    assert.equal(bKey.name, 'k');
  });

  test('global-only endpoints refuse tenant tokens; viewers cannot write their own tenant', async () => {
    const before = await counts();
    for (const role of ['admin', 'viewer']) {
      const call = as(T.a[role].token);
      for (const [method, path, body] of [
        ['POST', '/admin/v1/tenants', { name: 'x' }],
        ['DELETE', `/admin/v1/tenants/${T.a.tenant.id}`],
        ['GET', '/admin/v1/providers'],
        ['POST', '/admin/v1/providers', { name: 'x', kind: 'openai' }],
        ['GET', `/admin/v1/providers/${seed.provider.id}`],
        ['GET', '/admin/v1/routes'],
        ['POST', '/admin/v1/routes', { name: 'x', targets: [] }],
        ['DELETE', `/admin/v1/routes/${seed.route.id}`],
        ['GET', '/admin/v1/prices'],
        ['PUT', '/admin/v1/prices', { model: 'x', input_per_mtok: 1, output_per_mtok: 1 }],
        ['GET', '/admin/v1/snapshot'],
      ]) {
        const res = await call(method, path, body);
        assert.equal(res.status, 403, `${role} ${method} ${path}`);
      }
    }
    const v = as(T.a.viewer.token);
    for (const [method, path, body] of [
      ['PATCH', `/admin/v1/tenants/${T.a.tenant.id}`, { name: 'x' }],
      ['POST', '/admin/v1/teams', { name: 'x' }],
      ['POST', '/admin/v1/keys', { name: 'x' }],
      ['PATCH', `/admin/v1/keys/${T.a.key.id}`, { name: 'x' }],
      ['POST', `/admin/v1/keys/${T.a.key.id}/revoke`],
      ['POST', `/admin/v1/keys/${T.a.key.id}/rotate`],
      ['POST', '/admin/v1/budgets', { scope: 'tenant', period: 'daily', hard_usd: 1 }],
      ['DELETE', `/admin/v1/budgets/${T.a.budget.id}`],
      ['POST', '/admin/v1/rate-limits', { scope: 'tenant', concurrent: 1 }],
      ['POST', '/admin/v1/admin-tokens', { name: 'x', role: 'viewer' }],
      ['DELETE', `/admin/v1/admin-tokens/${T.a.viewer.id}`],
    ]) {
      const res = await v(method, path, body);
      assert.equal(res.status, 403, `viewer ${method} ${path}`);
    }
    // A tenant admin may mint viewers for itself, never admins.
    const a = as(T.a.admin.token);
    assert.equal((await a('POST', '/admin/v1/admin-tokens', { name: 'x', role: 'admin' })).status, 403);
    assert.deepEqual(await counts(), before);
    // The viewer can read its own tenant.
    assert.equal((await v('GET', `/admin/v1/keys/${T.a.key.id}`)).status, 200);
  });

  test('a revoked admin token stops working at once', async () => {
    const a = as(T.a.admin.token);
    const tok = await a('POST', '/admin/v1/admin-tokens', { name: 'short-lived', role: 'viewer' });
    assert.equal(tok.status, 201, JSON.stringify(tok.body));
    assert.equal((await as(tok.body.token)('GET', '/admin/v1/keys')).status, 200);
    assert.equal((await a('POST', `/admin/v1/admin-tokens/${tok.body.id}/revoke`)).status, 200);
    assert.equal((await as(tok.body.token)('GET', '/admin/v1/keys')).status, 401);
  });
});

describe('validation', () => {
  const bad = () => {
    const a = T.a;
    const big = 'x'.repeat(5000);
    const sqlish = "x'); DROP TABLE tenants; --";
    return [
      ['POST', '/admin/v1/tenants', { name: 'x', color: 'red' }, /unknown field 'color'/],
      ['POST', '/admin/v1/tenants', { name: 12 }, /'name'/],
      ['POST', '/admin/v1/tenants', { name: big }, /'name'/],
      ['POST', '/admin/v1/tenants', { name: 'x', time_zone: 'Mars/Olympus' }, /time_zone/],
      ['POST', '/admin/v1/tenants', { name: 'x', time_zone: sqlish }, /time_zone/],
      ['POST', '/admin/v1/tenants', { name: 'x', log_content: 'yes' }, /log_content/],
      ['PATCH', `/admin/v1/tenants/${a.tenant.id}`, { name: null }, /name/],
      ['PATCH', `/admin/v1/tenants/${a.tenant.id}`, { id: a.tenant.id }, /unknown field 'id'/],
      ['POST', '/admin/v1/teams', { tenant_id: 'not-a-uuid', name: 'x' }, /tenant_id/],
      ['POST', '/admin/v1/teams', { tenant_id: a.tenant.id, name: 'x', metadata: [1] }, /metadata/],
      ['POST', '/admin/v1/teams', { tenant_id: a.tenant.id, name: 'x', metadata: { v: big.repeat(4) } }, /metadata/],
      ['POST', '/admin/v1/keys', { tenant_id: a.tenant.id, name: 'x', allowed_models: 'gpt' }, /allowed_models/],
      ['POST', '/admin/v1/keys', { tenant_id: a.tenant.id, name: 'x', allowed_providers: ['nope'] }, /allowed_providers/],
      ['POST', '/admin/v1/keys', { tenant_id: a.tenant.id, name: 'x', tags: Array(51).fill('t') }, /tags/],
      ['POST', '/admin/v1/keys', { tenant_id: a.tenant.id, name: 'x', expires_at: 'tomorrow-ish' }, /expires_at|invalid/],
      ['POST', '/admin/v1/keys', { tenant_id: a.tenant.id, name: 'x', team_id: crypto.randomUUID() }, /exist/],
      ['POST', '/admin/v1/keys', { tenant_id: a.tenant.id, name: 'x', status: 'revoked' }, /unknown field 'status'/],
      ['PATCH', `/admin/v1/keys/${a.key.id}`, { tenant_id: T.b.tenant.id }, /unknown field 'tenant_id'/],
      ['POST', `/admin/v1/keys/${a.key.id}/rotate`, { grace_seconds: -1 }, /grace_seconds/],
      ['POST', `/admin/v1/keys/${a.key.id}/rotate`, { grace_seconds: 1e12 }, /grace_seconds/],
      ['POST', `/admin/v1/keys/${a.key.id}/rotate`, { grace_seconds: '10' }, /grace_seconds/],
      ['POST', '/admin/v1/budgets', { tenant_id: a.tenant.id, scope: 'tenant', period: 'daily', hard_usd: -1 }, /hard_usd/],
      ['POST', '/admin/v1/budgets', { tenant_id: a.tenant.id, scope: 'tenant', period: 'daily', hard_usd: '0.0000000001' }, /hard_usd/],
      ['POST', '/admin/v1/budgets', { tenant_id: a.tenant.id, scope: 'tenant', period: 'daily', hard_usd: 1e30 }, /hard_usd/],
      ['POST', '/admin/v1/budgets', { tenant_id: a.tenant.id, scope: 'tenant', period: 'daily', hard_usd: '1e3' }, /hard_usd/],
      ['POST', '/admin/v1/budgets', { tenant_id: a.tenant.id, scope: 'tenant', period: 'fortnightly', hard_usd: 1 }, /period/],
      ['POST', '/admin/v1/budgets', { tenant_id: a.tenant.id, scope: 'team', period: 'daily', hard_usd: 1 }, /team_id/],
      ['POST', '/admin/v1/budgets', { tenant_id: a.tenant.id, scope: sqlish, period: 'daily', hard_usd: 1 }, /scope/],
      ['POST', '/admin/v1/budgets', { tenant_id: a.tenant.id, scope: 'tenant', period: 'daily', hard_usd: 1, soft_usd: 2 }, /soft_usd/],
      ['PATCH', `/admin/v1/budgets/${a.budget.id}`, { scope: 'key' }, /unknown field 'scope'/],
      ['PATCH', `/admin/v1/budgets/${a.budget.id}`, { hard_usd: null }, /hard_usd/],
      ['POST', '/admin/v1/rate-limits', { tenant_id: a.tenant.id, scope: 'tenant', window_s: 0 }, /window_s/],
      ['POST', '/admin/v1/rate-limits', { tenant_id: a.tenant.id, scope: 'tenant', concurrent: 1.5 }, /concurrent/],
      ['POST', '/admin/v1/rate-limits', { tenant_id: a.tenant.id, scope: 'tenant', requests_per_window: 1e16 }, /requests_per_window/],
      ['PATCH', `/admin/v1/rate-limits/${a.limit.id}`, { window_s: '60' }, /window_s/],
      ['POST', '/admin/v1/admin-tokens', { tenant_id: a.tenant.id, name: 'x', role: 'root' }, /role/],
      ['POST', '/admin/v1/providers', { name: 'x', kind: 'openai', api_keys: [{ secret: 's', wieght: 1 }] }, /api_keys\[0\]\.wieght/],
      ['POST', '/admin/v1/routes', { name: 'x', targets: [{ provider_id: seed.provider.id, model: 'm', extra: 1 }] }, /targets\[0\]\.extra/],
      ['PUT', '/admin/v1/prices', { model: 'x', input_per_mtok: 1, output_per_mtok: 1, currency: 'EUR' }, /currency/],
      ['GET', '/admin/v1/keys?status=deleted', undefined, /status/],
      ['GET', '/admin/v1/keys?team_id=1%27%20OR%201=1', undefined, /team_id/],
      ['GET', '/admin/v1/keys?colour=red', undefined, /colour/],
      ['GET', '/admin/v1/audit?limit=0', undefined, /limit/],
      ['GET', '/admin/v1/audit?from=not-a-date', undefined, /invalid/],
      ['GET', '/admin/v1/usage/report?granularity=week', undefined, /granularity/],
      ['GET', '/admin/v1/usage/report?group_by=tenant,tenant', undefined, /group_by/],
      ['GET', '/admin/v1/usage/report?format=xml', undefined, /format/],
    ];
  };

  test('bad input gets a 4xx naming the problem, and nothing is written', async () => {
    const before = await counts();
    for (const [method, path, body, re] of bad()) {
      const res = await c.admin(method, path, body);
      assert.ok(res.status >= 400 && res.status < 500, `${method} ${path} ${JSON.stringify(body)?.slice(0, 200)}: ${res.status}`);
      assert.match(res.body?.error?.message ?? '', re, `${method} ${path}: ${JSON.stringify(res.body)}`);
    }
    // Malformed bodies and ids.
    for (const [method, path] of [['POST', '/admin/v1/teams'], ['PATCH', `/admin/v1/keys/${T.a.key.id}`]]) {
      const res = await fetch(`${c.adminUrl}${path}`, { method, body: '{"name": ',
        headers: { authorization: `Bearer ${c.adminToken}`, 'content-type': 'application/json' } });
      assert.equal(res.status, 400);
      await res.arrayBuffer();
    }
    for (const path of ['/admin/v1/keys/not-a-uuid', "/admin/v1/teams/'%20OR%201=1", '/admin/v1/budgets/123']) {
      assert.equal((await c.admin('GET', path)).status, 404, path);
    }
    assert.deepEqual(await counts(), before);
    const t = await c.sql('SELECT count(*)::int AS n FROM tenants WHERE name LIKE $1', ['%DROP TABLE%']);
    assert.equal(t[0].n, 0);
  });

  test('USD amounts are exact', async () => {
    const a = as(T.a.admin.token);
    const b = await a('POST', '/admin/v1/budgets', { scope: 'tenant', period: 'total', hard_usd: 0.1, soft_usd: '0.000000001' });
    assert.equal(b.status, 201, JSON.stringify(b.body));
    assert.equal(b.body.hard_nanousd, 100000000);
    assert.equal(b.body.hard_usd, '0.1');
    assert.equal(b.body.soft_nanousd, 1);
    const p = await a('PATCH', `/admin/v1/budgets/${b.body.id}`, { hard_usd: '123456789.123456789', soft_usd: null });
    assert.equal(p.status, 200, JSON.stringify(p.body));
    assert.equal(p.body.hard_usd, '123456789.123456789');
    assert.equal(p.body.soft_usd, null);
    assert.equal((await a('DELETE', `/admin/v1/budgets/${b.body.id}`)).status, 204);
  });
});

describe('audit', () => {
  test('every change writes one audit row with actor, before/after and the request id', async () => {
    const a = as(T.a.admin.token);
    const id = rid();
    const res = await c.admin('PATCH', `/admin/v1/teams/${T.a.team.id}`, { name: 'renamed' },
      { token: T.a.admin.token });
    assert.equal(res.status, 200);
    assert.ok(res.headers.get('x-request-id'));
    const withId = await fetch(`${c.adminUrl}/admin/v1/teams/${T.a.team.id}`, { method: 'PATCH',
      headers: { authorization: `Bearer ${T.a.admin.token}`, 'content-type': 'application/json', 'x-request-id': id },
      body: JSON.stringify({ metadata: { cost_center: 42 } }) });
    assert.equal(withId.status, 200);
    assert.equal(withId.headers.get('x-request-id'), id);
    await withId.arrayBuffer();
    const rows = await a('GET', `/admin/v1/audit?target_id=${T.a.team.id}&action=team.update`);
    assert.equal(rows.status, 200);
    const row = rows.body.data.find((r) => r.request_id === id);
    assert.ok(row, JSON.stringify(rows.body));
    assert.equal(row.actor, `token:${T.a.admin.id}`);
    assert.equal(row.tenant_id, T.a.tenant.id);
    assert.equal(row.before.name, 'renamed');
    assert.deepEqual(row.after.metadata, { cost_center: 42 });
    // The other tenant's audit is invisible.
    const bRows = await as(T.b.admin.token)('GET', `/admin/v1/audit?target_id=${T.a.team.id}`);
    assert.deepEqual(bRows.body.data, []);
  });

  test('creations audit without secrets, and the log paginates', async () => {
    const key = await c.adminOk('POST', '/admin/v1/keys', { tenant_id: T.a.tenant.id, name: 'audited' });
    const rows = await c.sql('SELECT after::text AS a FROM audit_log WHERE action = $1 AND target_id = $2',
      ['key.create', key.id]);
    assert.equal(rows.length, 1);
    assert.ok(!rows[0].a.includes(key.key), 'the plaintext key must not reach the audit log');
    const tok = await c.adminOk('POST', '/admin/v1/admin-tokens', { tenant_id: T.a.tenant.id, name: 'a2', role: 'viewer' });
    const trows = await c.sql('SELECT after::text AS a FROM audit_log WHERE target_id = $1', [tok.id]);
    assert.ok(!trows[0].a.includes(tok.token));
    const page1 = await c.adminOk('GET', '/admin/v1/audit?limit=2');
    assert.equal(page1.data.length, 2);
    assert.ok(page1.next_cursor);
    const page2 = await c.adminOk('GET', `/admin/v1/audit?limit=2&cursor=${page1.next_cursor}`);
    assert.ok(BigInt(page2.data[0].id) < BigInt(page1.data[1].id) + 1n);
    assert.notEqual(page2.data[0].id, page1.data[0].id);
    // The audit row count equals the number of changes: one per call.
    const n0 = (await counts()).audit;
    await c.adminOk('PATCH', `/admin/v1/keys/${key.id}`, { tags: ['x'] }, 200);
    await c.adminOk('POST', `/admin/v1/keys/${key.id}/revoke`, undefined, 200);
    assert.equal((await counts()).audit, n0 + 2);
  });
});

describe('keys', () => {
  test('create with restrictions, PATCH, list filters', async () => {
    const a = as(T.a.admin.token);
    const k = await a('POST', '/admin/v1/keys', { name: 'restricted', team_id: T.a.team.id,
      allowed_models: ['mock-*', 'exact'], allowed_providers: [seed.provider.id], metadata: { owner: 'ann' },
      tags: ['prod', 'eu'], expires_at: '2099-01-01T00:00:00Z' });
    assert.equal(k.status, 201, JSON.stringify(k.body));
    assert.deepEqual(k.body.allowed_models, ['mock-*', 'exact']);
    assert.deepEqual(k.body.tags, ['prod', 'eu']);
    assert.equal(k.body.expires_at, '2099-01-01T00:00:00Z');
    const p = await a('PATCH', `/admin/v1/keys/${k.body.id}`, { tags: ['prod'], expires_at: null });
    assert.equal(p.status, 200, JSON.stringify(p.body));
    assert.deepEqual(p.body.tags, ['prod']);
    assert.equal(p.body.expires_at, null);
    assert.deepEqual(p.body.allowed_models, ['mock-*', 'exact']);
    const byTag = await a('GET', '/admin/v1/keys?tag=prod');
    assert.deepEqual(byTag.body.data.map((x) => x.id), [k.body.id]);
    const byTeam = await a('GET', `/admin/v1/keys?team_id=${T.a.team.id}&status=active`);
    assert.ok(byTeam.body.data.some((x) => x.id === k.body.id));
  });

  test('rotate: the old key works during the grace period and not after', async () => {
    const old = await c.createKey(seed.tenant.id, { name: 'rotating' });
    const body = { model: MODEL, messages: [{ role: 'user', content: 'hi' }] };
    assert.equal((await c.chat(0, old.key, body)).status, 200);
    const rot = await c.adminOk('POST', `/admin/v1/keys/${old.id}/rotate`, { grace_seconds: 3600 }, 201);
    assert.match(rot.key, /^tg-[0-9a-f]{48}$/);
    assert.equal(rot.rotated_from, old.id);
    assert.ok(rot.old_key.expires_at);
    await c.waitKeyUsable(rot.key);
    assert.equal((await c.chat(0, rot.key, body)).status, 200);
    assert.equal((await c.chat(0, old.key, body)).status, 200, 'old key within its grace period');
    // End the grace period now (an expiry in the past, through the API), instead of sleeping.
    await c.adminOk('PATCH', `/admin/v1/keys/${old.id}`, { expires_at: '2000-01-01T00:00:00Z' }, 200);
    await waitFor(async () => (await c.chat(0, old.key, body)).status === 401, 5000, { what: 'old key refused' });
    assert.equal((await c.chat(0, rot.key, body)).status, 200);
    const audit = await c.sql('SELECT count(*)::int AS n FROM audit_log WHERE action = $1 AND target_id = $2',
      ['key.rotate', old.id]);
    assert.equal(audit[0].n, 1);
  });
});

describe('usage report', () => {
  test('rollup report equals what went through the dataplane, in JSON and CSV', async () => {
    const tenant = await c.createTenant();
    const team = await c.adminOk('POST', '/admin/v1/teams', { tenant_id: tenant.id, name: 'rep' });
    const k1 = await c.adminOk('POST', '/admin/v1/keys', { tenant_id: tenant.id, team_id: team.id, name: 'r1' });
    const k2 = await c.adminOk('POST', '/admin/v1/keys', { tenant_id: tenant.id, name: 'r2' });
    await c.waitKeyUsable(k1.key);
    await c.waitKeyUsable(k2.key);
    const ids = [];
    for (let i = 0; i < 6; i++) {
      const id = rid();
      ids.push(id);
      const res = await c.chat(0, i % 2 ? k2.key : k1.key,
        { model: MODEL, messages: [{ role: 'user', content: `report ${i} ${'word '.repeat(i)}` }] },
        { headers: { 'x-request-id': id } });
      assert.equal(res.status, 200, res.text);
    }
    // One error too: the provider answers 400 (a mock directive), which is recorded in usage.
    const errId = rid();
    ids.push(errId);
    const err = await c.chat(0, k1.key, { model: MODEL, messages: [{ role: 'user', content: '[mock:status=400] x' }] },
      { headers: { 'x-request-id': errId } });
    assert.equal(err.status, 400, err.text);
    const rows = await c.waitUsage(ids);
    assert.equal(rows.filter((x) => x.status >= 400).length, 1);
    const sum = (rs, f) => rs.reduce((s, r) => s + BigInt(r[f]), 0n);
    const want = {
      requests: rows.length,
      errors: rows.filter((r) => r.status >= 400).length,
      input: sum(rows, 'input_tokens'), output: sum(rows, 'output_tokens'), cost: sum(rows, 'cost_nanousd'),
    };
    const report = await c.adminOk('GET',
      `/admin/v1/usage/report?tenant_id=${tenant.id}&granularity=month&group_by=tenant`);
    assert.equal(report.data.length, 1, JSON.stringify(report));
    const r = report.data[0];
    assert.equal(r.tenant_id, tenant.id);
    assert.equal(r.requests, want.requests);
    assert.equal(r.errors, want.errors);
    assert.equal(BigInt(r.input_tokens), want.input);
    assert.equal(BigInt(r.output_tokens), want.output);
    assert.equal(BigInt(r.cost_nanousd), want.cost);
    assert.ok(r.latency_ms.p50 >= 0 && r.latency_ms.p99 >= r.latency_ms.p50);
    // By key and team: k1's rows carry its team.
    const byKey = await c.adminOk('GET',
      `/admin/v1/usage/report?tenant_id=${tenant.id}&granularity=hour&group_by=team,key`);
    const k1Rows = rows.filter((x) => x.key_id === k1.id);
    const k1Report = byKey.data.filter((x) => x.key_id === k1.id);
    assert.equal(k1Report.reduce((s, x) => s + x.requests, 0), k1Rows.length);
    assert.ok(k1Report.every((x) => x.team_id === team.id));
    assert.ok(byKey.data.filter((x) => x.key_id === k2.id).every((x) => x.team_id === null));
    // CSV, same numbers.
    const res = await fetch(`${c.adminUrl}/admin/v1/usage/report?tenant_id=${tenant.id}&granularity=month&format=csv`,
      { headers: { authorization: `Bearer ${c.adminToken}` } });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /text\/csv/);
    const lines = (await res.text()).trim().split('\n');
    assert.equal(lines.length, 2, lines.join('\n'));
    const head = lines[0].split(',');
    const vals = lines[1].split(',');
    const col = (n) => vals[head.indexOf(n)];
    assert.equal(Number(col('requests')), want.requests);
    assert.equal(BigInt(col('input_tokens')), want.input);
    assert.equal(col('cost_usd'), report.data[0].cost_usd);
    // The tenant's own viewer sees the same; budgets show the spend of the current period.
    const viewer = await c.adminOk('POST', '/admin/v1/admin-tokens', { tenant_id: tenant.id, name: 'v', role: 'viewer' });
    const mine = await as(viewer.token)('GET', '/admin/v1/usage/report?granularity=month');
    assert.equal(mine.status, 200);
    assert.equal(mine.body.data[0].requests, want.requests);
    const budget = await c.adminOk('POST', '/admin/v1/budgets',
      { tenant_id: tenant.id, scope: 'tenant', period: 'monthly', hard_usd: 100 });
    const got = await c.adminOk('GET', `/admin/v1/budgets/${budget.id}`);
    assert.equal(BigInt(got.current_period.spend_nanousd), want.cost);
    assert.ok(got.current_period.start < got.current_period.end);
  });
});
