/*
 * The NNG side of the control plane: a PUB socket for snapshots and heartbeats, a REP socket for
 * snapshot requests and usage batches. The REP socket's receive fd is polled by the libuv loop and
 * requests are handled synchronously on the loop thread (so PostgreSQL stays single-threaded); every
 * request gets exactly one reply, MSG_ERROR when it cannot be served. Only the elected leader
 * (leader.h) has the channel open; open and close may alternate as leadership comes and goes.
 */
#ifndef CP_CHANNEL_H
#define CP_CHANNEL_H

#include "cp.h"

/* The largest request the REP socket accepts (usage batches). */
#define CP_REP_MAX_MSG (64u << 20)

/* Binds both sockets. 0, or -1 (logged) when they cannot be bound. */
int cp_channel_open(cp_t *cp);
void cp_channel_close(cp_t *cp);
/* Signs and publishes `m` on PUB; never blocks (PUB drops when a subscriber is slow). NNG_ECLOSED when
 * this process is not (or no longer) the leader. */
int cp_channel_publish(cp_t *cp, uint32_t type, const ProtobufCMessage *m);
/* The same for a payload already serialized (the cached full snapshot). */
int cp_channel_publish_bytes(cp_t *cp, uint32_t type, const uint8_t *payload, size_t len);

#endif
