/*
 * The control plane's set of live virtual keys between snapshot builds, kept so that a key change costs
 * O(changes) instead of reading, parsing and encoding every key again (docs/architecture.md, "Snapshots
 * and deltas").
 *
 * The keys array is dense (Snapshot.keys points at it as is); an id table finds a key to replace or
 * remove. The keys' storage belongs to the owners handed over with each change (the arenas of the reads
 * that brought them), all freed with the set.
 */
#ifndef CP_KEYSET_H
#define CP_KEYSET_H

#include <stddef.h>
#include <stdint.h>
#include "tollgate.pb-c.h"

typedef void (*cp_keyset_owner_free)(void *owner);

typedef struct cp_keyset {
    Tollgate__VirtualKey **keys; /* dense: a removed key's place is taken by the last one */
    size_t n, cap;
    uint32_t *slots; /* by id (FNV-1a), open addressing: index + 1, 0 empty, CP_KEYSET_GONE removed */
    size_t mask, gone;
    void **owners;
    size_t n_owners;
    cp_keyset_owner_free owner_free;
    uint64_t hwm; /* the highest change_seq of keys and tombstones the set reflects */
} cp_keyset_t;

#define CP_KEYSET_GONE UINT32_MAX

/* A set of the n keys (their storage owned by `owner`, freed with owner_free). NULL out of memory (the
 * owner is not taken). */
cp_keyset_t *cp_keyset_new(Tollgate__VirtualKey **keys, size_t n, void *owner, cp_keyset_owner_free owner_free,
                           uint64_t hwm);
void cp_keyset_free(cp_keyset_t *ks);

/* Removes the keys with the deleted ids (unknown ones are ignored), then adds the upserts, replacing any
 * key of the same id (an id both deleted and upserted ends up upserted). Takes `owner` (the upserts'
 * storage) and moves the mark to hwm. 0, or -1 out of memory with the set and owner untouched. */
int cp_keyset_apply(cp_keyset_t *ks, Tollgate__VirtualKey **upserts, size_t n_upserts, char **deleted, size_t n_deleted,
                    void *owner, uint64_t hwm);
/* The key with this id, or NULL. */
const Tollgate__VirtualKey *cp_keyset_find(const cp_keyset_t *ks, const char *id);

#endif
