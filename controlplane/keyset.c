/*
 * The kept key set (see keyset.h). The id table is linear probing; a removed key's slot is marked
 * CP_KEYSET_GONE rather than emptied so that probe chains stay whole, and the table is rebuilt at a load
 * of at most 1/4 whenever live plus marked slots would pass 1/2.
 */
#include <stdlib.h>
#include <string.h>
#include "keyset.h"

static uint64_t
fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* The id table from scratch, for `room` keys. 0 or -1. */
static int
reindex(cp_keyset_t *ks, size_t room)
{
    size_t mask = 15;
    while (mask + 1 < 4 * room)
        mask = mask * 2 + 1;
    uint32_t *slots = calloc(mask + 1, sizeof(*slots));
    if (slots == NULL)
        return -1;
    free(ks->slots);
    ks->slots = slots;
    ks->mask = mask;
    ks->gone = 0;
    for (size_t i = 0; i < ks->n; i++) {
        size_t h = fnv1a(ks->keys[i]->id) & mask;
        while (slots[h] != 0)
            h = (h + 1) & mask;
        slots[h] = (uint32_t)(i + 1);
    }
    return 0;
}

/* The slot of the key with this id, or SIZE_MAX. */
static size_t
find_slot(const cp_keyset_t *ks, const char *id)
{
    for (size_t h = fnv1a(id) & ks->mask;; h = (h + 1) & ks->mask) {
        uint32_t slot = ks->slots[h];
        if (slot == 0)
            return SIZE_MAX;
        if (slot != CP_KEYSET_GONE && strcmp(ks->keys[slot - 1]->id, id) == 0)
            return h;
    }
}

static void
remove_id(cp_keyset_t *ks, const char *id)
{
    size_t h = find_slot(ks, id);
    if (h == SIZE_MAX)
        return;
    size_t i = ks->slots[h] - 1, last = ks->n - 1;
    ks->slots[h] = CP_KEYSET_GONE;
    ks->gone++;
    if (i != last) { /* the last key takes the place */
        ks->slots[find_slot(ks, ks->keys[last]->id)] = (uint32_t)(i + 1);
        ks->keys[i] = ks->keys[last];
    }
    ks->n--;
}

cp_keyset_t *
cp_keyset_new(Tollgate__VirtualKey **keys, size_t n, void *owner, cp_keyset_owner_free owner_free, uint64_t hwm)
{
    cp_keyset_t *ks = calloc(1, sizeof(*ks));
    if (ks == NULL)
        return NULL;
    ks->owner_free = owner_free;
    ks->hwm = hwm;
    if ((ks->keys = malloc((n + 1) * sizeof(*ks->keys))) == NULL ||
        (ks->owners = malloc(sizeof(*ks->owners))) == NULL) {
        cp_keyset_free(ks);
        return NULL;
    }
    if (n > 0)
        memcpy(ks->keys, keys, n * sizeof(*keys));
    ks->n = ks->cap = n;
    if (reindex(ks, n) != 0) {
        cp_keyset_free(ks);
        return NULL;
    }
    ks->owners[ks->n_owners++] = owner;
    return ks;
}

void
cp_keyset_free(cp_keyset_t *ks)
{
    if (ks == NULL)
        return;
    for (size_t i = 0; i < ks->n_owners; i++)
        ks->owner_free(ks->owners[i]);
    free(ks->owners);
    free(ks->keys);
    free(ks->slots);
    free(ks);
}

int
cp_keyset_apply(cp_keyset_t *ks, Tollgate__VirtualKey **upserts, size_t n_upserts, char **deleted, size_t n_deleted,
                void *owner, uint64_t hwm)
{
    size_t changes = n_upserts + n_deleted, room = ks->n + n_upserts;
    void **owners = realloc(ks->owners, (ks->n_owners + 1) * sizeof(*owners));
    if (owners == NULL)
        return -1;
    ks->owners = owners;
    if (room > ks->cap) {
        size_t cap = ks->cap * 2 > room ? ks->cap * 2 : room;
        Tollgate__VirtualKey **keys = realloc(ks->keys, (cap + 1) * sizeof(*keys));
        if (keys == NULL)
            return -1;
        ks->keys = keys;
        ks->cap = cap;
    }
    if (2 * (room + ks->gone + changes) > ks->mask + 1 && reindex(ks, room) != 0)
        return -1;
    for (size_t i = 0; i < n_deleted; i++)
        remove_id(ks, deleted[i]);
    for (size_t i = 0; i < n_upserts; i++) {
        remove_id(ks, upserts[i]->id);
        size_t h = fnv1a(upserts[i]->id) & ks->mask;
        while (ks->slots[h] != 0)
            h = (h + 1) & ks->mask;
        ks->keys[ks->n] = upserts[i];
        ks->slots[h] = (uint32_t)(++ks->n);
    }
    ks->owners[ks->n_owners++] = owner;
    ks->hwm = hwm;
    return 0;
}

const Tollgate__VirtualKey *
cp_keyset_find(const cp_keyset_t *ks, const char *id)
{
    size_t h = find_slot(ks, id);
    return h == SIZE_MAX ? NULL : ks->keys[ks->slots[h] - 1];
}
