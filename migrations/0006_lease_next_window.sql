-- Allowance ledger, version 6: a rate window's allowance may be leased shortly before the window starts
-- (docs/admission.md, "Prefetching the next window"), so the first request of a window does not wait
-- for a round trip to the control plane.
--
-- tollgate_lease() is 0005's with one change: for a 'requests' or 'tokens' window, an ask whose
-- period_start is the start of the window right after the current one, at most min(window, 2 s) ahead
-- on the control plane's clock, leases that next window. The grant comes from the next window's own
-- allowance_periods row under its row lock, so settled + sum(outstanding) <= hard holds per window as
-- before; a dataplane uses a lease only inside its period (on its clock), so allowance leased early is
-- never spent in the wrong window. Any other period_start still means "the current period".
CREATE OR REPLACE FUNCTION tollgate_lease(p_limit uuid, p_kind text, p_instance text, p_now_ms bigint, p_period_ms bigint,
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
            -- prefetch: the window right after the current one, asked for shortly before it starts, is
            -- granted from its own row (so the same arithmetic bounds it); never a later one
            IF p_period_ms = (extract(epoch FROM v_pe) * 1000)::bigint
               AND p_period_ms - p_now_ms <= least(v_window * 1000::bigint, 2000) THEN
                v_ps := v_pe;
                v_pe := v_ps + make_interval(secs => v_window);
            END IF;
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
