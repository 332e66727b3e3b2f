/*
 * NNG PUB/REP for the control plane (see channel.h).
 *
 * REP integration: NNG_OPT_RECVFD becomes readable while a request is waiting. The loop drains it with
 * non-blocking receives, and answers each request before receiving the next one, because a REP socket
 * forgets a request that is not answered before the next receive. Messages that fail the signature
 * check are answered with MSG_ERROR too, so the requester is never left waiting on a dead socket.
 *
 * Only the leader has the channel open (main.c opens it on election and closes it on demotion), and it
 * re-checks its lock session before every publication and every request (cp_leader_check), so a leader
 * that lost its lock stops publishing and ingesting at once, even before the demotion is otherwise seen.
 */
#include <stdio.h>
#include <string.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/reqrep0/rep.h>
#include "channel.h"
#include "lease.h"
#include "snapshot.h"
#include "tollgate.pb-c.h"
#include "tollgate/arena.h"
#include "tollgate/log.h"
#include "usage_ingest.h"

int
cp_channel_publish_bytes(cp_t *cp, uint32_t type, const uint8_t *payload, size_t len)
{
    if (!cp->rep_open || !cp_leader_check(&cp->leader))
        return NNG_ECLOSED;
    nng_msg *msg;
    int rv = tg_wire_pack_bytes(&cp->wire_key, type, payload, len, &msg);
    if (rv == 0 && (rv = nng_sendmsg(cp->pub, msg, NNG_FLAG_NONBLOCK)) != 0)
        nng_msg_free(msg);
    return rv;
}

int
cp_channel_publish(cp_t *cp, uint32_t type, const ProtobufCMessage *m)
{
    /* Fencing: a control plane that cannot show it still holds the leader lock must not publish. */
    if (!cp->rep_open || !cp_leader_check(&cp->leader))
        return NNG_ECLOSED;
    return tg_wire_send(cp->pub, &cp->wire_key, type, m, NNG_FLAG_NONBLOCK);
}

static void
reply_error(cp_t *cp, const char *message)
{
    Tollgate__Error err = TOLLGATE__ERROR__INIT;
    err.message = (char *)message;
    int rv = tg_wire_send(cp->rep, &cp->wire_key, TOLLGATE__MSG_TYPE__MSG_ERROR, &err.base, NNG_FLAG_NONBLOCK);
    if (rv != 0)
        tg_warn("cp.rep.send_failed", "type=error error=\"%s\"", nng_strerror(rv));
}

static void
handle_snapshot_request(cp_t *cp, const tg_wire_msg_t *msg)
{
    Tollgate__SnapshotRequest *req = tollgate__snapshot_request__unpack(NULL, msg->len, msg->payload);
    if (req == NULL) {
        reply_error(cp, "malformed SnapshotRequest");
        return;
    }
    const uint8_t *buf;
    size_t len;
    if (cp->snap == NULL) {
        reply_error(cp, "no snapshot yet");
    } else if (cp_snapshot_packed(cp->snap, &buf, &len) != 0) {
        reply_error(cp, "out of memory");
    } else {
        /* the packed snapshot is cached per version: dataplanes reconnecting together cost one encoding */
        nng_msg *m;
        int rv = tg_wire_pack_bytes(&cp->wire_key, TOLLGATE__MSG_TYPE__MSG_SNAPSHOT, buf, len, &m);
        if (rv == 0 && (rv = nng_sendmsg(cp->rep, m, NNG_FLAG_NONBLOCK)) != 0)
            nng_msg_free(m);
        if (rv != 0)
            tg_warn("cp.rep.send_failed", "type=snapshot error=\"%s\"", nng_strerror(rv));
        else
            tg_debug("cp.rep.snapshot_sent", "instance=%s have=%llu version=%llu", req->instance_id,
                     (unsigned long long)req->have_version, (unsigned long long)cp->snap->version);
    }
    tollgate__snapshot_request__free_unpacked(req, NULL);
}

/* protobuf-c allocations of one usage batch come from an arena: unpacking thousands of records is
 * then a few chunk allocations instead of a malloc per record and per string, and one release. */
static void *
arena_pb_alloc(void *data, size_t size)
{
    return tg_arena_alloc(data, size);
}

static void
arena_pb_free(void *data, void *p)
{
    (void)data, (void)p; /* released with the arena */
}

static void
handle_usage_batch(cp_t *cp, const tg_wire_msg_t *msg)
{
    tg_arena_t arena = TG_ARENA_INIT;
    ProtobufCAllocator alloc = {.alloc = arena_pb_alloc, .free = arena_pb_free, .allocator_data = &arena};
    Tollgate__UsageBatch *batch = tollgate__usage_batch__unpack(&alloc, msg->len, msg->payload);
    if (batch == NULL) {
        tg_arena_free(&arena);
        reply_error(cp, "malformed UsageBatch");
        return;
    }
    int duplicate = 0;
    char err[256];
    if (cp_usage_ingest(cp, batch, &duplicate, err, sizeof(err)) != 0) {
        tg_warn("cp.usage.rejected", "instance=%s sequence=%llu records=%zu error=\"%s\"", batch->instance_id,
                (unsigned long long)batch->sequence, batch->n_records, err);
        reply_error(cp, err);
    } else {
        Tollgate__UsageAck ack = TOLLGATE__USAGE_ACK__INIT;
        ack.instance_id = batch->instance_id;
        ack.sequence = batch->sequence;
        ack.duplicate = duplicate;
        int rv = tg_wire_send(cp->rep, &cp->wire_key, TOLLGATE__MSG_TYPE__MSG_USAGE_ACK, &ack.base, NNG_FLAG_NONBLOCK);
        if (rv != 0)
            tg_warn("cp.rep.send_failed", "type=usage_ack error=\"%s\"", nng_strerror(rv));
    }
    tg_arena_free(&arena); /* the batch and everything in it */
}

static void
handle_lease_request(cp_t *cp, const tg_wire_msg_t *msg)
{
    Tollgate__LeaseRequest *rq = tollgate__lease_request__unpack(NULL, msg->len, msg->payload);
    if (rq == NULL) {
        reply_error(cp, "malformed LeaseRequest");
        return;
    }
    Tollgate__LeaseGrant g;
    char err[256];
    if (cp_lease_grant(cp, rq, &g, err, sizeof(err)) != 0) {
        tg_warn("cp.lease.refused", "instance=%s asks=%zu error=\"%s\"", rq->instance_id, rq->n_asks, err);
        reply_error(cp, err);
    } else {
        int rv = tg_wire_send(cp->rep, &cp->wire_key, TOLLGATE__MSG_TYPE__MSG_LEASE_GRANT, &g.base, NNG_FLAG_NONBLOCK);
        if (rv != 0)
            tg_warn("cp.rep.send_failed", "type=lease_grant error=\"%s\"", nng_strerror(rv));
        cp_lease_grant_free(&g);
    }
    tollgate__lease_request__free_unpacked(rq, NULL);
}

static void
on_rep_readable(uv_poll_t *poll, int status, int events)
{
    cp_t *cp = poll->data;
    /* A bounded number per wakeup keeps admin requests responsive under a flood of batches. */
    for (int i = 0; i < 64 && !cp->stopping; i++) {
        /* Fencing, before each request: a demoted leader closes the channel here and stores nothing. */
        if (!cp->rep_open || !cp_leader_check(&cp->leader))
            return;
        tg_wire_msg_t msg = {0};
        int rv = tg_wire_recv(cp->rep, &cp->wire_key, &msg, NNG_FLAG_NONBLOCK);
        if (rv == NNG_EAGAIN)
            return;
        if (rv == NNG_EINVAL) {
            tg_warn("cp.rep.bad_message", "reason=\"malformed or badly signed envelope\"");
            reply_error(cp, "malformed or badly signed envelope");
            continue;
        }
        if (rv != 0) {
            tg_warn("cp.rep.recv_failed", "error=\"%s\"", nng_strerror(rv));
            return;
        }
        switch (msg.type) {
        case TOLLGATE__MSG_TYPE__MSG_SNAPSHOT_REQUEST:
            handle_snapshot_request(cp, &msg);
            break;
        case TOLLGATE__MSG_TYPE__MSG_USAGE_BATCH:
            handle_usage_batch(cp, &msg);
            break;
        case TOLLGATE__MSG_TYPE__MSG_LEASE_REQUEST:
        case TOLLGATE__MSG_TYPE__MSG_LEASE_RELEASE:
            handle_lease_request(cp, &msg);
            break;
        default:
            tg_warn("cp.rep.unexpected_type", "type=%u", msg.type);
            reply_error(cp, "unexpected message type");
            break;
        }
        tg_wire_msg_dispose(&msg);
    }
}

static void
on_rep_poll_close(uv_handle_t *h)
{
    cp_t *cp = h->data;
    cp->rep_poll_closing = 0;
}

int
cp_channel_open(cp_t *cp)
{
    int rv, fd;
    if (cp->rep_open)
        return 0;
    if (cp->rep_poll_closing) {
        tg_warn("cp.channel.open_failed", "reason=\"the previous channel is still closing\"");
        return -1;
    }
    if ((rv = nng_pub0_open(&cp->pub)) != 0) {
        tg_error("cp.channel.open_failed", "socket=pub error=\"%s\"", nng_strerror(rv));
        return -1;
    }
    if ((rv = nng_listen(cp->pub, cp->cfg.pub_url, NULL, 0)) != 0) {
        tg_error("cp.channel.listen_failed", "socket=pub url=%s error=\"%s\"", cp->cfg.pub_url, nng_strerror(rv));
        goto close_pub;
    }
    if ((rv = nng_rep0_open(&cp->rep)) != 0) {
        tg_error("cp.channel.open_failed", "socket=rep error=\"%s\"", nng_strerror(rv));
        goto close_pub;
    }
    nng_socket_set_size(cp->rep, NNG_OPT_RECVMAXSZ, CP_REP_MAX_MSG);
    if ((rv = nng_listen(cp->rep, cp->cfg.rep_url, NULL, 0)) != 0) {
        tg_error("cp.channel.listen_failed", "socket=rep url=%s error=\"%s\"", cp->cfg.rep_url, nng_strerror(rv));
        goto close_rep;
    }
    if ((rv = nng_socket_get_int(cp->rep, NNG_OPT_RECVFD, &fd)) != 0) {
        tg_error("cp.channel.open_failed", "socket=rep error=\"%s\"", nng_strerror(rv));
        goto close_rep;
    }
    if (uv_poll_init(cp->loop, &cp->rep_poll, fd) != 0)
        goto close_rep;
    cp->rep_poll.data = cp;
    uv_poll_start(&cp->rep_poll, UV_READABLE, on_rep_readable);
    cp->rep_open = 1;
    tg_info("cp.channel.listening", "pub=%s rep=%s", cp->cfg.pub_url, cp->cfg.rep_url);
    return 0;
close_rep:
    nng_close(cp->rep);
close_pub:
    nng_close(cp->pub);
    return -1;
}

void
cp_channel_close(cp_t *cp)
{
    if (!cp->rep_open)
        return;
    cp->rep_open = 0;
    /* Stop polling before NNG closes the fd under us. */
    uv_poll_stop(&cp->rep_poll);
    cp->rep_poll_closing = 1;
    uv_close((uv_handle_t *)&cp->rep_poll, on_rep_poll_close);
    nng_close(cp->rep);
    nng_close(cp->pub);
    tg_info("cp.channel.closed", "pub=%s rep=%s", cp->cfg.pub_url, cp->cfg.rep_url);
}
