/*
 * Just enough of klib's khash.h for libh2o 2.2.5's <h2o/http2_internal.h>, which includes it but is
 * shipped without it (Debian's libh2o-dev). Only ingress/body.c includes that header, to reach an
 * HTTP/2 stream's request body buffer. The stream table is only ever a pointer in h2o's structs, so its
 * layout does not depend on this file; the lookups below exist only to let the header's one inline
 * function (h2o_http2_conn_get_stream) compile, and must never be called.
 */
#ifndef TOLLGATE_KHASH_SHIM_H
#define TOLLGATE_KHASH_SHIM_H

#include <stddef.h>

typedef unsigned khiter_t;
#define khash_t(name)                       struct kh_##name##_s
#define KHASH_MAP_INIT_INT64(name, valtype) struct kh_##name##_s;
#define kh_get(name, h, k)                  ((void)(h), (void)(k), (khiter_t)0)
#define kh_end(h)                           ((void)(h), (khiter_t)0)
#define kh_val(h, i)                        ((void)(h), (void)(i), NULL)

#endif
