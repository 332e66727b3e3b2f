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

typedef struct cp_admin_req {
    cp_t *cp;
    h2o_req_t *req;
    const char *id;    /* the {id} path segment, NUL-terminated, "" when none */
    const char *query; /* the query string without '?', not NUL-terminated */
    size_t query_len;
    json_t *body; /* the JSON object of a POST/PUT, else NULL */
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

/* Query accessor: 0 with the value in ret (or "" and *ret_present = 0), -1 after answering 400. */
int cp_query_string(cp_admin_req_t *r, const char *name, char *ret, size_t retsz, int *ret_present);

/* Runs a statement for an admin handler; on failure answers (cp_http_db_error) and returns -1. */
int cp_admin_query(cp_admin_req_t *r, PGresult **ret_res, const char *what, const char *sql, int nparams,
                   const char *const *values);

/* SQL for "2026-11-21T20:30:00Z" from a timestamptz expression. */
#define CP_SQL_TS(col) "to_char((" col ") AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

#endif
