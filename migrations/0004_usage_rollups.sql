-- Usage storage, version 4: hourly rollups maintained on ingest, monthly partitions of usage_events
-- created ahead of time, retention by dropping whole partitions, budget periods, audit masking.
--
-- Rollups: one row per hour x tenant x team x key x provider x public model. The id columns are NOT
-- NULL with the all-zero UUID standing for "none" (an unauthenticated request, a key without a team),
-- so the primary key is the ON CONFLICT target without expression indexes (and works before
-- PostgreSQL 15's NULLS NOT DISTINCT). Reports turn the zero UUID back into null.
--
-- Latency: a histogram of 24 buckets per row, lat_00 .. lat_23. Bucket i counts requests with
-- latency_ms in [bound(i-1), bound(i)) where the bounds are tollgate_latency_bounds() (bound(-1) = 0,
-- bound(23) = infinity). controlplane/usage_rollup.h holds the same bounds for ingest; the two must
-- agree (latency_hist_test.c reads this file's array and checks). The buckets are int, not bigint:
-- sum(int) aggregates in a bigint accumulator where sum(bigint) needs numeric, which makes reports over
-- many rows markedly faster; one row counts one hour of one key and model, far below 2^31.

CREATE FUNCTION tollgate_latency_bounds() RETURNS int[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT '{5,10,20,35,50,75,100,150,250,400,600,1000,1500,2500,4000,6000,10000,15000,25000,40000,60000,120000,300000}'::int[]
$$;

CREATE TABLE usage_rollups_hourly (
    hour                timestamptz NOT NULL,  -- UTC hour the requests started in
    tenant_id           uuid NOT NULL,
    team_id             uuid NOT NULL,
    key_id              uuid NOT NULL,
    provider_id         uuid NOT NULL,
    model               text NOT NULL,         -- the public model name
    requests            bigint NOT NULL DEFAULT 0,
    errors              bigint NOT NULL DEFAULT 0,  -- status >= 400
    input_tokens        bigint NOT NULL DEFAULT 0,
    output_tokens       bigint NOT NULL DEFAULT 0,
    cached_input_tokens bigint NOT NULL DEFAULT 0,
    cost_nanousd        bigint NOT NULL DEFAULT 0,
    latency_sum_ms      bigint NOT NULL DEFAULT 0,
    lat_00 int NOT NULL DEFAULT 0, lat_01 int NOT NULL DEFAULT 0, lat_02 int NOT NULL DEFAULT 0,
    lat_03 int NOT NULL DEFAULT 0, lat_04 int NOT NULL DEFAULT 0, lat_05 int NOT NULL DEFAULT 0,
    lat_06 int NOT NULL DEFAULT 0, lat_07 int NOT NULL DEFAULT 0, lat_08 int NOT NULL DEFAULT 0,
    lat_09 int NOT NULL DEFAULT 0, lat_10 int NOT NULL DEFAULT 0, lat_11 int NOT NULL DEFAULT 0,
    lat_12 int NOT NULL DEFAULT 0, lat_13 int NOT NULL DEFAULT 0, lat_14 int NOT NULL DEFAULT 0,
    lat_15 int NOT NULL DEFAULT 0, lat_16 int NOT NULL DEFAULT 0, lat_17 int NOT NULL DEFAULT 0,
    lat_18 int NOT NULL DEFAULT 0, lat_19 int NOT NULL DEFAULT 0, lat_20 int NOT NULL DEFAULT 0,
    lat_21 int NOT NULL DEFAULT 0, lat_22 int NOT NULL DEFAULT 0, lat_23 int NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, tenant_id, team_id, key_id, provider_id, model)
);
-- Reports and budget spend of one tenant over a range.
CREATE INDEX usage_rollups_tenant_hour_idx ON usage_rollups_hourly (tenant_id, hour);

-- Recomputes the rollups of [from_ts, to_ts) from usage_events (backfill, repair, benchmarks). The
-- hour range is widened to whole hours. Returns the number of rollup rows written.
CREATE FUNCTION tollgate_rollup_rebuild(from_ts timestamptz, to_ts timestamptz) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    z constant uuid := '00000000-0000-0000-0000-000000000000';
    f timestamptz := date_trunc('hour', from_ts);
    t timestamptz := date_trunc('hour', to_ts) + CASE WHEN date_trunc('hour', to_ts) = to_ts THEN interval '0' ELSE interval '1 hour' END;
    n bigint;
BEGIN
    DELETE FROM usage_rollups_hourly WHERE hour >= f AND hour < t;
    INSERT INTO usage_rollups_hourly
    SELECT date_trunc('hour', e.ts), coalesce(e.tenant_id, z),
           coalesce(e.team_id, k.team_id, z), coalesce(e.key_id, z), coalesce(e.provider_id, z), e.model,
           count(*), count(*) FILTER (WHERE e.status >= 400),
           sum(e.input_tokens), sum(e.output_tokens), sum(e.cached_input_tokens), sum(e.cost_nanousd),
           sum(e.latency_ms),
           count(*) FILTER (WHERE b = 0), count(*) FILTER (WHERE b = 1), count(*) FILTER (WHERE b = 2),
           count(*) FILTER (WHERE b = 3), count(*) FILTER (WHERE b = 4), count(*) FILTER (WHERE b = 5),
           count(*) FILTER (WHERE b = 6), count(*) FILTER (WHERE b = 7), count(*) FILTER (WHERE b = 8),
           count(*) FILTER (WHERE b = 9), count(*) FILTER (WHERE b = 10), count(*) FILTER (WHERE b = 11),
           count(*) FILTER (WHERE b = 12), count(*) FILTER (WHERE b = 13), count(*) FILTER (WHERE b = 14),
           count(*) FILTER (WHERE b = 15), count(*) FILTER (WHERE b = 16), count(*) FILTER (WHERE b = 17),
           count(*) FILTER (WHERE b = 18), count(*) FILTER (WHERE b = 19), count(*) FILTER (WHERE b = 20),
           count(*) FILTER (WHERE b = 21), count(*) FILTER (WHERE b = 22), count(*) FILTER (WHERE b = 23)
      FROM usage_events e
      LEFT JOIN virtual_keys k ON k.id = e.key_id
      CROSS JOIN LATERAL (SELECT width_bucket(greatest(e.latency_ms, 0), tollgate_latency_bounds()) AS b) w
     WHERE e.ts >= f AND e.ts < t
     GROUP BY 1, 2, 3, 4, 5, 6;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- Monthly partitions: usage_events_pYYYYMM holds [first of the month, first of the next) in UTC.
-- Creating one while usage_events_default holds rows of that month would fail, so those rows are
-- moved first: the default partition is detached, the month's rows copied into the new partition and
-- deleted from the default, and the default attached again, all in the caller's transaction.
CREATE FUNCTION tollgate_usage_partition_ensure(month date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    lo timestamptz := (date_trunc('month', month)::date)::timestamp AT TIME ZONE 'UTC';
    hi timestamptz := ((date_trunc('month', month) + interval '1 month')::date)::timestamp AT TIME ZONE 'UTC';
    name text := format('usage_events_p%s', to_char(month, 'YYYYMM'));
    moving boolean;
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE 'SELECT EXISTS (SELECT 1 FROM usage_events_default WHERE ts >= $1 AND ts < $2)' INTO moving USING lo, hi;
    IF moving THEN
        ALTER TABLE usage_events DETACH PARTITION usage_events_default;
    END IF;
    EXECUTE format('CREATE TABLE %I PARTITION OF usage_events FOR VALUES FROM (%L) TO (%L)', name, lo, hi);
    IF moving THEN
        EXECUTE format('INSERT INTO %I SELECT * FROM usage_events_default WHERE ts >= $1 AND ts < $2', name)
            USING lo, hi;
        DELETE FROM usage_events_default WHERE ts >= lo AND ts < hi;
        ALTER TABLE usage_events ATTACH PARTITION usage_events_default DEFAULT;
    END IF;
    RETURN true;
END
$$;

-- The leader's periodic job (and this migration's): partitions from this month to `months_ahead`
-- months ahead; with retention_days > 0, drops every monthly partition that ends before now() minus
-- retention_days, and deletes the (normally zero) default-partition rows that old. Returns a summary.
CREATE FUNCTION tollgate_usage_maintain(months_ahead int, retention_days int) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    created int := 0;
    dropped int := 0;
    cutoff timestamptz;
    p record;
    hi timestamptz;
BEGIN
    FOR i IN 0..greatest(months_ahead, 0) LOOP
        IF tollgate_usage_partition_ensure((date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => i))::date) THEN
            created := created + 1;
        END IF;
    END LOOP;
    IF retention_days > 0 THEN
        cutoff := now() - make_interval(days => retention_days);
        FOR p IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                  WHERE i.inhparent = 'usage_events'::regclass AND c.relname ~ '^usage_events_p[0-9]{6}$'
                  ORDER BY c.relname LOOP
            hi := ((to_date(substr(p.relname, 15), 'YYYYMM') + interval '1 month')::date)::timestamp AT TIME ZONE 'UTC';
            IF hi <= cutoff THEN
                EXECUTE format('DROP TABLE %I', p.relname);
                dropped := dropped + 1;
            END IF;
        END LOOP;
        DELETE FROM usage_events_default WHERE ts < cutoff;
    END IF;
    RETURN format('created=%s dropped=%s', created, dropped);
END
$$;

-- Budget periods, calendar-aligned in a time zone: the [start, end) that contains `at`. 'total' has
-- neither (NULL, NULL). Weeks start on Monday (ISO).
CREATE FUNCTION tollgate_period_bounds(period text, tz text, at timestamptz, OUT period_start timestamptz,
                                       OUT period_end timestamptz)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    unit text := CASE period WHEN 'hourly' THEN 'hour' WHEN 'daily' THEN 'day' WHEN 'weekly' THEN 'week'
                             WHEN 'monthly' THEN 'month' ELSE NULL END;
    local_start timestamp;
BEGIN
    IF unit IS NULL THEN
        RETURN;
    END IF;
    local_start := date_trunc(unit, at AT TIME ZONE tz);
    period_start := local_start AT TIME ZONE tz;
    period_end := (local_start + ('1 ' || unit)::interval) AT TIME ZONE tz;
END
$$;

-- The audit log never holds a secret: plaintext keys and tokens, hashes and sealed secrets are masked
-- at any depth of the before/after objects.
CREATE FUNCTION tollgate_audit_mask(doc jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE jsonb_typeof(doc)
        WHEN 'object' THEN (SELECT coalesce(jsonb_object_agg(k, CASE WHEN k IN ('key', 'token', 'secret',
                'api_key', 'key_hash', 'token_hash', 'sealed_secret') THEN to_jsonb('***'::text)
                ELSE tollgate_audit_mask(v) END), '{}'::jsonb) FROM jsonb_each(doc) AS e(k, v))
        WHEN 'array' THEN (SELECT coalesce(jsonb_agg(tollgate_audit_mask(v)), '[]'::jsonb)
                FROM jsonb_array_elements(doc) AS e(v))
        ELSE doc END
$$;

CREATE INDEX audit_log_at_idx ON audit_log (at);
CREATE INDEX admin_tokens_tenant_idx ON admin_tokens (tenant_id, created_at);

-- Rows already in the default partition: every month they span (up to 36 months back) gets its
-- partition now, which moves them there; rows older than that stay in the default partition, where
-- reports still read them and retention deletes them. Then the rollups are built from everything.
DO $$
DECLARE
    lo date;
    m date;
BEGIN
    SELECT date_trunc('month', min(ts) AT TIME ZONE 'UTC')::date INTO lo FROM usage_events_default;
    IF lo IS NOT NULL THEN
        m := greatest(lo, (date_trunc('month', now() AT TIME ZONE 'UTC') - interval '36 months')::date);
        WHILE m <= (now() AT TIME ZONE 'UTC')::date LOOP
            PERFORM tollgate_usage_partition_ensure(m);
            m := (m + interval '1 month')::date;
        END LOOP;
    END IF;
    PERFORM tollgate_usage_maintain(2, 0);
    PERFORM tollgate_rollup_rebuild('-infinity'::timestamptz, 'infinity'::timestamptz);
END
$$;
