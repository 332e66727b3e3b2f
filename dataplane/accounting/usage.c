/*
 * Usage records and their shipping to the control plane (see usage.h).
 *
 * A UsageBatch on the wire is: field 1 instance_id, field 2 sequence, then field 3 once per record.
 * Workers pack each record with its field-3 tag and length, so the shipper builds a batch by writing a
 * small header in front of the concatenated records: nothing is encoded twice.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include "accounting/usage.h"
#include "config/sync.h"
#include "server/worker.h"
#include "tollgate/env.h"
#include "tollgate/log.h"
#include "tollgate.pb-c.h"

#define MAX_QUEUED_BYTES (512u << 20)

typedef struct batch {
    struct batch *next;
    char instance_id[128];
    uint64_t sequence;
    uint32_t count;
    uint8_t *payload; /* a serialized UsageBatch */
    size_t len;
    int from_spool; /* loaded from an earlier run's spool file */
} batch_t;

#define MAX_SPOOL_FILES 64

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t thread;
    batch_t *head, *tail;
    size_t queued_bytes, queued_records, n_batches;
    uint64_t next_sequence;
    int stopping;
    int warned_large; /* once per episode of a large queue */
    uint64_t deadline_ns;
    nng_socket sock;
    /* Spool files of earlier runs stay on disk until every batch read from them is acknowledged, or is in
     * this run's own spool file: a process killed before it resent them must not take them along. */
    char *spool_files[MAX_SPOOL_FILES];
    size_t n_spool_files, spool_unacked;
} shipper = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static size_t
put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

static int
reserve(dp_usage_buffer_t *b, size_t need)
{
    if (b->len + need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap * 2 : 16384;
    while (cap < b->len + need)
        cap *= 2;
    uint8_t *n = realloc(b->buf, cap);
    if (n == NULL)
        return -1;
    b->buf = n;
    b->cap = cap;
    return 0;
}

int
dp_usage_append(dp_usage_buffer_t *b, const dp_usage_fields_t *f)
{
    char model[256];
    size_t mlen = f->model_len < sizeof(model) - 1 ? f->model_len : sizeof(model) - 1;
    memcpy(model, f->model, mlen);
    model[mlen] = '\0';

    Tollgate__UsageRecord r = TOLLGATE__USAGE_RECORD__INIT;
    r.request_id = (char *)f->request_id;
    r.tenant_id = (char *)f->tenant_id;
    r.team_id = (char *)(f->team_id ? f->team_id : "");
    r.key_id = (char *)f->key_id;
    r.model = model;
    r.provider_id = (char *)(f->provider_id ? f->provider_id : "");
    r.upstream_model = (char *)(f->upstream_model ? f->upstream_model : "");
    r.endpoint = (char *)f->endpoint;
    r.input_tokens = f->input_tokens;
    r.output_tokens = f->output_tokens;
    r.cached_input_tokens = f->cached_input_tokens;
    r.cost_nanousd = f->cost_nanousd;
    r.status = f->status;
    r.stream = f->stream;
    r.started_unix_ms = f->started_unix_ms;
    r.latency_ms = f->latency_ms;

    size_t n = tollgate__usage_record__get_packed_size(&r);
    if (reserve(b, n + 11) != 0)
        return -1;
    b->buf[b->len++] = (3 << 3) | 2; /* UsageBatch.records, length-delimited */
    b->len += put_varint(b->buf + b->len, n);
    b->len += tollgate__usage_record__pack(&r, b->buf + b->len);
    b->count++;
    return 0;
}

void
dp_usage_buffer_dispose(dp_usage_buffer_t *b)
{
    free(b->buf);
    memset(b, 0, sizeof(*b));
}

static void
enqueue(batch_t *bt)
{
    bt->next = NULL;
    if (shipper.tail != NULL)
        shipper.tail->next = bt;
    else
        shipper.head = bt;
    shipper.tail = bt;
    shipper.queued_bytes += bt->len;
    shipper.queued_records += bt->count;
    shipper.n_batches++;
}

void
dp_usage_flush(dp_usage_buffer_t *b)
{
    if (b->count == 0)
        return;
    batch_t *bt = calloc(1, sizeof(*bt));
    size_t idlen = strlen(dp_config.instance_id);
    uint8_t *payload = malloc(b->len + idlen + 32);
    if (bt == NULL || payload == NULL) {
        /* keep the records in the worker buffer; the next flush tries again */
        free(bt);
        free(payload);
        return;
    }
    pthread_mutex_lock(&shipper.lock);
    bt->sequence = ++shipper.next_sequence;
    size_t n = 0;
    payload[n++] = (1 << 3) | 2;
    n += put_varint(payload + n, idlen);
    memcpy(payload + n, dp_config.instance_id, idlen);
    n += idlen;
    payload[n++] = (2 << 3) | 0;
    n += put_varint(payload + n, bt->sequence);
    memcpy(payload + n, b->buf, b->len);
    n += b->len;
    snprintf(bt->instance_id, sizeof(bt->instance_id), "%s", dp_config.instance_id);
    bt->count = b->count;
    bt->payload = payload;
    bt->len = n;
    enqueue(bt);
    if (shipper.queued_bytes > MAX_QUEUED_BYTES && !shipper.warned_large) {
        shipper.warned_large = 1;
        tg_warn("dp.usage.queue_large", "bytes=%zu records=%zu: the control plane is not taking usage",
                shipper.queued_bytes, shipper.queued_records);
    }
    pthread_cond_signal(&shipper.cond);
    pthread_mutex_unlock(&shipper.lock);
    b->len = 0;
    b->count = 0;
}

size_t
dp_usage_shipper_pending(void)
{
    pthread_mutex_lock(&shipper.lock);
    size_t n = shipper.queued_records;
    pthread_mutex_unlock(&shipper.lock);
    return n;
}

/* ---- spool: unsent batches across restarts ---- */

static void
spool_path(char *out, size_t cap, const char *instance_id)
{
    snprintf(out, cap, "%s/usage-%s.spool", dp_config.usage_spool_dir, instance_id);
}

/* Forgets the spool files of earlier runs: their batches are acknowledged or in this run's spool. */
static void
spool_release_loaded(void)
{
    for (size_t i = 0; i < shipper.n_spool_files; i++) {
        if (unlink(shipper.spool_files[i]) != 0 && errno != ENOENT)
            tg_warn("dp.usage.spool_unlink_failed", "path=%s error=%s", shipper.spool_files[i], strerror(errno));
        free(shipper.spool_files[i]);
    }
    shipper.n_spool_files = 0;
}

/* Writes every unacknowledged batch to this run's spool file. 0 when nothing is left only in memory. */
static int
spool_write_remaining(void)
{
    if (shipper.head == NULL)
        return 0;
    if (dp_config.usage_spool_dir == NULL)
        return -1;
    char path[1024], tmp[1100];
    spool_path(path, sizeof(path), dp_config.instance_id);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (f == NULL) {
        tg_error("dp.usage.spool_failed", "path=%s error=%s records=%zu", tmp, strerror(errno), shipper.queued_records);
        return -1;
    }
    for (batch_t *b = shipper.head; b != NULL; b = b->next) {
        uint32_t len = (uint32_t)b->len;
        fwrite(&len, sizeof(len), 1, f);
        fwrite(b->payload, 1, b->len, f);
    }
    int ok = !ferror(f) && fflush(f) == 0 && fsync(fileno(f)) == 0;
    fclose(f);
    if (!ok || rename(tmp, path) != 0) {
        tg_error("dp.usage.spool_failed", "path=%s error=%s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    tg_warn("dp.usage.spooled", "path=%s batches=%zu records=%zu", path, shipper.n_batches, shipper.queued_records);
    return 0;
}

static void
spool_load(void)
{
    if (dp_config.usage_spool_dir == NULL)
        return;
    DIR *d = opendir(dp_config.usage_spool_dir);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t nl = strlen(e->d_name);
        if (nl < 7 || strcmp(e->d_name + nl - 6, ".spool") != 0)
            continue;
        if (shipper.n_spool_files == MAX_SPOOL_FILES) {
            tg_warn("dp.usage.spool_deferred", "reason=\"more than %d spool files: the rest wait for the next run\"",
                    MAX_SPOOL_FILES);
            break;
        }
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", dp_config.usage_spool_dir, e->d_name);
        FILE *f = fopen(path, "rb");
        if (f == NULL)
            continue;
        size_t loaded = 0, batches = 0;
        uint32_t len;
        while (fread(&len, sizeof(len), 1, f) == 1 && len <= TG_WIRE_MAX_MSG) {
            uint8_t *payload = malloc(len ? len : 1);
            if (payload == NULL || fread(payload, 1, len, f) != len) {
                free(payload);
                break;
            }
            Tollgate__UsageBatch *ub = tollgate__usage_batch__unpack(NULL, len, payload);
            if (ub == NULL) {
                free(payload);
                break;
            }
            batch_t *bt = calloc(1, sizeof(*bt));
            snprintf(bt->instance_id, sizeof(bt->instance_id), "%s", ub->instance_id);
            bt->sequence = ub->sequence;
            bt->count = (uint32_t)ub->n_records;
            bt->payload = payload;
            bt->len = len;
            bt->from_spool = 1;
            tollgate__usage_batch__free_unpacked(ub, NULL);
            enqueue(bt);
            loaded += bt->count;
            batches++;
        }
        fclose(f);
        /* kept until its batches are acknowledged (spool_release_loaded); an empty one goes now */
        if (batches == 0)
            unlink(path);
        else
            shipper.spool_files[shipper.n_spool_files++] = strdup(path);
        shipper.spool_unacked += batches;
        tg_info("dp.usage.spool_loaded", "path=%s batches=%zu records=%zu", path, batches, loaded);
    }
    closedir(d);
}

/* ---- the shipper thread ---- */

/* One round trip for the oldest batch. 0 acknowledged, -1 to retry later. */
static int
send_batch(batch_t *bt)
{
    nng_msg *msg;
    if (tg_wire_pack_bytes(&dp_config.wire_key, TOLLGATE__MSG_TYPE__MSG_USAGE_BATCH, bt->payload, bt->len, &msg) != 0)
        return -1;
    int rv = nng_sendmsg(shipper.sock, msg, 0);
    if (rv != 0) {
        nng_msg_free(msg);
        return -1;
    }
    tg_wire_msg_t reply;
    if (tg_wire_recv(shipper.sock, &dp_config.wire_key, &reply, 0) != 0)
        return -1;
    int ok = -1;
    if (reply.type == TOLLGATE__MSG_TYPE__MSG_USAGE_ACK) {
        Tollgate__UsageAck *ack = tollgate__usage_ack__unpack(NULL, reply.len, reply.payload);
        if (ack != NULL && ack->sequence == bt->sequence && strcmp(ack->instance_id, bt->instance_id) == 0) {
            ok = 0;
            if (ack->duplicate)
                tg_info("dp.usage.duplicate_ack", "instance=%s sequence=%llu", bt->instance_id,
                        (unsigned long long)bt->sequence);
        }
        if (ack != NULL)
            tollgate__usage_ack__free_unpacked(ack, NULL);
    } else if (reply.type == TOLLGATE__MSG_TYPE__MSG_ERROR) {
        Tollgate__Error *e = tollgate__error__unpack(NULL, reply.len, reply.payload);
        tg_warn("dp.usage.rejected", "sequence=%llu reason=%s", (unsigned long long)bt->sequence, e ? e->message : "?");
        if (e != NULL)
            tollgate__error__free_unpacked(e, NULL);
    }
    tg_wire_msg_dispose(&reply);
    return ok;
}

static void *
shipper_main(void *arg)
{
    int backoff_ms = 0, failures = 0;
    pthread_mutex_lock(&shipper.lock);
    for (;;) {
        while (shipper.head == NULL && !shipper.stopping)
            pthread_cond_wait(&shipper.cond, &shipper.lock);
        if (shipper.head == NULL && shipper.stopping)
            break;
        if (shipper.stopping && tg_mono_ns() > shipper.deadline_ns)
            break;
        batch_t *bt = shipper.head;
        pthread_mutex_unlock(&shipper.lock);

        int rv = send_batch(bt);

        pthread_mutex_lock(&shipper.lock);
        if (rv == 0) {
            shipper.head = bt->next;
            if (shipper.head == NULL)
                shipper.tail = NULL;
            shipper.queued_bytes -= bt->len;
            shipper.queued_records -= bt->count;
            shipper.n_batches--;
            if (shipper.queued_bytes < MAX_QUEUED_BYTES / 2)
                shipper.warned_large = 0;
            if (failures > 0)
                tg_info("dp.usage.resumed", "after_failures=%d pending_records=%zu", failures, shipper.queued_records);
            if (bt->from_spool && --shipper.spool_unacked == 0)
                spool_release_loaded();
            free(bt->payload);
            free(bt);
            backoff_ms = 0;
            failures = 0;
            continue;
        }
        if (failures++ == 0)
            tg_warn("dp.usage.send_failed", "sequence=%llu pending_records=%zu: will retry",
                    (unsigned long long)bt->sequence, shipper.queued_records);
        backoff_ms = backoff_ms == 0 ? 100 : (backoff_ms * 2 > 2000 ? 2000 : backoff_ms * 2);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += (long)backoff_ms * 1000000;
        until.tv_sec += until.tv_nsec / 1000000000;
        until.tv_nsec %= 1000000000;
        pthread_cond_timedwait(&shipper.cond, &shipper.lock, &until);
    }
    if (spool_write_remaining() == 0)
        spool_release_loaded();
    else /* left on disk for the next run, which resends them (stored batches are recognised) */
        for (size_t i = 0; i < shipper.n_spool_files; i++)
            free(shipper.spool_files[i]);
    shipper.n_spool_files = 0;
    pthread_mutex_unlock(&shipper.lock);
    return NULL;
}

int
dp_usage_shipper_start(void)
{
    int rv;
    if ((rv = nng_req0_open(&shipper.sock)) != 0) {
        tg_error("dp.usage.socket_failed", "error=%s", nng_strerror(rv));
        return -1;
    }
    nng_socket_set_ms(shipper.sock, NNG_OPT_SENDTIMEO, 2000);
    nng_socket_set_ms(shipper.sock, NNG_OPT_RECVTIMEO, 5000);
    nng_socket_set_ms(shipper.sock, NNG_OPT_RECONNMINT, 50);
    nng_socket_set_ms(shipper.sock, NNG_OPT_RECONNMAXT, 1000);
    nng_socket_set_size(shipper.sock, NNG_OPT_RECVMAXSZ, TG_WIRE_MAX_MSG);
    /* One dialer per control-plane replica; only the leader answers (config/sync.c). A batch in flight
     * when the leader dies is resent to the next one, which recognises it if it was already stored. */
    if (dp_sync_dial(shipper.sock, dp_config.cp_rep_url, "usage") != 0) {
        nng_close(shipper.sock);
        return -1;
    }
    pthread_mutex_lock(&shipper.lock);
    spool_load();
    pthread_mutex_unlock(&shipper.lock);
    if (pthread_create(&shipper.thread, NULL, shipper_main, NULL) != 0)
        return -1;
    return 0;
}

void
dp_usage_shipper_stop(int deadline_ms)
{
    pthread_mutex_lock(&shipper.lock);
    shipper.stopping = 1;
    shipper.deadline_ns = tg_mono_ns() + (uint64_t)deadline_ms * 1000000ull;
    pthread_cond_signal(&shipper.cond);
    pthread_mutex_unlock(&shipper.lock);
    pthread_join(shipper.thread, NULL);
    nng_close(shipper.sock);
    for (batch_t *b = shipper.head, *next; b != NULL; b = next) {
        next = b->next;
        free(b->payload);
        free(b);
    }
    shipper.head = shipper.tail = NULL;
}
