/*
 * Envelope signing and NNG send/receive helpers (see tollgate/wire.h).
 *
 * The MAC covers a 4-byte big-endian type followed by the payload, so a payload cannot be replayed as
 * a message of another type.
 */
#include <stdlib.h>
#include <string.h>
#include "tollgate/wire.h"
#include "tollgate.pb-c.h"

int
tg_wire_key_init(tg_wire_key_t *key, const char *cluster_secret)
{
    size_t len = strlen(cluster_secret);
    if (len < 16)
        return -1;
    tg_derive_key(cluster_secret, len, "tollgate wire mac v1", key->mac_key);
    tg_derive_key(cluster_secret, len, "tollgate snapshot secrets v1", key->seal_key);
    return 0;
}

static void
compute_mac(const tg_wire_key_t *key, uint32_t type, const uint8_t *payload, size_t len, uint8_t *ret_mac)
{
    uint8_t prefix[4] = {type >> 24, type >> 16, type >> 8, type};
    tg_hmac_sha256_2(key->mac_key, sizeof(key->mac_key), prefix, sizeof(prefix), payload, len, ret_mac);
}

int
tg_wire_pack_bytes(const tg_wire_key_t *key, uint32_t type, const uint8_t *payload, size_t len, nng_msg **ret_msg)
{
    uint8_t mac[TG_SHA256_LEN];
    compute_mac(key, type, payload, len, mac);

    Tollgate__Envelope env = TOLLGATE__ENVELOPE__INIT;
    env.schema_version = TG_WIRE_SCHEMA_VERSION;
    env.type = type;
    env.payload.data = (uint8_t *)payload;
    env.payload.len = len;
    env.mac.data = mac;
    env.mac.len = sizeof(mac);

    nng_msg *msg;
    int rv = nng_msg_alloc(&msg, tollgate__envelope__get_packed_size(&env));
    if (rv != 0)
        return rv;
    tollgate__envelope__pack(&env, nng_msg_body(msg));
    *ret_msg = msg;
    return 0;
}

int
tg_wire_pack(const tg_wire_key_t *key, uint32_t type, const ProtobufCMessage *m, nng_msg **ret_msg)
{
    size_t plen = protobuf_c_message_get_packed_size(m);
    uint8_t *payload = malloc(plen ? plen : 1);
    if (payload == NULL)
        return NNG_ENOMEM;
    protobuf_c_message_pack(m, payload);
    int rv = tg_wire_pack_bytes(key, type, payload, plen, ret_msg);
    free(payload);
    return rv;
}

int
tg_wire_unpack(const tg_wire_key_t *key, const void *buf, size_t len, tg_wire_msg_t *ret)
{
    if (len > TG_WIRE_MAX_MSG)
        return -1;
    Tollgate__Envelope *env = tollgate__envelope__unpack(NULL, len, buf);
    if (env == NULL)
        return -1;
    uint8_t mac[TG_SHA256_LEN];
    if (env->schema_version != TG_WIRE_SCHEMA_VERSION || env->mac.len != sizeof(mac))
        goto invalid;
    compute_mac(key, env->type, env->payload.data, env->payload.len, mac);
    if (!tg_ct_equal(mac, env->mac.data, sizeof(mac)))
        goto invalid;
    ret->type = env->type;
    ret->payload = env->payload.data;
    ret->len = env->payload.len;
    ret->priv = env;
    return 0;
invalid:
    tollgate__envelope__free_unpacked(env, NULL);
    return -1;
}

void
tg_wire_msg_dispose(tg_wire_msg_t *msg)
{
    if (msg->priv != NULL)
        tollgate__envelope__free_unpacked(msg->priv, NULL);
    msg->priv = NULL;
}

int
tg_wire_send(nng_socket sock, const tg_wire_key_t *key, uint32_t type, const ProtobufCMessage *m, int flags)
{
    nng_msg *msg;
    int rv = tg_wire_pack(key, type, m, &msg);
    if (rv != 0)
        return rv;
    if ((rv = nng_sendmsg(sock, msg, flags)) != 0)
        nng_msg_free(msg);
    return rv;
}

int
tg_wire_recv(nng_socket sock, const tg_wire_key_t *key, tg_wire_msg_t *ret, int flags)
{
    nng_msg *msg;
    int rv = nng_recvmsg(sock, &msg, flags);
    if (rv != 0)
        return rv;
    rv = tg_wire_unpack(key, nng_msg_body(msg), nng_msg_len(msg), ret) == 0 ? 0 : NNG_EINVAL;
    nng_msg_free(msg);
    return rv;
}
