/* The Linux backend's test hooks (test_hooks.c) for C driver, fuzzers, profiler: never linked into the extension. */
#ifndef SECSOCK_LINUX_TEST_HOOKS_H
#define SECSOCK_LINUX_TEST_HOOKS_H

#include <stdint.h>

/*
 * Test hooks (tests/linux_c): how many full dumps this process made, how many notification overruns
 * (ENOBUFS) it saw, a notification buffer size (bytes; takes effect at once, by reopening the socket) small
 * enough to overrun on purpose, and a way to mark the snapshot stale.
 */
uint64_t ss_debug_dump_count(void);
uint64_t ss_debug_overruns(void);
uint64_t ss_debug_sa_updates(void); /* SA notifications applied in place, without a dump */
uint64_t ss_debug_pol_updates(void); /* policy notifications applied in place, without a dump */
uint64_t ss_debug_kind_cache_hits(void); /* queries that found the socket's type, protocol and netns cached */
void ss_debug_set_notify_rcvbuf(int bytes);
void ss_debug_force_overrun(void);
/* Lost notifications (issue 14 item 11): ignore the next n as if never sent; freeze the freshness clock and
 * move it on by ms; the tables re-dumped because the kernel's counts differed. */
void ss_debug_drop_notifications(unsigned n);
/* Fail the next n IPv4 route dumps that tell whether the routes are plain (EAGAIN). */
void ss_debug_fail_route_dumps(unsigned n);
/* Lock (1) or unlock (0) the backend's snapshot mutex (kind 0) or its socket-facts cache's (kind 1) from the
 * calling thread, as another query would hold it. */
void ss_debug_hold_lock(int kind, int hold);
/* The kernel's counts as just cross-checked (g.cur.checked_at = the freshness clock's now). */
void ss_debug_mark_checked(void);
void ss_debug_clock_advance(int64_t ms);
uint64_t ss_debug_xcheck_reloads(void);
/* Schedule the read that settles a time limit's maybe (the snapshot's recheck_at) ms from the freshness clock. */
void ss_debug_recheck_in(int64_t ms);
/* What flow_xfrm_disabled asked the kernel (sysctl reads, route and link lookups) rather than its cache. */
uint64_t ss_debug_conf_asks(void);
int ss_debug_counts_agree(void); /* 1: the cross-check's running counts equal a walk of the snapshot */
unsigned ss_debug_kept_netns(void); /* namespaces with a kept snapshot (issue 14 item 12) */
/* The policy (index, priority) the calling thread's last query matched for dir (XFRM_POLICY_IN/OUT): 1, or 0 for none. */
int ss_debug_last_match(int dir, uint32_t *index, uint32_t *priority);

#endif /* SECSOCK_LINUX_TEST_HOOKS_H */
