/*
 * The wall clock that governance decisions read: budget periods, lease expiry and key expiry. It is the
 * real clock plus an offset that is always 0 in production; with TOLLGATE_TEST_HOOKS=1 the offset can be
 * moved at runtime (the control plane's PUT /admin/v1/_test/clock, the dataplane's PUT /__test/clock), so
 * that tests cross a period boundary or an expiry without sleeping. Durations use tg_mono_ns, never this.
 */
#ifndef TOLLGATE_CLOCK_H
#define TOLLGATE_CLOCK_H

#include <stdint.h>

/* Unix milliseconds: tg_now_unix_ms() + the test offset. Lock-free; any thread. */
int64_t tg_clock_now_ms(void);
/* 1 when TOLLGATE_TEST_HOOKS=1 was set at start (read once). */
int tg_clock_test_hooks(void);
/* Sets the offset. 0, or -1 (nothing changed) when the test hooks are off or |offset| exceeds ~10 years. */
int tg_clock_set_offset_ms(int64_t offset_ms);
int64_t tg_clock_offset_ms(void);

#endif
