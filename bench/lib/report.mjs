// report.mjs: results.json -> results.md: one table of A/B scenarios, the targets of issue 7 with the
// figure this run measured for each, and the extra measurements (memory, propagation, snapshots,
// usage ingestion, soak).

const f1 = (x) => (x == null || !Number.isFinite(x) ? 'n/a' : x.toFixed(1));
const f0 = (x) => (x == null || !Number.isFinite(x) ? 'n/a' : Math.round(x).toLocaleString('en-US'));
const f2 = (x) => (x == null || !Number.isFinite(x) ? 'n/a' : x.toFixed(2));
const mb = (b) => (b == null ? 'n/a' : (b / 1048576).toFixed(1));
// "median (min–max)"
const sp = (s, f = f1) => (s?.median == null ? 'n/a' : s.n > 1 ? `${f(s.median)} (${f(s.min)}–${f(s.max)})` : f(s.median));

function find(results, id, pred = () => true) {
  return results.scenarios.find((s) => s.id === id && !s.unavailable && pred(s));
}

// What nginx as a plain reverse proxy measured in the same rounds, as " (nginx proxy: …)"; '' if absent.
function floorNote(s, f) {
  const x = s?.also?.['nginx-proxy'];
  return x ? ` (nginx as a plain proxy, same rounds: ${f(x)})` : '';
}

// The targets table: [what, target, measured, met?]
export function targets(results, peers) {
  const rows = [];
  const yes = (ok) => (ok == null ? '—' : ok ? 'met' : 'missed');
  const c1 = find(results, 'chat-1k', (s) => s.conns === 1);
  const c32 = find(results, 'chat-1k', (s) => s.conns === 32);
  const open = find(results, 'open-5000');
  const ttfb = find(results, 'stream-ttfb');
  if (c1) {
    const a = c1.summary.added_us;
    rows.push(['added latency, non-streaming, 1 connection, p50 / p99', '≤ 50 µs / ≤ 250 µs',
      `${f1(a.p50.median)} µs / ${f1(a.p99.median)} µs` +
      floorNote(c1, (x) => `${f1(x.added_us.p50.median)} / ${f1(x.added_us.p99.median)} µs`),
      yes(a.p50.median <= 50 && a.p99.median <= 250)]);
  }
  if (open) {
    const a = open.summary.added_us;
    rows.push([`added latency, non-streaming, ${open.rate} req/s open loop, p50 / p99`, '≤ 50 µs / ≤ 250 µs',
      `${f1(a.p50.median)} µs / ${f1(a.p99.median)} µs` +
      floorNote(open, (x) => `${f1(x.added_us.p50.median)} / ${f1(x.added_us.p99.median)} µs`),
      yes(a.p50.median <= 50 && a.p99.median <= 250)]);
  }
  if (ttfb) {
    const a = ttfb.summary.added_us;
    rows.push(['added time to first byte of a stream, p50 (p99)', '≤ 50 µs', `${f1(a.ttfb_p50.median)} µs (${f1(a.ttfb_p99.median)} µs)` +
      floorNote(ttfb, (x) => `${f1(x.added_us.ttfb_p50.median)} µs (${f1(x.added_us.ttfb_p99.median)} µs)`),
      yes(a.ttfb_p50.median <= 50)]);
  }
  if (c32) {
    const cpu = c32.summary.tollgate.cpu_us_per_req.dataplane?.median;
    rows.push(['dataplane CPU per non-streaming request (32 conns)', '≤ 25 µs', `${f1(cpu)} µs` +
      floorNote(c32, (x) => `${f1(x['nginx-proxy'].cpu_us_per_req.proxy?.median)} µs`), yes(cpu <= 25)]);
    const r = c32.summary.ratio_rps.median;
    rows.push(['max throughput through Tollgate ÷ direct to the mock (32 conns)', '≥ 0.5',
      `${f2(r)} (${f0(c32.summary.tollgate.rps.median)} vs ${f0(c32.summary.direct.rps.median)} req/s)`, yes(r >= 0.5)]);
  }
  const p32 = peers?.scenarios?.find((s) => s.id === 'peers-chat1k' && s.conns === 32);
  if (p32) {
    const r = p32.summary.tollgate_over_portkey_rps.median;
    rows.push(['throughput ÷ Portkey\'s, same run (32 conns)', '≥ 20×', `${f1(r)}×`, yes(r >= 20)]);
  } else {
    rows.push(['throughput ÷ Portkey\'s, same run', '≥ 20×', 'see `make bench-peers`', '—']);
  }
  const ss = results.extras?.slow_streams;
  if (ss) {
    const complete = ss.succeeded >= ss.streams * 0.99;
    rows.push([`RSS with ${f0(ss.streams)} concurrent streams (peak)`, '≤ 150 MB',
      `${mb(ss.peak?.rss)} MB${complete ? '' : ` (only ${ss.succeeded} of ${ss.streams} succeeded)`}`,
      yes(ss.peak?.rss <= 150 * 1048576 && complete)]);
  }
  const prop = results.extras?.propagation;
  if (prop?.small) {
    const big = Object.entries(prop).find(([k]) => k.startsWith('keys_'));
    const worst = Math.max(prop.small.all_ms.p99, big ? big[1].all_ms.p99 : 0);
    rows.push(['config change → enforced on every dataplane, p99', '≤ 100 ms',
      `${f1(prop.small.all_ms.p99)} ms (${big ? `${f1(big[1].all_ms.p99)} ms with ${big[0].slice(5)} keys` : 'small snapshot'})`,
      yes(worst <= 100)]);
  }
  return rows;
}

function scenarioTable(results) {
  const out = ['| scenario | load | baseline req/s | Tollgate req/s | ratio | baseline p50 / p99 µs | Tollgate p50 / p99 µs | added p50 / p99 µs | dataplane CPU µs/req |',
    '|---|---|---|---|---|---|---|---|---|'];
  for (const s of results.scenarios.filter((x) => !x.peers)) {
    if (s.unavailable) {
      out.push(`| ${s.title} | — | not available in this build: ${s.unavailable.replace(/\|/g, '/')} | | | | | | |`);
      continue;
    }
    const b = s.summary[s.base];
    const t = s.summary[s.subject];
    const a = s.summary.added_us;
    const ttfb = s.id.includes('ttfb');
    const lat = (x) => (ttfb ? `${sp(x.ttfb_p50)} / ${sp(x.ttfb_p99)} (ttfb)` : `${sp(x.p50)} / ${sp(x.p99)}`);
    // a negative added p99 means the baseline's tail was worse in that round: noise, shown as it is
    const add = ttfb ? `${f1(a.ttfb_p50.median)} / ${f1(a.ttfb_p99.median)} (ttfb)` : `${f1(a.p50.median)} / ${f1(a.p99.median)}`;
    out.push(`| ${s.title} | ${s.mode}${s.base !== 'direct' ? ` — baseline: ${s.base}` : ''} | ${sp(b.rps, f0)} | ${sp(t.rps, f0)} | ` +
      `${sp(s.summary.ratio_rps, f2)} | ${lat(b)} | ${lat(t)} | ${add} | ${sp(t.cpu_us_per_req.dataplane)} |` +
      (b.errors + t.errors ? ` errors ${b.errors}/${t.errors}` : ''));
    // the same rounds through nginx as a plain reverse proxy: "Tollgate" columns hold the proxy's figures
    for (const [name, x] of Object.entries(s.also ?? {})) {
      const n = x[name];
      const xa = x.added_us;
      const xadd = ttfb ? `${f1(xa.ttfb_p50.median)} / ${f1(xa.ttfb_p99.median)} (ttfb)` : `${f1(xa.p50.median)} / ${f1(xa.p99.median)}`;
      out.push(`| ↳ same rounds, **${name}** instead of Tollgate (floor of one plain HTTP hop) | ${s.mode} | ${sp(x[s.base].rps, f0)} | ` +
        `${sp(n.rps, f0)} | ${sp(x.ratio_rps, f2)} | ${lat(x[s.base])} | ${lat(n)} | ${xadd} | ${sp(n.cpu_us_per_req.proxy)} (nginx) |` +
        (n.errors ? ` errors ${n.errors}` : ''));
    }
  }
  return out.join('\n');
}

function peersTable(results) {
  const ps = results.scenarios.filter((x) => x.peers);
  if (ps.length === 0) return '';
  const out = ['| scenario | load | direct req/s | Tollgate req/s | Portkey req/s | Tollgate ÷ Portkey | added p50 / p99 µs, Tollgate | added p50 / p99 µs, Portkey | CPU µs/req Tollgate / Portkey |',
    '|---|---|---|---|---|---|---|---|---|'];
  for (const s of ps) {
    const t = s.summary.tollgate;
    const p = s.summary.portkey;
    out.push(`| ${s.title} | ${s.mode} | ${sp(t.direct.rps, f0)} | ${sp(t.tollgate.rps, f0)} | ${sp(p.portkey.rps, f0)} | ` +
      `${s.summary.tollgate_over_portkey_rps ? sp(s.summary.tollgate_over_portkey_rps) : 'n/a'}× | ` +
      `${f1(t.added_us.p50.median)} / ${f1(t.added_us.p99.median)} | ${f1(p.added_us.p50.median)} / ${f1(p.added_us.p99.median)} | ` +
      `${f1(t.tollgate.cpu_us_per_req.dataplane?.median)} / ${f1(p.portkey.cpu_us_per_req.portkey?.median)} |`);
  }
  return out.join('\n');
}

function extrasSection(results) {
  const e = results.extras ?? {};
  const out = [];
  if (e.idle_connections) {
    const x = e.idle_connections;
    out.push(`- **${f0(x.conns)} idle keep-alive connections** (fresh dataplane; each connection made one authenticated GET /v1/models): dataplane RSS ` +
      `${mb(x.before?.rss)} → ${mb(x.during?.rss)} MB (${f0(x.rss_added_per_conn_bytes)} bytes per connection), ` +
      `${f0(x.during?.fds)} descriptors; all answered: ${x.ready}, errors ${x.errors}.`);
  }
  if (e.slow_streams) {
    const x = e.slow_streams;
    out.push(`- **${f0(x.streams)} concurrent slow streams** (${x.transport}, ~${x.stream_seconds} s each): dataplane RSS ` +
      `${mb(x.before?.rss)} → peak ${mb(x.peak?.rss)} MB at up to ${f0(x.peak?.fds)} descriptors; ` +
      `${f0(x.succeeded)} of ${f0(x.streams)} succeeded${x.failed ? ` (${x.failed})` : ''}.`);
  }
  if (e.propagation) {
    for (const [k, p] of Object.entries(e.propagation)) {
      out.push(`- **Config change → enforced on all ${p.dataplanes} dataplanes** (${k === 'small' ? 'small snapshot' : k.replace('keys_', '') + ' keys'}, ` +
        `${p.changes} changes: key created, then revoked): p50 ${f1(p.all_ms.p50)} ms, p99 ${f1(p.all_ms.p99)} ms, max ${f1(p.all_ms.max)} ms ` +
        `(create p50 ${f1(p.create_ms.p50)}, revoke p50 ${f1(p.revoke_ms.p50)}).`);
    }
  }
  if (e.keys) {
    out.push(`- **${f0(e.keys.n)} virtual keys** inserted with one SQL statement in ${f0(e.keys.insert_ms)} ms; ` +
      `enforced on every dataplane ${f0(e.keys.visible_ms)} ms later.`);
  }
  if (e.snapshots) {
    const s = e.snapshots;
    for (const [k, v] of Object.entries(s.cp_build_ms ?? {})) {
      const apply = s.dp_apply_ms?.[k];
      out.push(`- **Snapshot (${k === 'small' ? 'a few keys' : `${k} keys`})**: control-plane build + publish median ${f1(v.median)} ms (max ${f1(v.max)}), ` +
        `${f0(s.cp_bytes?.[k]?.median)} bytes; dataplane decode + index + swap median ${f1(apply?.median)} ms (max ${f1(apply?.max)}).`);
    }
    for (const [k, v] of Object.entries(s.cp_delta_ms ?? {})) {
      const apply = s.dp_delta_apply_ms?.[k];
      out.push(`- **Key delta (on ${k === 'small' ? 'a few keys' : `${k} keys`}, ${v.n} deltas)**: control-plane select + publish median ${f1(v.median)} ms (max ${f1(v.max)}), ` +
        `${f0(s.cp_delta_bytes?.[k]?.median)} bytes; dataplane apply + swap median ${f1(apply?.median)} ms (max ${f1(apply?.max)}).`);
    }
  }
  if (e.ingest) {
    const x = e.ingest;
    out.push(`- **Usage ingestion into PostgreSQL** (control plane, whole run): ${f0(x.records)} records in ${f0(x.batches)} batches, ` +
      `${f0(x.records_per_s)} records/s of transaction time overall, ${f0(x.records_per_s_ge_500)} records/s for batches of ≥ 500 records ` +
      `(largest batch ${f0(x.max_batch)}; per-batch p50 ${f1(x.per_batch_ms_p50)} ms, p99 ${f1(x.per_batch_ms_p99)} ms).`);
  }
  if (e.usage_catch_up) {
    const x = e.usage_catch_up;
    out.push(`- **Usage rows after the throughput scenarios**: ${f0(x.rows)} rows; caught up ${f0(x.catch_up_ms)} ms after load stopped.`);
  }
  if (e.soak) {
    const x = e.soak;
    out.push(`- **Soak** (${x.minutes} min at ${x.rps} req/s, half streams): RSS ${f1(x.rss_mb.early)} MB (2nd fifth) → ${f1(x.rss_mb.late)} MB ` +
      `(last fifth), max ${f1(x.rss_mb.max)} MB; descriptors ${x.fds.early} → ${x.fds.late} (max ${x.fds.max}); ` +
      `non-streaming ${f0(x.json.rps)} req/s p50 ${f1(x.json.latency_us?.p50)} µs p99 ${f1(x.json.latency_us?.p99)} µs, errors ${x.json.errors + x.json.non2xx}; ` +
      `streams ${f0(x.stream.rps)} req/s ttfb p50 ${f1(x.stream.ttfb_us?.p50)} µs, errors ${x.stream.errors + x.stream.non2xx}.`);
  }
  return out.join('\n');
}

export function renderMarkdown(results, peers) {
  const m = results.machine ?? {};
  const lines = [
    `# Tollgate benchmark: ${results.suite}`,
    '',
    `${results.date} · commit ${results.commit?.slice(0, 12)}${results.dirty ? ' (uncommitted changes)' : ''} · ` +
      `${m.cpus} CPUs (${m.model}), ${m.mem_gib} GiB, Linux ${m.kernel} · ` +
      (results.suite === 'soak' ? `${results.config?.soakMinutes} min at ${results.config?.soakRps} req/s.`
        : `${results.config?.rounds} alternating rounds × ${results.config?.seconds} s; figures are medians over rounds, ` +
          '(min–max) across rounds.'),
    '',
  ];
  if (results.suite !== 'soak') {
    const t = targets(results, peers ?? (results.suite === 'peers' ? results : undefined));
    if (results.suite === 'main' || results.suite === 'peers') {
      lines.push('## Targets', '', '| what | target | measured | |', '|---|---|---|---|',
        ...t.map((r) => `| ${r.join(' | ')} |`), '');
    }
  }
  if (results.scenarios.some((s) => !s.peers)) lines.push('## Scenarios (baseline vs through Tollgate)', '', scenarioTable(results), '');
  const pt = peersTable(results);
  if (pt) lines.push('## Peers, same run', '', pt, '');
  const ex = extrasSection(results);
  if (ex) lines.push('## Memory, propagation, snapshots, usage', '', ex, '');
  if (results.error) lines.push('## Error', '', '```', results.error, '```', '');
  return lines.join('\n');
}
