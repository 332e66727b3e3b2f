/*
 * The request body, owned by the request's pool. libh2o 2.2.5 buffers an HTTP/2 stream's body in a
 * socket buffer of its own (st_h2o_http2_stream_t::_req_body, at least the socket buffer prototype's
 * capacity) and keeps it until the stream closes: for a stream that lasts minutes that buffer is most of
 * what the stream holds. The body is copied into the pool (exactly its size) and h2o's buffer given back
 * at once. HTTP/1.1 bodies live in the connection's input buffer, which h2o consumes itself when the
 * request ends; they are left alone.
 */
#include <string.h>
#include <h2o.h>
#include <h2o/http2.h>
#include <h2o/http2_internal.h>
#include "ingress/ingress.h"

void
dp_ingress_own_body(h2o_req_t *req)
{
    /* libh2o 2.2.5 serves HTTP/1.x and HTTP/2 only: version 0x200 is a stream of its HTTP/2 connection */
    if (req->entity.base == NULL || req->entity.len == 0 || req->version != 0x200)
        return;
    h2o_http2_stream_t *stream = H2O_STRUCT_FROM_MEMBER(h2o_http2_stream_t, req, req);
    h2o_buffer_t *buf = stream->_req_body;
    /* only the buffer h2o handed us the body in, whole: anything else is left as it is */
    if (buf == NULL || buf->bytes != req->entity.base || buf->size != req->entity.len)
        return;
    char *copy = h2o_mem_alloc_pool(&req->pool, req->entity.len);
    memcpy(copy, req->entity.base, req->entity.len);
    req->entity = h2o_iovec_init(copy, req->entity.len);
    /* consumed to empty, the buffer goes back to the thread's recycled ones (or to malloc) and the stream
     * points at the prototype again, which it disposes of as a no-op when it closes */
    h2o_buffer_consume(&stream->_req_body, buf->size);
}
