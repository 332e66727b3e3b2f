/* Unit tests for snapshot build and lookup: key hashes, routes, allowed models, sealed secrets, prices. */
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

int
main(void)
{
    tg_wire_key_init(&wk, "0123456789abcdef-test");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_and_lookup),
        cmocka_unit_test(test_wrong_cluster_secret),
        cmocka_unit_test(test_cost),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
