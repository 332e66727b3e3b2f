/* Unit tests for the pure part of migrate.c: which files are migrations and in what order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include "migrate.h"

static void
test_is_file(void **state)
{
    assert_true(cp_migrate_is_file("0001_init.sql"));
    assert_true(cp_migrate_is_file("0010_usage_rollups.sql"));
    assert_false(cp_migrate_is_file("0001_.sql"));
    assert_false(cp_migrate_is_file("001_init.sql"));
    assert_false(cp_migrate_is_file("0001-init.sql"));
    assert_false(cp_migrate_is_file("0001_init.sql~"));
    assert_false(cp_migrate_is_file("0001_init.SQL"));
    assert_false(cp_migrate_is_file("README.md"));
    assert_false(cp_migrate_is_file(".0001_init.sql"));
}

static void
touch(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
}

static void
test_list_order(void **state)
{
    char dir[] = "/tmp/cp-migrate-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    const char *files[] = {"0010_ten.sql", "0002_two.sql", "notes.txt", "0001_one.sql", "0003_three.sql.bak"};
    for (size_t i = 0; i < 5; i++)
        touch(dir, files[i]);

    char **names;
    size_t count;
    assert_int_equal(cp_migrate_list(dir, &names, &count), 0);
    assert_int_equal(count, 3);
    assert_string_equal(names[0], "0001_one.sql");
    assert_string_equal(names[1], "0002_two.sql");
    assert_string_equal(names[2], "0010_ten.sql");
    cp_migrate_list_free(names, count);

    for (size_t i = 0; i < 5; i++) {
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
    assert_int_equal(cp_migrate_list("/nonexistent/cp-migrations", &names, &count), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_is_file),
        cmocka_unit_test(test_list_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
