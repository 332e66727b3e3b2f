/* Unit tests for the control plane's kept key set (keyset.c): what a key delta does to it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "keyset.h"

/* Each test key is its own owner, so that freeing the owners frees everything (LeakSanitizer checks). */
static Tollgate__VirtualKey *
key(const char *id, const char *name)
{
    Tollgate__VirtualKey *k = malloc(sizeof(*k));
    tollgate__virtual_key__init(k);
    k->id = strdup(id);
    k->name = strdup(name);
    return k;
}

typedef struct {
    Tollgate__VirtualKey **keys;
    size_t n;
} owner_t;

static void
owner_free(void *p)
{
    owner_t *o = p;
    for (size_t i = 0; i < o->n; i++) {
        free(o->keys[i]->id);
        free(o->keys[i]->name);
        free(o->keys[i]);
    }
    free(o->keys);
    free(o);
}

static owner_t *
owner(size_t n, const char *prefix, const char *name)
{
    owner_t *o = malloc(sizeof(*o));
    o->keys = calloc(n + 1, sizeof(*o->keys));
    o->n = n;
    for (size_t i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof(id), "%s%zu", prefix, i);
        o->keys[i] = key(id, name);
    }
    return o;
}

/* Every key listed once, and each findable by id at its own place. */
static void
check_consistent(const cp_keyset_t *ks)
{
    for (size_t i = 0; i < ks->n; i++) {
        assert_ptr_equal(cp_keyset_find(ks, ks->keys[i]->id), ks->keys[i]);
        for (size_t j = i + 1; j < ks->n; j++)
            assert_string_not_equal(ks->keys[i]->id, ks->keys[j]->id);
    }
}

static void
test_upsert_delete(void **state)
{
    owner_t *base = owner(100, "k", "v1");
    cp_keyset_t *ks = cp_keyset_new(base->keys, base->n, base, owner_free, 10);
    assert_non_null(ks);
    assert_int_equal(ks->n, 100);
    check_consistent(ks);

    /* k5 changed, n0 added, k7 and k99 deleted, an unknown id ignored */
    owner_t *d = owner(0, "", "");
    d->keys = realloc(d->keys, 2 * sizeof(*d->keys));
    d->keys[0] = key("k5", "v2");
    d->keys[1] = key("n0", "v2");
    d->n = 2;
    char *del[] = {"k7", "k99", "nope"};
    assert_int_equal(cp_keyset_apply(ks, d->keys, 2, del, 3, d, 11), 0);
    assert_int_equal(ks->hwm, 11);
    assert_int_equal(ks->n, 99);
    assert_string_equal(cp_keyset_find(ks, "k5")->name, "v2");
    assert_non_null(cp_keyset_find(ks, "n0"));
    assert_null(cp_keyset_find(ks, "k7"));
    assert_null(cp_keyset_find(ks, "k99"));
    assert_non_null(cp_keyset_find(ks, "k98"));
    check_consistent(ks);

    /* deleted and inserted again in one delta: the upsert wins */
    owner_t *e = owner(1, "k", "v3"); /* id k0 */
    char *del2[] = {"k0"};
    assert_int_equal(cp_keyset_apply(ks, e->keys, 1, del2, 1, e, 12), 0);
    assert_string_equal(cp_keyset_find(ks, "k0")->name, "v3");
    assert_int_equal(ks->n, 99);
    check_consistent(ks);
    cp_keyset_free(ks);
}

/* Long churn: removed slots pile up and force rebuilds of the id table; the set stays right. */
static void
test_churn(void **state)
{
    owner_t *base = owner(10, "k", "v");
    cp_keyset_t *ks = cp_keyset_new(base->keys, base->n, base, owner_free, 1);
    size_t rebuilds = 0, last_gone = 0;
    for (int r = 0; r < 500; r++) {
        char prefix[16];
        snprintf(prefix, sizeof(prefix), "r%d-", r);
        owner_t *o = owner(3, prefix, "v");
        char prev[3][32], *del[3];
        for (int i = 0; i < 3; i++) {
            snprintf(prev[i], sizeof(prev[i]), "r%d-%d", r - 1, i);
            del[i] = prev[i];
        }
        assert_int_equal(cp_keyset_apply(ks, o->keys, 3, del, r > 0 ? 3 : 0, o, (uint64_t)r + 2), 0);
        rebuilds += ks->gone < last_gone;
        last_gone = ks->gone;
        assert_int_equal(ks->n, 13);
        assert_true(2 * (ks->n + ks->gone) <= ks->mask + 1);
        if (r % 50 == 0)
            check_consistent(ks);
    }
    assert_true(rebuilds > 0);
    assert_non_null(cp_keyset_find(ks, "r499-2"));
    assert_null(cp_keyset_find(ks, "r498-2"));
    assert_non_null(cp_keyset_find(ks, "k9"));
    cp_keyset_free(ks);
}

/* No keys yet (a fresh database): the first delta fills the set. */
static void
test_empty(void **state)
{
    owner_t *none = owner(0, "", "");
    cp_keyset_t *ks = cp_keyset_new(NULL, 0, none, owner_free, 0);
    assert_non_null(ks);
    assert_null(cp_keyset_find(ks, "k0"));
    owner_t *o = owner(40, "k", "v");
    assert_int_equal(cp_keyset_apply(ks, o->keys, o->n, NULL, 0, o, 40), 0);
    assert_int_equal(ks->n, 40);
    check_consistent(ks);
    cp_keyset_free(ks);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_upsert_delete),
        cmocka_unit_test(test_churn),
        cmocka_unit_test(test_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
