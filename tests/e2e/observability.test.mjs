// observability.test.mjs: /metrics on the dataplane and the control plane (parsed Prometheus text), the
// JSON access log, x-request-id, W3C traceparent propagation to the provider, and OTLP/HTTP spans
// received by a collector written here (a node http server on loopback).
//
// One cluster with one dataplane that logs to a file and exports to the collector; a second dataplane
// started by the test with a tiny label cap, an ops token and a collector address where nothing listens.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import {
  BINS, MODEL, Proc, UPSTREAM_MODEL, expectedCost, freePort, headerValue, metricSum as sum, readSSE, scrape,
  startCluster, waitFor, waitHttp,
} from './harness.mjs';

let c;
let seed;
let logPath;
let collector; // { server, url, requests: [parsed bodies] }
let capped; // the second dataplane
const OPS_TOKEN = `ops-${crypto.randomBytes(8).toString('hex')}`;
const rid = (p = 'obs') => `${p}-${crypto.randomUUID()}`;

// ---------------------------------------------------------------- helpers

function startCollector() {
  return new Promise((resolve) => {
    const requests = [];
    const server = http.createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (d) => { body += d; });
      req.on('end', () => {
        let parsed = null;
        try { parsed = JSON.parse(body); } catch { /* recorded as null: a test fails on it */ }
        requests.push({ path: req.url, contentType: req.headers['content-type'], body: parsed });
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{}');
      });
    });
    server.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${server.address().port}`, requests }));
  });
}

// Every span the collector received: [{traceId, spanId, parentSpanId, name, kind, attrs: {k: v}}].
function collectedSpans() {
  const out = [];
  for (const r of collector.requests) {
    for (const rs of r.body?.resourceSpans ?? []) {
      const service = rs.resource?.attributes?.find((a) => a.key === 'service.name')?.value?.stringValue;
      for (const ss of rs.scopeSpans ?? []) {
        for (const s of ss.spans ?? []) {
          const attrs = {};
          for (const a of s.attributes ?? []) attrs[a.key] = a.value.stringValue ?? a.value.intValue;
          out.push({ ...s, service, attrs });
        }
      }
    }
  }
  return out;
}

function accessLines() {
  if (!fs.existsSync(logPath)) return [];
  return fs.readFileSync(logPath, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

async function accessLine(requestId) {
  return waitFor(() => accessLines().find((l) => l.request_id === requestId), 5000,
    { what: `the access log line of ${requestId}` });
}

async function chat(dpUrl, body, headers = {}) {
  return c.chat(dpUrl, seed.key.key, body, { headers });
}

// ---------------------------------------------------------------- cluster

before(async () => {
  collector = await startCollector();
  c = await startCluster({
    dataplanes: 1,
    label: 'obs',
    dpEnv: (cl) => ({
      TOLLGATE_ACCESS_LOG: path.join(cl.dir, 'access.log'),
      TOLLGATE_OTLP_ENDPOINT: collector.url,
      TOLLGATE_OTLP_FLUSH_MS: '50',
      TOLLGATE_OTLP_SERVICE_NAME: 'tollgate-e2e',
    }),
  });
  logPath = path.join(c.dir, 'access.log');
  seed = await c.seed();

  // A second dataplane: label cap 3, an ops token, and a collector address where nothing listens.
  const port = await freePort();
  const deadPort = await freePort();
  capped = new Proc({
    name: 'dataplane-capped', bin: BINS.dataplane,
    env: {
      TOLLGATE_LISTEN: `127.0.0.1:${port}`,
      TOLLGATE_WORKERS: '2',
      TOLLGATE_CP_PUB_URL: c.cpEnv.TOLLGATE_CP_PUB_URL,
      TOLLGATE_CP_REP_URL: c.cpEnv.TOLLGATE_CP_REP_URL,
      TOLLGATE_CLUSTER_SECRET: c.clusterSecret,
      TOLLGATE_INSTANCE_ID: `obs-capped-${crypto.randomBytes(3).toString('hex')}`,
      TOLLGATE_METRICS_MAX_SERIES: '3',
      TOLLGATE_OPS_TOKEN: OPS_TOKEN,
      TOLLGATE_ACCESS_LOG: 'off',
      TOLLGATE_OTLP_ENDPOINT: `http://127.0.0.1:${deadPort}`,
      TOLLGATE_OTLP_FLUSH_MS: '50',
    },
    logPath: path.join(c.logDir, 'dataplane-capped.log'),
  });
  capped.url = `http://127.0.0.1:${port}`;
  capped.start();
  await waitHttp(capped, `${capped.url}/readyz`, 200);
  await c.waitKeyUsable(seed.key.key);
});

after(async () => {
  await capped?.stop();
  await c?.stop();
  await new Promise((resolve) => collector?.server.close(resolve) ?? resolve());
});

// ---------------------------------------------------------------- tests

describe('request ids', () => {
  test('a sane x-request-id is echoed and sent upstream', async () => {
    const id = rid();
    const res = await chat(c.dataplanes[0].url, { model: MODEL, messages: [{ role: 'user', content: 'hi' }] },
      { 'x-request-id': id });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-request-id'), id);
    const last = await (await fetch(`${c.mockUrl}/__mock/last`)).json();
    assert.equal(headerValue(last.headers, 'x-request-id'), id);
  });

  test('an insane one is replaced, and errors carry the id too', async () => {
    const res = await chat(c.dataplanes[0].url, { model: MODEL, messages: [{ role: 'user', content: 'hi' }] },
      { 'x-request-id': 'has space' });
    assert.match(res.headers.get('x-request-id'), /^req_[0-9a-f]{24}$/);
    const long = 'x'.repeat(200);
    const err = await c.chat(c.dataplanes[0].url, null, { model: MODEL, messages: [] }, { headers: { 'x-request-id': long } });
    assert.equal(err.status, 401);
    assert.match(err.headers.get('x-request-id'), /^req_[0-9a-f]{24}$/);
    const id = rid();
    const err2 = await c.chat(c.dataplanes[0].url, 'tg-wrong', { model: MODEL, messages: [] }, { headers: { 'x-request-id': id } });
    assert.equal(err2.status, 401);
    assert.equal(err2.headers.get('x-request-id'), id);
  });
});

describe('trace context', () => {
  test('the client traceparent is continued upstream and in the exported spans', async () => {
    const traceId = crypto.randomBytes(16).toString('hex');
    const clientSpan = crypto.randomBytes(8).toString('hex');
    const id = rid('trace');
    const res = await chat(c.dataplanes[0].url,
      { model: MODEL, messages: [{ role: 'user', content: 'trace me [mock:tokens=3]' }] },
      { 'x-request-id': id, traceparent: `00-${traceId}-${clientSpan}-01`, tracestate: 'vendor=abc' });
    assert.equal(res.status, 200);
    const last = await (await fetch(`${c.mockUrl}/__mock/last`)).json();
    const up = headerValue(last.headers, 'traceparent');
    const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(up ?? '');
    assert.ok(m, `upstream traceparent: ${up}`);
    assert.equal(m[1], traceId, 'same trace');
    assert.notEqual(m[2], clientSpan, 'a span of the gateway, not the client');
    assert.equal(headerValue(last.headers, 'tracestate'), 'vendor=abc');

    const spans = await waitFor(() => {
      const s = collectedSpans().filter((x) => x.traceId === traceId);
      return s.length >= 2 ? s : null;
    }, 10000, { what: 'two spans of the trace at the collector' });
    const server = spans.find((s) => s.kind === 2);
    const client = spans.find((s) => s.kind === 3);
    assert.equal(server.parentSpanId, clientSpan);
    assert.equal(server.service, 'tollgate-e2e');
    assert.equal(server.attrs['tollgate.request_id'], id);
    assert.equal(server.attrs['gen_ai.request.model'], MODEL);
    assert.equal(server.attrs['gen_ai.response.model'], UPSTREAM_MODEL);
    assert.equal(server.attrs['gen_ai.system'], 'openai');
    assert.equal(server.attrs['gen_ai.usage.output_tokens'], '3');
    assert.equal(server.attrs['http.response.status_code'], '200');
    assert.equal(server.attrs['tollgate.tenant_id'], seed.tenant.id);
    assert.equal(client.spanId, m[2], 'the attempt span is the one the provider saw');
    assert.equal(client.parentSpanId, server.spanId);
    assert.ok(BigInt(server.startTimeUnixNano) <= BigInt(client.startTimeUnixNano));
    assert.ok(BigInt(client.endTimeUnixNano) <= BigInt(server.endTimeUnixNano));
    assert.ok(collector.requests.every((r) => r.path === '/v1/traces' && r.contentType === 'application/json'));
  });

  test('without a traceparent the gateway starts a trace', async () => {
    const id = rid('newtrace');
    await chat(c.dataplanes[0].url, { model: MODEL, messages: [{ role: 'user', content: 'x' }] }, { 'x-request-id': id });
    const last = await (await fetch(`${c.mockUrl}/__mock/last`)).json();
    assert.match(headerValue(last.headers, 'traceparent') ?? '', /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    const line = await accessLine(id);
    assert.equal(headerValue(last.headers, 'traceparent').slice(3, 35), line.trace_id);
  });
});

describe('metrics', () => {
  test('requests, tokens and cost match the usage rows; histograms are cumulative', async () => {
    const dp = c.dataplanes[0].url;
    const labels = { tenant: seed.tenant.id, provider: 'mock', model: MODEL };
    const before = await scrape(dp);
    const ids = [];
    for (let i = 0; i < 3; i++) {
      const id = rid('m');
      ids.push(id);
      const res = await chat(dp, { model: MODEL, messages: [{ role: 'user', content: `metrics ${i} [mock:tokens=5,cached=2]` }] },
        { 'x-request-id': id });
      assert.equal(res.status, 200);
    }
    for (let i = 0; i < 2; i++) {
      const id = rid('ms');
      ids.push(id);
      const res = await fetch(`${dp}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${seed.key.key}`, 'content-type': 'application/json', 'x-request-id': id },
        body: JSON.stringify({ model: MODEL, stream: true, messages: [{ role: 'user', content: `stream ${i} [mock:tokens=4]` }] }),
      });
      const sse = await readSSE(res);
      assert.ok(sse.done);
    }
    const rows = await c.waitUsage(ids);
    // the line of a request is written when it ends, like its metrics: wait for the last one
    await accessLine(ids[ids.length - 1]);
    const after = await scrape(dp);
    const delta = (name, want) => sum(after, name, want) - sum(before, name, want);
    assert.equal(delta('tollgate_requests_total', { ...labels, endpoint: 'chat.completions', code: '200' }), 5);
    const tok = (k) => rows.reduce((a, r) => a + r[k], 0);
    assert.equal(delta('tollgate_tokens_total', { ...labels, type: 'input' }), tok('input_tokens'));
    assert.equal(delta('tollgate_tokens_total', { ...labels, type: 'output' }), tok('output_tokens'));
    assert.equal(delta('tollgate_tokens_total', { ...labels, type: 'cached' }), tok('cached_input_tokens'));
    const cost = rows.reduce((a, r) => a + BigInt(r.cost_nanousd), 0n);
    assert.ok(cost > 0n);
    assert.equal(BigInt(delta('tollgate_cost_nanousd_total', labels)), cost);
    assert.equal(cost, rows.reduce((a, r) => a + expectedCost({ input: r.input_tokens, cached: r.cached_input_tokens,
      output: r.output_tokens }), 0n));
    assert.equal(delta('tollgate_upstream_responses_total', { provider: 'mock', code: '200' }), 5);

    for (const h of ['tollgate_request_duration_seconds', 'tollgate_upstream_duration_seconds',
      'tollgate_time_to_first_token_seconds', 'tollgate_gateway_overhead_seconds']) {
      assert.equal(after.types[h], 'histogram');
      const buckets = after.samples.filter((s) => s.name === `${h}_bucket` && s.labels.provider === 'mock' &&
        s.labels.model === MODEL);
      assert.ok(buckets.length > 10, h);
      for (let i = 1; i < buckets.length; i++) {
        assert.ok(Number(buckets[i].labels.le) > Number(buckets[i - 1].labels.le) || buckets[i].labels.le === '+Inf');
        assert.ok(buckets[i].value >= buckets[i - 1].value, `${h} buckets are cumulative`);
      }
      assert.equal(buckets.at(-1).labels.le, '+Inf');
      assert.equal(buckets.at(-1).value, sum(after, `${h}_count`, { provider: 'mock', model: MODEL }));
      assert.equal(delta(`${h}_count`, { provider: 'mock', model: MODEL }), 5);
    }
    assert.ok(sum(after, 'tollgate_snapshot_version') > 0);
    assert.ok(sum(after, 'tollgate_snapshot_age_seconds') >= 0);
    assert.equal(after.types.tollgate_usage_queue_depth, 'gauge');
    assert.ok(sum(after, 'tollgate_requests_in_flight') >= 1, 'the scrape itself is in flight');
    assert.equal(sum(after, 'tollgate_otlp_spans_dropped_total'), 0);
  });

  test('retries and fallbacks after a failing target', async () => {
    const dp = c.dataplanes[0].url;
    const deadPort = await freePort(); // nothing listens there: connection refused
    const dead = await c.adminOk('POST', '/admin/v1/providers',
      { name: 'dead', kind: 'openai', base_url: `http://127.0.0.1:${deadPort}/v1`, api_keys: [{ secret: 'sk-x' }],
        settings: { max_retries: '1' } });
    const model = 'obs-fallback';
    await c.adminOk('POST', '/admin/v1/routes', { name: model, targets: [
      { provider_id: dead.id, model: 'dead-model' }, { provider_id: seed.provider.id, model: UPSTREAM_MODEL, weight: 0 }] }); // weight 0: fallback only, so 'dead' is always first
    await c.waitModelVisible(seed.key.key, model);
    const before = await scrape(dp);
    const id = rid('fo');
    const res = await chat(dp, { model, messages: [{ role: 'user', content: 'fall back [mock:tokens=2]' }] },
      { 'x-request-id': id });
    assert.equal(res.status, 200, res.text);
    const line = await accessLine(id);
    const after = await scrape(dp);
    const delta = (name, want) => sum(after, name, want) - sum(before, name, want);
    assert.equal(delta('tollgate_retries_total', { provider: 'dead', model }), 1, JSON.stringify(line));
    assert.equal(delta('tollgate_fallbacks_total', { model, from: 'dead', to: 'mock' }), 1);
    assert.equal(delta('tollgate_upstream_responses_total', { provider: 'dead', code: 'conn_error' }), 2);
    assert.equal(delta('tollgate_requests_total', { provider: 'mock', model, code: '200' }), 1);
    assert.equal(line.attempts, 3);
    assert.equal(line.retries, 1);
    assert.equal(line.fallbacks, 1);
    assert.equal(line.targets_tried, 'dead/dead-model=conn_error,dead/dead-model=conn_error,mock/mock-gpt-upstream=200');
    assert.equal(line.provider, 'mock');
    assert.ok(line.latency_ms.upstream <= line.latency_ms.total);
  });

  test('label sets beyond the cap fold into "other"; /metrics wants the ops token', async () => {
    const noToken = await fetch(`${capped.url}/metrics`);
    assert.equal(noToken.status, 401);
    await noToken.arrayBuffer();
    const codes = [200, 400, 404, 409, 418, 422];
    for (const code of codes) {
      const content = code === 200 ? 'ok' : `fail [mock:status=${code}]`;
      const res = await chat(capped.url, { model: MODEL, messages: [{ role: 'user', content }] });
      assert.equal(res.status, code);
    }
    const prom = await waitFor(async () => {
      const p = await scrape(capped.url, { token: OPS_TOKEN });
      return sum(p, 'tollgate_requests_total') >= codes.length ? p : null;
    }, 5000, { what: 'the capped dataplane to count its requests' });
    const series = prom.samples.filter((s) => s.name === 'tollgate_requests_total');
    assert.ok(series.length <= 4, `at most 3 label sets and "other": ${JSON.stringify(series)}`);
    const other = series.find((s) => Object.values(s.labels).every((v) => v === 'other'));
    assert.ok(other, 'an "other" series');
    assert.equal(sum(prom, 'tollgate_requests_total'), codes.length, 'nothing is lost, only folded');
  });

  test('spans that cannot be exported are dropped and counted', async () => {
    const res = await chat(capped.url, { model: MODEL, messages: [{ role: 'user', content: 'span' }] });
    assert.equal(res.status, 200);
    const prom = await waitFor(async () => {
      const p = await scrape(capped.url, { token: OPS_TOKEN });
      return sum(p, 'tollgate_otlp_spans_dropped_total', { reason: 'export_failed' }) >= 2 ? p : null;
    }, 15000, { what: 'dropped spans to be counted' });
    assert.equal(sum(prom, 'tollgate_otlp_spans_exported_total'), 0);
    assert.equal(sum(prom, 'tollgate_otlp_spans_dropped_total', { reason: 'queue_full' }), 0);
  });
});

describe('access log', () => {
  test('lines waiting in a worker are written when the dataplane stops (SIGTERM loses none)', async () => {
    // a flush period far longer than the test and fewer bytes than PIPE_BUF: the lines can reach the
    // file only through the flush at the workers' stop
    const port = await freePort();
    const file = path.join(c.dir, 'access-term.log');
    const dp = new Proc({
      name: 'dataplane-logterm', bin: BINS.dataplane,
      env: {
        TOLLGATE_LISTEN: `127.0.0.1:${port}`,
        TOLLGATE_WORKERS: '2',
        TOLLGATE_CP_PUB_URL: c.cpEnv.TOLLGATE_CP_PUB_URL,
        TOLLGATE_CP_REP_URL: c.cpEnv.TOLLGATE_CP_REP_URL,
        TOLLGATE_CLUSTER_SECRET: c.clusterSecret,
        TOLLGATE_INSTANCE_ID: `obs-logterm-${crypto.randomBytes(3).toString('hex')}`,
        TOLLGATE_ACCESS_LOG: file,
        TOLLGATE_ACCESS_LOG_FLUSH_MS: '60000',
      },
      logPath: path.join(c.logDir, 'dataplane-logterm.log'),
    });
    dp.url = `http://127.0.0.1:${port}`;
    dp.start();
    try {
      await waitHttp(dp, `${dp.url}/readyz`, 200);
      await waitFor(async () => {
        const res = await fetch(`${dp.url}/v1/models`, { headers: { authorization: `Bearer ${seed.key.key}` } });
        await res.arrayBuffer();
        return res.status === 200;
      }, 5000, { what: 'the new dataplane to accept the key' });
      const ids = [];
      for (let i = 0; i < 4; i++) {
        const id = rid('term');
        ids.push(id);
        const res = await chat(dp.url, { model: MODEL, messages: [{ role: 'user', content: 'hi [mock:tokens=2]' }] },
          { 'x-request-id': id });
        assert.equal(res.status, 200);
      }
    } finally {
      const exit = await dp.stop();
      assert.equal(exit.code, 0, dp.describe('dataplane exit'));
    }
    const lines = fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
    const term = lines.filter((l) => l.request_id.startsWith('term-'));
    assert.equal(term.length, 4);
  });

  test('one line per request with the documented fields and no prompt text', async () => {
    const marker = `secret-prompt-${crypto.randomUUID()}`;
    const id = rid('log');
    const res = await chat(c.dataplanes[0].url,
      { model: MODEL, messages: [{ role: 'user', content: `${marker} [mock:tokens=3,cached=1]` }] }, { 'x-request-id': id });
    assert.equal(res.status, 200);
    const [row] = await c.waitUsage([id]);
    const line = await accessLine(id);
    assert.equal(accessLines().filter((l) => l.request_id === id).length, 1);
    assert.match(line.ts, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.match(line.trace_id, /^[0-9a-f]{32}$/);
    assert.equal(line.method, 'POST');
    assert.equal(line.path, '/v1/chat/completions');
    assert.equal(line.endpoint, 'chat.completions');
    assert.equal(line.tenant, seed.tenant.id);
    assert.equal(line.key_id, seed.key.id);
    assert.equal(line.model, MODEL);
    assert.equal(line.provider, 'mock');
    assert.equal(line.upstream_model, UPSTREAM_MODEL);
    assert.equal(line.targets_tried, `mock/${UPSTREAM_MODEL}=200`);
    assert.equal(line.attempts, 1);
    assert.equal(line.status, 200);
    assert.equal(line.error_code, null);
    assert.equal(line.stream, false);
    assert.equal(line.input_tokens, row.input_tokens);
    assert.equal(line.output_tokens, row.output_tokens);
    assert.equal(line.cached_tokens, row.cached_input_tokens);
    assert.equal(String(line.cost_nanousd), row.cost_nanousd);
    for (const k of ['total', 'upstream', 'ttfb', 'overhead']) assert.equal(typeof line.latency_ms[k], 'number', k);
    assert.match(line.client, /^127\.0\.0\.1:\d+$/);
    const text = fs.readFileSync(logPath, 'utf8');
    assert.ok(!text.includes(marker), 'no prompt text');
    assert.ok(!text.includes(seed.key.key), 'no virtual key');
    assert.ok(!text.includes(c.mockSecret), 'no provider secret');
  });

  test('errors are logged with their code', async () => {
    const id = rid('err');
    const res = await chat(c.dataplanes[0].url, { model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] },
      { 'x-request-id': id });
    assert.equal(res.status, 404);
    const line = await accessLine(id);
    assert.equal(line.status, 404);
    assert.equal(line.error_code, 'model_not_found');
  });

  test('a request that outlives its snapshot is still logged with its names', async () => {
    // the line is written after the exchange let go of its snapshot: the record must hold its own
    const dp = c.dataplanes[0].url;
    const id = rid('outlive');
    const streaming = fetch(`${dp}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${seed.key.key}`, 'content-type': 'application/json', 'x-request-id': id },
      body: JSON.stringify({ model: MODEL, stream: true,
        messages: [{ role: 'user', content: 'slow [mock:tokens=4,chunk_delay_ms=150]' }] }),
    }).then(readSSE);
    const before = sum(await scrape(dp), 'tollgate_snapshot_version');
    const key = await c.createKey(seed.tenant.id, { name: 'outlive' }); // a new snapshot
    // requests on new connections reach both workers, which then drop the old snapshot
    await Promise.all(Array.from({ length: 16 }, () => fetch(`${dp}/v1/models`, {
      headers: { authorization: `Bearer ${key.key}`, connection: 'close' } }).then((r) => r.arrayBuffer())));
    assert.ok(sum(await scrape(dp), 'tollgate_snapshot_version') > before);
    const sse = await streaming;
    assert.ok(sse.done);
    const line = await accessLine(id);
    assert.equal(line.provider, 'mock');
    assert.equal(line.tenant, seed.tenant.id);
    assert.equal(line.key_id, seed.key.id);
    assert.equal(line.upstream_model, UPSTREAM_MODEL);
    assert.equal(line.output_tokens, 4);
  });

  test('a tenant with log_content on gets the bodies in its lines', async () => {
    await c.sql('UPDATE tenants SET log_content = true WHERE id = $1', [seed.tenant.id]);
    try {
      const marker = `visible-prompt-${crypto.randomUUID()}`;
      // the flag travels with the next snapshot: retry until a line shows it (bounded)
      const line = await waitFor(async () => {
        const id = rid('content');
        const res = await chat(c.dataplanes[0].url,
          { model: MODEL, messages: [{ role: 'user', content: `${marker} [mock:tokens=2]` }] }, { 'x-request-id': id });
        assert.equal(res.status, 200);
        const l = await accessLine(id);
        return l.request_body ? l : null;
      }, 10000, { intervalMs: 200, what: 'a line with the request body' });
      assert.ok(line.request_body.includes(marker));
      const resp = JSON.parse(line.response_body);
      assert.equal(resp.choices[0].message.content, 'Hello from');
    } finally {
      await c.sql('UPDATE tenants SET log_content = false WHERE id = $1', [seed.tenant.id]);
    }
  });
});

describe('control plane metrics', () => {
  test('admin calls, snapshots and usage ingestion are counted', async () => {
    await c.adminOk('GET', `/admin/v1/tenants/${seed.tenant.id}`);
    const snap = await c.adminOk('GET', '/admin/v1/snapshot');
    const prom = await scrape(c.adminUrl);
    assert.ok(sum(prom, 'tollgate_cp_admin_requests_total', { route: 'POST /admin/v1/tenants', code: '201' }) >= 1);
    assert.ok(sum(prom, 'tollgate_cp_admin_requests_total', { route: 'GET /admin/v1/tenants/*', code: '200' }) >= 1);
    assert.ok(sum(prom, 'tollgate_cp_admin_requests_total', { route: 'POST /admin/v1/keys', code: '201' }) >= 1);
    assert.ok(prom.samples.every((s) => s.name !== 'tollgate_cp_admin_requests_total' ||
      !s.labels.route.includes(seed.tenant.id)), 'ids never become labels');
    assert.ok(sum(prom, 'tollgate_cp_snapshot_version') >= snap.version);
    assert.ok(sum(prom, 'tollgate_cp_snapshot_publishes_total') >= 1);
    assert.ok(sum(prom, 'tollgate_cp_snapshot_build_duration_seconds_count') >= 1);
    assert.equal(sum(prom, 'tollgate_cp_leader'), 1);
    assert.equal(sum(prom, 'tollgate_cp_database_up'), 1);
    // every stored record is counted once (batches may still arrive: compare until both agree, bounded)
    await waitFor(async () => {
      const stored = (await c.sql('SELECT count(*)::int AS n FROM usage_events'))[0].n;
      const counted = sum(await scrape(c.adminUrl), 'tollgate_cp_usage_records_total');
      return stored > 0 && counted === stored;
    }, 10000, { intervalMs: 200, what: 'tollgate_cp_usage_records_total to equal the usage rows' });
    assert.ok(sum(prom, 'tollgate_cp_usage_batches_total', { result: 'stored' }) >= 1);
    assert.ok(sum(prom, 'tollgate_cp_usage_ingest_duration_seconds_count') >= 1);
    const unauth = await c.admin('GET', '/admin/v1/tenants', undefined, { token: null });
    assert.equal(unauth.status, 401);
    const after = await scrape(c.adminUrl);
    assert.ok(sum(after, 'tollgate_cp_admin_requests_total', { route: 'unmatched', code: '401' }) >= 1);
  });
});

describe('shutdown', () => {
  test('a graceful stop exits clean, even with the collector down', async () => {
    const info = await capped.stop();
    assert.equal(info.forced, false);
    assert.equal(info.code, 0, capped.describe('exit status'));
  });

  test('spans still queued at SIGTERM are flushed before the exit', async () => {
    const dp = c.dataplanes[0];
    const first = await dp.stop(); // everything this dataplane served so far: a clean exit (sanitizers)
    assert.equal(first.code, 0, dp.describe('exit status'));
    dp.env.TOLLGATE_OTLP_FLUSH_MS = '60000'; // no periodic flush during this test
    dp.start();
    await waitHttp(dp, `${dp.url}/readyz`, 200);
    const traceId = crypto.randomBytes(16).toString('hex');
    const res = await chat(dp.url, { model: MODEL, messages: [{ role: 'user', content: 'last words' }] },
      { traceparent: `00-${traceId}-${crypto.randomBytes(8).toString('hex')}-01` });
    assert.equal(res.status, 200);
    await accessLine(res.headers.get('x-request-id')); // the request ended: its spans are queued
    assert.equal(collectedSpans().filter((s) => s.traceId === traceId).length, 0, 'not sent yet');
    const info = await dp.stop();
    assert.equal(info.code, 0, dp.describe('exit status'));
    assert.equal(collectedSpans().filter((s) => s.traceId === traceId).length, 2);
  });
});
