/*
 * Keeps the published snapshot current: subscribes to the control plane's snapshots and heartbeats
 * (NNG SUB) and fetches the full snapshot with a request/reply call at start, after reconnects and
 * whenever a heartbeat shows a version other than ours, and applies key deltas (MSG_KEY_DELTA) made on
 * top of the version it has. Pub/sub does not replay, so the heartbeat is
 * what makes missed messages recoverable. Runs on its own thread with blocking NNG calls.
 */
#ifndef DP_SYNC_H
#define DP_SYNC_H

#include <stdint.h>
#include <nng/nng.h>

/* The most control-plane addresses one setting may list. */
#define DP_SYNC_MAX_URLS 16

int dp_sync_start(void);
/* Dials `s` to every address of the comma-separated list `urls` (one per control-plane replica), without
 * waiting for any to answer. 0, or -1 (logged, naming `what`) when an address is invalid or none given. */
int dp_sync_dial(nng_socket s, const char *urls, const char *what);
void dp_sync_stop(void);
/* Snapshots applied since start: full ones (published or fetched), key deltas, and deltas that did not
 * fit our version (each one caused a fetch). */
void dp_sync_counters(uint64_t *full, uint64_t *deltas, uint64_t *stale);

#endif
