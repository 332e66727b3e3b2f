/*
 * Config snapshots: everything a dataplane needs, read from PostgreSQL in one repeatable-read
 * transaction, numbered by the snapshot_version sequence, published on PUB and served on REP.
 *
 * Key deltas (migrations/0008): virtual keys carry a change sequence; on a 'keys' notification only the
 * keys above the published high-water mark are read and published as a KeyDelta {base_version,
 * version, upserts, deleted_ids}. Provider secrets are
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

/*
 * The published state: msg is always the full snapshot at `version`. Everything but the keys lives in
 * `arena` (rebuilt on a full rebuild); msg.keys is the key set's array, which key deltas change in place
 * (with `version`), and which a full rebuild takes over from the previous snapshot instead of reading
 * and encoding every key again.
 */
struct cp_snapshot {
    Tollgate__Snapshot msg;
    struct cp_arena *arena;
    struct cp_keyset *keys; /* keyset.h */
    uint64_t version;
    int64_t created_unix_ms;
    /* Encodings kept between uses (12 MB and tens of ms at 100,000 keys): the keys field alone, valid
     * until the key set changes (a full rebuild that changed no key reuses it), and the whole snapshot
     * at packed_version (publish and every fetch of that version). */
    uint8_t *keys_packed;
    size_t keys_packed_len;
    uint8_t *packed;
    size_t packed_len;
    uint64_t packed_version; /* 0: none */
};

void cp_snapshot_free(cp_snapshot_t *snap);
/* The serialized full snapshot at snap->version, encoded at most once per version. 0, or -1 out of
 * memory. *buf stays valid until the snapshot changes. */
int cp_snapshot_packed(cp_snapshot_t *snap, const uint8_t **buf, size_t *len);

/* Marks the snapshot out of date; a full rebuild runs shortly (bursts coalesce into one). The keys are
 * caught up from their change sequence, not read again. */
void cp_snapshot_schedule(cp_t *cp);
/* Keys changed: a key delta goes out shortly (or a full rebuild, when one is due anyway). */
void cp_snapshot_schedule_keys(cp_t *cp);
/* A full rebuild that reads every key again (TRUNCATE, a new leader term, a moved clock). */
void cp_snapshot_schedule_reload(cp_t *cp);
/* Starts the rebuild and heartbeat timers. */
int cp_snapshot_timers_init(cp_t *cp);
void cp_snapshot_timers_close(cp_t *cp);

#endif
