/*
 * The Linux backend's internal header: what its units in csrc/linux/ share, and which unit owns each piece.
 * Not part of the seam: only csrc/linux/, tests/linux_c/, the fuzz targets and benchmarks/profile include it.
 *
 * Linux backend: answers "how is this socket's traffic secured?" from the kernel's IPsec state (XFRM), read
 * over netlink. Plain C: libc and the kernel's uapi headers only.
 *
 * For each direction of the socket's flow it finds the policy the kernel would apply (as xfrm_policy_lookup
 * does: sub policies before main ones, selector/mark/if_id match, lowest priority value wins, the older policy
 * on a tie), then the SA for each of the policy's templates (as xfrm_state_find does outbound and
 * xfrm_state_ok inbound). The policies and SAs are kept in a snapshot per network namespace (up to
 * SS_NETNS_KEPT) that XFRM notifications keep fresh, cross-checked against the kernel's counts and bounded in
 * age, so a query makes no dump while nothing changed (see snapshot.c).
 *
 * Units, each owning what it defines (every resource it allocates is freed by the same unit):
 *   parse.c           the pure record parsers and the netlink datagram walk (xfrm_records.h; the fuzzed surface)
 *   netlink.c         nl_request: one request/reply exchange over a short-lived netlink socket; errno wording
 *   snapshot_index.c  ss_snap's arrays and hashes: indexing, freeing, SA and policy changes applied in place
 *   snapshot.c        the process state g (under g_lock): dumps, the notification sockets, the freshness
 *                     cross-check, the kept namespaces' snapshots (parked), fork
 *   flow.c            ss_flow: socket facts (the cookie cache, under g_kind_lock), addresses, routes, interfaces
 *   match.c           lookup_policy / lookup_sa / eval_dir: the kernel's decision for one direction of a flow
 *   seam.c            the functions of secsock_backend.h: init/fini, query_now in the socket's namespace
 *   stats.c           secsock_backend_stats_read: the upkeep counters (dumps, overruns, namespace switches,
 *                     cross-check re-dumps)
 *   test_hooks.c      ss_debug_* (test_hooks.h) for the C driver, fuzzers, profiler: never linked into the extension
 */
#ifndef SECSOCK_LINUX_BACKEND_LINUX_H
#define SECSOCK_LINUX_BACKEND_LINUX_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "secsock_backend.h"
#include "xfrm_records.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sockios.h>
#include <linux/xfrm.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71 /* Linux 5.14 */
#endif
#ifndef SO_COOKIE
#define SO_COOKIE 57 /* Linux 4.13 */
#endif
#ifndef SO_BINDTOIFINDEX
#define SO_BINDTOIFINDEX 62
#endif
#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262
#endif
/* Newer than kernel 4.18's headers (manylinux_2_28 builds against those): enum members, so always defined here
 * to their uapi values; XFRM_OFFLOAD_PACKET is a macro. */
#ifndef XFRMA_IF_ID
#define XFRMA_IF_ID 31 /* __u32, 4.19 */
#endif
#ifndef IFLA_XFRM_IF_ID
#define IFLA_XFRM_IF_ID 2 /* linux/if_link.h, an XFRM interface's if_id, 4.19 (with XFRMA_IF_ID) */
#endif
#ifndef XFRM_OFFLOAD_PACKET
#define XFRM_OFFLOAD_PACKET 4 /* struct xfrm_user_offload.flags, 6.2 */
#endif
/* Newer than some uapi headers: the SA's direction (kernel 6.10). */
#ifndef XFRMA_SA_DIR
#define XFRMA_SA_DIR 33
#endif
#ifndef XFRMA_SA_PCPU
#define XFRMA_SA_PCPU 35 /* __u32, 6.13: a per-CPU SA's CPU */
#endif
#ifndef RTA_NH_ID
#define RTA_NH_ID 30 /* a route's nexthop object (linux/rtnetlink.h, 5.3) */
#endif
#define SS_SA_DIR_IN 1
#define SS_SA_DIR_OUT 2

/* Internal to the backend: hidden from the extension's dynamic symbol table, so no other library's
 * functions of the same names can interpose. */
#pragma GCC visibility push(hidden)

#define SS_NL_BUF 65536

#define SS_DUMP_RETRIES 4
#define SS_NOTIFY_RCVBUF (4 * 1024 * 1024)
#define SS_POL_APPLY_MAX 32 /* policy notifications applied in place per drain; past that, one dump */
/*
 * Freshness bounds for a lost notification (issue 14 item 11; snapshot.c says why these numbers): the
 * kernel's SPD/SAD counts are compared with the snapshot's at most once per SS_XCHECK_INTERVAL_MS, and a
 * table older than SS_SNAPSHOT_MAX_AGE_MS is dumped again whatever the counts say.
 */
#define SS_XCHECK_INTERVAL_MS 1000
#define SS_SNAPSHOT_MAX_AGE_MS 30000
/* Network namespaces whose snapshots are kept (the current one and the most recently used others). */
#define SS_NETNS_KEPT 8

/* ---- Shared helpers: addresses and the index's hashes (static inline: the lookup's hot path) ----------- */

static const uint8_t zero16[16];

static inline size_t addr_len(int family)
{
    return family == AF_INET6 ? 16 : 4;
}

static inline int addr_eq(const uint8_t *a, const uint8_t *b, int family)
{
    return memcmp(a, b, addr_len(family)) == 0;
}

static inline int addr_any(const uint8_t *a, int family)
{
    return memcmp(a, zero16, addr_len(family)) == 0;
}

/* Is a socket's local address a wildcard: 0.0.0.0, ::, or on an AF_INET6 socket ::ffff:0.0.0.0, the IPv4
 * wildcard the kernel also binds to (its source is then the route's, as for 0.0.0.0; outside review of
 * i14-cpath: it was matched as source 0.0.0.0, so a policy for any source could be picked over the route's). */
static inline int local_is_wildcard(const uint8_t *a, int family)
{
    static const uint8_t v4mapped_any[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0};

    return addr_any(a, family) || (family == AF_INET6 && memcmp(a, v4mapped_any, 16) == 0);
}

/* The first plen bits of a and b are equal. */
static inline int prefix_match(const uint8_t *a, const uint8_t *b, unsigned plen)
{
    unsigned full = plen / 8, rest = plen % 8;

    if (plen <= 128) {
        /* Four bytes at a time (issue 14, speed): whole words, then the last one masked. Reads only the words
         * the prefix reaches, within the 16 bytes of an address. */
        while (plen > 0) {
            uint32_t x, y, m = plen >= 32 ? 0xffffffffu : ~(0xffffffffu >> plen);
            memcpy(&x, a, 4);
            memcpy(&y, b, 4);
            if (((ntohl(x) ^ ntohl(y)) & m) != 0) {
                return 0;
            }
            a += 4;
            b += 4;
            plen = plen >= 32 ? plen - 32 : 0;
        }
        return 1;
    }
    if (full > 0 && memcmp(a, b, full) != 0) {
        return 0;
    }
    if (rest != 0) {
        uint8_t mask = (uint8_t)(0xff00u >> rest);
        if ((a[full] & mask) != (b[full] & mask)) {
            return 0;
        }
    }
    return 1;
}

static inline void mask_addr(uint8_t *dst, const uint8_t *src, unsigned plen, int family)
{
    size_t n = addr_len(family), i;

    memset(dst, 0, 16);
    for (i = 0; i < n; i++) {
        if (plen >= 8) {
            dst[i] = src[i];
            plen -= 8;
        } else {
            dst[i] = (uint8_t)(src[i] & (0xff00u >> plen));
            plen = 0;
        }
    }
}

static inline int bucket_of(int dir, int family, int type)
{
    return (dir == XFRM_POLICY_OUT ? 4 : 0) + (family == AF_INET6 ? 2 : 0) + (type == XFRM_POLICY_TYPE_SUB);
}

static inline uint32_t hash_bytes(uint32_t h, const uint8_t *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        h = (h ^ p[i]) * 16777619u;
    }
    return h;
}

static inline uint32_t pol_key_hash(unsigned plen, const uint8_t *masked, int family)
{
    uint8_t pl = (uint8_t)plen;
    return hash_bytes(hash_bytes(2166136261u, &pl, 1), masked, addr_len(family));
}

static inline uint32_t sa_key_hash(int family, uint8_t proto, const uint8_t *daddr)
{
    uint8_t k[2] = {(uint8_t)family, proto};
    return hash_bytes(hash_bytes(2166136261u, k, 2), daddr, addr_len(family));
}

/* Iterate attributes (struct nlattr / struct rtattr share a layout). */
typedef struct {
    const uint8_t *p;
    size_t left;
} attr_iter;

/* ---- The snapshot's records (snapshot_index.c builds and changes them; snapshot.c owns the one in g) ---- */
/*
 * Policies live in one array sorted by (bucket, priority, index: pol_order); a bucket is (direction, family,
 * type). Within a bucket a hash keyed by (destination prefix length, masked destination) chains the policies in that
 * order, and the bucket remembers which destination prefix lengths occur: a lookup probes one chain per
 * prefix length present instead of scanning the bucket. SAs are hashed by (family, proto, daddr).
 */

#define SS_NBUCKETS 8 /* 2 directions x 2 families x 2 types */

/* An SA add or update a notification showed (sa_note_seen), found again by sa_same_id: the kernel restarted the
 * SA's timer then, so for SS_TIMER_LATE_S its time limits may not be acted on. */
#define SS_SA_SEEN_KEPT 4
typedef struct {
    ss_sa sa;   /* the notification's SA (no key: ss_sa keeps none) */
    int64_t at; /* time(NULL) when seen; 0: a free slot */
} ss_sa_seen;

typedef struct {
    size_t start, end;    /* range in snap.pols */
    uint32_t hmask;       /* heads has hmask + 1 entries */
    int32_t *heads;       /* chain heads, indices into pols, -1 for none */
    uint8_t plens[129];   /* distinct destination prefix lengths, longest first */
    unsigned nplens;
    int has_if_id;        /* some policy here has an if_id */
} ss_bucket;

typedef struct {
    ss_policy *pols;
    size_t npols, cap;
    int32_t *pnext;
    ss_bucket b[SS_NBUCKETS];

    ss_sa *sas;
    size_t nsas, sacap;
    int32_t *sanext;
    int32_t *saheads;
    uint32_t sahmask;
    /* The slots of the SAs that may not encrypt (sa_may_be_plain): the inbound "does every acceptable SA
     * encrypt" check reads only these, whatever their destination (usually none). Dead slots stay listed. */
    int32_t *plain;
    size_t nplain, plaincap;
    /* Records the last dump saw but did not keep, which the kernel's counts include (the count cross-check,
     * snapshot.c): in/out policies by direction (a selector of another family...), SAs of no IP family. */
    uint32_t pol_unkept[2];
    uint32_t sa_unkept;
    /* What the snapshot keeps, counted as it changes (on_policy/on_sa, pol_apply/sa_apply, the frees): the
     * cross-check reads these instead of walking every record. In/out policies by direction; live SAs. */
    size_t pol_kept[2];
    size_t sa_live;
    /* The SA adds and updates seen last (kept across dumps: what a dump reads of those SAs is settled with
     * them), and when the SA table is read again to settle a time limit's maybe (ss_sa_settle; ss_clock_ms(),
     * 0: none pending; snap_free_sas clears it, the dump that follows sets it again). */
    ss_sa_seen seen[SS_SA_SEEN_KEPT];
    /* time(NULL) when an add or update may have gone unnoted (every slot still mattered, or notifications were
     * lost: ENOBUFS, a truncated one): ss_sa_settle takes it as every SA's seen_at. 0: none. */
    int64_t seen_all_at;
    int64_t recheck_at;
} ss_snap;

/* Collecting a dump. */
typedef struct {
    ss_snap *s;
    secsock_error *err;
} dump_ctx;

/* A network namespace's identity: the device and inode of its nsfs file. */
typedef struct {
    int known;
    dev_t dev;
    ino_t ino;
} ss_netns;

typedef struct {
    int sock;
    int family;     /* of the flow: AF_INET for IPv4-mapped traffic on an AF_INET6 socket */
    uint8_t proto;
    uint8_t local[16], peer[16];
    uint16_t lport, pport; /* network order */
    uint32_t mark;         /* SO_MARK: read by flow_mark() on first need */
    int mark_read, mark_errno;
    int bound_ifindex;     /* SO_BINDTOIFINDEX, 0 when not bound: read by flow_bound_ifindex() on first need */
    int bif_read;
    int unicast_if;        /* an IPv4 UDP socket's IP_UNICAST_IF, read by flow_oif_hint() on first need */
    int uif_read;
    uint64_t ns_cookie;    /* SO_NETNS_COOKIE of the socket; 0 when the kernel cannot say */
    int has_peer_arg;      /* the caller gave peer (error messages name it) */
    int multipath;         /* 1 SCTP, 2 MPTCP: the flow read is one path of several (multipath_verdict) */
    int if_id_known;       /* resolve_if_id: 0 unread, SS_KNOW_YES (if_id below), SS_KNOW_NO (not decidable) */
    int dev_knowable;      /* flow_out_dev_knowable: 0 unread, SS_KNOW_YES, SS_KNOW_NO */
    uint32_t if_id;        /* the if_id of the XFRM interface the flow is routed through, 0 for none */
    int if_id_link;        /* that interface's underlying device (IFLA_LINK, 0 for none): xfrmi_xmit's lookup
                            * compares a selector's dev with it (fl.flowi_oif = xi->p.link) */
    int in_if_id_lookup;   /* eval_dir: outbound, the XFRM interface's own lookup (xfrmi_xmit2) is being made */
    int oif;               /* the interface toward the peer; -1 until needed and resolved */
    int sel_dev[2];        /* flow_sel_dev: [0] in, [1] out; -1 until needed, SS_DEV_UNKNOWN */
    uint32_t peer_scope;   /* peer='s IPv6 scope id, for a peer that needs one (link-local); else 0 */
    int lo_conf;           /* flow_xfrm_disabled: SS_CONF_*_READ of what was read, SS_LO_* set by `all` */
    int lo_lo_conf;        /* flow_xfrm_disabled: SS_LO_* of local_dev's own IPv4 devconf, once read */
    ss_netns ns;           /* the namespace the query answers for (flow_xfrm_disabled's cache key); known 0:
                            * nothing is cached (the fuzzers and the synthetic driver leave it so) */
    int local_dev;         /* flow_xfrm_disabled: 0 unread; the device (lo, a VRF) a local peer is reached
                            * by; -1 the peer is not one of the host's addresses */
    int mark_doubt;        /* SS_DOUBT_*: lookup_policy could not decide (a packet mark, a priority tie) */
    int route_keys_read;   /* route_get: uid and tos below were read (once per query, when a route is asked) */
    uint32_t uid;          /* the socket's sk_uid (fstat of the socket: the sockfs inode's owner) */
    uint8_t tos;           /* IPv4: IP_TOS, inet->tos */
    int local_wild;        /* bound to the wildcard address: local was filled in by finish_flow, and the
                            * socket's own route lookups carry no source (route_get leaves RTA_SRC out) */
    /* Read once per query (issue 14, speed): the clock the thread's caches of flow.c are stamped and judged
     * by (flow_now; query_in_netns sets it from refresh_locked's read), and that cache of ns (conf_for). */
    int64_t now;
    int now_read;
    struct conf_ns *conf;
    int conf_looked;
} ss_flow;

enum { SS_KNOW_YES = 1, SS_KNOW_NO = 2 }; /* ss_flow.if_id_known, dev_knowable */
/* ss_flow.mark_doubt; SS_DOUBT_SA_ORDER: outbound SAs that answer differently, ordered by the kernel's hash chains;
 * SS_DOUBT_SOURCE: a tunnel template's source is any and the route's preferred source (not read) picks the SA;
 * SS_DOUBT_SEC_CTX: a labeled policy or SA may apply (the LSM matches labels with the flow's, not read here) */
enum { SS_DOUBT_NONE = 0, SS_DOUBT_MARK = 1, SS_DOUBT_TIE = 2, SS_DOUBT_DEV = 3, SS_DOUBT_SA_ORDER = 4,
       SS_DOUBT_SOURCE = 5, SS_DOUBT_SA_CACHE = 6, SS_DOUBT_SA_KIND = 7, SS_DOUBT_SEC_CTX = 8 };
/* Does the kernel keep a state cache per policy (6.13, 6.12-stable: xfrm_state_find's pol->state_cache_list)?
 * -1 not read yet (match.c reads uname once), else 0 or 1; the synthetic tests set it. */
extern int ss_kernel_state_cache;
/* Does a kernel of this uname release keep that cache (6.12+, or a release not read as MAJOR.MINOR)? */
int ss_release_has_state_cache(const char *release);

typedef struct {
    int protected_;
    int encrypted;
    uint8_t reason; /* SECSOCK_REASON_*: why (issue 14 item 8) */
} dir_verdict;

/* ---- parse.c ------------------------------------------------------------------------------------------- */
int attr_next(attr_iter *it, uint16_t *type, const uint8_t **data, size_t *dlen);
/* Also read by the dump's callbacks (snapshot.c): is an unreadable policy's selector still usable? */
int sel_valid(const ss_sel *s, int allow_unspec);

/* ---- netlink.c ----------------------------------------------------------------------------------------- */
int os_error(secsock_error *err, int errnum, const char *call, const char *what);
int xfrm_os_error(secsock_error *err, int errnum, const char *call);
/* Opens, and on every path closes, its own netlink socket and reply buffer; fn sees each payload only during
 * its call and copies what it keeps. */
int nl_request(int proto, uint16_t type, uint16_t flags, const void *body, size_t blen, ss_nl_fn fn,
               void *ctx, const char *call, secsock_error *err);
int nl_open_request_socket(int proto, uint32_t *portid, secsock_error *err);
int nl_request_on(int fd, uint32_t portid, int proto, uint16_t type, uint16_t flags, const void *body,
                  size_t blen, ss_nl_fn fn, void *ctx, const char *call, secsock_error *err);

/* ---- snapshot_index.c ---------------------------------------------------------------------------------- */
/* Free pols, pnext and every bucket's heads; s is left empty and reusable. Safe on an empty s. */
void snap_free_policies(ss_snap *s);
/* Wipe and free sas, then free sanext and saheads; s is left empty and reusable. Safe on an empty s. */
void snap_free_sas(ss_snap *s);
int pol_order(const void *a, const void *b);
/* Free s's policy index (pnext, heads) and allocate a new one, owned by s; on -1 (out of memory) s keeps pols
 * and what was allocated, with no usable index: the caller frees it all with snap_free_policies. */
int snap_index_policies_sorted(ss_snap *s, int sorted);
int snap_index_policies(ss_snap *s); /* as snap_index_policies_sorted, sorting pols first */
/* Allocate saheads and sanext (which must be NULL: freed before) and rebuild plain, owned by s; on -1 what was
 * allocated stays in s for snap_free_sas. */
int snap_index_sas(ss_snap *s);
/* A realloc of *arr to at least need elements (the capacity doubles): on 0 pointers into the old *arr are
 * invalid; on -1 *arr and *cap are unchanged and still the caller's. */
int grow(void **arr, size_t *cap, size_t need, size_t elem);
int sa_same_id(const ss_sa *a, const ss_sa *b);
int32_t sa_find(const ss_snap *s, const ss_sa *key, int32_t *prev);
/* Copy *a into s (the caller keeps a); may reallocate sas and sanext, so pointers into them are invalid after.
 * On -1 s still owns all it holds (snap_free_sas frees it) but only a new dump can be trusted. */
int sa_apply(ss_snap *s, int action, const ss_sa *a);
/* The SAs a soft-expire notification made dying (sa_apply), which a dump cannot show: copies into *out (malloc'd,
 * the caller frees; NULL when none), for sa_restore_dying to mark dying again in the new table. 0, -1 on ENOMEM. */
int sa_save_dying(const ss_snap *s, ss_sa **out, size_t *n);
void sa_restore_dying(ss_snap *s, const ss_sa *kept, size_t n);
/* Remember that a notification showed an add or update of a: in its slot, a free one or one past
 * SS_TIMER_LATE_S; with none, the whole table counts as seen now (seen_all_at). */
void sa_note_seen(ss_snap *s, const ss_sa *a, int64_t now);
/* ss_sa_settle a (not yet in s) at now with what s saw of it, and move s->recheck_at to when that settles. */
void sa_settle_seen(ss_snap *s, ss_sa *a, int64_t now);
/* One SA notification (XFRMNLGRP_SA, XFRMNLGRP_EXPIRE) for s, whose SA table is stale or not: 1 applied in
 * place, 0 nothing to apply (stale: only what a dump cannot show is kept), -1 only a new dump can be trusted. */
int sa_notify_apply(ss_snap *s, int stale, uint16_t type, const void *payload, size_t len);
/* Copy *p into s (the caller keeps p); may reallocate pols and leaves the policy index stale until the caller
 * reindexes (snap_index_policies_sorted). On -1 s still owns all it holds, but only a new dump can be trusted. */
int pol_apply(ss_snap *s, int action, const ss_policy *p);

/* ---- snapshot.c: the process state and what guards it --------------------------------------------------- */
/* The kernel's count minus the snapshot's at the last cross-check, per table; pol_set/sa_set: it differed
 * there (a table is dumped again only when the same difference shows at the next check too). */
typedef struct {
    int64_t in, out, sas;
    int pol_set, sa_set;
} ss_xdiff;

/* One network namespace's snapshot and the notification socket that keeps it fresh. */
typedef struct {
    int notify_fd;
    int notify_ep;      /* epoll instance watching notify_fd (its own, closed with it); -1: poll instead */
    int req_fd;         /* the cross-check's and dumps' request socket, made in the namespace with notify_fd
                         * (closed with it), so whichever thread asks needs no setns for them; -1: none */
    uint32_t req_pid;   /* its netlink port id */
    dev_t ns_dev;
    ino_t ns_ino;
    uint64_t ns_cookie; /* SO_NETNS_COOKIE of notify_fd's namespace (the snapshot's); 0 when unknown */
    uint64_t gen;       /* the fork generation the snapshot was built in (g_fork_gen) */
    int pol_stale, sa_stale;
    ss_snap snap;
    int64_t pol_dumped_at, sa_dumped_at; /* ss_clock_ms() of each table's last complete dump */
    int64_t checked_at;                  /* ss_clock_ms() of the last count cross-check */
    ss_xdiff xdiff;                      /* the difference the last cross-check found */
    uint64_t last_used;                  /* g.use_tick when it was last the current one (the LRU order) */
} ss_nsstate;

typedef struct {
    int init_count;
    /* The current namespace's snapshot, notification socket and freshness: parking it (snapshot.c: ns_park,
     * ns_unpark) moves this one struct to or from parked[]; its last_used is set only when parked (use_tick
     * orders the current one). */
    ss_nsstate cur;
    int rcvbuf;        /* notification socket buffer; 0: SS_NOTIFY_RCVBUF */
    uint64_t overruns;    /* ENOBUFS seen on the notification socket */
    uint64_t sa_updates;  /* SA notifications applied in place */
    uint64_t pol_updates; /* policy notifications applied in place */
    int pol_applied;      /* policy notifications applied during this drain (the index waits for the end) */
    uint64_t use_tick;       /* bumped at each namespace switch */
    uint64_t xcheck_reloads; /* tables dumped again because the kernel's count differed from the snapshot's */
    uint64_t conf_asks;      /* flow_xfrm_disabled's sysctl reads, route and link lookups (a test hook counts) */
    /* Test hooks (test_hooks.c): notifications to ignore as if the kernel never sent them, and a clock. */
    unsigned drop_notify;
    unsigned fail_route_dumps; /* IPv4 route dumps (v4_routes_plain) to fail as if interrupted twice */
    int clock_frozen;
    int64_t clock_ms;
    /* Other namespaces' snapshots, in no order (last_used picks the one to evict); ns_ino 0: a free slot. */
    ss_nsstate parked[SS_NETNS_KEPT - 1];
} ss_state;

extern ss_state g;                  /* the snapshot and its notification socket; g_lock guards it */
extern pthread_mutex_t g_lock;
extern pthread_mutex_t g_kind_lock; /* the socket facts cache (flow.c); taken after g_lock across fork */
extern uint64_t g_dump_count;       /* full dumps made (atomic) */
extern uint64_t g_netns_switches;   /* the snapshot moved to another network namespace (atomic) */
extern uint64_t g_fork_gen;         /* bumped in every fork child */
extern pthread_once_t g_atfork_once;
/* The namespace check of a query's fast path (thread_ns_ok; set by query_now in seam.c). */
/* One thread-local object, not four: each such variable of a shared library costs a __tls_get_addr call
 * (issue 14, speed). */
typedef struct {
    int check, wrong;
    dev_t dev;
    ino_t ino;
    int at_once, at_once_refused; /* secsock_query_at_once's mode, and whether something refused in it */
    int at_once_flow;   /* the refusal was an uncached lookup of the flow's own (ss_may_wait_flow) */
    secsock_fd skip_fd; /* the socket whose at-once attempts are skipped (secsock_query_at_once)... */
    int skip_left;      /* ...so many more times */
} ss_thread_ns;
extern __thread ss_thread_ns t_ns;
/* nl_request callbacks of a dump: append a parsed copy of the record to the dump_ctx's snapshot (grow). */
int on_policy(void *vctx, uint16_t type, uint16_t flags, const void *payload, size_t len);
int on_sa(void *vctx, uint16_t type, uint16_t flags, const void *payload, size_t len);
/* Free s's policies (SAs), then fill and index them from a fresh dump, owned by s; on -1 s is left empty. */
int dump_policies(ss_snap *s, secsock_error *err);
int dump_sas(ss_snap *s, secsock_error *err);
void atfork_register(void);
int thread_ns_verify(const char *call, secsock_error *err); /* the stat behind thread_ns_ok's t_ns.check */
/* 0 when the thread is known to be in the snapshot's namespace (inline: nothing to check on most calls). */
static inline int thread_ns_ok(const char *call, secsock_error *err)
{
    return t_ns.check ? thread_ns_verify(call, err) : 0;
}

/*
 * secsock_query_at_once (seam.c): while t_ns.at_once is set the calling thread holds its caller's lock (the
 * GIL) and must not wait. Whatever may wait (a netlink request, a file, a setns, another thread's mutex) asks
 * ss_may_wait or ss_lock first, before it changes any state: they refuse, and t_ns.at_once_refused makes
 * secsock_query_at_once discard whatever the query went on to answer (some callers carry on after an error).
 */
static inline int ss_may_wait(secsock_error *err)
{
    if (!t_ns.at_once) {
        return 0;
    }
    t_ns.at_once_refused = 1;
    return secsock_error_set(err, SECSOCK_ERR_OS, EWOULDBLOCK, 0, "secsock_query_at_once", "the answer may wait");
}
/* ss_may_wait before a lookup no cache keeps (a netlink request past the cached facts, a source probe): the
 * flow will need it again on its next query, so secsock_query_at_once stops trying that socket for a while. */
static inline int ss_may_wait_flow(secsock_error *err)
{
    if (t_ns.at_once) {
        t_ns.at_once_flow = 1;
    }
    return ss_may_wait(err);
}
/* pthread_mutex_lock, or while t_ns.at_once a trylock: 0 locked, -1 refused (held elsewhere: it may wait). */
static inline int ss_lock(pthread_mutex_t *m)
{
    if (!t_ns.at_once) {
        pthread_mutex_lock(m);
        return 0;
    }
    if (pthread_mutex_trylock(m) == 0) {
        return 0;
    }
    t_ns.at_once_refused = 1;
    return -1;
}
uint64_t netns_cookie_of(int fd, int *errnum);
void notify_close_locked(void); /* close g.cur.notify_ep and g.cur.notify_fd (set to -1) */
void state_drop_locked(void);   /* notify_close_locked, then free both of g.cur.snap's tables */
void parked_drop_all_locked(void); /* close and free every other namespace's snapshot (fini, fork child) */
/* Is there a snapshot with a live notification socket for the namespace of this SO_NETNS_COOKIE (current or
 * parked)? 1 and its identity in *ns, or 0. */
int snapshot_of_cookie_locked(uint64_t cookie, ss_netns *ns);
/* Make ns (known, this fork generation) the current namespace: park the current snapshot if it is worth
 * keeping (evicting the least recently used parked one, closed and freed, when all slots are taken), then
 * take ns's own if it was parked. 1 when ns's snapshot was kept, 0 when g now starts empty for it (the
 * caller sets its identity). Allocates nothing. */
int ns_switch_locked(const ss_netns *ns);
int64_t ss_clock_ms(void); /* CLOCK_MONOTONIC_COARSE in ms (or the test hooks' frozen clock) */
/* Can a policy carry a security label (an LSM keeps them: selinuxfs registered)? -1 not read yet, else 0 or 1
 * (read once; the synthetic tests set it). Where it can, a policy add or update notification, which carries
 * no label, makes the policy table stale instead of being applied in place (on_notify). */
extern int ss_policy_labels;
int ss_policy_labels_possible(void);
int ss_policy_labels_in(const char *filesystems); /* that answer from a /proc/filesystems; 1 if unreadable */
/* Apply one notification to g.cur.snap (sa_apply/pol_apply: may reallocate its arrays) or mark a table stale. */
int on_notify(void *vctx, uint16_t type, uint16_t flags, const void *payload, size_t len);
void drain_notify_locked(void); /* on_notify for each queued notification; reindexes g.cur.snap's policies */
/* May free and rebuild g.cur.snap's tables and open g.cur.notify_fd (g owns both): pointers into g.cur.snap are
 * valid only until g_lock is released or the next refresh. */
int refresh_locked(const ss_netns *ns, int64_t *now, secsock_error *err); /* *now: its ss_clock_ms() */

/* ---- flow.c -------------------------------------------------------------------------------------------- */
extern uint64_t g_kind_hits; /* socket facts cache hits, under g_kind_lock */
/* SO_MARK, read on first need (flow.c says when); static inline: the policy lookup calls it per candidate. */
static inline uint32_t flow_mark(ss_flow *f)
{
    if (!f->mark_read) {
        int mark = 0;
        socklen_t len = sizeof(mark);
        f->mark_read = 1;
        if (getsockopt(f->sock, SOL_SOCKET, SO_MARK, &mark, &len) != 0) {
            f->mark_errno = errno != 0 ? errno : EIO;
            mark = 0;
        }
        f->mark = (uint32_t)mark;
    }
    return f->mark;
}
int resolve_oif(ss_flow *f, secsock_error *err);
int resolve_if_id(ss_flow *f, secsock_error *err);
#define SS_DEV_UNKNOWN (-2) /* flow_sel_dev: the device a selector is compared with cannot be told */
int flow_sel_dev(ss_flow *f, int dir, int *ifindex, secsock_error *err);
#define SS_LO_NOXFRM 2   /* disable_xfrm */
#define SS_LO_NOPOLICY 4 /* disable_policy */
#define SS_CONF_OUT_READ 8  /* ss_flow.lo_conf: `all`'s disable_xfrm was read */
#define SS_CONF_IN_READ 16  /* ss_flow.lo_conf: `all`'s disable_policy was read */
#define SS_CONF_LO_READ 32  /* ss_flow.lo_conf: loopback's devconf was read (into lo_lo_conf) */
#define SS_V6_NOPOLICY 64   /* a device's IPv6 disable_policy (conf_links) */
#define SS_XFRM_MAYBE_DISABLED 2 /* flow_xfrm_disabled: a device that may carry the flow disables XFRM */
int flow_xfrm_disabled(ss_flow *f, int dir, secsock_error *err);
/* f borrows req's socket (f->sock): never closed here. */
int build_flow(const secsock_query_request *req, ss_flow *f, secsock_error *err);
int finish_flow(ss_flow *f, secsock_error *err);

/* ---- match.c ------------------------------------------------------------------------------------------- */
typedef struct {
    uint32_t index[2], priority[2];
} ss_last_match;
extern __thread ss_last_match t_last; /* the last match per direction (test_hooks.c) */
/* A pointer into s->pols (borrowed: valid while s is unchanged, i.e. under g_lock for g.cur.snap), or NULL. */
const ss_policy *lookup_policy(const ss_snap *s, ss_flow *f, int dir, uint32_t if_id, int *rc,
                               secsock_error *err);
/* An SA the kernel would use: xfrm_state_look_at takes only XFRM_STATE_VALID states (keyed, not expired).
 * Static inline: the SA lookup tests every candidate with it. */
static inline int sa_valid(const ss_sa *a)
{
    if (a->expired) {
        return 0;
    }
    switch (a->proto) {
    case IPPROTO_ESP:
        return a->spi != 0 && (a->has_crypt || a->has_aead);
    case IPPROTO_AH:
        return a->spi != 0 && a->has_auth;
    case IPPROTO_COMP:
        return a->has_comp;
    default:
        return 0; /* larval (acquire) states and other protocols protect nothing */
    }
}
/* Does the SA hide the payload (by its cipher's entry in the kernel's table)? */
int sa_encrypts(const ss_sa *a);
/* An SA the inbound ENCRYPTED check must see: unreadable, or ESP that does not encrypt. */
static inline int sa_may_be_plain(const ss_sa *a)
{
    return a->unreadable || (a->proto == IPPROTO_ESP && !sa_encrypts(a));
}
void multipath_verdict(const ss_snap *s, int dir, secsock_direction *out, dir_verdict *v);
int eval_dir(const ss_snap *s, ss_flow *f, int dir, secsock_direction *out, dir_verdict *v,
             secsock_error *err);

/* ---- seam.c -------------------------------------------------------------------------------------------- */
/* With nsfd non-NULL, *nsfd is a new descriptor of the namespace that the caller closes (set only on 0). */
int thread_netns(ss_netns *ns, int *nsfd);

#pragma GCC visibility pop

#endif /* SECSOCK_LINUX_BACKEND_LINUX_H */
