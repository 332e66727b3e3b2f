// http2.test.mjs: requests over HTTP/2 (h2c, prior knowledge, as h2load and gRPC-style clients speak
// it). The dataplane moves an HTTP/2 request's body out of h2o's per-stream buffer into the request's
// pool as soon as the request arrives (dataplane/ingress/body.c); these tests check that the body the
// upstream sees is the one the client sent (the mock counts its bytes into prompt_tokens), for bodies
// of one DATA frame and of many, for plain and streamed replies, for several streams at once on one
// connection, and that a bad body still gets a clear error. Also HTTP/1.1 bodies larger than the 4 KB
// that a worker's socket input buffers start at (dataplane/server/worker.c): the buffer has to grow.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { MODEL, mockText, promptTokens, startCluster } from './harness.mjs';

let c;
let seed;

before(async () => {
  c = await startCluster({ dataplanes: 1, label: 'h2' });
  seed = await c.seed();
});

after(async () => {
  await c?.stop();
});

// One POST on an open HTTP/2 session. Resolves {status, headers, text}.
function post(session, path, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/json',
      authorization: `Bearer ${seed.key.key}`, ...headers });
    req.setTimeout(30000, () => req.close(http2.constants.NGHTTP2_CANCEL));
    let status = 0;
    let head = {};
    let text = '';
    req.setEncoding('utf8');
    req.on('response', (h) => { status = h[':status']; head = h; });
    req.on('data', (d) => { text += d; });
    req.on('end', () => resolve({ status, headers: head, text }));
    req.on('error', reject);
    req.end(body);
  });
}

// The content of an SSE chat stream, and whether it ended with [DONE].
function sseContent(text) {
  let content = '';
  let done = false;
  for (const block of text.split('\n\n')) {
    const data = block.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('');
    if (data === '') continue;
    if (data === '[DONE]') { done = true; continue; }
    const ev = JSON.parse(data);
    content += ev.choices?.[0]?.delta?.content ?? '';
  }
  return { content, done };
}

// The last request the mock received, its body parsed (tests/mock: GET /__mock/last).
const mockLast = async () => (await fetch(`${c.mockUrl}/__mock/last`)).json();

// A user message of about `bytes` bytes (ASCII), ending in a mock directive.
function userText(bytes, directive) {
  const words = 'Every byte of this body has to reach the provider unchanged. ';
  let s = '';
  while (s.length < bytes) s += words;
  return s.slice(0, bytes) + directive;
}

describe('HTTP/2 clients', () => {
  let session;
  before(async () => {
    session = http2.connect(c.dataplanes[0].url);
    await new Promise((resolve, reject) => { session.once('connect', resolve); session.once('error', reject); });
  });
  after(() => session?.close());

  for (const bytes of [200, 40000]) {
    test(`non-streaming, ${bytes}-byte prompt: the upstream gets the whole body`, async () => {
      const messages = [{ role: 'user', content: userText(bytes, ' [mock:tokens=5]') }];
      const res = await post(session, '/v1/chat/completions', JSON.stringify({ model: MODEL, messages }));
      assert.equal(res.status, 200, res.text);
      const b = JSON.parse(res.text);
      assert.equal(b.choices[0].message.content, mockText(5));
      assert.equal(b.usage.prompt_tokens, promptTokens(messages));
      assert.equal((await mockLast()).body.messages[0].content, messages[0].content, 'byte for byte');
    });
  }

  test('streams at once on one connection: each relays its own reply and its own body', async () => {
    const n = 8;
    const runs = [];
    for (let i = 0; i < n; i++) {
      const tokens = 3 + i;
      const messages = [{ role: 'user', content: userText(100 + 700 * i, ` [mock:tokens=${tokens},chunk_delay_ms=20]`) }];
      const body = JSON.stringify({ model: MODEL, messages, stream: true, stream_options: { include_usage: true } });
      runs.push(post(session, '/v1/chat/completions', body).then((res) => ({ res, tokens, messages })));
    }
    for (const { res, tokens, messages } of await Promise.all(runs)) {
      assert.equal(res.status, 200, res.text);
      assert.match(String(res.headers['content-type']), /^text\/event-stream/);
      const { content, done } = sseContent(res.text);
      assert.equal(content, mockText(tokens));
      assert.ok(done, 'the stream ends with [DONE]');
      const usage = res.text.split('\n').filter((l) => l.startsWith('data: {'))
        .map((l) => JSON.parse(l.slice(6))).find((e) => e.usage)?.usage;
      assert.ok(usage, 'a usage chunk was relayed');
      assert.equal(usage.prompt_tokens, promptTokens(messages));
      assert.equal(usage.completion_tokens, tokens);
    }
  });

  test('a body that is not JSON gets a 400 in the OpenAI dialect', async () => {
    const res = await post(session, '/v1/chat/completions', '{"model": "mock-gpt", "messages": [');
    assert.equal(res.status, 400, res.text);
    const b = JSON.parse(res.text);
    assert.equal(typeof b.error?.message, 'string');
    assert.ok(b.error.message.length > 0);
  });

  test('the Anthropic endpoint translates an HTTP/2 body too', async () => {
    const messages = [{ role: 'user', content: userText(3000, ' [mock:tokens=4]') }];
    const res = await post(session, '/anthropic/v1/messages',
      JSON.stringify({ model: MODEL, max_tokens: 64, messages }), { 'anthropic-version': '2023-06-01' });
    assert.equal(res.status, 200, res.text);
    const b = JSON.parse(res.text);
    assert.equal(b.content[0].text, mockText(4));
    assert.equal(b.usage.input_tokens, promptTokens(messages));
  });
});

describe('HTTP/1.1 bodies larger than the first socket buffer', () => {
  for (const bytes of [3900, 40000]) {
    test(`${bytes}-byte prompt, plain and streamed: the upstream gets the whole body`, async () => {
      const messages = [{ role: 'user', content: userText(bytes, ' [mock:tokens=6]') }];
      const plain = await c.chat(0, seed.key.key, { model: MODEL, messages });
      assert.equal(plain.status, 200, plain.text);
      assert.equal(plain.body.choices[0].message.content, mockText(6));
      assert.equal(plain.body.usage.prompt_tokens, promptTokens(messages));
      assert.equal((await mockLast()).body.messages[0].content, messages[0].content, 'byte for byte');
      const streamed = await c.chat(0, seed.key.key, { model: MODEL, messages, stream: true,
        stream_options: { include_usage: true } });
      assert.equal(streamed.status, 200, streamed.text);
      const { content, done } = sseContent(streamed.text);
      assert.equal(content, mockText(6));
      assert.ok(done);
    });
  }
});
