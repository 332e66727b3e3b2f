/*
 * The admin HTTP server (h2o on the control plane's libuv loop) and what every admin handler uses:
 * the request view, JSON body accessors and response/error builders. Errors reach clients only through
 * cp_http_error() and cp_http_db_error(), in the shape docs/api.md defines:
 *   {"error":{"message":str,"type":str}}
 *
 * Handlers run synchronously on the loop thread and answer before they return.
 */
#ifndef CP_ADMIN_HTTP_H
#define CP_ADMIN_HTTP_H

#include <stddef.h>
#include <h2o.h>
#include <jansson.h>
#include <libpq-fe.h>
#include "../cp.h"

/* Request bodies above this get 413 from h2o before a handler runs. */
#define CP_ADMIN_MAX_BODY (1u << 20)

/* Who is calling: the global token, or a tenant-scoped admin token (admin_tokens) with its role. */
typedef enum cp_role {
    CP_ROLE_GLOBAL,
    CP_ROLE_ADMIN,  /* read/write inside its tenant */
    CP_ROLE_VIEWER, /* read only inside its tenant */
} cp_role_t;

#define CP_REQUEST_ID_MAX 128

typedef struct cp_admin_req {
    cp_t *cp;
    h2o_req_t *req;
    const char *id;    /* the {id} path segment, NUL-terminated, "" when none */
    const char *query; /* the query string without '?', not NUL-terminated */
    size_t query_len;
    json_t *body; /* the JSON object of a POST/PUT/PATCH, else NULL */
    cp_role_t role;
    /* The caller's tenant: NULL for the global token, else the token's tenant id. Every query on a
     * tenant-owned table filters by it, so another tenant's objects are simply not found (404). */
    const char *scope;
    char scope_buf[40];
    char actor[48];                         /* for audit_log.actor: "global" or "token:<uuid>" */
    char request_id[CP_REQUEST_ID_MAX + 1]; /* x-request-id (the client's, or generated), echoed */
} cp_admin_req_t;

int cp_admin_start(cp_t *cp);
/* Stops accepting connections. */
void cp_admin_stop(cp_t *cp);

/* Responses. Each sends exactly one response. */
void cp_http_json(cp_admin_req_t *r, int status, json_t *doc); /* takes ownership of doc */
void cp_http_json_text(cp_admin_req_t *r, int status, const char *text);
void cp_http_no_content(cp_admin_req_t *r);
void cp_http_error(cp_admin_req_t *r, int status, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Maps a failed query to a response: no connection 503, unique 409, reference/data/check 400, else 500. */
void cp_http_db_error(cp_admin_req_t *r, const PGresult *res, const char *what);

/*
 * Body accessors: 0 with *ret set (NULL when optional and absent or null), or -1 after answering 400.
 */
/* The body field, or NULL when it is absent (or null) and optional. -1 after answering 400 when it is
 * required and absent. */
int cp_body_field(cp_admin_req_t *r, const char *field, int required, json_t **ret);
int cp_body_string(cp_admin_req_t *r, const char *field, int required, size_t maxlen, const char **ret);
int cp_body_uuid(cp_admin_req_t *r, const char *field, int required, const char **ret);
/* Integer in [min, max]; `def` when absent. */
int cp_body_int(cp_admin_req_t *r, json_t *obj, const char *field, long long def, long long min, long long max,
                long long *ret);

/*
 * Strict bodies: 0 when every member of `obj` is named in `allowed` (NULL-terminated), else -1 after
 * answering 400 naming the first unknown field. `where` prefixes the name in the message ("" or
 * "targets[0].").
 */
int cp_body_allow(cp_admin_req_t *r, json_t *obj, const char *where, const char *const *allowed);
/* Same for the query string: every parameter must be in `allowed`. */
int cp_query_allow(cp_admin_req_t *r, const char *const *allowed);
/* A JSON object (metadata) of at most `maxbytes` serialized; *ret NULL when absent/null. */
int cp_body_object(cp_admin_req_t *r, const char *field, size_t maxbytes, json_t **ret);
/* Boolean; *ret = -1 when absent or null. */
int cp_body_bool(cp_admin_req_t *r, const char *field, int *ret);

/*
 * The tenant a new object belongs to: body "tenant_id" (required for the global token; for a tenant
 * token optional, and when given it must be the token's tenant, else 404 "tenant not found"). 0 with
 * *ret set (pointing into the body or the request), or -1 after answering.
 */
int cp_admin_tenant_for_create(cp_admin_req_t *r, const char **ret);
/* A query filter tenant_id combined with the caller's scope. 0 with *ret (NULL = every tenant), -1 after
 * answering 400 (not a UUID). A tenant token asking for another tenant gets *ret = its own tenant and
 * *ret_other = 1 (the caller answers with an empty list or 404). */
int cp_admin_tenant_filter(cp_admin_req_t *r, const char **ret, int *ret_other, char *buf, size_t bufsz);

/* Transactions around a change and its audit row. 0, or -1 after answering (begin/commit). */
int cp_admin_begin(cp_admin_req_t *r);
int cp_admin_commit(cp_admin_req_t *r);
/* After a failure that has already been answered; safe when no transaction is open. */
void cp_admin_rollback(cp_admin_req_t *r);

/*
 * Appends the audit row of a change, inside the caller's transaction. before/after are JSON texts of
 * the object (NULL when none); secrets are masked by tollgate_audit_mask() in SQL. The row's tenant is
 * `tenant_id` when given, else after's or before's "tenant_id" member. 0, or -1 after answering and
 * rolling the transaction back.
 */
int cp_audit(cp_admin_req_t *r, const char *action, const char *target_type, const char *target_id,
             const char *tenant_id, const char *before, const char *after);

/*
 * One change of one row, in a transaction with its audit row: `before_sql` (optional) returns the
 * object before as one JSON text column, locked FOR UPDATE; `sql` makes the change and returns the
 * object after (for deletes: any row). Both take the same parameters. No row from either -> 404
 * "<what> not found". On success answers `status` with the after object (204 when status is 204) and
 * returns 0; else -1 after answering. The target id is the "id" member of the object.
 */
typedef struct cp_change {
    const char *what;   /* "key": for messages */
    const char *action; /* "key.update" */
    const char *before_sql;
    const char *sql;
    int nparams;
    const char *const *params;
    int status;
} cp_change_t;
int cp_admin_change(cp_admin_req_t *r, const cp_change_t *c);

/*
 * GET of one tenant-owned object: `sql` takes $1 the id and $2 the caller's scope (NULL = any tenant)
 * and returns one JSON text column. A malformed id or no row answers 404 "<what> not found".
 */
void cp_admin_get_one(cp_admin_req_t *r, const char *what, const char *sql);
/* A list: `sql` returns one row with one JSON text column; params as given. */
void cp_admin_list(cp_admin_req_t *r, const char *what, const char *sql, int nparams, const char *const *params);
/* The body as compact JSON text (malloc'd), with null members removed when `drop_nulls`; NULL on OOM. */
char *cp_body_text(cp_admin_req_t *r, int drop_nulls);
/* 1 when the path id is a UUID; else answers 404 "<what> not found" and returns 0. */
int cp_admin_path_id(cp_admin_req_t *r, const char *what);

/* Query accessor: 0 with the value in ret (or "" and *ret_present = 0), -1 after answering 400. */
int cp_query_string(cp_admin_req_t *r, const char *name, char *ret, size_t retsz, int *ret_present);

/* Runs a statement for an admin handler; on failure answers (cp_http_db_error) and returns -1. */
int cp_admin_query(cp_admin_req_t *r, PGresult **ret_res, const char *what, const char *sql, int nparams,
                   const char *const *values);

/* SQL for "2026-11-21T20:30:00Z" from a timestamptz expression. */
#define CP_SQL_TS(col) "to_char((" col ") AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

#endif
