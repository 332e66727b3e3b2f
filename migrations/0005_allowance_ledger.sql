-- Allowance ledger, version 5: what the control plane has leased to each dataplane and what has been
-- settled, per limit and period, so that the invariant
--     settled + sum(outstanding of every lease of the period) <= hard
-- lives in PostgreSQL and a new leader after a failover grants from the same numbers (docs/admission.md).
--
-- kind: 'budget' (nano-USD; settled grows on usage ingest), 'requests' / 'tokens' (a rate limit's
-- window; the leased amount is what was consumed or is held, nothing settles), 'concurrent' (slots).
-- limit_id is a budgets.id or rate_limits.id; no foreign key, so a deleted limit leaves its history.
CREATE TABLE allowance_periods (
    limit_id     uuid NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('budget', 'requests', 'tokens', 'concurrent')),
    period_start timestamptz NOT NULL,
    period_end   timestamptz NOT NULL,
    hard         bigint NOT NULL CHECK (hard >= 0),  -- the limit as of the last grant
    settled      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (limit_id, kind, period_start)
);

-- One lease per (period, dataplane instance). epoch changes whenever the row is recreated after a
-- reclaim, so a dataplane can tell that the allowance it remembers is gone. expires_at is on the
-- control plane's (controllable) clock; the lease is reclaimed only after expires_at plus the maximum
-- request duration.
CREATE TABLE allowance_leases (
    limit_id     uuid NOT NULL,
    kind         text NOT NULL,
    period_start timestamptz NOT NULL,
    instance_id  text NOT NULL,
    epoch        bigint NOT NULL,
    outstanding  bigint NOT NULL DEFAULT 0 CHECK (outstanding >= 0),
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (limit_id, kind, period_start, instance_id),
    FOREIGN KEY (limit_id, kind, period_start) REFERENCES allowance_periods ON DELETE CASCADE
);
CREATE SEQUENCE allowance_lease_epoch;

-- The allowance period of a limit: the calendar period of tollgate_period_bounds() (migration 0004, the
-- one definition of budget periods), with 'total' as one period from the epoch to infinity.
CREATE FUNCTION tollgate_allowance_period(p text, at timestamptz, tz text, OUT ps timestamptz, OUT pe timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT coalesce(b.period_start, 'epoch'::timestamptz), coalesce(b.period_end, 'infinity'::timestamptz)
      FROM tollgate_period_bounds(p, tz, at) b
$$;

-- One ask of one dataplane, in the caller's transaction (controlplane/lease.c): gives back p_release of
-- the caller's lease, reclaims leases that expired more than p_max_request_ms ago, and grants at most
-- what remains. The allowance_periods row lock serialises every grant and settlement of a period, so
-- settled + sum(outstanding) <= hard holds after each call. p_now_ms is the control plane's clock
-- (tollgate/clock.h), never now(): tests move it. A crumb smaller than p_need is not granted: it would
-- not let the waiting request run, and another dataplane may complete it.
CREATE FUNCTION tollgate_lease(p_limit uuid, p_kind text, p_instance text, p_now_ms bigint, p_period_ms bigint,
    p_want bigint, p_need bigint, p_release bigint, p_epoch bigint, p_ttl_ms bigint, p_max_request_ms bigint,
    OUT o_known boolean, OUT o_period_start_ms bigint, OUT o_period_end_ms bigint, OUT o_epoch bigint,
    OUT o_granted bigint, OUT o_outstanding bigint, OUT o_remaining bigint, OUT o_hard bigint,
    OUT o_expires_ms bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz := to_timestamp(p_now_ms / 1000.0);
    v_ps timestamptz;
    v_pe timestamptz;
    v_period text;
    v_tz text;
    v_window int;
    v_settled bigint;
    v_others bigint;
    v_n bigint;
    v_epoch bigint;
    v_out bigint;
BEGIN
    o_known := true;
    o_granted := 0;
    IF p_kind = 'budget' THEN
        SELECT b.period, t.time_zone, b.hard_nanousd INTO v_period, v_tz, o_hard
          FROM budgets b JOIN tenants t ON t.id = b.tenant_id WHERE b.id = p_limit;
        IF NOT FOUND THEN o_known := false; RETURN; END IF;
        SELECT pb.ps, pb.pe INTO v_ps, v_pe FROM tollgate_allowance_period(v_period, v_now, v_tz) pb;
    ELSE
        SELECT r.window_s, CASE p_kind WHEN 'requests' THEN r.requests_per_window
                                       WHEN 'tokens' THEN r.tokens_per_window ELSE r.concurrent::bigint END
          INTO v_window, o_hard FROM rate_limits r WHERE r.id = p_limit;
        IF NOT FOUND OR o_hard IS NULL THEN o_known := false; RETURN; END IF;
        IF p_kind = 'concurrent' THEN
            v_ps := 'epoch';
            v_pe := 'infinity';
        ELSE -- windows aligned to multiples of window_s since the epoch, as the dataplane computes them
            v_ps := to_timestamp((p_now_ms / (v_window * 1000::bigint)) * v_window);
            v_pe := v_ps + make_interval(secs => v_window);
        END IF;
    END IF;
    o_period_start_ms := (extract(epoch FROM v_ps) * 1000)::bigint;
    o_period_end_ms := CASE WHEN v_pe = 'infinity' THEN 9223372036854775807
                            ELSE (extract(epoch FROM v_pe) * 1000)::bigint END;
    INSERT INTO allowance_periods AS ap (limit_id, kind, period_start, period_end, hard)
        VALUES (p_limit, p_kind, v_ps, v_pe, o_hard)
        ON CONFLICT (limit_id, kind, period_start) DO UPDATE SET hard = EXCLUDED.hard
        RETURNING ap.settled INTO v_settled;
    DELETE FROM allowance_leases l
     WHERE l.limit_id = p_limit AND l.kind = p_kind AND l.period_start = v_ps
       AND l.expires_at < v_now - make_interval(secs => p_max_request_ms / 1000.0);
    SELECT l.epoch, l.outstanding INTO v_epoch, v_out FROM allowance_leases l
     WHERE l.limit_id = p_limit AND l.kind = p_kind AND l.period_start = v_ps AND l.instance_id = p_instance
       FOR UPDATE;
    IF NOT FOUND THEN
        v_epoch := nextval('allowance_lease_epoch');
        v_out := 0;
        INSERT INTO allowance_leases (limit_id, kind, period_start, instance_id, epoch, outstanding, expires_at)
            VALUES (p_limit, p_kind, v_ps, p_instance, v_epoch, 0, v_now);
    ELSIF p_epoch = v_epoch AND p_period_ms = o_period_start_ms THEN
        v_out := v_out - least(greatest(p_release, 0), v_out);
    END IF;
    SELECT coalesce(sum(l.outstanding), 0), count(*) INTO v_others, v_n FROM allowance_leases l
     WHERE l.limit_id = p_limit AND l.kind = p_kind AND l.period_start = v_ps AND l.instance_id <> p_instance
       AND l.outstanding > 0;
    o_remaining := o_hard - v_settled - v_others - v_out;
    -- a fair share of what remains, but never less than what unblocks a waiting request
    o_granted := least(greatest(p_want, 0), greatest(o_remaining, 0) / (v_n + 1));
    IF o_granted < p_need THEN o_granted := p_need; END IF;
    IF o_granted > o_remaining THEN o_granted := greatest(o_remaining, 0); END IF;
    IF p_need > 0 AND o_granted < p_need THEN o_granted := 0; END IF;
    o_outstanding := v_out + o_granted;
    o_remaining := o_remaining - o_granted;
    o_epoch := v_epoch;
    o_expires_ms := p_now_ms + p_ttl_ms;
    UPDATE allowance_leases l SET outstanding = o_outstanding, expires_at = to_timestamp(o_expires_ms / 1000.0)
     WHERE l.limit_id = p_limit AND l.kind = p_kind AND l.period_start = v_ps AND l.instance_id = p_instance;
END
$$;

-- Usage ingest (controlplane/lease.c, inside the batch's transaction): the true cost of each record moves
-- from the sending dataplane's lease to `settled`, in the period the request started in, for every
-- budget the record falls under. Returns the budgets whose soft threshold this batch crossed.
CREATE FUNCTION tollgate_settle(p_instance text, p_keys uuid[], p_models text[], p_ts_ms bigint[], p_costs bigint[])
RETURNS TABLE (o_limit uuid, o_period_start timestamptz, o_settled bigint, o_soft bigint, o_hard bigint)
LANGUAGE sql AS $$
    WITH r AS (
        SELECT * FROM unnest(p_keys, p_models, p_ts_ms, p_costs) AS r(key_id, model, ts, cost) WHERE r.cost > 0),
    m AS (
        SELECT b.id AS limit_id, pb.ps, pb.pe, b.hard_nanousd AS hard, b.soft_nanousd AS soft, sum(r.cost)::bigint AS c
          FROM r
          JOIN virtual_keys k ON k.id = r.key_id
          JOIN budgets b ON b.tenant_id = k.tenant_id
               AND (b.scope = 'tenant' OR (b.scope = 'team' AND b.team_id = k.team_id)
                    OR (b.scope = 'key' AND b.key_id = k.id))
               AND (b.model IS NULL OR b.model = r.model)
          JOIN tenants t ON t.id = b.tenant_id
          CROSS JOIN LATERAL tollgate_allowance_period(b.period, to_timestamp(r.ts / 1000.0), t.time_zone) pb
         GROUP BY b.id, pb.ps, pb.pe, b.hard_nanousd, b.soft_nanousd),
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
     WHERE m.soft IS NOT NULL AND up.settled >= m.soft AND up.settled - m.c < m.soft
$$;
