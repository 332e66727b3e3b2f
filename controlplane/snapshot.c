/*
 * Snapshot building and publishing (see snapshot.h).
 *
 * Build: one REPEATABLE READ transaction, so the snapshot is a consistent cut of the config tables.
 * Rows are read in a fixed order (by id; route targets and provider keys by ordinal) and children are
 * attached to parents by walking both lists in the same order. Prices become integer micro-USD per
 * million tokens in SQL (numeric arithmetic, exact up to the rounding to a whole micro-USD).
 *
 * Publishing: notifications arm a short timer so that a burst of changes costs one rebuild; a failed
 * build is retried every second; a heartbeat with the current version goes out every second.
 *
 * Keys: the key set is kept between builds (struct cp_keyset) with the highest change_seq it reflects
 * (its high-water mark). A 'keys' notification selects the keys and tombstones above the mark through
 * their indexes and publishes them as a KeyDelta; a full rebuild (other entities changed) reads the rest
 * and catches the key set up the same way, in the same REPEATABLE READ transaction. Every key is read
 * again only at start, on a new leader term, after a TRUNCATE and every TOLLGATE_SNAPSHOT_RELOAD_S.
 * migrations/0008 explains why the mark never skips a change (stamps are handed out in commit order).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "channel.h"
#include "keyset.h"
#include "metrics.h"
#include "snapshot.h"
#include "tollgate/clock.h"
#include "tollgate/env.h"
#include "tollgate/log.h"

#define REBUILD_DELAY_MS   20
#define DELTA_DELAY_MS     2 /* key deltas are cheap: coalesce only what arrives together */
#define RELOAD_EVERY_S     300
#define TOMBSTONE_KEEP     "1 day"
#define REBUILD_RETRY_MS   1000
#define HEARTBEAT_EVERY_MS 1000
#define MAX_SECRET_BYTES   8192

/* ---------------------------------------------------------------------------------------------------
 * A bump allocator: a snapshot is many small strings and structs freed all at once.
 */
struct chunk {
    struct chunk *next;
    size_t used, cap;
    max_align_t data[];
};

struct cp_arena {
    struct chunk *head;
};

static void *
arena_alloc(struct cp_arena *a, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    if (a->head == NULL || a->head->used + size > a->head->cap) {
        size_t cap = size > 65536 ? size : 65536;
        struct chunk *c = malloc(sizeof(*c) + cap);
        if (c == NULL)
            return NULL;
        c->next = a->head;
        c->used = 0;
        c->cap = cap;
        a->head = c;
    }
    void *p = (char *)a->head->data + a->head->used;
    a->head->used += size;
    return p;
}

static void *
arena_calloc(struct cp_arena *a, size_t n, size_t size)
{
    if (n == 0)
        return NULL;
    void *p = arena_alloc(a, n * size);
    if (p != NULL)
        memset(p, 0, n * size);
    return p;
}

static char *
arena_strdup(struct cp_arena *a, const char *s)
{
    size_t len = strlen(s);
    char *p = arena_alloc(a, len + 1);
    if (p != NULL)
        memcpy(p, s, len + 1);
    return p;
}

static void
arena_free(struct cp_arena *a)
{
    if (a == NULL)
        return;
    struct chunk *c = a->head;
    while (c != NULL) {
        struct chunk *next = c->next;
        free(c);
        c = next;
    }
    free(a);
}

static void
owner_free(void *owner)
{
    arena_free(owner);
}

void
cp_snapshot_free(cp_snapshot_t *snap)
{
    if (snap == NULL)
        return;
    arena_free(snap->arena);
    cp_keyset_free(snap->keys);
    free(snap->keys_packed);
    free(snap->packed);
    free(snap);
}

/* The key set changed in place: both encodings are stale. */
static void
packed_forget(cp_snapshot_t *s)
{
    free(s->keys_packed);
    free(s->packed);
    s->keys_packed = s->packed = NULL;
    s->keys_packed_len = s->packed_len = 0;
    s->packed_version = 0;
}

/*
 * A protobuf message may carry its fields in any order and repeated fields concatenate, so the snapshot
 * is encoded as (everything but the keys) followed by (the keys field alone): a Snapshot holding only
 * its keys encodes to exactly that field's bytes (proto3 leaves default scalars out).
 */
int
cp_snapshot_packed(cp_snapshot_t *s, const uint8_t **buf, size_t *len)
{
    if (s->packed == NULL || s->packed_version != s->version) {
        if (s->keys_packed == NULL) {
            Tollgate__Snapshot k = TOLLGATE__SNAPSHOT__INIT;
            k.keys = s->msg.keys;
            k.n_keys = s->msg.n_keys;
            s->keys_packed_len = tollgate__snapshot__get_packed_size(&k);
            if ((s->keys_packed = malloc(s->keys_packed_len + 1)) == NULL)
                return -1;
            tollgate__snapshot__pack(&k, s->keys_packed);
        }
        Tollgate__Snapshot rest = s->msg;
        rest.keys = NULL;
        rest.n_keys = 0;
        size_t n = tollgate__snapshot__get_packed_size(&rest);
        uint8_t *p = malloc(n + s->keys_packed_len + 1);
        if (p == NULL)
            return -1;
        tollgate__snapshot__pack(&rest, p);
        memcpy(p + n, s->keys_packed, s->keys_packed_len);
        free(s->packed);
        s->packed = p;
        s->packed_len = n + s->keys_packed_len;
        s->packed_version = s->version;
    }
    *buf = s->packed;
    *len = s->packed_len;
    return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * Reading the tables.
 */
#define SQL_TENANTS "SELECT id::text, name, time_zone, log_content FROM tenants ORDER BY id"
#define SQL_KEYS                                                                                                       \
    "SELECT id::text, tenant_id::text, encode(key_hash, 'hex'), name, array_to_json(allowed_models)::text,"            \
    " coalesce((extract(epoch FROM expires_at) * 1000)::bigint, 0), coalesce(team_id::text, ''),"                      \
    " array_to_json(allowed_providers)::text"                                                                          \
    " FROM virtual_keys WHERE status = 'active'"                                                                       \
    " AND (expires_at IS NULL OR expires_at > to_timestamp($1::bigint / 1000.0)) ORDER BY id"
/* The keys changed since a mark, dead or alive: live ones are upserted, the others deleted. */
#define SQL_KEY_CHANGES                                                                                                \
    "SELECT id::text, tenant_id::text, encode(key_hash, 'hex'), name, array_to_json(allowed_models)::text,"            \
    " coalesce((extract(epoch FROM expires_at) * 1000)::bigint, 0), coalesce(team_id::text, ''),"                      \
    " array_to_json(allowed_providers)::text,"                                                                         \
    " status = 'active' AND (expires_at IS NULL OR expires_at > to_timestamp($1::bigint / 1000.0)), change_seq"        \
    " FROM virtual_keys WHERE change_seq > $2::bigint ORDER BY change_seq"
#define SQL_TOMBSTONES                                                                                                 \
    "SELECT key_id::text, change_seq FROM virtual_key_tombstones WHERE change_seq > $1::bigint ORDER BY change_seq"
#define SQL_KEYS_HWM                                                                                                   \
    "SELECT greatest((SELECT coalesce(max(change_seq), 0) FROM virtual_keys),"                                         \
    " (SELECT coalesce(max(change_seq), 0) FROM virtual_key_tombstones))"
#define SQL_PROVIDERS                                                                                                  \
    "SELECT p.id::text, p.name, p.kind, p.base_url,"                                                                   \
    " (SELECT count(*) FROM provider_keys k WHERE k.provider_id = p.id), p.settings::text"                             \
    " FROM providers p ORDER BY p.id"
#define SQL_PROVIDER_KEYS                                                                                              \
    "SELECT id::text, provider_id::text, encode(sealed_secret, 'hex'), weight"                                         \
    " FROM provider_keys ORDER BY provider_id, ordinal"
#define SQL_ROUTES                                                                                                     \
    "SELECT r.id::text, r.name, (SELECT count(*) FROM route_targets t WHERE t.route_id = r.id), r.default_max_tokens"  \
    " FROM routes r ORDER BY r.id"
#define SQL_TARGETS                                                                                                    \
    "SELECT route_id::text, provider_id::text, upstream_model, weight FROM route_targets"                              \
    " ORDER BY route_id, ordinal"
#define SQL_PRICES                                                                                                     \
    "SELECT coalesce(provider_id::text, ''), model,"                                                                   \
    " round(input_usd_per_mtok * 1000000)::bigint, round(output_usd_per_mtok * 1000000)::bigint,"                      \
    " coalesce(round(cached_input_usd_per_mtok * 1000000)::bigint, 0)"                                                 \
    " FROM prices ORDER BY model, provider_id NULLS FIRST"

#define SQL_BUDGETS                                                                                                    \
    "SELECT id::text, tenant_id::text, scope, coalesce(team_id::text, ''), coalesce(key_id::text, ''),"                \
    " coalesce(model, ''), period, hard_nanousd, coalesce(soft_nanousd, -1) FROM budgets ORDER BY id"
#define SQL_RATE_LIMITS                                                                                                \
    "SELECT id::text, tenant_id::text, scope, coalesce(team_id::text, ''), coalesce(key_id::text, ''), window_s,"      \
    " coalesce(requests_per_window, -1), coalesce(tokens_per_window, -1), coalesce(concurrent, -1)"                    \
    " FROM rate_limits ORDER BY id"

static PGresult *
select_rows(cp_t *cp, const char *sql)
{
    PGresult *res;
    if (cp_db_query(&cp->db, &res, sql, 0, NULL, NULL, NULL) != 0) {
        tg_error("cp.snapshot.query_failed", "error=\"%s\"", cp_db_errmsg(&cp->db, res));
        PQclear(res);
        return NULL;
    }
    return res;
}

#define V(res, r, c) PQgetvalue(res, r, c)

static int
load_tenants(cp_t *cp, cp_snapshot_t *s)
{
    PGresult *res = select_rows(cp, SQL_TENANTS);
    if (res == NULL)
        return -1;
    size_t n = PQntuples(res);
    Tollgate__Tenant *items = arena_calloc(s->arena, n, sizeof(*items));
    Tollgate__Tenant **ptrs = arena_calloc(s->arena, n, sizeof(*ptrs));
    if (n > 0 && (items == NULL || ptrs == NULL))
        goto fail;
    for (size_t i = 0; i < n; i++) {
        tollgate__tenant__init(&items[i]);
        items[i].id = arena_strdup(s->arena, V(res, i, 0));
        items[i].name = arena_strdup(s->arena, V(res, i, 1));
        items[i].time_zone = arena_strdup(s->arena, V(res, i, 2));
        items[i].log_content = V(res, i, 3)[0] == 't';
        if (items[i].id == NULL || items[i].name == NULL || items[i].time_zone == NULL)
            goto fail;
        ptrs[i] = &items[i];
    }
    s->msg.n_tenants = n;
    s->msg.tenants = ptrs;
    PQclear(res);
    return 0;
fail:
    PQclear(res);
    return -1;
}

/* A JSON array of strings (array_to_json of a text[] or uuid[]) into an arena string array. */
static int
parse_strings(struct cp_arena *a, const char *text, char ***ret, size_t *ret_n)
{
    json_t *arr = json_loads(text, 0, NULL);
    if (!json_is_array(arr)) {
        json_decref(arr);
        return -1;
    }
    size_t n = json_array_size(arr);
    char **items = arena_calloc(a, n, sizeof(char *));
    if (n > 0 && items == NULL)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        const char *m = json_string_value(json_array_get(arr, i));
        if (m == NULL || (items[i] = arena_strdup(a, m)) == NULL)
            goto fail;
    }
    *ret = items;
    *ret_n = n;
    json_decref(arr);
    return 0;
fail:
    json_decref(arr);
    return -1;
}

/* One row of SQL_KEYS / SQL_KEY_CHANGES (same first 8 columns) into an arena key. 0 or -1. */
static int
key_from_row(struct cp_arena *a, PGresult *res, int i, Tollgate__VirtualKey *k)
{
    tollgate__virtual_key__init(k);
    k->id = arena_strdup(a, V(res, i, 0));
    k->tenant_id = arena_strdup(a, V(res, i, 1));
    k->name = arena_strdup(a, V(res, i, 3));
    k->key_hash.data = arena_alloc(a, TG_SHA256_LEN);
    k->key_hash.len = TG_SHA256_LEN;
    if (k->id == NULL || k->tenant_id == NULL || k->name == NULL || k->key_hash.data == NULL)
        return -1;
    if (tg_hex_decode(V(res, i, 2), PQgetlength(res, i, 2), k->key_hash.data, TG_SHA256_LEN) != 0)
        return -1;
    if (parse_strings(a, V(res, i, 4), &k->allowed_models, &k->n_allowed_models) != 0 ||
        parse_strings(a, V(res, i, 7), &k->allowed_providers, &k->n_allowed_providers) != 0)
        return -1;
    k->expires_at_unix_ms = strtoll(V(res, i, 5), NULL, 10);
    if ((k->team_id = arena_strdup(a, V(res, i, 6))) == NULL)
        return -1;
    return 0;
}

static int
keys_query(cp_t *cp, PGresult **res, const char *sql, int nparams, const char *const *params)
{
    if (cp_db_query(&cp->db, res, sql, nparams, params, NULL, NULL) != 0) {
        tg_error("cp.snapshot.query_failed", "error=\"%s\"", cp_db_errmsg(&cp->db, *res));
        PQclear(*res);
        return -1;
    }
    return 0;
}

/* Every live key, into a new key set (inside the build's transaction). 0 or -1. */
static int
load_keys(cp_t *cp, cp_keyset_t **ret)
{
    /* expiry on the governance clock (tollgate/clock.h), like the dataplane's check */
    char now[24];
    snprintf(now, sizeof(now), "%lld", (long long)tg_clock_now_ms());
    const char *params[] = {now};
    PGresult *res;
    if (keys_query(cp, &res, SQL_KEYS_HWM, 0, NULL) != 0)
        return -1;
    uint64_t hwm = strtoull(V(res, 0, 0), NULL, 10);
    PQclear(res);
    if (keys_query(cp, &res, SQL_KEYS, 1, params) != 0)
        return -1;
    size_t n = PQntuples(res);
    struct cp_arena *a = calloc(1, sizeof(*a));
    Tollgate__VirtualKey *items = a != NULL ? arena_calloc(a, n, sizeof(*items)) : NULL;
    Tollgate__VirtualKey **ptrs = a != NULL ? arena_calloc(a, n, sizeof(*ptrs)) : NULL;
    if (a == NULL || (n > 0 && (items == NULL || ptrs == NULL)))
        goto fail;
    for (size_t i = 0; i < n; i++) {
        if (key_from_row(a, res, (int)i, &items[i]) != 0) {
            tg_error("cp.snapshot.bad_row", "table=virtual_keys");
            goto fail;
        }
        ptrs[i] = &items[i];
    }
    if ((*ret = cp_keyset_new(ptrs, n, a, owner_free, hwm)) == NULL)
        goto fail;
    PQclear(res);
    return 0;
fail:
    PQclear(res);
    arena_free(a);
    return -1;
}

/* The key changes above a mark: upserts (live keys) and deleted ids (dead keys, tombstones), in arena
 * `a`. An id may be in both (deleted, then inserted again with its id): the upsert wins. 0 or -1. */
typedef struct key_changes {
    struct cp_arena *a;
    Tollgate__VirtualKey **upserts;
    size_t n_upserts;
    char **deleted;
    size_t n_deleted;
    uint64_t hwm;
} key_changes_t;

static int
load_key_changes(cp_t *cp, uint64_t hwm, key_changes_t *c)
{
    char now[24], mark[24];
    snprintf(now, sizeof(now), "%lld", (long long)tg_clock_now_ms());
    snprintf(mark, sizeof(mark), "%llu", (unsigned long long)hwm);
    const char *params[] = {now, mark};
    PGresult *kres, *tres;
    c->hwm = hwm;
    /* Right after a bulk insert the table's statistics are stale: the planner expects thousands of rows
     * above the mark and scans all 100,000 (~100 ms), or starts a parallel worker (~20 ms), to find the
     * one there is. The change_seq indexes, in this process, are always the right plan here. */
    if (cp_db_exec(&cp->db, "SET LOCAL enable_seqscan = off", 0, NULL) != 0 ||
        cp_db_exec(&cp->db, "SET LOCAL max_parallel_workers_per_gather = 0", 0, NULL) != 0)
        return -1;
    if (keys_query(cp, &kres, SQL_KEY_CHANGES, 2, params) != 0)
        return -1;
    if (keys_query(cp, &tres, SQL_TOMBSTONES, 1, params + 1) != 0) {
        PQclear(kres);
        return -1;
    }
    if (cp_db_exec(&cp->db, "RESET enable_seqscan", 0, NULL) != 0 ||
        cp_db_exec(&cp->db, "RESET max_parallel_workers_per_gather", 0, NULL) != 0)
        goto fail;
    size_t nk = PQntuples(kres), nt = PQntuples(tres);
    Tollgate__VirtualKey *items = arena_calloc(c->a, nk, sizeof(*items));
    c->upserts = arena_calloc(c->a, nk, sizeof(*c->upserts));
    c->deleted = arena_calloc(c->a, nk + nt, sizeof(*c->deleted));
    if ((nk > 0 && (items == NULL || c->upserts == NULL)) || (nk + nt > 0 && c->deleted == NULL))
        goto fail;
    for (size_t i = 0; i < nk; i++) {
        uint64_t seq = strtoull(V(kres, i, 9), NULL, 10);
        if (seq > c->hwm)
            c->hwm = seq;
        if (V(kres, i, 8)[0] != 't') {
            if ((c->deleted[c->n_deleted++] = arena_strdup(c->a, V(kres, i, 0))) == NULL)
                goto fail;
            continue;
        }
        if (key_from_row(c->a, kres, (int)i, &items[i]) != 0) {
            tg_error("cp.snapshot.bad_row", "table=virtual_keys");
            goto fail;
        }
        c->upserts[c->n_upserts++] = &items[i];
    }
    for (size_t i = 0; i < nt; i++) {
        uint64_t seq = strtoull(V(tres, i, 1), NULL, 10);
        if (seq > c->hwm)
            c->hwm = seq;
        if ((c->deleted[c->n_deleted++] = arena_strdup(c->a, V(tres, i, 0))) == NULL)
            goto fail;
    }
    PQclear(kres);
    PQclear(tres);
    return 0;
fail:
    PQclear(kres);
    PQclear(tres);
    return -1;
}

/*
 * Opens a provider secret sealed at rest (master key) and re-seals it for the channel. aad is the
 * provider key id in both cases.
 */
static int
reseal(cp_t *cp, cp_snapshot_t *s, const char *id, const char *hex, size_t hexlen, ProtobufCBinaryData *ret)
{
    size_t sealed_len = hexlen / 2;
    if (hexlen % 2 != 0 || sealed_len < TG_AEAD_OVERHEAD || sealed_len > MAX_SECRET_BYTES + TG_AEAD_OVERHEAD)
        return -1;
    uint8_t sealed[MAX_SECRET_BYTES + TG_AEAD_OVERHEAD], plain[MAX_SECRET_BYTES];
    if (tg_hex_decode(hex, hexlen, sealed, sealed_len) != 0)
        return -1;
    int plen = tg_aead_open(cp->cfg.master_key, id, strlen(id), sealed, sealed_len, plain);
    if (plen < 0)
        return -1;
    ret->len = (size_t)plen + TG_AEAD_OVERHEAD;
    ret->data = arena_alloc(s->arena, ret->len);
    int rv = -1;
    if (ret->data != NULL && tg_aead_seal(cp->wire_key.seal_key, id, strlen(id), plain, plen, ret->data) == 0)
        rv = 0;
    explicit_bzero(plain, sizeof(plain));
    return rv;
}

static int
load_providers(cp_t *cp, cp_snapshot_t *s)
{
    PGresult *pres = select_rows(cp, SQL_PROVIDERS);
    if (pres == NULL)
        return -1;
    PGresult *kres = select_rows(cp, SQL_PROVIDER_KEYS);
    if (kres == NULL) {
        PQclear(pres);
        return -1;
    }
    size_t n = PQntuples(pres), nk = PQntuples(kres);
    Tollgate__ProviderAccount *items = arena_calloc(s->arena, n, sizeof(*items));
    Tollgate__ProviderAccount **ptrs = arena_calloc(s->arena, n, sizeof(*ptrs));
    if (n > 0 && (items == NULL || ptrs == NULL))
        goto fail;
    for (size_t i = 0; i < n; i++) {
        Tollgate__ProviderAccount *p = &items[i];
        tollgate__provider_account__init(p);
        p->id = arena_strdup(s->arena, V(pres, i, 0));
        p->name = arena_strdup(s->arena, V(pres, i, 1));
        p->kind = arena_strdup(s->arena, V(pres, i, 2));
        p->base_url = arena_strdup(s->arena, V(pres, i, 3));
        p->settings_json = arena_strdup(s->arena, V(pres, i, 5));
        size_t cap = strtoull(V(pres, i, 4), NULL, 10);
        p->keys = arena_calloc(s->arena, cap, sizeof(*p->keys));
        if (p->id == NULL || p->name == NULL || p->kind == NULL || p->base_url == NULL || p->settings_json == NULL ||
            (cap > 0 && !p->keys))
            goto fail;
        ptrs[i] = p;
    }
    /* Both lists are ordered by provider id: walk them together. */
    size_t pi = 0;
    for (size_t r = 0; r < nk; r++) {
        const char *pid = V(kres, r, 1), *id = V(kres, r, 0);
        while (pi < n && strcmp(items[pi].id, pid) != 0)
            pi++;
        if (pi == n)
            break; /* a key added between the two reads of a broken snapshot; cannot happen in RR */
        Tollgate__ProviderKey *k = arena_calloc(s->arena, 1, sizeof(*k));
        if (k == NULL)
            goto fail;
        tollgate__provider_key__init(k);
        k->id = arena_strdup(s->arena, id);
        k->weight = (uint32_t)strtoul(V(kres, r, 3), NULL, 10);
        if (k->id == NULL)
            goto fail;
        if (reseal(cp, s, id, V(kres, r, 2), PQgetlength(kres, r, 2), &k->sealed_secret) != 0) {
            tg_error("cp.snapshot.secret_unreadable",
                     "provider_id=%s key_id=%s hint=\"wrong TOLLGATE_MASTER_KEY? the key is left out\"", pid, id);
            continue;
        }
        items[pi].keys[items[pi].n_keys++] = k;
    }
    s->msg.n_providers = n;
    s->msg.providers = ptrs;
    PQclear(pres);
    PQclear(kres);
    return 0;
fail:
    PQclear(pres);
    PQclear(kres);
    return -1;
}

static int
load_routes(cp_t *cp, cp_snapshot_t *s)
{
    PGresult *rres = select_rows(cp, SQL_ROUTES);
    if (rres == NULL)
        return -1;
    PGresult *tres = select_rows(cp, SQL_TARGETS);
    if (tres == NULL) {
        PQclear(rres);
        return -1;
    }
    size_t n = PQntuples(rres), nt = PQntuples(tres);
    Tollgate__Route *items = arena_calloc(s->arena, n, sizeof(*items));
    Tollgate__Route **ptrs = arena_calloc(s->arena, n, sizeof(*ptrs));
    if (n > 0 && (items == NULL || ptrs == NULL))
        goto fail;
    for (size_t i = 0; i < n; i++) {
        Tollgate__Route *r = &items[i];
        tollgate__route__init(r);
        r->id = arena_strdup(s->arena, V(rres, i, 0));
        r->name = arena_strdup(s->arena, V(rres, i, 1));
        size_t cap = strtoull(V(rres, i, 2), NULL, 10);
        r->default_max_tokens = (uint32_t)strtoul(V(rres, i, 3), NULL, 10);
        r->targets = arena_calloc(s->arena, cap, sizeof(*r->targets));
        if (r->id == NULL || r->name == NULL || (cap > 0 && r->targets == NULL))
            goto fail;
        ptrs[i] = r;
    }
    size_t ri = 0;
    for (size_t t = 0; t < nt; t++) {
        while (ri < n && strcmp(items[ri].id, V(tres, t, 0)) != 0)
            ri++;
        if (ri == n)
            break;
        Tollgate__RouteTarget *tg = arena_calloc(s->arena, 1, sizeof(*tg));
        if (tg == NULL)
            goto fail;
        tollgate__route_target__init(tg);
        tg->provider_id = arena_strdup(s->arena, V(tres, t, 1));
        tg->upstream_model = arena_strdup(s->arena, V(tres, t, 2));
        tg->weight = (uint32_t)strtoul(V(tres, t, 3), NULL, 10);
        if (tg->provider_id == NULL || tg->upstream_model == NULL)
            goto fail;
        items[ri].targets[items[ri].n_targets++] = tg;
    }
    s->msg.n_routes = n;
    s->msg.routes = ptrs;
    PQclear(rres);
    PQclear(tres);
    return 0;
fail:
    PQclear(rres);
    PQclear(tres);
    return -1;
}

static int
load_prices(cp_t *cp, cp_snapshot_t *s)
{
    PGresult *res = select_rows(cp, SQL_PRICES);
    if (res == NULL)
        return -1;
    size_t n = PQntuples(res);
    Tollgate__Price *items = arena_calloc(s->arena, n, sizeof(*items));
    Tollgate__Price **ptrs = arena_calloc(s->arena, n, sizeof(*ptrs));
    if (n > 0 && (items == NULL || ptrs == NULL))
        goto fail;
    for (size_t i = 0; i < n; i++) {
        Tollgate__Price *p = &items[i];
        tollgate__price__init(p);
        p->provider_id = arena_strdup(s->arena, V(res, i, 0));
        p->model = arena_strdup(s->arena, V(res, i, 1));
        if (p->provider_id == NULL || p->model == NULL)
            goto fail;
        p->input_micro_usd_per_mtok = strtoll(V(res, i, 2), NULL, 10);
        p->output_micro_usd_per_mtok = strtoll(V(res, i, 3), NULL, 10);
        p->cached_input_micro_usd_per_mtok = strtoll(V(res, i, 4), NULL, 10);
        ptrs[i] = p;
    }
    s->msg.n_prices = n;
    s->msg.prices = ptrs;
    PQclear(res);
    return 0;
fail:
    PQclear(res);
    return -1;
}

static Tollgate__Scope
scope_of(const char *v)
{
    return strcmp(v, "key") == 0    ? TOLLGATE__SCOPE__SCOPE_KEY
           : strcmp(v, "team") == 0 ? TOLLGATE__SCOPE__SCOPE_TEAM
                                    : TOLLGATE__SCOPE__SCOPE_TENANT;
}

static Tollgate__Period
period_of(const char *v)
{
    return strcmp(v, "hourly") == 0    ? TOLLGATE__PERIOD__PERIOD_HOURLY
           : strcmp(v, "daily") == 0   ? TOLLGATE__PERIOD__PERIOD_DAILY
           : strcmp(v, "weekly") == 0  ? TOLLGATE__PERIOD__PERIOD_WEEKLY
           : strcmp(v, "monthly") == 0 ? TOLLGATE__PERIOD__PERIOD_MONTHLY
                                       : TOLLGATE__PERIOD__PERIOD_TOTAL;
}

/* Budgets and rate limits: what admission enforces (docs/admission.md). */
static int
load_limits(cp_t *cp, cp_snapshot_t *s)
{
    PGresult *res = select_rows(cp, SQL_BUDGETS);
    if (res == NULL)
        return -1;
    size_t n = PQntuples(res);
    Tollgate__Budget *b = arena_calloc(s->arena, n, sizeof(*b));
    Tollgate__Budget **bp = arena_calloc(s->arena, n, sizeof(*bp));
    if (n > 0 && (b == NULL || bp == NULL))
        goto fail;
    for (size_t i = 0; i < n; i++) {
        tollgate__budget__init(&b[i]);
        b[i].id = arena_strdup(s->arena, V(res, i, 0));
        b[i].tenant_id = arena_strdup(s->arena, V(res, i, 1));
        b[i].scope = scope_of(V(res, i, 2));
        b[i].team_id = arena_strdup(s->arena, V(res, i, 3));
        b[i].key_id = arena_strdup(s->arena, V(res, i, 4));
        b[i].model = arena_strdup(s->arena, V(res, i, 5));
        b[i].period = period_of(V(res, i, 6));
        b[i].hard_nanousd = strtoll(V(res, i, 7), NULL, 10);
        b[i].soft_nanousd = strtoll(V(res, i, 8), NULL, 10);
        if (!b[i].id || !b[i].tenant_id || !b[i].team_id || !b[i].key_id || !b[i].model)
            goto fail;
        bp[i] = &b[i];
    }
    s->msg.n_budgets = n;
    s->msg.budgets = bp;
    PQclear(res);
    if ((res = select_rows(cp, SQL_RATE_LIMITS)) == NULL)
        return -1;
    n = PQntuples(res);
    Tollgate__RateLimit *l = arena_calloc(s->arena, n, sizeof(*l));
    Tollgate__RateLimit **lp = arena_calloc(s->arena, n, sizeof(*lp));
    if (n > 0 && (l == NULL || lp == NULL))
        goto fail;
    for (size_t i = 0; i < n; i++) {
        tollgate__rate_limit__init(&l[i]);
        l[i].id = arena_strdup(s->arena, V(res, i, 0));
        l[i].tenant_id = arena_strdup(s->arena, V(res, i, 1));
        l[i].scope = scope_of(V(res, i, 2));
        l[i].team_id = arena_strdup(s->arena, V(res, i, 3));
        l[i].key_id = arena_strdup(s->arena, V(res, i, 4));
        l[i].window_s = (uint32_t)strtoul(V(res, i, 5), NULL, 10);
        l[i].requests_per_window = strtoll(V(res, i, 6), NULL, 10);
        l[i].tokens_per_window = strtoll(V(res, i, 7), NULL, 10);
        l[i].concurrent = strtoll(V(res, i, 8), NULL, 10);
        if (!l[i].id || !l[i].tenant_id || !l[i].team_id || !l[i].key_id)
            goto fail;
        lp[i] = &l[i];
    }
    s->msg.n_rate_limits = n;
    s->msg.rate_limits = lp;
    PQclear(res);
    return 0;
fail:
    PQclear(res);
    return -1;
}

/*
 * A full build: everything but the keys read again; the keys read again too when `reload` or when there
 * is no key set yet, else taken over from `prev` and caught up from their change sequence. On success
 * *ret owns the key set and prev->keys is NULL; on failure prev is untouched.
 */
static int
build_full(cp_t *cp, cp_snapshot_t *prev, int reload, cp_snapshot_t **ret)
{
    key_changes_t changes = {0};
    cp_keyset_t *fresh = NULL;
    cp_snapshot_t *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->arena = calloc(1, sizeof(*s->arena))) == NULL ||
        (changes.a = calloc(1, sizeof(*changes.a))) == NULL) {
        if (s != NULL)
            free(s->arena);
        free(s);
        return -1;
    }
    if (prev == NULL || prev->keys == NULL)
        reload = 1;
    tollgate__snapshot__init(&s->msg);
    if (cp_db_exec(&cp->db, "BEGIN ISOLATION LEVEL REPEATABLE READ", 0, NULL) != 0)
        goto fail;
    PGresult *res = select_rows(cp, "SELECT nextval('snapshot_version')");
    if (res == NULL)
        goto rollback;
    s->version = strtoull(V(res, 0, 0), NULL, 10);
    PQclear(res);
    if (load_tenants(cp, s) != 0 || load_providers(cp, s) != 0 || load_routes(cp, s) != 0 || load_prices(cp, s) != 0 ||
        load_limits(cp, s) != 0)
        goto rollback;
    if (reload ? load_keys(cp, &fresh) != 0 : load_key_changes(cp, prev->keys->hwm, &changes) != 0)
        goto rollback;
    if (reload &&
        cp_db_exec(&cp->db,
                   "DELETE FROM virtual_key_tombstones WHERE deleted_at < now() - interval '" TOMBSTONE_KEEP "'", 0,
                   NULL) != 0)
        goto rollback;
    if (cp_db_exec(&cp->db, "COMMIT", 0, NULL) != 0)
        goto fail;
    if (reload) {
        s->keys = fresh;
        fresh = NULL;
        cp->keys_loaded_ms = tg_mono_ns() / 1000000;
    } else {
        if (cp_keyset_apply(prev->keys, changes.upserts, changes.n_upserts, changes.deleted, changes.n_deleted,
                            changes.a, changes.hwm) != 0)
            goto fail;
        changes.a = NULL; /* the key set's now */
        s->keys = prev->keys;
        prev->keys = NULL;
        if (changes.n_upserts + changes.n_deleted == 0) { /* the keys' encoding still holds */
            s->keys_packed = prev->keys_packed;
            s->keys_packed_len = prev->keys_packed_len;
            prev->keys_packed = NULL;
        }
    }
    arena_free(changes.a);
    s->created_unix_ms = tg_now_unix_ms();
    s->msg.schema_version = TG_WIRE_SCHEMA_VERSION;
    s->msg.version = s->version;
    s->msg.created_unix_ms = s->created_unix_ms;
    s->msg.keys = s->keys->keys;
    s->msg.n_keys = s->keys->n;
    *ret = s;
    return 0;
rollback:
    if (cp_db_conn(&cp->db) != NULL)
        cp_db_exec(&cp->db, "ROLLBACK", 0, NULL);
fail:
    cp_keyset_free(fresh);
    arena_free(changes.a);
    cp_snapshot_free(s);
    return -1;
}

/* ---------------------------------------------------------------------------------------------------
 * Key deltas.
 */

/* A delta larger than this share of the key set goes out as a full snapshot: decoding the whole thing is
 * then about as cheap for a dataplane, and a full snapshot cannot be missed half-way. */
#define DELTA_MAX_SHARE 2 /* 1/2 */
#define DELTA_MIN_FULL  256

/* Reads the key changes above the mark and publishes them. 0 (published, or nothing changed), 1 when a
 * full snapshot should go out instead (the delta is too large), -1 on a database error. */
static int
publish_delta(cp_t *cp)
{
    cp_snapshot_t *s = cp->snap;
    uint64_t t0 = tg_mono_ns();
    key_changes_t c = {0};
    if ((c.a = calloc(1, sizeof(*c.a))) == NULL)
        return -1;
    if (cp_db_exec(&cp->db, "BEGIN ISOLATION LEVEL REPEATABLE READ", 0, NULL) != 0)
        goto fail;
    if (load_key_changes(cp, s->keys->hwm, &c) != 0)
        goto rollback;
    if (c.hwm == s->keys->hwm) { /* a statement that changed no row */
        cp_db_exec(&cp->db, "ROLLBACK", 0, NULL);
        arena_free(c.a);
        return 0;
    }
    PGresult *res = select_rows(cp, "SELECT nextval('snapshot_version')");
    if (res == NULL)
        goto rollback;
    uint64_t version = strtoull(V(res, 0, 0), NULL, 10);
    PQclear(res);
    if (cp_db_exec(&cp->db, "COMMIT", 0, NULL) != 0)
        goto fail;
    uint64_t t_sql = tg_mono_ns();
    size_t changed = c.n_upserts + c.n_deleted;
    int full = changed > DELTA_MIN_FULL && changed * DELTA_MAX_SHARE > s->keys->n;

    Tollgate__KeyDelta d = TOLLGATE__KEY_DELTA__INIT;
    d.schema_version = TG_WIRE_SCHEMA_VERSION;
    d.base_version = s->version;
    d.version = version;
    d.created_unix_ms = tg_now_unix_ms();
    d.upserts = c.upserts;
    d.n_upserts = c.n_upserts;
    d.deleted_ids = c.deleted;
    d.n_deleted_ids = c.n_deleted;
    size_t bytes = full ? 0 : tollgate__key_delta__get_packed_size(&d);
    int rv = full ? 0 : cp_channel_publish(cp, TOLLGATE__MSG_TYPE__MSG_KEY_DELTA, &d.base);
    if (cp_keyset_apply(s->keys, c.upserts, c.n_upserts, c.deleted, c.n_deleted, c.a, c.hwm) != 0) {
        /* the dataplanes may have the delta and we do not: a full reload puts everyone on one version */
        arena_free(c.a);
        cp->keys_reload = 1;
        return 1;
    }
    packed_forget(s);
    s->version = s->msg.version = version;
    s->created_unix_ms = s->msg.created_unix_ms = d.created_unix_ms;
    s->msg.keys = s->keys->keys;
    s->msg.n_keys = s->keys->n;
    if (full) {
        tg_info("cp.snapshot.delta_too_large", "changed=%zu keys=%zu: publishing the full snapshot", changed,
                s->keys->n);
        return 1;
    }
    if (rv != 0)
        tg_warn("cp.snapshot.publish_failed", "version=%llu error=\"%s\"", (unsigned long long)version,
                nng_strerror(rv));
    cp_metrics_key_delta(version, (tg_mono_ns() - t0) / 1e9);
    tg_info("cp.snapshot.delta_published",
            "base=%llu version=%llu upserts=%zu deletes=%zu keys=%zu bytes=%zu us=%llu sql_us=%llu",
            (unsigned long long)d.base_version, (unsigned long long)version, c.n_upserts, c.n_deleted, s->keys->n,
            bytes, (unsigned long long)((tg_mono_ns() - t0) / 1000), (unsigned long long)((t_sql - t0) / 1000));
    return 0;
rollback:
    if (cp_db_conn(&cp->db) != NULL)
        cp_db_exec(&cp->db, "ROLLBACK", 0, NULL);
fail:
    arena_free(c.a);
    return -1;
}

/* ---------------------------------------------------------------------------------------------------
 * Rebuild scheduling and heartbeats.
 */
static void on_rebuild(uv_timer_t *t);

static void
retry_later(cp_t *cp)
{
    uv_timer_start(&cp->rebuild_timer, on_rebuild, REBUILD_RETRY_MS, 0);
}

static void
publish_full(cp_t *cp, uint64_t t0, const char *what)
{
    cp_snapshot_t *s = cp->snap;
    const uint8_t *buf;
    size_t bytes = 0;
    int rv = cp_snapshot_packed(s, &buf, &bytes) != 0
                 ? NNG_ENOMEM
                 : cp_channel_publish_bytes(cp, TOLLGATE__MSG_TYPE__MSG_SNAPSHOT, buf, bytes);
    if (rv != 0)
        tg_warn("cp.snapshot.publish_failed", "version=%llu error=\"%s\"", (unsigned long long)s->version,
                nng_strerror(rv));
    cp_metrics_snapshot(1, rv == 0, s->version, bytes, (tg_mono_ns() - t0) / 1e9);
    tg_info(
        "cp.snapshot.published",
        "version=%llu tenants=%zu keys=%zu providers=%zu routes=%zu prices=%zu bytes=%zu build_ms=%.1f keys_from=%s",
        (unsigned long long)s->version, s->msg.n_tenants, s->msg.n_keys, s->msg.n_providers, s->msg.n_routes,
        s->msg.n_prices, bytes, (tg_mono_ns() - t0) / 1e6, what);
}

static void
on_rebuild(uv_timer_t *t)
{
    cp_t *cp = t->data;
    if (cp->stopping || (!cp->snapshot_dirty && !cp->keys_dirty && !cp->keys_reload))
        return;
    if (cp_db_conn(&cp->db) == NULL)
        return; /* the reconnect schedules a rebuild */
    uint64_t t0 = tg_mono_ns();
    if (!cp->snapshot_dirty && !cp->keys_reload && cp->snap != NULL && cp->snap->keys != NULL) {
        cp->keys_dirty = 0;
        int rv = publish_delta(cp);
        if (rv == 0)
            return;
        if (rv < 0) {
            tg_warn("cp.snapshot.delta_failed", "retry_ms=%d", REBUILD_RETRY_MS);
            cp->keys_dirty = 1;
            retry_later(cp);
            return;
        }
        if (!cp->keys_reload) { /* too large: the key set is already current, send it whole */
            publish_full(cp, t0, "delta");
            return;
        }
    }
    int reload = cp->keys_reload;
    cp->snapshot_dirty = cp->keys_dirty = cp->keys_reload = 0;
    cp_snapshot_t *s;
    if (build_full(cp, cp->snap, reload, &s) != 0) {
        cp_metrics_snapshot(0, 0, 0, 0, (tg_mono_ns() - t0) / 1e9);
        tg_warn("cp.snapshot.build_failed", "retry_ms=%d", REBUILD_RETRY_MS);
        cp->snapshot_dirty = 1;
        cp->keys_reload = reload;
        retry_later(cp);
        return;
    }
    cp_snapshot_free(cp->snap);
    cp->snap = s;
    publish_full(cp, t0, reload ? "database" : "kept");
}

static void
schedule(cp_t *cp, unsigned delay_ms)
{
    if (!cp->stopping && !uv_is_active((uv_handle_t *)&cp->rebuild_timer))
        uv_timer_start(&cp->rebuild_timer, on_rebuild, delay_ms, 0);
}

void
cp_snapshot_schedule(cp_t *cp)
{
    cp->snapshot_dirty = 1;
    schedule(cp, REBUILD_DELAY_MS);
}

void
cp_snapshot_schedule_keys(cp_t *cp)
{
    cp->keys_dirty = 1;
    schedule(cp, DELTA_DELAY_MS);
}

void
cp_snapshot_schedule_reload(cp_t *cp)
{
    cp->keys_reload = 1;
    cp_snapshot_schedule(cp);
}

static void
on_heartbeat(uv_timer_t *t)
{
    cp_t *cp = t->data;
    if (cp->snap == NULL)
        return;
    Tollgate__Heartbeat hb = TOLLGATE__HEARTBEAT__INIT;
    hb.version = cp->snap->version;
    hb.unix_ms = tg_now_unix_ms();
    cp_channel_publish(cp, TOLLGATE__MSG_TYPE__MSG_HEARTBEAT, &hb.base);
    /* belt and braces: every key read again now and then, whatever the deltas said */
    static int64_t reload_every_s;
    if (reload_every_s == 0 &&
        tg_env_int("TOLLGATE_SNAPSHOT_RELOAD_S", RELOAD_EVERY_S, 1, 86400 * 7, &reload_every_s) != 0)
        reload_every_s = RELOAD_EVERY_S;
    if (cp_leader_is_leading(&cp->leader) &&
        tg_mono_ns() / 1000000 - cp->keys_loaded_ms >= (uint64_t)reload_every_s * 1000)
        cp_snapshot_schedule_reload(cp);
}

int
cp_snapshot_timers_init(cp_t *cp)
{
    uv_timer_init(cp->loop, &cp->rebuild_timer);
    uv_timer_init(cp->loop, &cp->heartbeat_timer);
    cp->rebuild_timer.data = cp;
    cp->heartbeat_timer.data = cp;
    return uv_timer_start(&cp->heartbeat_timer, on_heartbeat, HEARTBEAT_EVERY_MS, HEARTBEAT_EVERY_MS);
}

void
cp_snapshot_timers_close(cp_t *cp)
{
    uv_timer_stop(&cp->rebuild_timer);
    uv_timer_stop(&cp->heartbeat_timer);
    uv_close((uv_handle_t *)&cp->rebuild_timer, NULL);
    uv_close((uv_handle_t *)&cp->heartbeat_timer, NULL);
}
