/* Unit tests for snapshot build and lookup (key hashes, routes, allowed models, sealed secrets, prices)
 * and for key deltas applied on top of a snapshot. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>
#include <cmocka.h>
#include "accounting/usage.h"
#include "config/snapshot.h"
#include "tollgate.pb-c.h"

static tg_wire_key_t wk;

static uint8_t *
make_snapshot(size_t *ret_len, const tg_wire_key_t *seal_with)
{
    static uint8_t sealed[64];
    const char *secret = "sk-upstream";
    tg_aead_seal(seal_with->seal_key, "pk1", 3, secret, strlen(secret), sealed);

    Tollgate__ProviderKey pk = TOLLGATE__PROVIDER_KEY__INIT;
    pk.id = "pk1";
    pk.sealed_secret.data = sealed;
    pk.sealed_secret.len = strlen(secret) + TG_AEAD_OVERHEAD;
    Tollgate__ProviderKey *pks[] = {&pk};
    Tollgate__ProviderAccount pa = TOLLGATE__PROVIDER_ACCOUNT__INIT;
    pa.id = "p1";
    pa.name = "mock";
    pa.kind = "openai";
    pa.base_url = "http://127.0.0.1:9/v1/";
    pa.n_keys = 1;
    pa.keys = pks;
    Tollgate__ProviderAccount *pas[] = {&pa};

    Tollgate__RouteTarget t = TOLLGATE__ROUTE_TARGET__INIT;
    t.provider_id = "p1";
    t.upstream_model = "up-\"model\"";
    Tollgate__RouteTarget *ts[] = {&t};
    Tollgate__Route r1 = TOLLGATE__ROUTE__INIT, r2 = TOLLGATE__ROUTE__INIT;
    r1.id = "r1";
    r1.name = "alias-a";
    r1.n_targets = 1;
    r1.targets = ts;
    r2.id = "r2";
    r2.name = "alias-b";
    r2.n_targets = 1;
    r2.targets = ts;
    Tollgate__Route *rs[] = {&r1, &r2};

    Tollgate__Price pr = TOLLGATE__PRICE__INIT;
    pr.model = "up-\"model\"";
    pr.input_micro_usd_per_mtok = 2500000;
    pr.output_micro_usd_per_mtok = 10000000;
    Tollgate__Price *prs[] = {&pr};

    static uint8_t h1[32], h2[32];
    tg_sha256("tg-one", 6, h1);
    tg_sha256("tg-two", 6, h2);
    Tollgate__VirtualKey k1 = TOLLGATE__VIRTUAL_KEY__INIT, k2 = TOLLGATE__VIRTUAL_KEY__INIT;
    k1.id = "k1";
    k1.tenant_id = "t1";
    k1.key_hash.data = h1;
    k1.key_hash.len = 32;
    k2.id = "k2";
    k2.tenant_id = "t1";
    k2.key_hash.data = h2;
    k2.key_hash.len = 32;
    char *allowed[] = {"alias-b"};
    k2.n_allowed_models = 1;
    k2.allowed_models = allowed;
    Tollgate__VirtualKey *ks[] = {&k1, &k2};

    Tollgate__Snapshot s = TOLLGATE__SNAPSHOT__INIT;
    s.version = 7;
    s.n_keys = 2;
    s.keys = ks;
    s.n_providers = 1;
    s.providers = pas;
    s.n_routes = 2;
    s.routes = rs;
    s.n_prices = 1;
    s.prices = prs;
    /* a tenant-wide budget and one for key k3 (which only a delta brings) */
    Tollgate__Budget b1 = TOLLGATE__BUDGET__INIT, b2 = TOLLGATE__BUDGET__INIT;
    b1.id = "b1";
    b1.tenant_id = "t1";
    b1.hard_nanousd = 1000;
    b2.id = "b2";
    b2.tenant_id = "t1";
    b2.scope = TOLLGATE__SCOPE__SCOPE_KEY;
    b2.key_id = "k3";
    b2.hard_nanousd = 1000;
    Tollgate__Budget *bs[] = {&b1, &b2};
    s.n_budgets = 2;
    s.budgets = bs;
    *ret_len = tollgate__snapshot__get_packed_size(&s);
    uint8_t *buf = malloc(*ret_len);
    tollgate__snapshot__pack(&s, buf);
    return buf;
}

static void
test_build_and_lookup(void **state)
{
    size_t len;
    uint8_t *buf = make_snapshot(&len, &wk);
    dp_snapshot_t *s;
    char err[128];
    assert_int_equal(dp_snapshot_build(buf, len, &wk, &s, err, sizeof(err)), 0);
    free(buf);
    assert_int_equal(s->version, 7);

    uint8_t h[32];
    tg_sha256("tg-one", 6, h);
    const dp_vkey_t *k1 = dp_snapshot_find_key(s, h);
    assert_non_null(k1);
    assert_string_equal(k1->id, "k1");
    tg_sha256("tg-two", 6, h);
    const dp_vkey_t *k2 = dp_snapshot_find_key(s, h);
    assert_non_null(k2);
    tg_sha256("tg-three", 8, h);
    assert_null(dp_snapshot_find_key(s, h));

    const dp_route_t *ra = dp_snapshot_find_route(s, "alias-a", 7);
    assert_non_null(ra);
    assert_null(dp_snapshot_find_route(s, "alias-c", 7));
    assert_true(dp_vkey_allows(k1, "alias-a", 7));
    assert_false(dp_vkey_allows(k2, "alias-a", 7));
    assert_true(dp_vkey_allows(k2, "alias-b", 7));

    const dp_target_t *t = &ra->targets[0];
    assert_string_equal(t->chat_url, "http://127.0.0.1:9/v1/chat/completions");
    const struct curl_slist *hl = t->provider->keys[0].headers[DP_HEADERS_STREAM];
    int saw_auth = 0, saw_accept = 0;
    for (; hl != NULL; hl = hl->next) {
        saw_auth |= strcmp(hl->data, "Authorization: Bearer sk-upstream") == 0;
        saw_accept |= strcmp(hl->data, "Accept: text/event-stream") == 0;
    }
    assert_true(saw_auth);
    assert_true(saw_accept);
    assert_memory_equal(t->upstream_model_json, "\"up-\\\"model\\\"\"", t->upstream_model_json_len);
    assert_non_null(t->price);
    /* 30 in, 16 out at 2.5 / 10 USD per Mtok = 235000 nano-USD */
    assert_int_equal(dp_usage_cost(t->price, 30, 0, 16), 235000);
    dp_snapshot_unref(s);
}

static void
test_wrong_cluster_secret(void **state)
{
    tg_wire_key_t other;
    tg_wire_key_init(&other, "another-secret-of-16+");
    size_t len;
    uint8_t *buf = make_snapshot(&len, &other);
    dp_snapshot_t *s;
    char err[128];
    assert_int_equal(dp_snapshot_build(buf, len, &wk, &s, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cluster secret"));
    free(buf);
    assert_int_equal(dp_snapshot_build((const uint8_t *)"\xff\xff", 2, &wk, &s, err, sizeof(err)), -1);
}

static void
test_cost(void **state)
{
    dp_price_t p = {.input = 2500000, .output = 10000000, .cached_input = 1250000};
    /* 100 in of which 40 cached, 10 out: 60*2.5 + 40*1.25 + 10*10 = 150 + 50 + 100 micro-USD-per-M units */
    assert_int_equal(dp_usage_cost(&p, 100, 40, 10), (60 * 2500000LL + 40 * 1250000LL + 10 * 10000000LL) / 1000);
    p.cached_input = 0; /* billed as input */
    assert_int_equal(dp_usage_cost(&p, 100, 40, 0), 250000);
    assert_int_equal(dp_usage_cost(NULL, 100, 0, 100), 0);
    /* a tiny price keeps its precision: 75000 micro-USD/Mtok x 3 tokens = 225 nano-USD */
    dp_price_t cheap = {.input = 75000};
    assert_int_equal(dp_usage_cost(&cheap, 3, 0, 0), 225);
}

/* A serialized KeyDelta: upserts of (id, plaintext, allowed model or NULL), then deleted ids. */
typedef struct {
    const char *id, *plain, *model;
} up_t;

static uint8_t *
make_delta(size_t *ret_len, uint64_t base, uint64_t version, const up_t *ups, size_t n_ups, char **dels, size_t n_dels)
{
    Tollgate__VirtualKey keys[4], *kp[4];
    uint8_t hashes[4][32];
    char *models[4][1];
    assert_true(n_ups <= 4);
    for (size_t i = 0; i < n_ups; i++) {
        tollgate__virtual_key__init(&keys[i]);
        keys[i].id = (char *)ups[i].id;
        keys[i].tenant_id = "t1";
        tg_sha256(ups[i].plain, strlen(ups[i].plain), hashes[i]);
        keys[i].key_hash.data = hashes[i];
        keys[i].key_hash.len = 32;
        if (ups[i].model != NULL) {
            models[i][0] = (char *)ups[i].model;
            keys[i].allowed_models = models[i];
            keys[i].n_allowed_models = 1;
        }
        kp[i] = &keys[i];
    }
    Tollgate__KeyDelta d = TOLLGATE__KEY_DELTA__INIT;
    d.base_version = base;
    d.version = version;
    d.upserts = kp;
    d.n_upserts = n_ups;
    d.deleted_ids = dels;
    d.n_deleted_ids = n_dels;
    *ret_len = tollgate__key_delta__get_packed_size(&d);
    uint8_t *buf = malloc(*ret_len);
    tollgate__key_delta__pack(&d, buf);
    return buf;
}

static const dp_vkey_t *
key_of(const dp_snapshot_t *s, const char *plain)
{
    uint8_t h[32];
    tg_sha256(plain, strlen(plain), h);
    return dp_snapshot_find_key(s, h);
}

static dp_snapshot_t *
apply(const dp_snapshot_t *cur, uint64_t base, uint64_t version, const up_t *ups, size_t n_ups, char **dels,
      size_t n_dels, int want)
{
    size_t len;
    uint8_t *buf = make_delta(&len, base, version, ups, n_ups, dels, n_dels);
    dp_snapshot_t *s = NULL;
    char err[128];
    assert_int_equal(dp_snapshot_apply_delta(cur, buf, len, &s, err, sizeof(err)), want);
    free(buf);
    return s;
}

static void
test_delta_base_mismatch(void **state)
{
    size_t len;
    uint8_t *buf = make_snapshot(&len, &wk);
    dp_snapshot_t *s7;
    char err[128];
    assert_int_equal(dp_snapshot_build(buf, len, &wk, &s7, err, sizeof(err)), 0);
    free(buf);
    up_t k3 = {"k3", "tg-three", NULL};
    /* made on another version than ours (we missed one): the caller must fetch the full snapshot */
    assert_null(apply(s7, 6, 8, &k3, 1, NULL, 0, DP_DELTA_STALE));
    assert_null(apply(s7, 8, 9, &k3, 1, NULL, 0, DP_DELTA_STALE));
    /* no snapshot yet */
    assert_null(apply(NULL, 7, 8, &k3, 1, NULL, 0, DP_DELTA_STALE));
    /* older than what we have (a fetch overtook it): nothing to do */
    assert_null(apply(s7, 5, 7, &k3, 1, NULL, 0, DP_DELTA_OLD));
    /* garbage */
    dp_snapshot_t *s = NULL;
    assert_int_equal(dp_snapshot_apply_delta(s7, (const uint8_t *)"\xff\xff", 2, &s, err, sizeof(err)), -1);
    assert_null(s);
    assert_null(key_of(s7, "tg-three"));
    dp_snapshot_unref(s7);
}

static void
test_delta_upsert_revoke_delete(void **state)
{
    size_t len;
    uint8_t *buf = make_snapshot(&len, &wk);
    dp_snapshot_t *s7;
    char err[128];
    assert_int_equal(dp_snapshot_build(buf, len, &wk, &s7, err, sizeof(err)), 0);
    free(buf);
    const dp_vkey_t *k2_at7 = key_of(s7, "tg-two");
    assert_non_null(k2_at7);
    assert_int_equal(key_of(s7, "tg-one")->n_limits, 1); /* the tenant budget */

    /* 7 -> 8: a new key k3, and k1 changed (now only alias-b) */
    up_t ups8[] = {{"k3", "tg-three", NULL}, {"k1", "tg-one", "alias-b"}};
    dp_snapshot_t *s8 = apply(s7, 7, 8, ups8, 2, NULL, 0, 0);
    assert_non_null(s8);
    assert_int_equal(s8->version, 8);
    assert_int_equal(s8->n_keys, 3);
    const dp_vkey_t *k3 = key_of(s8, "tg-three");
    assert_non_null(k3);
    assert_string_equal(k3->id, "k3");
    assert_int_equal(k3->n_limits, 2); /* tenant budget and its own */
    assert_false(dp_vkey_allows(key_of(s8, "tg-one"), "alias-a", 7));
    assert_true(key_of(s8, "tg-two") == k2_at7); /* unchanged keys are shared, not copied */
    assert_true(s8->routes == s7->routes);       /* so is everything but the keys */
    /* the snapshot it derives from is untouched: requests holding it see the old key set whole */
    assert_null(key_of(s7, "tg-three"));
    assert_true(dp_vkey_allows(key_of(s7, "tg-one"), "alias-a", 7));
    dp_snapshot_unref(s7); /* k1 and k3 of s8 live in delta 8, k2 in the base: both must stay */

    /* 8 -> 9: k3 revoked, k2 deleted, an unknown id ignored */
    char *dels9[] = {"k3", "k2", "no-such-key"};
    dp_snapshot_t *s9 = apply(s8, 8, 9, NULL, 0, dels9, 3, 0);
    assert_non_null(s9);
    assert_null(key_of(s9, "tg-three"));
    assert_null(key_of(s9, "tg-two"));
    assert_non_null(key_of(s9, "tg-one"));
    assert_int_equal(s9->n_keys, 1);
    assert_non_null(key_of(s8, "tg-three"));
    dp_snapshot_unref(s8);
    assert_false(dp_vkey_allows(key_of(s9, "tg-one"), "alias-a", 7)); /* delta 8 still held by s9 */

    /* ordering: delta 10 -> 11 before 9 -> 10 does not apply; in order they do */
    up_t k2b = {"k2", "tg-two-b", NULL};
    assert_null(apply(s9, 10, 11, &k2b, 1, NULL, 0, DP_DELTA_STALE));
    /* 9 -> 10: k3 back (deleted and inserted again in one delta: the upsert wins) */
    up_t k3again = {"k3", "tg-three", NULL};
    char *dels10[] = {"k3"};
    dp_snapshot_t *s10 = apply(s9, 9, 10, &k3again, 1, dels10, 1, 0);
    assert_non_null(key_of(s10, "tg-three"));
    dp_snapshot_t *s11 = apply(s10, 10, 11, &k2b, 1, NULL, 0, 0);
    assert_non_null(key_of(s11, "tg-two-b"));
    assert_null(key_of(s11, "tg-two"));
    assert_int_equal(s11->n_keys, 3);
    assert_int_equal(s11->n_batches, 3); /* deltas 8 (k1), 10 (k3), 11 (k2); 9 had no upserts */
    dp_snapshot_unref(s9);
    dp_snapshot_unref(s10);
    dp_snapshot_unref(s11);
}

/* Many changes on a small table take the O(keys) rebuild; a long run of small deltas alternates between
 * both paths. The key set must be right after each, and earlier snapshots must stay intact. */
static void
test_delta_rebuild_and_churn(void **state)
{
    size_t len;
    uint8_t *buf = make_snapshot(&len, &wk);
    dp_snapshot_t *cur;
    char err[128];
    assert_int_equal(dp_snapshot_build(buf, len, &wk, &cur, err, sizeof(err)), 0);
    free(buf);
    size_t slots = cur->key_mask + 1;
    up_t four[] = {{"a", "tg-a", NULL}, {"b", "tg-b", NULL}, {"c", "tg-c", NULL}, {"d", "tg-d", NULL}};
    dp_snapshot_t *s = apply(cur, 7, 8, four, 4, NULL, 0, 0);
    assert_int_equal(s->n_keys, 6);
    assert_true(s->key_mask + 1 >= 2 * 6);
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(key_of(s, four[i].plain)->id, four[i].id);
    assert_non_null(key_of(s, "tg-one"));
    assert_int_equal(cur->n_keys, 2);
    dp_snapshot_unref(cur);
    cur = s;
    /* churn: each round adds a key and removes the previous round's */
    char ids[64][8], plains[64][16];
    uint64_t v = 8;
    int saw_fast = 0, saw_rebuild = 0; /* removed slots marked; then cleared by a rebuild */
    for (int r = 0; r < 64; r++) {
        snprintf(ids[r], sizeof(ids[r]), "x%d", r);
        snprintf(plains[r], sizeof(plains[r]), "tg-x%d", r);
        up_t u = {ids[r], plains[r], NULL};
        char *del[] = {r > 0 ? ids[r - 1] : "none"};
        s = apply(cur, v, v + 1, &u, 1, del, 1, 0);
        v++;
        assert_non_null(key_of(s, plains[r]));
        if (r > 0) {
            assert_null(key_of(s, plains[r - 1]));
            assert_non_null(key_of(cur, plains[r - 1])); /* the snapshot before is untouched */
        }
        assert_int_equal(s->n_keys, 7);
        for (size_t i = 0; i < 4; i++)
            assert_non_null(key_of(s, four[i].plain));
        assert_true(s->n_batches <= 64);
        saw_fast |= s->key_gone > 0;
        saw_rebuild |= cur->key_gone > 0 && s->key_gone == 0;
        dp_snapshot_unref(cur);
        cur = s;
    }
    assert_true(saw_fast);
    assert_true(saw_rebuild);
    assert_true(cur->key_mask + 1 >= slots);
    dp_snapshot_unref(cur);
}

int
main(void)
{
    tg_wire_key_init(&wk, "0123456789abcdef-test");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_and_lookup),
        cmocka_unit_test(test_wrong_cluster_secret),
        cmocka_unit_test(test_cost),
        cmocka_unit_test(test_delta_base_mismatch),
        cmocka_unit_test(test_delta_upsert_revoke_delete),
        cmocka_unit_test(test_delta_rebuild_and_churn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
