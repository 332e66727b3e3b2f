/*
 * tg-ingest-bench: usage ingestion capacity of the control plane + PostgreSQL alone, without the
 * dataplane, the mock and the load generator competing for the same two cores (bench/ingest.mjs
 * starts the cluster, runs this and reads the CPU of the control plane and PostgreSQL around it).
 *
 * It plays a dataplane's usage shipper: one NNG REQ socket to the control plane's REP address, signed
 * UsageBatch messages of --records synthetic records, each sent after the previous one was
 * acknowledged (as the shipper does), --batches of them. Records are spread over --keys keys and
 * --models models with start times over the last --spread-ms, like a gateway's 100 ms batch of
 * requests that lasted up to a few seconds (--start-ms pins "now", e.g. to straddle an hour boundary:
 * tests/e2e/ingest.test.mjs). Prints one JSON line: records, batches, wall ms.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include "tollgate.pb-c.h"
#include "tollgate/wire.h"

#define MAX_LIST 64

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Splits a comma list in place into at most MAX_LIST items. */
static size_t
split(char *s, char **out)
{
    size_t n = 0;
    for (char *tok = strtok(s, ","); tok != NULL && n < MAX_LIST; tok = strtok(NULL, ","))
        out[n++] = tok;
    return n;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t
next_rand(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}

static void
usage(void)
{
    fprintf(stderr, "usage: tg-ingest-bench --url URL --secret S --instance ID --tenant UUID --keys UUID,..."
                    " [--teams UUID|-,...] [--provider UUID] [--models m1,m2] [--batches N] [--records N]"
                    " [--spread-ms MS] [--start-ms UNIX_MS] [--seed N] [--first-seq N]\n");
}

int
main(int argc, char **argv)
{
    const char *url = NULL, *secret = NULL, *instance = "ingest-bench", *tenant = NULL, *provider = "";
    char *keys_arg = NULL, *teams_arg = NULL, *models_arg = NULL;
    long batches = 100, records = 2000, spread = 2000;
    long long start_ms = 0; /* 0: now, at each batch */
    unsigned long long seed = 0x9e3779b97f4a7c15ull;
    unsigned long long first_seq = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (strcmp(k, "--url") == 0)
            url = v;
        else if (strcmp(k, "--secret") == 0)
            secret = v;
        else if (strcmp(k, "--instance") == 0)
            instance = v;
        else if (strcmp(k, "--tenant") == 0)
            tenant = v;
        else if (strcmp(k, "--provider") == 0)
            provider = v;
        else if (strcmp(k, "--keys") == 0)
            keys_arg = strdup(v);
        else if (strcmp(k, "--teams") == 0)
            teams_arg = strdup(v);
        else if (strcmp(k, "--models") == 0)
            models_arg = strdup(v);
        else if (strcmp(k, "--batches") == 0)
            batches = strtol(v, NULL, 10);
        else if (strcmp(k, "--records") == 0)
            records = strtol(v, NULL, 10);
        else if (strcmp(k, "--spread-ms") == 0)
            spread = strtol(v, NULL, 10);
        else if (strcmp(k, "--start-ms") == 0)
            start_ms = strtoll(v, NULL, 10);
        else if (strcmp(k, "--seed") == 0)
            seed = strtoull(v, NULL, 10) | 1;
        else if (strcmp(k, "--first-seq") == 0)
            first_seq = strtoull(v, NULL, 10);
        else {
            usage();
            return 2;
        }
    }
    if (url == NULL || secret == NULL || tenant == NULL || keys_arg == NULL || batches < 1 || batches > 1000000 ||
        records < 1 || records > 50000 || spread < 1) {
        usage();
        return 2;
    }
    if (models_arg == NULL)
        models_arg = strdup("mock-gpt,mock-gpt-mini");
    char *keys[MAX_LIST], *teams[MAX_LIST], *models[MAX_LIST];
    size_t nkeys = split(keys_arg, keys), nmodels = split(models_arg, models), nteams = 0;
    if (teams_arg != NULL)
        nteams = split(teams_arg, teams);

    tg_wire_key_t wkey;
    if (tg_wire_key_init(&wkey, secret) != 0) {
        fprintf(stderr, "bad secret\n");
        return 2;
    }
    nng_socket sock;
    int rv;
    if ((rv = nng_req0_open(&sock)) != 0 || (rv = nng_dial(sock, url, NULL, 0)) != 0) {
        fprintf(stderr, "nng: %s\n", nng_strerror(rv));
        return 1;
    }
    nng_socket_set_ms(sock, NNG_OPT_RECVTIMEO, 60000);
    nng_socket_set_ms(sock, NNG_OPT_SENDTIMEO, 10000);

    Tollgate__UsageRecord *recs = calloc((size_t)records, sizeof(*recs));
    Tollgate__UsageRecord **ptrs = calloc((size_t)records, sizeof(*ptrs));
    char(*ids)[96] = calloc((size_t)records, 96);
    if (recs == NULL || ptrs == NULL || ids == NULL)
        return 1;
    rng = seed;
    long sent = 0, failed = 0;
    double t0 = mono_ms();
    for (long b = 0; b < batches; b++) {
        int64_t now = start_ms > 0 ? start_ms : now_ms();
        for (long i = 0; i < records; i++) {
            Tollgate__UsageRecord *u = &recs[i];
            tollgate__usage_record__init(u);
            uint64_t r = next_rand();
            size_t k = (size_t)(r % nkeys);
            snprintf(ids[i], sizeof(ids[i]), "%.60s-%llu-%ld", instance, (unsigned long long)(first_seq + (uint64_t)b),
                     i);
            u->request_id = ids[i];
            u->tenant_id = (char *)tenant;
            u->key_id = keys[k];
            /* "-" in --teams: the record carries no team (the control plane takes the key's) */
            u->team_id = nteams && strcmp(teams[k % nteams], "-") != 0 ? teams[k % nteams] : "";
            u->model = models[(r >> 8) % nmodels];
            u->provider_id = (char *)provider;
            u->upstream_model = u->model;
            u->input_tokens = 200 + (int64_t)((r >> 16) % 800);
            u->output_tokens = 20 + (int64_t)((r >> 26) % 300);
            u->cached_input_tokens = (r >> 36) % 4 == 0 ? 128 : 0;
            u->cost_nanousd = u->input_tokens * 2500 + u->output_tokens * 10000;
            u->status = (r >> 40) % 50 == 0 ? 502 : 200;
            u->stream = (r >> 46) % 2;
            u->latency_ms = (uint32_t)(1 + (r >> 48) % 3000);
            u->started_unix_ms = now - (int64_t)((r >> 20) % (uint64_t)spread);
            u->endpoint = "chat.completions";
            ptrs[i] = u;
        }
        Tollgate__UsageBatch batch = TOLLGATE__USAGE_BATCH__INIT;
        batch.instance_id = (char *)instance;
        batch.sequence = first_seq + (uint64_t)b;
        batch.n_records = (size_t)records;
        batch.records = ptrs;
        if ((rv = tg_wire_send(sock, &wkey, TOLLGATE__MSG_TYPE__MSG_USAGE_BATCH, &batch.base, 0)) != 0) {
            fprintf(stderr, "send: %s\n", nng_strerror(rv));
            return 1;
        }
        tg_wire_msg_t reply;
        if ((rv = tg_wire_recv(sock, &wkey, &reply, 0)) != 0) {
            fprintf(stderr, "recv: %s\n", nng_strerror(rv));
            return 1;
        }
        if (reply.type == TOLLGATE__MSG_TYPE__MSG_USAGE_ACK)
            sent += records;
        else
            failed++;
        tg_wire_msg_dispose(&reply);
    }
    double ms = mono_ms() - t0;
    printf("{\"batches\":%ld,\"records\":%ld,\"failed_batches\":%ld,\"wall_ms\":%.1f,\"records_per_s\":%.0f}\n",
           batches, sent, failed, ms, sent / (ms / 1e3));
    nng_close(sock);
    free(recs), free(ptrs), free(ids), free(keys_arg), free(teams_arg), free(models_arg);
    return failed ? 1 : 0;
}
