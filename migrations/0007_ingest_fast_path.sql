-- Usage ingest, version 7: less PostgreSQL work per usage record and per batch (docs/performance.md,
-- "Usage ingestion"). Durability is unchanged: every batch still commits with synchronous_commit on,
-- because the ledger and the usage rows are the accounting.
--
-- usage_events loses its primary key (id, ts). Nothing refers to a usage row by id, exactly-once
-- ingestion is usage_batches' (instance_id, sequence), and maintaining that btree was about a tenth of
-- PostgreSQL's CPU per ingested record. id stays (rows are still ordered by it) and its sequence hands
-- out values 1,000 at a time per session instead of one sequence-page update per row; only the
-- leader's one connection ingests, so ids still grow with arrival (a new session skips the unused
-- rest of the previous block).
ALTER TABLE usage_events DROP CONSTRAINT usage_events_pkey;
ALTER SEQUENCE usage_events_id_seq CACHE 1000;

-- The rollup upsert of one batch (controlplane/usage_rollup.c): the batch's groups, already summed in
-- C, one array per column and the latency histograms as one 2-D array (a row per group). A record
-- without a team takes its key's team from virtual_keys, which can merge two groups, hence the GROUP
-- BY. A PL/pgSQL function so that the statement is planned once per session, not once per batch
-- (planning it cost more than executing it for a batch of a few dozen groups).
CREATE FUNCTION tollgate_rollup_add(p_hour timestamptz[], p_tenant uuid[], p_team uuid[], p_key uuid[],
    p_provider uuid[], p_model text[], p_req bigint[], p_err bigint[], p_in bigint[], p_out bigint[],
    p_cached bigint[], p_cost bigint[], p_latsum bigint[], p_lat int[])
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO usage_rollups_hourly AS r (hour, tenant_id, team_id, key_id, provider_id, model, requests, errors,
        input_tokens, output_tokens, cached_input_tokens, cost_nanousd, latency_sum_ms,
        lat_00, lat_01, lat_02, lat_03, lat_04, lat_05, lat_06, lat_07, lat_08, lat_09, lat_10, lat_11,
        lat_12, lat_13, lat_14, lat_15, lat_16, lat_17, lat_18, lat_19, lat_20, lat_21, lat_22, lat_23)
    SELECT u.hour, u.tenant,
           coalesce(nullif(u.team, '00000000-0000-0000-0000-000000000000'::uuid),
                    (SELECT k.team_id FROM virtual_keys k WHERE k.id = u.key), '00000000-0000-0000-0000-000000000000'::uuid),
           u.key, u.prov, u.model, sum(u.req), sum(u.err), sum(u.inp), sum(u.outp), sum(u.cached), sum(u.cost),
           sum(u.latsum),
           sum(p_lat[u.i][1]), sum(p_lat[u.i][2]), sum(p_lat[u.i][3]), sum(p_lat[u.i][4]), sum(p_lat[u.i][5]),
           sum(p_lat[u.i][6]), sum(p_lat[u.i][7]), sum(p_lat[u.i][8]), sum(p_lat[u.i][9]), sum(p_lat[u.i][10]),
           sum(p_lat[u.i][11]), sum(p_lat[u.i][12]), sum(p_lat[u.i][13]), sum(p_lat[u.i][14]), sum(p_lat[u.i][15]),
           sum(p_lat[u.i][16]), sum(p_lat[u.i][17]), sum(p_lat[u.i][18]), sum(p_lat[u.i][19]), sum(p_lat[u.i][20]),
           sum(p_lat[u.i][21]), sum(p_lat[u.i][22]), sum(p_lat[u.i][23]), sum(p_lat[u.i][24])
      FROM unnest(p_hour, p_tenant, p_team, p_key, p_provider, p_model, p_req, p_err, p_in, p_out, p_cached, p_cost,
                  p_latsum) WITH ORDINALITY AS u(hour, tenant, team, key, prov, model, req, err, inp, outp, cached,
                  cost, latsum, i)
     GROUP BY 1, 2, 3, 4, 5, 6
    ON CONFLICT (hour, tenant_id, team_id, key_id, provider_id, model) DO UPDATE SET
        requests = r.requests + excluded.requests, errors = r.errors + excluded.errors,
        input_tokens = r.input_tokens + excluded.input_tokens, output_tokens = r.output_tokens + excluded.output_tokens,
        cached_input_tokens = r.cached_input_tokens + excluded.cached_input_tokens,
        cost_nanousd = r.cost_nanousd + excluded.cost_nanousd, latency_sum_ms = r.latency_sum_ms + excluded.latency_sum_ms,
        lat_00 = r.lat_00 + excluded.lat_00, lat_01 = r.lat_01 + excluded.lat_01, lat_02 = r.lat_02 + excluded.lat_02,
        lat_03 = r.lat_03 + excluded.lat_03, lat_04 = r.lat_04 + excluded.lat_04, lat_05 = r.lat_05 + excluded.lat_05,
        lat_06 = r.lat_06 + excluded.lat_06, lat_07 = r.lat_07 + excluded.lat_07, lat_08 = r.lat_08 + excluded.lat_08,
        lat_09 = r.lat_09 + excluded.lat_09, lat_10 = r.lat_10 + excluded.lat_10, lat_11 = r.lat_11 + excluded.lat_11,
        lat_12 = r.lat_12 + excluded.lat_12, lat_13 = r.lat_13 + excluded.lat_13, lat_14 = r.lat_14 + excluded.lat_14,
        lat_15 = r.lat_15 + excluded.lat_15, lat_16 = r.lat_16 + excluded.lat_16, lat_17 = r.lat_17 + excluded.lat_17,
        lat_18 = r.lat_18 + excluded.lat_18, lat_19 = r.lat_19 + excluded.lat_19, lat_20 = r.lat_20 + excluded.lat_20,
        lat_21 = r.lat_21 + excluded.lat_21, lat_22 = r.lat_22 + excluded.lat_22, lat_23 = r.lat_23 + excluded.lat_23;
END
$$;

-- tollgate_settle() (0005) replaced, same signature and result. The control plane now sends one row per
-- (key, model, start second) with the summed cost (controlplane/usage_group.c) instead of one per
-- record. Two changes here: PL/pgSQL, so the statement is planned once per session instead of at every
-- call (a SQL function's statement is planned each time it runs); and the budget period is computed
-- once per distinct (period, time zone, second) instead of once per row and budget (it was most of the
-- statement's time). All records of one second are in the same period of every budget (periods start
-- at whole seconds: time zone offsets are whole seconds), so the sums are exactly what per-record
-- attribution gives.
CREATE OR REPLACE FUNCTION tollgate_settle(p_instance text, p_keys uuid[], p_models text[], p_ts_ms bigint[], p_costs bigint[])
RETURNS TABLE (o_limit uuid, o_period_start timestamptz, o_settled bigint, o_soft bigint, o_hard bigint)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY
    -- MATERIALIZED throughout: the row estimates of unnest() are guesses, and left to itself the planner
    -- re-evaluated the period function once per row instead of once per distinct second
    WITH r AS MATERIALIZED ( -- the groups with their key's tenant and team, one key lookup per group
        SELECT k.tenant_id, k.team_id, k.id AS key_id, u.model, u.ts, u.cost
          FROM unnest(p_keys, p_models, p_ts_ms, p_costs) AS u(key_id, model, ts, cost)
          JOIN virtual_keys k ON k.id = u.key_id
         WHERE u.cost > 0),
    rb AS MATERIALIZED ( -- cost per budget and start second
        SELECT b.id AS limit_id, b.period, t.time_zone AS tz, b.hard_nanousd AS hard, b.soft_nanousd AS soft, r.ts,
               sum(r.cost) AS c
          FROM r
          JOIN budgets b ON b.tenant_id = r.tenant_id
               AND (b.scope = 'tenant' OR (b.scope = 'team' AND b.team_id = r.team_id)
                    OR (b.scope = 'key' AND b.key_id = r.key_id))
               AND (b.model IS NULL OR b.model = r.model)
          JOIN tenants t ON t.id = b.tenant_id
         GROUP BY b.id, b.period, t.time_zone, b.hard_nanousd, b.soft_nanousd, r.ts),
    d AS MATERIALIZED (SELECT DISTINCT rb.period, rb.tz, rb.ts FROM rb),
    pp AS MATERIALIZED ( -- one period computation per distinct (period, time zone, second)
        SELECT d.period, d.tz, d.ts, pb.ps, pb.pe
          FROM d CROSS JOIN LATERAL tollgate_allowance_period(d.period, to_timestamp(d.ts / 1000.0), d.tz) pb),
    m AS MATERIALIZED (
        SELECT rb.limit_id, pp.ps, pp.pe, rb.hard, rb.soft, sum(rb.c)::bigint AS c
          FROM rb JOIN pp ON pp.period = rb.period AND pp.tz = rb.tz AND pp.ts = rb.ts
         GROUP BY rb.limit_id, pp.ps, pp.pe, rb.hard, rb.soft),
    up AS (
        INSERT INTO allowance_periods AS ap (limit_id, kind, period_start, period_end, hard, settled)
        SELECT m.limit_id, 'budget', m.ps, m.pe, m.hard, m.c FROM m
        ON CONFLICT (limit_id, kind, period_start) DO UPDATE SET settled = ap.settled + EXCLUDED.settled
        RETURNING ap.limit_id, ap.period_start, ap.settled),
    ls AS (
        UPDATE allowance_leases l SET outstanding = greatest(0, l.outstanding - m.c) FROM m
         WHERE l.limit_id = m.limit_id AND l.kind = 'budget' AND l.period_start = m.ps
           AND l.instance_id = p_instance)
    SELECT up.limit_id, up.period_start, up.settled, m.soft, m.hard
      FROM up JOIN m ON m.limit_id = up.limit_id AND m.ps = up.period_start
     WHERE m.soft IS NOT NULL AND up.settled >= m.soft AND up.settled - m.c < m.soft;
END
$$;
