/* The Linux backend's test hooks (test_hooks.h) for C driver, fuzzers, profiler: never linked into the extension. */
#include "backend_linux.h"
#include "test_hooks.h"

uint64_t ss_debug_dump_count(void)
{
    return __atomic_load_n(&g_dump_count, __ATOMIC_RELAXED);
}

/* A snapshot counter read under the lock (the test hooks below). */
static uint64_t locked_counter(const uint64_t *counter)
{
    uint64_t n;
    pthread_mutex_lock(&g_lock);
    n = *counter;
    pthread_mutex_unlock(&g_lock);
    return n;
}

uint64_t ss_debug_sa_updates(void)
{
    return locked_counter(&g.sa_updates);
}

uint64_t ss_debug_pol_updates(void)
{
    return locked_counter(&g.pol_updates);
}

uint64_t ss_debug_overruns(void)
{
    return locked_counter(&g.overruns);
}

/* Test hook: a tiny notification buffer makes an overrun easy to provoke. Takes effect on the next reopen. */
void ss_debug_set_notify_rcvbuf(int bytes)
{
    pthread_mutex_lock(&g_lock);
    g.rcvbuf = bytes;
    notify_close_locked();
    g.cur.pol_stale = g.cur.sa_stale = 1;
    pthread_mutex_unlock(&g_lock);
}

/* Ignore the next n notifications, as the kernel loses one whose GFP_ATOMIC allocation fails. */
void ss_debug_drop_notifications(unsigned n)
{
    pthread_mutex_lock(&g_lock);
    g.drop_notify = n;
    pthread_mutex_unlock(&g_lock);
}

void ss_debug_hold_lock(int kind, int hold)
{
    pthread_mutex_t *m = kind == 0 ? &g_lock : &g_kind_lock;

    if (hold) {
        pthread_mutex_lock(m);
    } else {
        pthread_mutex_unlock(m);
    }
}

void ss_debug_mark_checked(void)
{
    pthread_mutex_lock(&g_lock);
    g.cur.checked_at = ss_clock_ms();
    pthread_mutex_unlock(&g_lock);
}

/* Fail the next n IPv4 route dumps of v4_routes_plain, as a churning routing table does (EAGAIN twice). */
void ss_debug_fail_route_dumps(unsigned n)
{
    pthread_mutex_lock(&g_lock);
    g.fail_route_dumps = n;
    pthread_mutex_unlock(&g_lock);
}

/* Freeze the freshness clock (ss_clock_ms) where it is, then move it on by ms: no test waits for time. */
void ss_debug_clock_advance(int64_t ms)
{
    pthread_mutex_lock(&g_lock);
    if (!g.clock_frozen) {
        g.clock_ms = ss_clock_ms();
        g.clock_frozen = 1;
    }
    g.clock_ms += ms;
    pthread_mutex_unlock(&g_lock);
}

void ss_debug_recheck_in(int64_t ms)
{
    pthread_mutex_lock(&g_lock);
    g.cur.snap.recheck_at = ss_clock_ms() + ms;
    pthread_mutex_unlock(&g_lock);
}

uint64_t ss_debug_xcheck_reloads(void)
{
    return locked_counter(&g.xcheck_reloads);
}

uint64_t ss_debug_conf_asks(void)
{
    return locked_counter(&g.conf_asks);
}

/* Do the counts kept as the snapshot changes (what the cross-check reads) equal a walk of every record? */
int ss_debug_counts_agree(void)
{
    size_t i, in = 0, out = 0, live = 0;
    int ok;

    pthread_mutex_lock(&g_lock);
    for (i = 0; i < g.cur.snap.npols; i++) {
        in += g.cur.snap.pols[i].dir == XFRM_POLICY_IN;
        out += g.cur.snap.pols[i].dir == XFRM_POLICY_OUT;
    }
    for (i = 0; i < g.cur.snap.nsas; i++) {
        live += !g.cur.snap.sas[i].dead;
    }
    ok = in == g.cur.snap.pol_kept[XFRM_POLICY_IN] && out == g.cur.snap.pol_kept[XFRM_POLICY_OUT] &&
         live == g.cur.snap.sa_live;
    pthread_mutex_unlock(&g_lock);
    return ok;
}

/* Namespaces with a kept snapshot: the current one and the parked ones. */
unsigned ss_debug_kept_netns(void)
{
    unsigned n, i;
    pthread_mutex_lock(&g_lock);
    n = g.cur.ns_ino != 0 && g.cur.notify_fd >= 0;
    for (i = 0; i < sizeof(g.parked) / sizeof(g.parked[0]); i++) {
        n += g.parked[i].ns_ino != 0;
    }
    pthread_mutex_unlock(&g_lock);
    return n;
}

void ss_debug_force_overrun(void)
{
    pthread_mutex_lock(&g_lock);
    g.cur.pol_stale = g.cur.sa_stale = 1;
    pthread_mutex_unlock(&g_lock);
}

int ss_debug_last_match(int dir, uint32_t *index, uint32_t *priority)
{
    if (dir != XFRM_POLICY_IN && dir != XFRM_POLICY_OUT) {
        return 0;
    }
    *index = t_last.index[dir] - 1;
    *priority = t_last.priority[dir];
    return t_last.index[dir] != 0;
}

uint64_t ss_debug_kind_cache_hits(void)
{
    uint64_t n;
    pthread_mutex_lock(&g_kind_lock);
    n = g_kind_hits;
    pthread_mutex_unlock(&g_kind_lock);
    return n;
}
