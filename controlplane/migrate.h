/*
 * Schema migrations: numbered SQL files (`NNNN_name.sql`) applied in lexical order, each in its own
 * transaction, recorded in schema_migrations(version). Concurrent runners (two control-plane replicas,
 * a migration Job) serialise on a session advisory lock, so every file is applied exactly once.
 */
#ifndef CP_MIGRATE_H
#define CP_MIGRATE_H

#include <stddef.h>
#include <libpq-fe.h>

/* 1 when `name` looks like a migration file: four digits, '_', a non-empty name, ".sql". */
int cp_migrate_is_file(const char *name);

/*
 * The migration files of `dir`, sorted lexically, as a malloc'd array of malloc'd names.
 * 0 or -1 (unreadable directory). Free with cp_migrate_list_free().
 */
int cp_migrate_list(const char *dir, char ***ret_names, size_t *ret_count);
void cp_migrate_list_free(char **names, size_t count);

/* Applies what is missing. Returns the number of files applied, or -1 (logged). */
int cp_migrate_run(PGconn *conn, const char *dir);

#endif
