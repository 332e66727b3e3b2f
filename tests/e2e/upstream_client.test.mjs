// upstream_client.test.mjs: the dataplane's two upstream clients (dataplane/upstream/: the lean HTTP/1.1
// client, the default, and libcurl with TOLLGATE_UPSTREAM_CLIENT=curl). Both must reuse pooled
// connections, retry a request once, transparently, when a reused connection turns out to be closed
// before any answer, resolve host names, and verify TLS (an upstream whose certificate does not chain to
// the configured CA, or names another host, is refused with a 502).
//
// One dataplane with one worker per cluster, so that every request uses the same connection pool.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { MODEL, mockText, readSSE, startCluster } from './harness.mjs';

// A CA, a certificate for 127.0.0.1 signed by it, and a self-signed one, made with openssl here.
function makeCerts(dir) {
  const ssl = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2',
    '-subj', '/CN=Tollgate test CA');
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'srv.key', '-out', 'srv.csr', '-subj', '/CN=127.0.0.1');
  fs.writeFileSync(path.join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\n');
  ssl('x509', '-req', '-in', 'srv.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'srv.pem',
    '-days', '2', '-extfile', 'ext.cnf');
  // signed by the right CA, but for another name
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'other.key', '-out', 'other.csr', '-subj', '/CN=other.test');
  fs.writeFileSync(path.join(dir, 'ext2.cnf'), 'subjectAltName=DNS:other.test\n');
  ssl('x509', '-req', '-in', 'other.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'other.pem',
    '-days', '2', '-extfile', 'ext2.cnf');
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'self.key', '-out', 'self.pem', '-days', '2',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1');
  const read = (f) => fs.readFileSync(path.join(dir, f));
  return { ca: path.join(dir, 'ca.pem'), good: { key: read('srv.key'), cert: read('srv.pem') },
    otherName: { key: read('other.key'), cert: read('other.pem') }, self: { key: read('self.key'), cert: read('self.pem') } };
}

// A minimal OpenAI-compatible upstream over TLS: every chat request gets the same completion.
function startTlsUpstream({ key, cert }) {
  let requests = 0;
  let connections = 0;
  const server = https.createServer({ key, cert }, (req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      requests++;
      const model = JSON.parse(body).model;
      if (model === 'empty-503') { // an answer with no body at all: the client must not wait for one
        res.writeHead(503, { 'content-length': 0 });
        res.end();
        return;
      }
      const out = JSON.stringify({ id: 'chatcmpl-tls', object: 'chat.completion', created: 1, model,
        choices: [{ index: 0, message: { role: 'assistant', content: 'over tls' }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 } });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out) });
      res.end(out);
    });
  });
  server.on('secureConnection', () => { connections++; });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve({ server, port: server.address().port, count: () => requests,
      connections: () => connections }));
  });
}

// A request to the mock on a connection of its own, closed after it: the mock's connection count then
// grows by exactly one per call, which the tests subtract.
function mockCall(base, method, urlPath, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}${urlPath}`, { method, agent: false, headers: { connection: 'close' },
      timeout: 10000 }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, body: text ? JSON.parse(text) : null }));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('mock call timed out')));
    req.end(body);
  });
}

const hello = (text = 'hello') => ({ model: MODEL, messages: [{ role: 'user', content: text }] });

for (const client of ['lean', 'curl']) {
  describe(`upstream client: ${client}`, () => {
    let c;
    let seed;
    let dir;
    let certs;
    const tls = {};

    before(async () => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-tls-'));
      certs = makeCerts(dir);
      [tls.good, tls.otherName, tls.self] = await Promise.all(
        [certs.good, certs.otherName, certs.self].map((kc) => startTlsUpstream(kc)));
      c = await startCluster({ dataplanes: 1, label: `up-${client}`,
        dpEnv: { TOLLGATE_WORKERS: '1', TOLLGATE_UPSTREAM_CLIENT: client, TOLLGATE_CA_BUNDLE: certs.ca } });
      seed = await c.seed();
    });

    after(async () => {
      await c?.stop();
      for (const t of Object.values(tls)) t.server.close();
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    // the mock's counters; its connection count includes this call's own connection
    const stats = async () => (await mockCall(c.mockUrl, 'GET', '/__mock/stats')).body;

    test('sequential requests share one pooled upstream connection', async () => {
      assert.equal((await c.chat(0, seed.key.key, hello())).status, 200); // warms the pool
      const before = await stats();
      for (let i = 0; i < 10; i++) {
        const r = await c.chat(0, seed.key.key, hello(`seq ${i}`));
        assert.equal(r.status, 200, r.text);
        assert.equal(r.body.choices[0].message.content, mockText(16));
      }
      // a stream, then plain requests again: a stream read to its end leaves the connection reusable
      const res = await fetch(`${c.dataplanes[0].url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${seed.key.key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ ...hello('stream [mock:tokens=5]'), stream: true }),
        signal: AbortSignal.timeout(30000) });
      const sse = await readSSE(res);
      assert.equal(sse.done, true);
      assert.equal((await c.chat(0, seed.key.key, hello('after the stream'))).status, 200);
      const after = await stats();
      assert.equal(after.requests - before.requests, 12);
      assert.equal(after.connections - before.connections, 1, 'no new upstream connection (1: the stats call)');
    });

    test('a reused connection the provider closes before answering is retried once, inside the client', async () => {
      assert.equal((await c.chat(0, seed.key.key, hello())).status, 200); // a pooled connection exists
      const before = await stats();
      const plan = await mockCall(c.mockUrl, 'POST', '/__mock/fail', JSON.stringify({ status: 0, count: 1 }));
      assert.equal(plan.status, 200);
      const r = await c.chat(0, seed.key.key, hello('stale'));
      assert.equal(r.status, 200, r.text);
      // the gateway names its attempts only when there were several: the repeat was the client's own
      assert.equal(r.headers.get('x-tollgate-attempts'), null, 'one gateway attempt');
      const after = await stats();
      assert.equal(after.requests - before.requests, 2, 'the dropped request and its repeat');
      // one fresh upstream connection for the repeat, plus the plan's and the stats call's own
      assert.equal(after.connections - before.connections, 3, 'the repeat went out on a fresh connection');
    });

    test('a slow client pauses the upstream read and loses nothing (backpressure)', async () => {
      // ~19 MB of events: more than the loopback socket buffers on both sides (a few MB each) plus what the
      // gateway keeps for a client that is not reading, so the gateway has to stop reading upstream
      const n = 100000;
      const body = JSON.stringify({ ...hello(`big [mock:tokens=${n}]`), stream: true });
      const text = await new Promise((resolve, reject) => {
        const req = http.request(`${c.dataplanes[0].url}/v1/chat/completions`, { method: 'POST', agent: false,
          headers: { authorization: `Bearer ${seed.key.key}`, 'content-type': 'application/json' }, timeout: 60000 },
        (res) => {
          let raw = '';
          let paused = 0;
          res.setEncoding('utf8');
          res.on('data', (d) => {
            raw += d;
            if (paused < 2 && raw.length > (paused + 1) * 4000000) { // stop reading a while, twice
              paused++;
              res.pause();
              setTimeout(() => res.resume(), 1000);
            }
          });
          res.on('end', () => resolve(raw));
          res.on('error', reject);
        });
        req.on('error', reject);
        req.on('timeout', () => req.destroy(new Error('stream timed out')));
        req.end(body);
      });
      const events = text.split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => e.slice(6));
      assert.equal(events.at(-1), '[DONE]');
      const content = events.slice(0, -1).map((e) => JSON.parse(e).choices?.[0]?.delta?.content ?? '').join('');
      assert.equal(content, mockText(n));
    });

    test('a host name is resolved (localhost)', async () => {
      const port = new URL(c.mockUrl).port;
      const p = await c.createProvider(`byname-${client}`, `http://localhost:${port}/v1`);
      await c.createRoute(`byname-${client}`, p.id, 'mock-byname');
      await c.waitModelVisible(seed.key.key, `byname-${client}`);
      const r = await c.chat(0, seed.key.key, { ...hello(), model: `byname-${client}` });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.body.choices[0].message.content, mockText(16));
    });

    test('https: a certificate from the configured CA is accepted; a wrong CA or name is refused with 502', async () => {
      const routes = {};
      for (const [name, t] of Object.entries(tls)) {
        const p = await c.createProvider(`tls-${name}-${client}`, `https://127.0.0.1:${t.port}/v1`);
        const model = `tls-${name}-${client}`;
        await c.createRoute(model, p.id, 'tls-upstream');
        routes[name] = model;
      }
      for (const model of Object.values(routes)) await c.waitModelVisible(seed.key.key, model);

      for (let i = 0; i < 3; i++) {
        const ok = await c.chat(0, seed.key.key, { ...hello(), model: routes.good });
        assert.equal(ok.status, 200, ok.text);
        assert.equal(ok.body.choices[0].message.content, 'over tls');
      }
      assert.equal(tls.good.count(), 3);
      assert.equal(tls.good.connections(), 1, 'one pooled TLS connection');


      // an empty answer (Content-Length: 0) ends the call at once; the provider's 503 reaches the client
      const p = await c.createProvider(`tls-empty-${client}`, `https://127.0.0.1:${tls.good.port}/v1`);
      await c.createRoute(`tls-empty-${client}`, p.id, 'empty-503');
      await c.waitModelVisible(seed.key.key, `tls-empty-${client}`);
      const empty = await c.chat(0, seed.key.key, { ...hello(), model: `tls-empty-${client}` });
      assert.equal(empty.status, 503, empty.text);

      for (const bad of ['self', 'otherName']) {
        const r = await c.chat(0, seed.key.key, { ...hello(), model: routes[bad] });
        assert.equal(r.status, 502, `${bad}: ${r.text}`);
        assert.equal(r.body.error.code, 'upstream_unreachable');
        assert.match(r.body.error.message, /TLS|SSL/, 'the message says it was the TLS check');
        assert.equal(tls[bad].count(), 0, `${bad}: no request may reach an unverified upstream`);
      }
    });
  });
}
