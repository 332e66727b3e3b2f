/*
 * The control-plane process context: configuration and every long-lived object, owned by main.c and
 * handed to each module. Everything runs on one libuv loop thread (admin HTTP, PostgreSQL, NNG), so
 * nothing here is locked.
 */
#ifndef CP_CP_H
#define CP_CP_H

#include <stdint.h>
#include <nng/nng.h>
#include <uv.h>
#include "db.h"
#include "leader.h"
#include "tollgate/crypto.h"
#include "tollgate/wire.h"

typedef struct cp_config {
    const char *database_url;
    const char *admin_token;
    const char *cluster_secret;
    const char *admin_listen;
    const char *pub_url;
    const char *rep_url;
    const char *migrations_dir;
    uint8_t master_key[TG_AEAD_KEY_LEN]; /* seals provider secrets at rest */
} cp_config_t;

typedef struct cp_snapshot cp_snapshot_t;
typedef struct cp_admin cp_admin_t;

typedef struct cp {
    uv_loop_t *loop;
    cp_config_t cfg;
    tg_wire_key_t wire_key;
    cp_db_t db;
    cp_leader_t leader;       /* only the leader opens the NNG channel, builds snapshots, ingests usage */
    cp_snapshot_t *snap;      /* the snapshot currently published; NULL before the first build */
    int snapshot_dirty;       /* a full rebuild is due (notification, reconnect, failed build) */
    int keys_dirty;           /* keys changed: a key delta is due (snapshot.c) */
    int keys_reload;          /* the next full rebuild reads every key again instead of catching up */
    uint64_t keys_loaded_ms;  /* monotonic ms of the last full read of the keys (periodic reload) */
    uv_timer_t rebuild_timer; /* coalesces bursts of notifications into one rebuild */
    uv_timer_t heartbeat_timer;
    uv_timer_t partitions_timer; /* usage partitions and retention (partitions.c) */
    nng_socket pub;
    nng_socket rep;
    int rep_open;
    int rep_poll_closing; /* rep_poll may be reused only after its close callback */
    uv_poll_t rep_poll;
    cp_admin_t *admin;
    uv_signal_t sigterm, sigint;
    int stopping;
} cp_t;

#endif
