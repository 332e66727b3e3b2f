// rolling.test.mjs: a rolling restart of every dataplane under streaming load cuts no stream.
//
// The test plays the part of Kubernetes and its Service: a client-side balancer spreads streams over
// the dataplanes "in rotation". Restarting one follows the pod lifecycle of the Helm chart: it leaves the
// rotation (endpoint removed), a short preStop pause, SIGTERM (the dataplane drains: streams in flight
// run to their end), exit 0, a new process, /readyz 200, back in rotation; then the next one. Every
// stream must end with [DONE] and the full text, and be billed exactly once.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { MODEL, mockText, readSSE, sleep, startCluster, waitFor, waitHttp } from './harness.mjs';

const DATAPLANES = 3;
const TOKENS = 12;
const CHUNK_DELAY_MS = 60; // a stream lasts ~0.7 s, so every SIGTERM lands on streams in flight
const PRESTOP_MS = 200;

let c;
let seed;

before(async () => {
  c = await startCluster({ dataplanes: DATAPLANES, label: 'rolling' });
  seed = await c.seed();
});

after(async () => {
  await c?.stop();
});

describe('rolling restart of dataplanes', () => {
  test('under streaming load: no stream is cut, every stream billed once', async () => {
    const inRotation = new Set(c.dataplanes.map((_, i) => i));
    const inFlight = c.dataplanes.map(() => 0);
    const results = [];
    let rr = 0;
    let stopped = false;

    // One stream through the balancer. Never throws; records which dataplane served it and whether a
    // SIGTERM reached that dataplane while the stream ran.
    const oneStream = async (n) => {
      const candidates = [...inRotation];
      const i = candidates[rr++ % candidates.length];
      const id = `roll-${crypto.randomUUID()}`;
      const r = { id, dp: i, ok: false, sawTerm: false };
      inFlight[i]++;
      const termsBefore = c.dataplanes[i].terms ?? 0;
      try {
        const res = await fetch(`${c.dataplanes[i].url}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${seed.key.key}`, 'content-type': 'application/json', 'x-request-id': id },
          body: JSON.stringify({ model: MODEL, stream: true, messages: [{ role: 'user',
            content: `rolling ${n} [mock:tokens=${TOKENS},chunk_delay_ms=${CHUNK_DELAY_MS}]` }] }),
          signal: AbortSignal.timeout(30000) });
        const sse = await readSSE(res);
        const text = sse.json.map((e) => e?.choices?.[0]?.delta?.content ?? '').join('');
        Object.assign(r, { status: res.status, done: sse.done, error: sse.error?.message ?? null, text });
        r.ok = res.status === 200 && sse.done && !sse.error && text === mockText(TOKENS);
      } catch (err) {
        r.error = err.cause?.code ?? err.message;
      } finally {
        inFlight[i]--;
        r.sawTerm = (c.dataplanes[i].terms ?? 0) > termsBefore;
      }
      results.push(r);
    };

    // Bounded load: 6 clients, at most 2000 streams in all, until the rolling restart is over.
    let next = 0;
    const client = async () => {
      while (!stopped && next < 2000) await oneStream(next++);
    };
    const load = Promise.all(Array.from({ length: 6 }, client));
    await waitFor(() => results.length >= 6, 20000, { what: 'the first streams' });

    const restarts = [];
    for (let i = 0; i < c.dataplanes.length; i++) {
      const dp = c.dataplanes[i];
      inRotation.delete(i);
      await sleep(PRESTOP_MS);
      const busy = inFlight[i];
      dp.terms = (dp.terms ?? 0) + 1;
      const exit = await dp.stop(30000);
      assert.equal(exit.forced, false, dp.describe('did not exit after SIGTERM'));
      assert.equal(exit.code, 0, dp.describe(`exit ${JSON.stringify(exit)}`));
      restarts.push({ dp: i, streamsInFlightAtTerm: busy });
      dp.start();
      await waitHttp(dp, `${dp.url}/readyz`, 200);
      inRotation.add(i);
      // Let the new process take streams before the next one goes.
      const seen = results.length;
      await waitFor(() => results.length >= seen + 6, 20000, { what: `streams after restarting ${dp.name}` });
    }
    stopped = true;
    await load;

    const cut = results.filter((r) => !r.ok);
    assert.deepEqual(cut, [], 'no stream was cut');
    const drained = results.filter((r) => r.sawTerm).length;
    console.log(`# ${results.length} streams; ${drained} were running on a dataplane when it got SIGTERM; ` +
      `in flight at each SIGTERM: ${restarts.map((r) => r.streamsInFlightAtTerm).join(', ')}`);
    assert.ok(restarts.some((r) => r.streamsInFlightAtTerm > 0), 'some SIGTERM landed on streams in flight');

    const ids = results.map((r) => r.id);
    await c.waitUsage(ids, 30000);
    await sleep(500);
    const rows = await c.usageRows(ids);
    assert.equal(rows.length, ids.length, 'every stream billed exactly once');
    assert.ok(rows.every((r) => r.output_tokens === TOKENS && r.stream === true));
  });
});
