// connections.test.mjs: client connections held by the dataplane. An idle keep-alive connection (HTTP/1.1
// or HTTP/2) is closed after TOLLGATE_CLIENT_TIMEOUT_MS, counted from its last request, and not before;
// a request on it in the meantime is served and starts the count again. The default (10 s) keeps a
// connection that a client leaves idle for a few seconds.
//
// Dataplane 0 runs with a 1.5 s timeout, dataplane 1 with the default. The bounds asserted are wide
// (seconds), because the VM is noisy: what is checked is which timeout applies, not how precisely.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { sleep, startCluster } from './harness.mjs';

let c;
let key;

before(async () => {
  c = await startCluster({ dataplanes: 2, label: 'conn',
    dpEnv: (cl) => (cl.dataplanes.length === 0 ? { TOLLGATE_CLIENT_TIMEOUT_MS: '1500' } : {}) });
  key = (await c.seed()).key.key;
});

after(async () => {
  await c?.stop();
});

// A raw HTTP/1.1 keep-alive connection: get() sends GET /v1/models and resolves with the status once
// the whole answer (content-length framed) is in; `closedAt` is set when the server closes.
function rawConnection(dp) {
  const sock = net.connect(dp.port, '127.0.0.1');
  const conn = { sock, closedAt: null, buf: Buffer.alloc(0), waiting: null };
  sock.on('data', (d) => {
    conn.buf = Buffer.concat([conn.buf, d]);
    const end = conn.buf.indexOf('\r\n\r\n');
    if (end < 0 || !conn.waiting) return;
    const head = conn.buf.subarray(0, end).toString();
    const m = /content-length:\s*(\d+)/i.exec(head);
    if (!m) { // JSON answers are whole bodies, framed by their length
      conn.waiting.reject(new Error(`no content-length in ${head}`));
      conn.waiting = null;
      return;
    }
    const len = Number(m[1]);
    if (conn.buf.length < end + 4 + len) return;
    conn.buf = conn.buf.subarray(end + 4 + len);
    const w = conn.waiting;
    conn.waiting = null;
    w.resolve(Number(head.split(' ')[1]));
  });
  sock.on('close', () => {
    conn.closedAt = performance.now();
    conn.waiting?.reject(new Error('closed before the answer'));
  });
  conn.get = () => new Promise((resolve, reject) => {
    conn.waiting = { resolve, reject };
    sock.write(`GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${key}\r\n\r\n`);
  });
  return new Promise((resolve, reject) => {
    sock.once('connect', () => resolve(conn));
    sock.once('error', reject);
  });
}

// Polls until conn.closedAt is set or `ms` pass; returns it (null: still open).
async function waitClosed(conn, ms) {
  const until = performance.now() + ms;
  while (conn.closedAt == null && performance.now() < until) await sleep(50);
  return conn.closedAt;
}

test('HTTP/1.1: an idle connection is closed after TOLLGATE_CLIENT_TIMEOUT_MS from its last request', async () => {
  const conn = await rawConnection(c.dataplanes[0]);
  assert.equal(await conn.get(), 200);
  await sleep(700);
  assert.equal(conn.closedAt, null, 'closed before the timeout');
  // a second request inside the window is served on the same connection and restarts the count
  assert.equal(await conn.get(), 200);
  const answeredAt = performance.now();
  const closedAt = await waitClosed(conn, 9000);
  assert.ok(closedAt != null, 'the idle connection was never closed');
  const idleMs = closedAt - answeredAt;
  assert.ok(idleMs >= 1000, `closed ${idleMs.toFixed(0)} ms after the last answer, before the 1.5 s timeout`);
  assert.ok(idleMs < 8000, `closed ${idleMs.toFixed(0)} ms after the last answer: not the configured timeout`);
});

test('HTTP/1.1: the default keeps a connection idle for 3 s and serves it again', async () => {
  const conn = await rawConnection(c.dataplanes[1]);
  assert.equal(await conn.get(), 200);
  await sleep(3000);
  assert.equal(conn.closedAt, null, 'closed by the default timeout within 3 s');
  assert.equal(await conn.get(), 200);
  conn.sock.destroy();
});

test('HTTP/2: an idle session is closed after TOLLGATE_CLIENT_TIMEOUT_MS', async () => {
  const session = http2.connect(c.dataplanes[0].url);
  session.on('error', () => {}); // a GOAWAY followed by the close is the expected end
  const conn = { closedAt: null };
  session.on('close', () => { conn.closedAt = performance.now(); });
  const status = await new Promise((resolve, reject) => {
    const req = session.request({ ':method': 'GET', ':path': '/v1/models', authorization: `Bearer ${key}` });
    req.on('response', (h) => { req.resume(); req.on('end', () => resolve(h[':status'])); });
    req.on('error', reject);
    req.end();
  });
  assert.equal(status, 200);
  const answeredAt = performance.now();
  const closedAt = await waitClosed(conn, 9000);
  session.destroy();
  assert.ok(closedAt != null, 'the idle HTTP/2 session was never closed');
  const idleMs = closedAt - answeredAt;
  assert.ok(idleMs >= 1000 && idleMs < 8000, `closed ${idleMs.toFixed(0)} ms after the answer`);
});
