/*
 * Keeps the published snapshot current: subscribes to the control plane's snapshots and heartbeats
 * (NNG SUB) and fetches the full snapshot with a request/reply call at start, after reconnects and
 * whenever a heartbeat shows a version other than ours. Pub/sub does not replay, so the heartbeat is
 * what makes missed messages recoverable. Runs on its own thread with blocking NNG calls.
 */
#ifndef DP_SYNC_H
#define DP_SYNC_H

int dp_sync_start(void);
void dp_sync_stop(void);

#endif
