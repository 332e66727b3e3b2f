/*
 * tollgate-controlplane: the admin API, config snapshots for dataplanes and usage ingestion, on one
 * libuv loop thread.
 *
 *   tollgate-controlplane [serve]   migrate, then serve (the default)
 *   tollgate-controlplane migrate   apply pending migrations and exit
 *
 * Configuration comes from the environment only (see README.md); anything missing or invalid stops the
 * process at start with one line naming the variable. On SIGTERM/SIGINT the process stops listening,
 * closes its NNG sockets, releases leadership and closes its database connections, and exits 0.
 *
 * Several replicas may run against one database: the one holding the leader lock (leader.h) binds the
 * NNG channel, builds and publishes snapshots and ingests usage; the others serve the admin API and wait
 * to take over. Their /readyz answers 503 so that a Kubernetes Service routes to the leader only.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "admin/http.h"
#include "channel.h"
#include "cp.h"
#include "leader.h"
#include "metrics.h"
#include "migrate.h"
#include "partitions.h"
#include "snapshot.h"
#include "tollgate/env.h"
#include "tollgate/log.h"

#ifndef CP_MIGRATIONS_DIR
#define CP_MIGRATIONS_DIR "migrations"
#endif

static int
die_config(const char *var, const char *why)
{
    fprintf(stderr, "tollgate-controlplane: %s %s\n", var, why);
    return -1;
}

static const char *
required(const char *var)
{
    const char *v = tg_env_str(var, NULL);
    if (v == NULL)
        die_config(var, "is required");
    return v;
}

/* Reads the environment. 0 or -1 (the reason is printed). `serve` needs more than `migrate`. */
static int
load_config(cp_config_t *cfg, tg_wire_key_t *wire_key, int serve)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->migrations_dir = tg_env_str("TOLLGATE_MIGRATIONS_DIR", CP_MIGRATIONS_DIR);
    if ((cfg->database_url = required("DATABASE_URL")) == NULL)
        return -1;
    if (!serve)
        return 0;
    if ((cfg->admin_token = required("TOLLGATE_ADMIN_TOKEN")) == NULL ||
        (cfg->cluster_secret = required("TOLLGATE_CLUSTER_SECRET")) == NULL)
        return -1;
    if (strlen(cfg->admin_token) < 16)
        tg_warn("cp.config.weak_admin_token", "hint=\"use at least 16 random characters in production\"");
    if (tg_wire_key_init(wire_key, cfg->cluster_secret) != 0)
        return die_config("TOLLGATE_CLUSTER_SECRET", "must be at least 16 characters");
    const char *mk = required("TOLLGATE_MASTER_KEY");
    if (mk == NULL)
        return -1;
    if (strlen(mk) != 2 * TG_AEAD_KEY_LEN || tg_hex_decode(mk, strlen(mk), cfg->master_key, TG_AEAD_KEY_LEN) != 0)
        return die_config("TOLLGATE_MASTER_KEY",
                          "must be 64 hex characters (32 bytes), e.g. from `openssl rand -hex 32`");
    cfg->admin_listen = tg_env_str("TOLLGATE_ADMIN_LISTEN", "127.0.0.1:8081");
    struct sockaddr_storage ss;
    socklen_t sl;
    if (tg_parse_hostport(cfg->admin_listen, &ss, &sl) != 0)
        return die_config("TOLLGATE_ADMIN_LISTEN", "must be host:port");
    cfg->pub_url = tg_env_str("TOLLGATE_CP_PUB_URL", "tcp://127.0.0.1:7401");
    cfg->rep_url = tg_env_str("TOLLGATE_CP_REP_URL", "tcp://127.0.0.1:7402");
    return 0;
}

static int
cmd_migrate(void)
{
    cp_config_t cfg;
    tg_wire_key_t unused;
    if (load_config(&cfg, &unused, 0) != 0)
        return 1;
    char err[512];
    PGconn *conn = cp_db_connect_blocking(cfg.database_url, err, sizeof(err));
    if (conn == NULL) {
        tg_error("cp.db.connect_failed", "error=\"%s\"", err);
        return 1;
    }
    int rv = cp_migrate_run(conn, cfg.migrations_dir);
    PQfinish(conn);
    return rv < 0 ? 1 : 0;
}

/* ---------------------------------------------------------------------------------------------------
 * serve
 */
static int
on_db_connect(cp_db_t *db)
{
    cp_t *cp = db->data;
    if (cp_migrate_run(cp_db_conn(db), cp->cfg.migrations_dir) < 0)
        return -1;
    if (cp_db_exec(db, "LISTEN tollgate_config", 0, NULL) != 0)
        return -1;
    /* Changes made while we were away sent notifications nobody heard; and the database may have come
     * back from a backup, with change stamps below our mark: read every key again. */
    if (cp_leader_is_leading(&cp->leader))
        cp_snapshot_schedule_reload(cp);
    return 0;
}

static void
on_db_notify(cp_db_t *db)
{
    cp_t *cp = db->data;
    unsigned what = db->notified;
    db->notified = 0;
    /* A standby builds nothing: the leader hears the same notification. */
    if (!cp_leader_is_leading(&cp->leader))
        return;
    if (what & CP_DB_NOTIFY_KEYS_RELOAD)
        cp_snapshot_schedule_reload(cp);
    else if (what & CP_DB_NOTIFY_CONFIG)
        cp_snapshot_schedule(cp);
    else
        cp_snapshot_schedule_keys(cp);
}

/* Elected: bind the channel and publish a fresh snapshot (the database may have changed while another
 * replica led, and our version must come from the sequence, after theirs). Demoted: close the channel at
 * once; dataplanes keep serving on their snapshot and keep usage until the next leader binds. */
static int
on_leader_change(cp_leader_t *l, int leading)
{
    cp_t *cp = l->data;
    if (!leading) {
        cp_channel_close(cp);
        uv_timer_stop(&cp->rebuild_timer);
        return 0;
    }
    if (cp->stopping || cp_channel_open(cp) != 0)
        return -1;
    cp_snapshot_schedule_reload(cp); /* what we knew of the keys may predate another leader's term */
    return 0;
}

static void
on_signal(uv_signal_t *sig, int signum)
{
    cp_t *cp = sig->data;
    if (cp->stopping)
        return;
    cp->stopping = 1;
    tg_info("cp.stopping", "signal=%d", signum);
    cp_admin_stop(cp);
    /* Stop acting as leader before the lock goes, so the next leader never overlaps with us. */
    cp_channel_close(cp);
    cp_snapshot_timers_close(cp);
    cp_partitions_close(cp);
    cp_leader_close(&cp->leader);
    cp_db_close(&cp->db);
    uv_signal_stop(&cp->sigterm);
    uv_signal_stop(&cp->sigint);
    uv_close((uv_handle_t *)&cp->sigterm, NULL);
    uv_close((uv_handle_t *)&cp->sigint, NULL);
    /* h2o's own timers keep the loop alive: stop it once the closes above have run. */
    uv_stop(cp->loop);
}

static int
cmd_serve(void)
{
    static cp_t cp; /* lives for the whole process; h2o and libuv hold pointers into it */
    if (load_config(&cp.cfg, &cp.wire_key, 1) != 0)
        return 1;
    signal(SIGPIPE, SIG_IGN);
    cp.loop = uv_default_loop();

    uv_signal_init(cp.loop, &cp.sigterm);
    uv_signal_init(cp.loop, &cp.sigint);
    cp.sigterm.data = cp.sigint.data = &cp;
    uv_signal_start(&cp.sigterm, on_signal, SIGTERM);
    uv_signal_start(&cp.sigint, on_signal, SIGINT);

    if (cp_metrics_init(&cp) != 0 || cp_snapshot_timers_init(&cp) != 0 || cp_partitions_init(&cp) != 0 ||
        cp_admin_start(&cp) != 0)
        return 1;
    cp_db_init(&cp.db, cp.loop, cp.cfg.database_url, on_db_connect, on_db_notify, &cp);
    cp_leader_init(&cp.leader, cp.loop, cp.cfg.database_url, on_leader_change, &cp);
    cp_db_start(&cp.db);
    cp_leader_start(&cp.leader);
    tg_info("cp.started", "admin=%s pub=%s rep=%s migrations=%s", cp.cfg.admin_listen, cp.cfg.pub_url, cp.cfg.rep_url,
            cp.cfg.migrations_dir);

    uv_run(cp.loop, UV_RUN_DEFAULT);
    /* Let the close callbacks of what on_signal closed run. */
    uv_run(cp.loop, UV_RUN_NOWAIT);
    cp_snapshot_free(cp.snap);
    cp.snap = NULL;
    cp_metrics_free();
    nng_fini();
    tg_info("cp.stopped", "%s", "clean");
    return 0;
}

int
main(int argc, char **argv)
{
    tg_log_init();
    const char *cmd = argc > 1 ? argv[1] : "serve";
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve();
    if (strcmp(cmd, "migrate") == 0)
        return cmd_migrate();
    fprintf(stderr, "usage: tollgate-controlplane [serve|migrate]\n");
    return 2;
}
