/*
 * libFuzzer target: allocation failure on every path of the snapshot (issue 14 item 9). The first two bytes
 * say which allocation fails (the Nth call of malloc, calloc or realloc in those units, counted from 1; 0: none);
 * the rest is one netlink datagram of policies and SAs (as fuzz_xfrm_lookup). It builds the snapshot as a dump
 * does (on_policy/on_sa, then the indexes), applies the datagram's policies as notifications (pol_apply) and
 * indexes them again as a drain does (snap_index_policies_sorted(s, 1)), applies its SAs as notifications
 * (sa_apply), and frees everything as the backend does after a failure (snap_free_policies / snap_free_sas).
 * Like the backend (on_notify marks the table stale, refresh_locked frees it and dumps again) it applies
 * nothing more to a table after a -1. It does so for SS_NETNS_KEPT + 1 network namespaces in turn, as
 * refresh_locked switches between them (ns_switch_locked: parked, evicted, taken back), then frees them all as
 * fini does, so the Nth allocation may fail in any namespace's snapshot while others are kept (issue 14 item
 * 12). Under ASan a double free, an overflow or a leak on any failure path aborts.
 *
 * Not counted here (they are in other units or need a kernel): nl_request's reply buffer (netlink.c), the
 * calloc in ss_parse_policy_notify (parse.c), and drain_notify_locked's own recvmsg loop.
 *
 * The units that allocate the snapshot (csrc/linux/snapshot_index.c, snapshot.c) are built with
 * alloc_counter.h force-included, so their malloc/calloc/realloc calls come here; fuzz.sh links the other
 * units of csrc/linux/ as they are.
 */
#define SECSOCK_ALLOC_COUNTER_IMPL
#include "alloc_counter.h"
#include "linux/backend_linux.h"

#include <fcntl.h>

static unsigned long alloc_calls, alloc_fail_at;

void *counted_malloc(size_t n)
{
    return ++alloc_calls == alloc_fail_at ? NULL : malloc(n);
}

void *counted_calloc(size_t k, size_t n)
{
    return ++alloc_calls == alloc_fail_at ? NULL : calloc(k, n);
}

void *counted_realloc(void *p, size_t n)
{
    return ++alloc_calls == alloc_fail_at ? NULL : realloc(p, n);
}

#include "fuzz_common.h"

static int collect(void *vctx, uint16_t type, uint16_t flags, const void *payload, size_t len)
{
    dump_ctx *c = vctx;
    if (type == XFRM_MSG_NEWPOLICY) {
        (void)on_policy(c, type, flags, payload, len);
    } else if (type == XFRM_MSG_NEWSA) {
        (void)on_sa(c, type, flags, payload, len);
    }
    return 0;
}

/* Each NEWSA as a notification; -1 (stop the walk) at the first failure, as on_notify sets sa_stale. */
static int notify_sas(void *vctx, uint16_t type, uint16_t flags, const void *payload, size_t len)
{
    ss_snap *s = vctx;
    ss_sa a;
    const char *why;
    int action;
    (void)flags;
    if (type == XFRM_MSG_NEWSA && ss_parse_sa_notify(type, payload, len, &a, &action, &why) == SS_PARSE_OK &&
        sa_apply(s, action, &a) != 0) {
        return -1;
    }
    return 0;
}

/* Each NEWPOLICY as a notification; -1 (stop the walk) at the first failure, as on_notify sets pol_stale. */
static int notify_policies(void *vctx, uint16_t type, uint16_t flags, const void *payload, size_t len)
{
    ss_snap *s = vctx;
    ss_policy p;
    const char *why;
    int action;
    (void)flags;
    if (type == XFRM_MSG_NEWPOLICY &&
        ss_parse_policy_notify(type, payload, len, &p, &action, &why) == SS_PARSE_OK &&
        pol_apply(s, action, &p) != 0) {
        return -1;
    }
    return 0;
}

/* One namespace's snapshot from the datagram, into the empty s: built, or freed where an allocation failed. */
static void build(ss_snap *s, const uint8_t *data, size_t size)
{
    secsock_error err;
    dump_ctx c;
    const char *why;

    secsock_error_clear(&err);
    c.s = s;
    c.err = &err;
    (void)ss_nl_walk(data, size, 0, 0, collect, &c, &why);
    /* As dump_policies / dump_sas: an index that cannot be built leaves the table empty. */
    if (snap_index_policies(s) != 0) {
        snap_free_policies(s);
    } else if (ss_nl_walk(data, size, 0, 0, notify_policies, s, &why) == -2 ||
               snap_index_policies_sorted(s, 1) != 0) {
        snap_free_policies(s); /* as a drain that failed (stale, or could not re-index): the refresh dumps again */
    }
    if (snap_index_sas(s) != 0 || ss_nl_walk(data, size, 0, 0, notify_sas, s, &why) == -2) {
        snap_free_sas(s); /* as dump_sas, or refresh_locked after sa_stale */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned k;

    if (size < 2) {
        return 0;
    }
    alloc_calls = 0;
    alloc_fail_at = (unsigned long)data[0] | (unsigned long)data[1] << 8;
    /* Namespaces 1..KEPT+1 in turn, then 3 (kept) and 1 (evicted) again: each current one gets a descriptor
     * standing for its notification socket, which parking keeps and eviction and the final drop close. */
    for (k = 0; k < SS_NETNS_KEPT + 3; k++) {
        ss_netns ns = {1, 1, (ino_t)(k < SS_NETNS_KEPT + 1 ? k + 1 : k == SS_NETNS_KEPT + 1 ? 3 : 1)};
        if (ns_switch_locked(&ns)) {
            continue; /* kept: nothing to build */
        }
        g.cur.ns_dev = ns.dev;
        g.cur.ns_ino = ns.ino;
        g.cur.notify_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        build(&g.cur.snap, data + 2, size - 2);
    }
    parked_drop_all_locked(); /* as secsock_backend_fini */
    state_drop_locked();
    g.cur.ns_dev = 0;
    g.cur.ns_ino = 0;
    return 0;
}
