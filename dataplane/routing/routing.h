/*
 * Routing: which targets a request tries, in which order, and with which provider key.
 *
 * - A model name is a route alias, or `account/model` (a provider account's name and an upstream model,
 *   usable without a route). Route aliases win when both could match.
 * - A plan is the ordered list of targets a request may try: the model's targets (the first chosen by
 *   weight among the healthy ones with weight > 0, the others as fallbacks in the route's order), then
 *   the request's own fallbacks the same way. Duplicates are dropped; at most DP_PLAN_MAX.
 * - Keys are chosen by weight among a provider's keys whose breaker lets a request through.
 * - With a session id the choices are not random but rendezvous-hashed on the session: the same
 *   session gets the same target and key while they stay healthy, and only the sessions of a target
 *   that goes unhealthy move.
 */
#ifndef DP_ROUTING_H
#define DP_ROUTING_H

#include <stddef.h>
#include <stdint.h>
#include "config/snapshot.h"
#include "routing/breaker.h"
#include "tollgate/arena.h"

#define DP_PLAN_MAX      16
#define DP_FALLBACKS_MAX 8 /* per-request fallbacks read from the body or the header */

typedef struct dp_plan {
    const dp_target_t *targets[DP_PLAN_MAX];
    size_t n;
} dp_plan_t;

/* How a request chooses: random (session == NULL) or sticky to a session id. */
typedef struct dp_chooser {
    uint64_t (*rand)(void *ctx);
    void *ctx;
    uint64_t session; /* hash of the session id; used when sticky */
    int sticky;
} dp_chooser_t;

uint64_t dp_session_hash(const char *id, size_t len);

/* TOLLGATE_BREAKER_DEFAULTS=off: breakers only where a provider's settings set a rule (set at start). */
extern int dp_breaker_defaults_off;

/* The provider's reliability settings, read from its settings object (strings or numbers). */
void dp_policy_from_settings(json_t *settings, dp_policy_t *ret);

/* A model name to its targets: 0 with *ret and *n (route targets, or one direct target built in a), -1 when
 * nothing has that name. */
int dp_resolve_model(const dp_snapshot_t *s, const char *name, size_t len, tg_arena_t *a, const dp_target_t **ret,
                     size_t *n);

/* Appends the targets of one model to the plan (see above). now_ms: the breakers' clock. */
void dp_plan_add(dp_plan_t *p, const dp_target_t *targets, size_t n, dp_chooser_t *ch, int64_t now_ms);

/* A key of t's provider by weight among those not in bad (bit i = key i) whose breaker passes; claims
 * the breaker's probe slot when it needs one. NULL when none: *all_open says whether breakers were the
 * reason (at least one key was left out only by its breaker). */
const dp_provider_key_t *dp_pick_key(const dp_target_t *t, uint64_t bad, dp_chooser_t *ch, int64_t now_ms,
                                     int *all_open);

/* Is any key of the target usable now (breaker-wise)? */
int dp_target_healthy(const dp_target_t *t, dp_chooser_t *ch, int64_t now_ms);

/* The breaker of (target, key), NULL when there is none. */
dp_breaker_t *dp_target_breaker(const dp_target_t *t, const dp_provider_key_t *k);

#endif
