/*
 * Usage partition maintenance by the leader: monthly partitions of usage_events created ahead of time
 * and, with TOLLGATE_USAGE_RETENTION_DAYS > 0, partitions older than the retention dropped (never a
 * big DELETE). The work is tollgate_usage_maintain() in SQL (migrations/0004); this runs it at start
 * and every hour while leading.
 */
#ifndef CP_PARTITIONS_H
#define CP_PARTITIONS_H

#include "cp.h"

/* Starts the hourly timer (the first run is a few seconds after start). 0 or -1. */
int cp_partitions_init(cp_t *cp);
/* Stops and closes the timer. */
void cp_partitions_close(cp_t *cp);

#endif
