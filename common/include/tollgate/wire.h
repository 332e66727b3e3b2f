/*
 * The signed control-plane <-> dataplane channel (NNG). Every message is a protobuf Envelope carrying a
 * schema version, a message type, the payload and an HMAC-SHA256 over (type, payload) keyed by a key
 * derived from the cluster secret; a message that fails the check is dropped by the receiver.
 *
 * Ownership follows NNG: tg_wire_send() hands the message to the socket only on success.
 */
#ifndef TOLLGATE_WIRE_H
#define TOLLGATE_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <nng/nng.h>
#include <protobuf-c/protobuf-c.h>
#include "tollgate/crypto.h"

#define TG_WIRE_SCHEMA_VERSION 1
/* The largest message either side accepts (a full snapshot of ~1M keys must fit). */
#define TG_WIRE_MAX_MSG (256u << 20)

typedef struct tg_wire_key {
    uint8_t mac_key[TG_SHA256_LEN];
    uint8_t seal_key[TG_AEAD_KEY_LEN]; /* for provider secrets inside snapshots */
} tg_wire_key_t;

/* A received message; `payload` points into memory owned by `priv` until tg_wire_msg_dispose(). */
typedef struct tg_wire_msg {
    uint32_t type; /* Tollgate__MsgType */
    const uint8_t *payload;
    size_t len;
    void *priv;
} tg_wire_msg_t;

/* Derives the channel keys. -1 when the secret is shorter than 16 bytes. */
int tg_wire_key_init(tg_wire_key_t *key, const char *cluster_secret);

/* Packs `m` as the payload of a signed envelope into a new nng_msg. 0 or an NNG error. */
int tg_wire_pack(const tg_wire_key_t *key, uint32_t type, const ProtobufCMessage *m, nng_msg **ret_msg);

/* The same for a payload that is already serialized (e.g. a UsageBatch assembled from packed records). */
int tg_wire_pack_bytes(const tg_wire_key_t *key, uint32_t type, const uint8_t *payload, size_t len, nng_msg **ret_msg);

/* Verifies and unwraps an envelope. 0, or -1 when it is malformed, of another schema or badly signed. */
int tg_wire_unpack(const tg_wire_key_t *key, const void *buf, size_t len, tg_wire_msg_t *ret);
void tg_wire_msg_dispose(tg_wire_msg_t *msg);

/* Pack + nng_sendmsg; on failure the message is freed here and the NNG error returned. */
int tg_wire_send(nng_socket sock, const tg_wire_key_t *key, uint32_t type, const ProtobufCMessage *m, int flags);

/* nng_recvmsg + unpack. 0, an NNG error, or NNG_EINVAL for a message that failed verification. */
int tg_wire_recv(nng_socket sock, const tg_wire_key_t *key, tg_wire_msg_t *ret, int flags);

#endif
