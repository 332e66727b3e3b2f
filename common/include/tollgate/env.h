/*
 * Configuration from the environment. Both processes are configured only by environment variables
 * (docs/configuration.md lists them), which suits containers and the local `make up` alike.
 */
#ifndef TOLLGATE_ENV_H
#define TOLLGATE_ENV_H

#include <stdint.h>
#include <sys/socket.h>

/* The variable's value, or `def` when it is unset or empty. */
const char *tg_env_str(const char *name, const char *def);

/* Parses an integer variable within [min, max]. 0 on success (or unset: *ret = def), -1 when invalid. */
int tg_env_int(const char *name, int64_t def, int64_t min, int64_t max, int64_t *ret);

/* Parses "host:port" (IPv4, [IPv6] or a name resolved once). 0 on success, -1 otherwise. */
int tg_parse_hostport(const char *s, struct sockaddr_storage *ret_addr, socklen_t *ret_len);

/* Milliseconds: wall clock since the epoch, and a monotonic clock for durations. */
int64_t tg_now_unix_ms(void);
uint64_t tg_mono_ns(void);

#endif
