/*
 * Config snapshots: everything a dataplane needs, read from PostgreSQL in one repeatable-read
 * transaction, numbered by the snapshot_version sequence, published on PUB and served on REP.
 *
 * A cp_snapshot_t is immutable once built; the published one is replaced whole. Provider secrets are
 * opened with the master key and re-sealed with the channel's seal key (aad = provider key id), so the
 * snapshot never holds a plaintext secret or a virtual-key plaintext.
 */
#ifndef CP_SNAPSHOT_H
#define CP_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>
#include "cp.h"
#include "tollgate.pb-c.h"

struct cp_arena;

struct cp_snapshot {
    Tollgate__Snapshot msg; /* every pointer inside lives in `arena` */
    struct cp_arena *arena;
    uint64_t version;
    int64_t created_unix_ms;
};

/* Builds a snapshot from the database. 0 or -1 (logged; the current snapshot stays). */
int cp_snapshot_build(cp_t *cp, cp_snapshot_t **ret);
void cp_snapshot_free(cp_snapshot_t *snap);

/* Marks the snapshot out of date; a rebuild runs shortly (bursts coalesce into one). */
void cp_snapshot_schedule(cp_t *cp);
/* Starts the rebuild and heartbeat timers. */
int cp_snapshot_timers_init(cp_t *cp);
void cp_snapshot_timers_close(cp_t *cp);

#endif
