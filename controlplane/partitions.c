/*
 * Usage partition maintenance (see partitions.h). Runs on the loop thread on the control plane's one
 * connection, between other statements, so it never overlaps with an ingest transaction.
 *
 * The same hourly job forgets the allowance ledger's past rate-limit windows: a per-second limit adds a
 * row per window, and nothing reads a window once it is over (budget periods are kept: they hold
 * settled spend).
 */
#include <stdio.h>
#include "partitions.h"
#include "tollgate/clock.h"
#include "tollgate/env.h"
#include "tollgate/log.h"

#define FIRST_RUN_MS 3000
#define EVERY_MS     (3600 * 1000)
#define MONTHS_AHEAD "2"

static void
on_tick(uv_timer_t *t)
{
    cp_t *cp = t->data;
    if (cp->stopping || !cp_leader_is_leading(&cp->leader) || cp_db_conn(&cp->db) == NULL)
        return;
    char days[24];
    int64_t d = 0;
    if (tg_env_int("TOLLGATE_USAGE_RETENTION_DAYS", 0, 0, 100000, &d) != 0)
        tg_warn("cp.config.bad_retention", "hint=\"TOLLGATE_USAGE_RETENTION_DAYS must be 0 to 100000; keeping all\"");
    snprintf(days, sizeof(days), "%lld", (long long)d);
    const char *params[] = {MONTHS_AHEAD, days};
    PGresult *res;
    if (cp_db_query(&cp->db, &res, "SELECT tollgate_usage_maintain($1::int, $2::int)", 2, params, NULL, NULL) != 0) {
        tg_warn("cp.usage.maintain_failed", "error=\"%s\"", cp_db_errmsg(&cp->db, res));
        PQclear(res);
        return;
    }
    tg_info("cp.usage.maintained", "%s retention_days=%s", PQgetvalue(res, 0, 0), days);
    PQclear(res);

    char now_ms[24];
    snprintf(now_ms, sizeof(now_ms), "%lld", (long long)tg_clock_now_ms()); /* the clock grants are made on */
    const char *p2[] = {now_ms};
    if (cp_db_query(&cp->db, &res,
                    "DELETE FROM allowance_periods WHERE kind IN ('requests', 'tokens')"
                    " AND period_end < to_timestamp($1::bigint / 1000.0) - interval '1 hour'",
                    1, p2, NULL, NULL) != 0)
        tg_warn("cp.allowance.cleanup_failed", "error=\"%s\"", cp_db_errmsg(&cp->db, res));
    else
        tg_info("cp.allowance.cleaned", "rate_windows_dropped=%s", PQcmdTuples(res));
    PQclear(res);
}

int
cp_partitions_init(cp_t *cp)
{
    if (uv_timer_init(cp->loop, &cp->partitions_timer) != 0)
        return -1;
    cp->partitions_timer.data = cp;
    return uv_timer_start(&cp->partitions_timer, on_tick, FIRST_RUN_MS, EVERY_MS) == 0 ? 0 : -1;
}

void
cp_partitions_close(cp_t *cp)
{
    if (uv_is_closing((uv_handle_t *)&cp->partitions_timer))
        return;
    uv_timer_stop(&cp->partitions_timer);
    uv_close((uv_handle_t *)&cp->partitions_timer, NULL);
}
