/*
 * Schema migrations (see migrate.h).
 *
 * The advisory lock is a session lock taken before reading schema_migrations, so a second runner
 * waits and then finds everything applied. A file is applied as one simple-query string between BEGIN
 * and COMMIT together with its schema_migrations row: either both land or neither does. Files must not
 * contain their own transaction control.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "migrate.h"
#include "tollgate/log.h"

/* "tollgate" in ASCII: the advisory lock key that serialises migration runners. */
#define MIGRATE_LOCK_KEY "8390043843661231205"
#define MAX_FILE_BYTES   (16u << 20)

int
cp_migrate_is_file(const char *name)
{
    size_t len = strlen(name);
    if (len < 4 + 1 + 1 + 4)
        return 0;
    for (int i = 0; i < 4; i++)
        if (name[i] < '0' || name[i] > '9')
            return 0;
    return name[4] == '_' && strcmp(name + len - 4, ".sql") == 0;
}

static int
cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void
cp_migrate_list_free(char **names, size_t count)
{
    if (names == NULL)
        return;
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
}

int
cp_migrate_list(const char *dir, char ***ret_names, size_t *ret_count)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return -1;
    char **names = NULL;
    size_t count = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!cp_migrate_is_file(e->d_name))
            continue;
        if (count == cap) {
            cap = cap ? cap * 2 : 16;
            char **n = realloc(names, cap * sizeof(*n));
            if (n == NULL)
                goto fail;
            names = n;
        }
        if ((names[count] = strdup(e->d_name)) == NULL)
            goto fail;
        count++;
    }
    closedir(d);
    if (count > 0)
        qsort(names, count, sizeof(*names), cmp_names);
    *ret_names = names;
    *ret_count = count;
    return 0;
fail:
    closedir(d);
    cp_migrate_list_free(names, count);
    return -1;
}

static char *
read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = malloc(MAX_FILE_BYTES + 1);
    size_t n = buf != NULL ? fread(buf, 1, MAX_FILE_BYTES + 1, f) : 0;
    int err = ferror(f) || n > MAX_FILE_BYTES;
    fclose(f);
    if (buf == NULL || err) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

static int
exec_simple(PGconn *conn, const char *sql, const char *what)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(res));
        msg[strcspn(msg, "\n")] = '\0';
        tg_error("cp.migrate.failed", "step=%s error=\"%s\"", what, msg);
    }
    PQclear(res);
    return ok ? 0 : -1;
}

static int
is_applied(PGconn *conn, const char *version, int *ret)
{
    const char *params[] = {version};
    PGresult *res =
        PQexecParams(conn, "SELECT 1 FROM schema_migrations WHERE version = $1", 1, NULL, params, NULL, NULL, 0);
    int rv = -1;
    if (PQresultStatus(res) == PGRES_TUPLES_OK) {
        *ret = PQntuples(res) > 0;
        rv = 0;
    } else {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(conn));
        msg[strcspn(msg, "\n")] = '\0';
        tg_error("cp.migrate.failed", "step=check version=%s error=\"%s\"", version, msg);
    }
    PQclear(res);
    return rv;
}

static int
apply_one(PGconn *conn, const char *dir, const char *name)
{
    char path[4096], version[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    snprintf(version, sizeof(version), "%.*s", (int)(strlen(name) - 4), name);

    int applied;
    if (is_applied(conn, version, &applied) != 0)
        return -1;
    if (applied)
        return 0;

    char *sql = read_file(path);
    if (sql == NULL) {
        tg_error("cp.migrate.failed", "step=read file=%s error=\"%s\"", path, strerror(errno));
        return -1;
    }
    int rv = -1;
    if (exec_simple(conn, "BEGIN", "begin") != 0)
        goto out;
    if (exec_simple(conn, sql, version) != 0)
        goto rollback;
    const char *params[] = {version};
    PGresult *res = PQexecParams(conn, "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())", 1,
                                 NULL, params, NULL, NULL, 0);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    if (!ok || exec_simple(conn, "COMMIT", "commit") != 0)
        goto rollback;
    tg_info("cp.migrate.applied", "version=%s", version);
    rv = 1;
    goto out;
rollback:
    exec_simple(conn, "ROLLBACK", "rollback");
out:
    free(sql);
    return rv;
}

int
cp_migrate_run(PGconn *conn, const char *dir)
{
    char **names = NULL;
    size_t count = 0;
    if (cp_migrate_list(dir, &names, &count) != 0) {
        tg_error("cp.migrate.failed", "step=list dir=%s error=\"%s\"", dir, strerror(errno));
        return -1;
    }
    int applied = 0, rv = -1;
    if (exec_simple(conn, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", "lock") != 0)
        goto out;
    if (exec_simple(conn,
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version text PRIMARY KEY,"
                    " applied_at timestamptz NOT NULL DEFAULT now())",
                    "schema_table") != 0)
        goto unlock;
    for (size_t i = 0; i < count; i++) {
        int r = apply_one(conn, dir, names[i]);
        if (r < 0)
            goto unlock;
        applied += r;
    }
    rv = applied;
unlock:
    exec_simple(conn, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")", "unlock");
out:
    cp_migrate_list_free(names, count);
    if (rv >= 0)
        tg_info("cp.migrate.done", "applied=%d files=%zu", rv, count);
    return rv;
}
