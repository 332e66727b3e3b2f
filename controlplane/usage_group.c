/*
 * Grouping a usage batch in C (see usage_group.h).
 *
 * One pass over the records with an open-addressing hash table of group indexes (a batch of thousands
 * of records has a handful of groups, so this is a hash and a few compares per record), then a sort
 * of the groups only: a deterministic row order for the statements, which also takes the rollup rows'
 * locks in one order.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "usage_group.h"
#include "util.h"

int64_t
cp_usage_start_ms(const Tollgate__UsageRecord *u, int64_t now_ms)
{
    return u->started_unix_ms > 0 && u->started_unix_ms <= CP_MAX_START_MS ? u->started_unix_ms : now_ms;
}

int64_t
cp_floor_sec(int64_t ms)
{
    return ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
}

static const char *
uuid_or_zero(const char *s)
{
    return (s != NULL && cp_uuid_valid(s)) ? s : CP_ZERO_UUID;
}

/* FNV-1a; ids fold case, models do not. Ids here are canonical UUIDs (or the zero UUID), whose
 * characters are hex digits and '-': OR-ing 0x20 lowercases A-F and leaves the rest as they are. */
static uint64_t
hash_str(uint64_t h, const char *s, int fold)
{
    unsigned char mask = fold ? 0x20 : 0;
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s | mask;
        h *= 0x100000001b3ull;
    }
    return h ^ 0xff; /* a separator, so ("ab","c") and ("a","bc") differ */
}

static uint64_t
hash_i64(uint64_t h, int64_t v)
{
    for (int i = 0; i < 8; i++) {
        h ^= (uint64_t)(v >> (8 * i)) & 0xff;
        h *= 0x100000001b3ull;
    }
    return h;
}

#define FNV_INIT 0xcbf29ce484222325ull

/* acc += v; sets *ovf instead of overflowing (a sum past int64 would fail in SQL as well). */
static void
add(int64_t *acc, int64_t v, int *ovf)
{
    if (__builtin_add_overflow(*acc, v, acc))
        *ovf = 1;
}

/* A table of group indexes (-1 empty) with at least twice as many slots as records. */
typedef struct table {
    long *slot;
    size_t mask;
} table_t;

static int
table_init(table_t *t, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    t->slot = malloc(cap * sizeof(*t->slot));
    if (t->slot == NULL)
        return -1;
    memset(t->slot, 0xff, cap * sizeof(*t->slot)); /* all -1 */
    t->mask = cap - 1;
    return 0;
}

/* ------------------------------------------------------------------------------------------ rollups */

static int
rollup_cmp(const cp_rollup_group_t *a, const cp_rollup_group_t *b)
{
    int c;
    if (a->hour_s != b->hour_s)
        return a->hour_s < b->hour_s ? -1 : 1;
    if ((c = strcasecmp(a->tenant, b->tenant)) != 0 || (c = strcasecmp(a->team, b->team)) != 0 ||
        (c = strcasecmp(a->key, b->key)) != 0 || (c = strcasecmp(a->provider, b->provider)) != 0)
        return c;
    return strcmp(a->model, b->model);
}

static int
rollup_qcmp(const void *a, const void *b)
{
    return rollup_cmp(a, b);
}

long
cp_group_rollups(const Tollgate__UsageBatch *batch, int64_t now_ms, cp_rollup_group_t *out)
{
    size_t n = batch->n_records;
    table_t t;
    if (table_init(&t, n) != 0)
        return -1;
    long ng = 0;
    int ovf = 0;
    for (size_t i = 0; i < n; i++) {
        const Tollgate__UsageRecord *u = batch->records[i];
        int64_t s = cp_floor_sec(cp_usage_start_ms(u, now_ms));
        cp_rollup_group_t k = {.hour_s = s - ((s % 3600) + 3600) % 3600,
                               .tenant = uuid_or_zero(u->tenant_id),
                               .team = uuid_or_zero(u->team_id),
                               .key = uuid_or_zero(u->key_id),
                               .provider = uuid_or_zero(u->provider_id),
                               .model = u->model ? u->model : ""};
        uint64_t h = hash_i64(FNV_INIT, k.hour_s);
        h = hash_str(h, k.tenant, 1), h = hash_str(h, k.team, 1), h = hash_str(h, k.key, 1);
        h = hash_str(h, k.provider, 1), h = hash_str(h, k.model, 0);
        size_t pos = (size_t)h & t.mask;
        while (t.slot[pos] >= 0 && rollup_cmp(&out[t.slot[pos]], &k) != 0)
            pos = (pos + 1) & t.mask;
        if (t.slot[pos] < 0) {
            t.slot[pos] = ng;
            out[ng++] = k;
        }
        cp_rollup_group_t *g = &out[t.slot[pos]];
        int64_t lat = u->latency_ms > INT32_MAX ? INT32_MAX : (int64_t)u->latency_ms;
        g->requests++;
        g->errors += u->status >= 400;
        add(&g->input, (int64_t)u->input_tokens, &ovf);
        add(&g->output, (int64_t)u->output_tokens, &ovf);
        add(&g->cached, (int64_t)u->cached_input_tokens, &ovf);
        add(&g->cost, (int64_t)u->cost_nanousd, &ovf);
        g->latency_sum += lat; /* at most 50,000 records of < 2^31 each */
        g->lat[cp_lat_bucket(lat)]++;
    }
    free(t.slot);
    if (ovf)
        return -2;
    qsort(out, (size_t)ng, sizeof(*out), rollup_qcmp);
    return ng;
}

/* --------------------------------------------------------------------------------------- settlement */

static int
settle_cmp(const cp_settle_group_t *a, const cp_settle_group_t *b)
{
    int c;
    if ((c = strcasecmp(a->key, b->key)) != 0 || (c = strcmp(a->model, b->model)) != 0)
        return c;
    return a->sec < b->sec ? -1 : a->sec > b->sec;
}

static int
settle_qcmp(const void *a, const void *b)
{
    return settle_cmp(a, b);
}

long
cp_group_settlement(const Tollgate__UsageBatch *batch, int64_t now_ms, cp_settle_group_t *out)
{
    size_t n = batch->n_records;
    table_t t;
    if (table_init(&t, n) != 0)
        return -1;
    long ng = 0;
    int ovf = 0;
    for (size_t i = 0; i < n; i++) {
        const Tollgate__UsageRecord *u = batch->records[i];
        if (u->cost_nanousd <= 0 || u->key_id == NULL || !cp_uuid_valid(u->key_id))
            continue;
        cp_settle_group_t k = {
            .sec = cp_floor_sec(cp_usage_start_ms(u, now_ms)), .key = u->key_id, .model = u->model ? u->model : ""};
        uint64_t h = hash_str(hash_str(hash_i64(FNV_INIT, k.sec), k.key, 1), k.model, 0);
        size_t pos = (size_t)h & t.mask;
        while (t.slot[pos] >= 0 && settle_cmp(&out[t.slot[pos]], &k) != 0)
            pos = (pos + 1) & t.mask;
        if (t.slot[pos] < 0) {
            t.slot[pos] = ng;
            out[ng++] = k;
        }
        add(&out[t.slot[pos]].cost, u->cost_nanousd, &ovf);
    }
    free(t.slot);
    if (ovf)
        return -2;
    qsort(out, (size_t)ng, sizeof(*out), settle_qcmp);
    return ng;
}
