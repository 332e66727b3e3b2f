/*
 * The lease thread: keeps this dataplane's allowances supplied from the control plane over NNG
 * REQ/REP (MSG_LEASE_REQUEST -> MSG_LEASE_GRANT), with its own REQ socket so a slow snapshot fetch never
 * delays a grant. It wakes when admission wants more (low-water mark or a parked request) and every
 * 250 ms to renew leases before they expire and to give back what admission released. Never touches a
 * worker loop except through dp_admission_wake_all().
 */
#ifndef DP_LEASE_H
#define DP_LEASE_H

int dp_lease_start(void);
/* Gives back every unused allowance (best effort, bounded), then stops the thread. */
void dp_lease_stop(void);

#endif
