/* The snapshots (one per network namespace kept): dumps, the notification sockets keeping them fresh, the count
 * cross-check and maximum age, namespace switches and fork state. */
#include "backend_linux.h"

int on_policy(void *vctx, uint16_t type, uint16_t flags, const void *payload, size_t len)
{
    dump_ctx *c = vctx;
    ss_policy p;
    const char *why;
    int r;

    (void)flags;
    if (type != XFRM_MSG_NEWPOLICY) {
        return 0;
    }
    r = ss_parse_policy(payload, len, &p, &why);
    if (r == SS_PARSE_SKIP) {
        if (p.dir == XFRM_POLICY_IN || p.dir == XFRM_POLICY_OUT) {
            c->s->pol_unkept[p.dir]++; /* the kernel counts it (xfrm_spd_getinfo): so must the cross-check */
        }
        return 0;
    }
    if (r != SS_PARSE_OK) {
        /* One record this backend cannot read must not fail every query (issue 14 item 2): with a readable
         * in/out selector it is kept, so only a flow it selects gets an error (lookup_policy); without one
         * no socket's flow can meet it. */
        if (len < sizeof(struct xfrm_userpolicy_info) || (p.dir != XFRM_POLICY_IN && p.dir != XFRM_POLICY_OUT) ||
            !sel_valid(&p.sel, 0)) {
            if (len >= sizeof(struct xfrm_userpolicy_info) && (p.dir == XFRM_POLICY_IN || p.dir == XFRM_POLICY_OUT)) {
                c->s->pol_unkept[p.dir]++;
            }
            return 0;
        }
        memset(p.tmpl, 0, sizeof(p.tmpl));
        p.ntmpl = 0;
        /* In the SUB bucket, which lookup_policy consults first: whatever its real type, a flow it selects
         * gets the error before any MAIN policy could answer for it; a lookup that starts at MAIN consults
         * the bucket's unreadable policies too (match.c: unreadable_may_win). */
        p.type = XFRM_POLICY_TYPE_SUB;
        p.unreadable = 1;
    }
    if (grow((void **)&c->s->pols, &c->s->cap, c->s->npols + 1, sizeof(p)) != 0) {
        secsock_error_set(c->err, SECSOCK_ERR_NOMEM, ENOMEM, 0, "XFRM_MSG_GETPOLICY", "out of memory for policies");
        return -1;
    }
    c->s->pols[c->s->npols++] = p;
    if (p.dir == XFRM_POLICY_IN || p.dir == XFRM_POLICY_OUT) {
        c->s->pol_kept[p.dir]++;
    }
    return 0;
}

int on_sa(void *vctx, uint16_t type, uint16_t flags, const void *payload, size_t len)
{
    dump_ctx *c = vctx;
    ss_sa a;
    const char *why;

    (void)flags;
    if (type != XFRM_MSG_NEWSA) {
        return 0;
    }
    if (ss_parse_sa(payload, len, &a, &why) == SS_PARSE_OK) {
        sa_settle_seen(c->s, &a, (int64_t)time(NULL)); /* an SA added or updated just now: its timer restarted */
    } else {
        /* Not a failure of every query (issue 14 item 2): an SA of another family serves no socket; one whose
         * identity was read is kept as unreadable, so a flow it could serve is never called encrypted. */
        ss_sa id;
        if (len < sizeof(struct xfrm_usersa_info) || (a.family != AF_INET && a.family != AF_INET6)) {
            explicit_bzero(&a, sizeof(a));
            c->s->sa_unkept++; /* counted by the kernel (state_num): so by the cross-check */
            return 0;
        }
        memset(&id, 0, sizeof(id));
        id.family = a.family;
        id.proto = a.proto;
        id.spi = a.spi;
        id.mark_v = a.mark_v; /* as far as they were read: sa_apply re-dumps when a notification may be */
        id.mark_m = a.mark_m; /* about this SA and sa_same_id cannot tell (sa_unreadable_twin) */
        id.if_id = a.if_id;
        memcpy(id.daddr, a.daddr, sizeof(id.daddr));
        id.unreadable = 1;
        explicit_bzero(&a, sizeof(a));
        a = id;
    }
    if (grow((void **)&c->s->sas, &c->s->sacap, c->s->nsas + 1, sizeof(a)) != 0) {
        secsock_error_set(c->err, SECSOCK_ERR_NOMEM, ENOMEM, 0, "XFRM_MSG_GETSA", "out of memory for SAs");
        return -1;
    }
    c->s->sas[c->s->nsas++] = a;
    c->s->sa_live++;
    return 0;
}

uint64_t g_dump_count;
uint64_t g_netns_switches;

/* A request about g's namespace: on its request socket when it has one (whichever namespace the thread is in),
 * else on a socket of its own (nl_request: the thread must be in the namespace). */
static int xfrm_request(uint16_t type, uint16_t flags, const void *body, size_t blen, ss_nl_fn fn, void *ctx,
                        const char *call, secsock_error *err)
{
    if (g.cur.req_fd >= 0) {
        return nl_request_on(g.cur.req_fd, g.cur.req_pid, NETLINK_XFRM, type, flags, body, blen, fn, ctx, call, err);
    }
    return nl_request(NETLINK_XFRM, type, flags, body, blen, fn, ctx, call, err);
}

/* Dump every policy into a fresh snapshot part; on failure s is left empty and err is set. */
int dump_policies(ss_snap *s, secsock_error *err)
{
    int attempt, r = -1;

    /* Before counting a dump that will not be made. */
    if (g.cur.req_fd < 0 && thread_ns_ok("XFRM_MSG_GETPOLICY", err) != 0) {
        snap_free_policies(s);
        return -1;
    }
    for (attempt = 0; attempt < SS_DUMP_RETRIES; attempt++) {
        dump_ctx c = {s, err};
        snap_free_policies(s);
        s->pol_unkept[0] = s->pol_unkept[1] = 0;
        __atomic_add_fetch(&g_dump_count, 1, __ATOMIC_RELAXED);
        r = xfrm_request(XFRM_MSG_GETPOLICY, NLM_F_DUMP, NULL, 0, on_policy, &c, "XFRM_MSG_GETPOLICY", err);
        if (r != -3) {
            break;
        }
    }
    if (r == 0) {
        if (snap_index_policies(s) != 0) {
            secsock_error_set(err, SECSOCK_ERR_NOMEM, ENOMEM, 0, "XFRM_MSG_GETPOLICY", "out of memory for the index");
            r = -1;
        }
    }
    if (r != 0) {
        snap_free_policies(s);
        return -1;
    }
    return 0;
}

int dump_sas(ss_snap *s, secsock_error *err)
{
    int attempt, r = -1;
    ss_sa *dying = NULL; /* what notifications said is dying, which the dump cannot show (sa_save_dying) */
    size_t ndying = 0;

    /* Before counting a dump that will not be made. */
    if (g.cur.req_fd < 0 && thread_ns_ok("XFRM_MSG_GETSA", err) != 0) {
        snap_free_sas(s);
        return -1;
    }
    if (sa_save_dying(s, &dying, &ndying) != 0) {
        secsock_error_set(err, SECSOCK_ERR_NOMEM, ENOMEM, 0, "XFRM_MSG_GETSA", "out of memory for the SA table");
        snap_free_sas(s);
        return -1;
    }
    for (attempt = 0; attempt < SS_DUMP_RETRIES; attempt++) {
        dump_ctx c = {s, err};
        snap_free_sas(s);
        s->sa_unkept = 0;
        __atomic_add_fetch(&g_dump_count, 1, __ATOMIC_RELAXED);
        r = xfrm_request(XFRM_MSG_GETSA, NLM_F_DUMP, NULL, 0, on_sa, &c, "XFRM_MSG_GETSA", err);
        if (r != -3) {
            break;
        }
    }
    if (r == 0 && snap_index_sas(s) != 0) {
        secsock_error_set(err, SECSOCK_ERR_NOMEM, ENOMEM, 0, "XFRM_MSG_GETSA", "out of memory for the SA index");
        r = -1;
    }
    if (r == 0) {
        sa_restore_dying(s, dying, ndying);
    }
    free(dying);
    if (r != 0) {
        snap_free_sas(s);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------------------ */
/* Process state: the snapshot and the notification socket that keeps it fresh.                           */
/*
 * Freshness: a netlink socket subscribed to XFRMNLGRP_POLICY, XFRMNLGRP_SA, XFRMNLGRP_EXPIRE and
 * XFRMNLGRP_MIGRATE is opened before the first dump. The kernel queues a notification on it before the
 * command that made a change returns, so each query first drains it without blocking (an epoll instance
 * watching it answers "nothing queued" in half the time poll takes: issue 5): a policy message marks
 * the policy table stale, an SA/expire message the SA table, anything else (or ENOBUFS: the queue overran and
 * messages were lost) both. A stale table is dumped again before the query is answered; a table is marked
 * fresh only by a complete dump. Changes made during a dump are queued too, so the next query sees them.
 *
 * Lost notifications (issue 14 item 11): the kernel's senders (xfrm_send_policy_notify,
 * xfrm_send_state_notify) allocate with GFP_ATOMIC and drop the message silently when that fails, with no
 * overrun to tell us; and an offload device going away deletes its SAs and policies (xfrm_dev_state_flush,
 * xfrm_dev_policy_flush) without any message. Two bounds catch what the socket cannot:
 *   - the count cross-check: at most once per SS_XCHECK_INTERVAL_MS, a query asks the kernel for its SPD and
 *     SAD counts (XFRM_MSG_GETSPDINFO: in and out policies, per-socket ones apart as the dump leaves them out;
 *     XFRM_MSG_GETSADINFO: every SA the dump returns) and dumps again a table whose count differs from the
 *     snapshot's by the same amount at two checks in a row. One is not enough: the kernel bumps a count before
 *     it notifies (xfrm_policy_insert, xfrm_state_add), so another process's change can fall between the count
 *     reply and our drain; and IKE daemons change the SA count with no message we receive (XFRM_MSG_ALLOCSPI
 *     and xfrm_state_find add larval SAs; xfrm_state_add deletes an acquire's larval SA silently when the real
 *     one arrives: sa_apply mirrors that). The snapshot's counts are kept as it changes (ss_snap.pol_kept,
 *     sa_live), so the check costs two small requests and no walk. A lost add or delete, or a silent device
 *     flush, is corrected at the second check that sees it, and in any case by the maximum age.
 *   - the maximum age: a table dumped more than SS_SNAPSHOT_MAX_AGE_MS ago is dumped again, whatever the
 *     counts. That bounds a lost update that leaves the counts equal (UPDPOLICY, UPDSA, a soft expiry).
 *     30 s: one dump per 30 s is under 0.1% of a core at 10,000 policies (a dump takes ~10 ms there), and a
 *     GFP_ATOMIC failure (memory pressure) is rare enough that this is the only cost in practice.
 * The clock is CLOCK_MONOTONIC_COARSE (a vDSO read per query, no system call).
 *
 * Namespaces: a snapshot belongs to the network namespace whose netns inode (/proc/thread-self/ns/net) it was
 * built in, and to the process that built it (a fork child must not share the parent's notification socket).
 * Up to SS_NETNS_KEPT namespaces keep their own snapshot and notification socket (issue 14 item 12), with a
 * request socket made there too (the cross-check and the dumps use it, so a thread outside the namespace needs
 * no setns for them): the current one in g, the others parked in g.parked, where their notifications queue
 * until they are current again and drained. A query for a socket of a kept namespace switches to its snapshot
 * without a dump; past SS_NETNS_KEPT, the least recently used one is closed and freed. After a fork every
 * snapshot is dropped (the child's copies of the descriptors closed). If the namespace cannot be read, every
 * query dumps afresh.
 */

pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t g_kind_lock = PTHREAD_MUTEX_INITIALIZER; /* the socket facts cache (build_flow) */
ss_state g = {.cur = {.notify_fd = -1, .notify_ep = -1, .req_fd = -1, .pol_stale = 1, .sa_stale = 1}};

/*
 * Fork generation: bumped in the child of every fork() (pthread_atfork), so the child reopens its own
 * notification socket and dumps again, without a getpid() per query. The handlers also hold g_lock across
 * the fork, and the socket facts cache's lock after it (nothing takes g_lock while holding that one), so the
 * child never inherits either locked by a thread that does not exist there.
 */
uint64_t g_fork_gen = 1;
pthread_once_t g_atfork_once = PTHREAD_ONCE_INIT;

static void atfork_prepare(void)
{
    pthread_mutex_lock(&g_lock);
    pthread_mutex_lock(&g_kind_lock);
}

static void atfork_parent(void)
{
    pthread_mutex_unlock(&g_kind_lock);
    pthread_mutex_unlock(&g_lock);
}

static void atfork_child(void)
{
    g_fork_gen++;
    pthread_mutex_unlock(&g_kind_lock);
    pthread_mutex_unlock(&g_lock);
}

void atfork_register(void)
{
    (void)pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/*
 * The fast path of a query (the socket is in the snapshot's namespace, by SO_NETNS_COOKIE) does not look at
 * the calling thread's namespace. Whatever opens a socket on the way (a dump, a route lookup, the source
 * address toward the peer) first checks here that the thread is in the snapshot's namespace; if not, it fails
 * with t_ns.wrong set, before changing anything, and the query starts again on the path that enters the
 * socket's namespace.
 */
__thread ss_thread_ns t_ns;

int thread_ns_verify(const char *call, secsock_error *err)
{
    struct stat st;

    if (stat("/proc/thread-self/ns/net", &st) == 0 && st.st_dev == t_ns.dev && st.st_ino == t_ns.ino) {
        t_ns.check = 0; /* checked once per query: the thread does not move during it */
        return 0;
    }
    t_ns.wrong = 1;
    return secsock_error_set(err, SECSOCK_ERR_OS, EAGAIN, 0, call,
                             "the calling thread is not in the socket's network namespace");
}

uint64_t netns_cookie_of(int fd, int *errnum)
{
    uint64_t c = 0;
    socklen_t len = sizeof(c);

    if (getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &c, &len) != 0 || len != sizeof(c)) {
        *errnum = errno;
        return 0;
    }
    *errnum = 0;
    return c;
}

/* Close the notification socket and its epoll instance; the next query opens them again. In a fork child
 * these are the child's own descriptors: the parent's stay open and keep working. */
void notify_close_locked(void)
{
    if (g.cur.notify_ep >= 0) {
        close(g.cur.notify_ep);
        g.cur.notify_ep = -1;
    }
    if (g.cur.notify_fd >= 0) {
        close(g.cur.notify_fd);
        g.cur.notify_fd = -1;
    }
    if (g.cur.req_fd >= 0) {
        close(g.cur.req_fd);
        g.cur.req_fd = -1;
    }
    g.cur.ns_cookie = 0;
}

void state_drop_locked(void)
{
    notify_close_locked();
    snap_free_policies(&g.cur.snap);
    snap_free_sas(&g.cur.snap);
    g.cur.pol_stale = g.cur.sa_stale = 1;
}

int64_t ss_clock_ms(void)
{
    struct timespec ts;

    if (g.clock_frozen) {
        return g.clock_ms;
    }
    if (clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) != 0) {
        (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    }
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Move the current namespace's snapshot out of g (which keeps nothing of it), or back in. */
static void ns_park(ss_nsstate *to)
{
    *to = g.cur;
    to->last_used = g.use_tick;
    memset(&g.cur.snap, 0, sizeof(g.cur.snap));
    g.cur.notify_fd = g.cur.notify_ep = g.cur.req_fd = -1;
    g.cur.ns_cookie = 0;
    g.cur.pol_stale = g.cur.sa_stale = 1;
}

static void ns_unpark(ss_nsstate *from)
{
    g.cur = *from;
    memset(from, 0, sizeof(*from));
    from->notify_fd = from->notify_ep = from->req_fd = -1;
}

static void parked_free(ss_nsstate *e)
{
    if (e->notify_ep >= 0) {
        close(e->notify_ep);
    }
    if (e->notify_fd >= 0) {
        close(e->notify_fd);
    }
    if (e->req_fd >= 0) {
        close(e->req_fd);
    }
    snap_free_policies(&e->snap);
    snap_free_sas(&e->snap);
    memset(e, 0, sizeof(*e));
    e->notify_fd = e->notify_ep = e->req_fd = -1;
}

void parked_drop_all_locked(void)
{
    size_t i;

    for (i = 0; i < sizeof(g.parked) / sizeof(g.parked[0]); i++) {
        if (g.parked[i].ns_ino != 0) {
            parked_free(&g.parked[i]);
        }
    }
}

int snapshot_of_cookie_locked(uint64_t cookie, ss_netns *ns)
{
    size_t i;

    if (g.cur.notify_fd >= 0 && g.cur.ns_cookie == cookie && g.cur.gen == g_fork_gen) {
        ns->known = 1;
        ns->dev = g.cur.ns_dev;
        ns->ino = g.cur.ns_ino;
        return 1;
    }
    for (i = 0; i < sizeof(g.parked) / sizeof(g.parked[0]); i++) {
        const ss_nsstate *e = &g.parked[i];
        if (e->ns_ino != 0 && e->notify_fd >= 0 && e->ns_cookie == cookie && e->gen == g_fork_gen) {
            ns->known = 1;
            ns->dev = e->ns_dev;
            ns->ino = e->ns_ino;
            return 1;
        }
    }
    return 0;
}

/* Would both tables be dumped again at the next query (stale, or past the maximum age)? Then the snapshot is
 * worth nothing, and its notification socket only holds the namespace and queued kernel memory. */
static int snapshot_spent(int pol_stale, int sa_stale, int64_t pol_dumped_at, int64_t sa_dumped_at, int64_t now)
{
    return (pol_stale || now - pol_dumped_at >= SS_SNAPSHOT_MAX_AGE_MS) &&
           (sa_stale || now - sa_dumped_at >= SS_SNAPSHOT_MAX_AGE_MS);
}

int ns_switch_locked(const ss_netns *ns)
{
    size_t i, n = sizeof(g.parked) / sizeof(g.parked[0]);
    ss_nsstate *found = NULL, *slot = NULL;
    int64_t now = ss_clock_ms();

    for (i = 0; i < n; i++) {
        ss_nsstate *e = &g.parked[i];
        if (e->ns_ino != 0 &&
            snapshot_spent(e->pol_stale, e->sa_stale, e->pol_dumped_at, e->sa_dumped_at, now)) {
            parked_free(e); /* a namespace deleted since keeps no veth, SA or queued memory alive here */
        }
    }
    if (g.cur.ns_ino != 0 && g.cur.notify_fd >= 0 &&
        snapshot_spent(g.cur.pol_stale, g.cur.sa_stale, g.cur.pol_dumped_at, g.cur.sa_dumped_at, now)) {
        state_drop_locked(); /* nor is the current one worth parking */
    }
    for (i = 0; i < n; i++) {
        if (g.parked[i].ns_ino != 0 && g.parked[i].ns_dev == ns->dev && g.parked[i].ns_ino == ns->ino) {
            found = &g.parked[i];
        }
    }
    if (g.cur.ns_ino != 0 && g.cur.notify_fd >= 0) {
        if (found != NULL) {
            slot = found; /* swapped below: ns's snapshot comes out as the current one goes in */
        } else {
            for (i = 0; i < n && slot == NULL; i++) {
                if (g.parked[i].ns_ino == 0) {
                    slot = &g.parked[i];
                }
            }
            if (slot == NULL) { /* all taken: evict the least recently used */
                size_t lru = 0;
                for (i = 1; i < n; i++) {
                    if (g.parked[i].last_used < g.parked[lru].last_used) {
                        lru = i;
                    }
                }
                parked_free(&g.parked[lru]);
                slot = &g.parked[lru];
            }
        }
    }
    g.use_tick++;
    if (found != NULL) {
        ss_nsstate next = *found;
        if (slot != NULL) {
            ns_park(slot);
        } else {
            state_drop_locked();
            memset(found, 0, sizeof(*found));
            found->notify_fd = found->notify_ep = found->req_fd = -1;
        }
        ns_unpark(&next);
        return 1;
    }
    if (slot != NULL) {
        ns_park(slot);
    } else {
        state_drop_locked();
    }
    g.cur.pol_dumped_at = g.cur.sa_dumped_at = g.cur.checked_at = 0;
    memset(&g.cur.xdiff, 0, sizeof(g.cur.xdiff));
    return 0;
}

static int open_notify(secsock_error *err)
{
    struct sockaddr_nl a;
    int fd, e, size = g.rcvbuf > 0 ? g.rcvbuf : SS_NOTIFY_RCVBUF;

    if (thread_ns_ok("socket(AF_NETLINK, NETLINK_XFRM)", err) != 0) {
        return -1;
    }
    fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_XFRM);
    if (fd < 0) {
        return xfrm_os_error(err, errno, "socket(AF_NETLINK, NETLINK_XFRM)");
    }
    /* A big queue makes overruns rare; SO_RCVBUFFORCE passes the sysctl cap when we may. */
    if (g.rcvbuf > 0 || setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) != 0) {
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    }
    memset(&a, 0, sizeof(a));
    a.nl_family = AF_NETLINK;
    a.nl_groups = (1u << (XFRMNLGRP_EXPIRE - 1)) | (1u << (XFRMNLGRP_SA - 1)) | (1u << (XFRMNLGRP_POLICY - 1)) |
                  (1u << (XFRMNLGRP_MIGRATE - 1));
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        int e = errno;
        close(fd);
        return xfrm_os_error(err, e, "bind(NETLINK_XFRM groups)");
    }
    g.cur.notify_fd = fd;
    g.cur.ns_cookie = netns_cookie_of(fd, &e); /* 0 (never equal to a socket's) before Linux 5.14 */
    {
        /* Made here, in the namespace, for the cross-check and the dumps: a thread elsewhere that finds the
         * snapshot by its socket's cookie needs no setns (CAP_SYS_ADMIN) for them. Without one (out of
         * descriptors), each request opens its own socket as before. */
        secsock_error ignored;
        g.cur.req_fd = nl_open_request_socket(NETLINK_XFRM, &g.cur.req_pid, &ignored);
    }
    {
        /* Level-triggered, registered before any query reads the tables: the kernel marks the instance
         * ready in the same call that queues a notification (or an overrun error) on the socket, so it
         * answers exactly what poll would. Without one (out of descriptors), drain_notify_locked polls. */
        struct epoll_event ev;
        memset(&ev, 0, sizeof(ev));
        ev.events = EPOLLIN;
        g.cur.notify_ep = epoll_create1(EPOLL_CLOEXEC);
        if (g.cur.notify_ep >= 0 && epoll_ctl(g.cur.notify_ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            close(g.cur.notify_ep);
            g.cur.notify_ep = -1;
        }
    }
    return 0;
}

/*
 * Can a policy carry a security label here? Only an LSM that implements the xfrm hooks keeps one
 * (security_xfrm_policy_alloc: SELinux alone, security/selinux/xfrm.c). Without it the kernel neither refuses
 * nor keeps the label: the hook's default, and the stub without CONFIG_SECURITY_NETWORK_XFRM, return 0 with
 * the policy's security left NULL, so the policy is added unlabeled and no dump shows a label. SELinux is
 * enabled only at boot, and registers selinuxfs then (init_sel_fs), so "selinuxfs" in /proc/filesystems (the
 * kernel's list, the same in every namespace) is read once per process. A file that cannot be read counts as
 * yes: a wrong yes costs only a dump per policy change, a wrong no a label lost (on_notify).
 */
int ss_policy_labels = -1;

int ss_policy_labels_in(const char *filesystems)
{
    FILE *fp = fopen(filesystems, "re");
    char line[128];
    int v;

    if (fp == NULL) {
        return 1;
    }
    v = 0;
    while (fgets(line, sizeof(line), fp) != NULL) {
        const char *name = strrchr(line, '\t'); /* "nodev\tselinuxfs\n" */
        if (name != NULL && strcmp(name + 1, "selinuxfs\n") == 0) {
            v = 1;
            break;
        }
    }
    if (ferror(fp)) {
        v = 1;
    }
    fclose(fp);
    return v;
}

int ss_policy_labels_possible(void)
{
    int v = __atomic_load_n(&ss_policy_labels, __ATOMIC_RELAXED);
    if (v < 0) {
        v = ss_policy_labels_in("/proc/filesystems");
        __atomic_store_n(&ss_policy_labels, v, __ATOMIC_RELAXED);
    }
    return v;
}

int on_notify(void *vctx, uint16_t type, uint16_t flags, const void *payload, size_t len)
{
    (void)vctx;
    (void)flags;
    if (g.drop_notify > 0) {
        g.drop_notify--; /* test hook: as if the kernel's GFP_ATOMIC allocation had failed */
        return 0;
    }
    switch (type) {
    case XFRM_MSG_NEWPOLICY:
    case XFRM_MSG_DELPOLICY:
    case XFRM_MSG_UPDPOLICY:
        /* Applied in place as SAs are (the same replay argument holds: each message carries the policy's
         * whole new state or its removal, in order). Each costs a move of the array: past a few in one
         * drain, one dump is cheaper. But not its label: xfrm_notify_policy writes the policy, its templates,
         * type, mark and if_id, never XFRMA_SEC_CTX (a dump's dump_one_policy does). Where a label can exist
         * (ss_policy_labels_possible) an add or update could store a labeled policy as unlabeled, so the
         * table is dumped again instead. A delete is still applied: pol_apply removes by index and direction,
         * and the message's XFRMA_POLICY carries the deleted policy's own index even when it was deleted by
         * selector and label (byid 0, xfrm_policy_bysel_ctx), so the other of two policies that differ only
         * in their label stays. */
        if (!g.cur.pol_stale) {
            ss_policy p;
            const char *why;
            int action;
            if (g.pol_applied >= SS_POL_APPLY_MAX ||
                ss_parse_policy_notify(type, payload, len, &p, &action, &why) != SS_PARSE_OK ||
                (action == SS_POL_UPSERT && ss_policy_labels_possible()) ||
                pol_apply(&g.cur.snap, action, &p) != 0) {
                g.cur.pol_stale = 1;
            } else if (action != SS_POL_NONE) {
                g.pol_applied++;
                g.pol_updates++;
            } else if (p.dir == XFRM_POLICY_IN || p.dir == XFRM_POLICY_OUT) {
                g.cur.pol_stale = 1; /* a record the snapshot does not keep but counts (pol_unkept): dump */
            }
        }
        break;
    case XFRM_MSG_POLEXPIRE: /* a hard expiry deletes the policy without a DELPOLICY */
    case XFRM_MSG_FLUSHPOLICY:
        g.cur.pol_stale = 1;
        break;
    case XFRM_MSG_NEWSA:
    case XFRM_MSG_DELSA:
    case XFRM_MSG_UPDSA:
    case XFRM_MSG_EXPIRE:
    case XFRM_MSG_FLUSHSA:
        /* SAs come and go with every rekey: apply the change in place. Each message carries the SA's whole
         * new state (or its removal), so replaying what was queued since the subscription on top of a dump
         * converges to the kernel's table whatever the dump already held. Any doubt means a new dump. */
        {
            int r = sa_notify_apply(&g.cur.snap, g.cur.sa_stale, type, payload, len);
            if (r < 0) {
                g.cur.sa_stale = 1;
            } else if (r > 0) {
                g.sa_updates++;
            }
        }
        break;
    default:
        g.cur.pol_stale = g.cur.sa_stale = 1;
    }
    return 0;
}

/* Read every queued notification; never blocks. Any doubt marks both tables stale. The buffer is static
 * (g_lock guards it): most queries find nothing queued, and should not pay for a 64 KiB malloc to learn it. */
static uint8_t g_notify_buf[SS_NL_BUF];

/* Is anything queued on the notification socket (or an error, such as ENOBUFS)? Most queries find nothing:
 * epoll (or poll) answers that more cheaply than a recvmsg. A lost notification (ENOBUFS) is a socket error,
 * which both report (EPOLLERR, POLLERR). 0 only when nothing is. */
static int notify_queued_locked(void)
{
    int r;

    do {
        if (g.cur.notify_ep >= 0) {
            struct epoll_event ev;
            r = epoll_wait(g.cur.notify_ep, &ev, 1, 0);
        } else {
            struct pollfd pfd = {g.cur.notify_fd, POLLIN, 0};
            r = poll(&pfd, 1, 0);
        }
    } while (r < 0 && errno == EINTR);
    return r != 0;
}

void drain_notify_locked(void)
{
    uint8_t *buf = g_notify_buf;

    if (g.cur.notify_fd < 0 || !notify_queued_locked()) {
        return;
    }
    g.pol_applied = 0;
    for (;;) {
        struct sockaddr_nl from;
        struct iovec iov = {buf, SS_NL_BUF};
        struct msghdr msg;
        const char *why;
        ssize_t n;

        memset(&msg, 0, sizeof(msg));
        msg.msg_name = &from;
        msg.msg_namelen = sizeof(from);
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        n = recvmsg(g.cur.notify_fd, &msg, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                break;
            }
            g.cur.pol_stale = g.cur.sa_stale = 1;
            if (errno == ENOBUFS) {
                g.overruns++; /* messages were lost: only a full dump can be trusted now */
                g.cur.snap.seen_all_at = (int64_t)time(NULL); /* and an SA update among them (sa_note_seen) */
                continue;
            }
            notify_close_locked(); /* an unexpected error: reopen on the next query */
            break;
        }
        if ((msg.msg_flags & MSG_TRUNC) || n == 0) {
            g.cur.pol_stale = g.cur.sa_stale = 1;
            g.cur.snap.seen_all_at = (int64_t)time(NULL);
            explicit_bzero(buf, (size_t)n); /* a truncated SA notification still holds its key (item 10) */
            continue;
        }
        if (ss_nl_walk(buf, (size_t)n, 0, 0, on_notify, NULL, &why) != 0) {
            g.cur.pol_stale = g.cur.sa_stale = 1;
        }
        explicit_bzero(buf, (size_t)n);
    }
    if (g.pol_applied > 0 && !g.cur.pol_stale && snap_index_policies_sorted(&g.cur.snap, 1) != 0) {
        g.cur.pol_stale = 1;
    }
    g.pol_applied = 0;
}

/* The cross-check's replies: the kernel's counts, or -1 where a reply did not carry them. */
typedef struct {
    int64_t in, out, sas;
} ss_counts;

static int on_spdinfo(void *vctx, uint16_t type, uint16_t flags, const void *payload, size_t len)
{
    ss_counts *c = vctx;
    attr_iter it;
    uint16_t at;
    const uint8_t *data;
    size_t dlen;
    int r;

    (void)flags;
    if ((type != XFRM_MSG_NEWSPDINFO && type != XFRM_MSG_NEWSADINFO) || len < sizeof(uint32_t)) {
        return 0;
    }
    it.p = (const uint8_t *)payload + NLMSG_ALIGN(sizeof(uint32_t));
    it.left = len > NLMSG_ALIGN(sizeof(uint32_t)) ? len - NLMSG_ALIGN(sizeof(uint32_t)) : 0;
    while ((r = attr_next(&it, &at, &data, &dlen)) > 0) {
        if (type == XFRM_MSG_NEWSPDINFO && at == XFRMA_SPD_INFO && dlen >= sizeof(struct xfrmu_spdinfo)) {
            struct xfrmu_spdinfo si;
            memcpy(&si, data, sizeof(si));
            c->in = si.incnt; /* main and sub policies; per-socket ones are apart (inscnt), as in the dump */
            c->out = si.outcnt;
        } else if (type == XFRM_MSG_NEWSADINFO && at == XFRMA_SAD_CNT && dlen >= sizeof(uint32_t)) {
            uint32_t n;
            memcpy(&n, data, sizeof(n));
            c->sas = n; /* net->xfrm.state_num: every SA the dump returns, larval ones included */
        }
    }
    return 0;
}

/* In/out policies and SAs the snapshot stands for: what it keeps and what its dump saw but skipped. O(1): the
 * kept ones are counted as they change (ss_snap.pol_kept, sa_live; ss_debug_counts_agree walks them). */
static void snapshot_counts(const ss_snap *s, ss_counts *c)
{
    c->in = (int64_t)s->pol_unkept[XFRM_POLICY_IN] + (int64_t)s->pol_kept[XFRM_POLICY_IN];
    c->out = (int64_t)s->pol_unkept[XFRM_POLICY_OUT] + (int64_t)s->pol_kept[XFRM_POLICY_OUT];
    c->sas = (int64_t)s->sa_unkept + (int64_t)s->sa_live;
}

/*
 * The freshness bounds of a lost notification (the comment above g): a table past its maximum age is marked
 * stale; once per interval the kernel's counts are compared with the snapshot's. -1 only when the thread
 * must first enter the socket's namespace (t_ns.wrong); any other failure marks the tables stale, and the
 * dump that follows answers or says what is wrong.
 */
static void check_age_locked(int64_t now)
{
    if (!g.cur.pol_stale && now - g.cur.pol_dumped_at >= SS_SNAPSHOT_MAX_AGE_MS) {
        g.cur.pol_stale = 1;
    }
    if (!g.cur.sa_stale && now - g.cur.sa_dumped_at >= SS_SNAPSHOT_MAX_AGE_MS) {
        g.cur.sa_stale = 1;
    }
    if (!g.cur.sa_stale && g.cur.snap.recheck_at != 0 && now >= g.cur.snap.recheck_at) {
        /* A time limit read as maybe acted on is sure by now (ss_sa_settle): read it again to settle the answer
         * (the timer's expire message settles it too, but only if it came after our subscription). */
        g.cur.sa_stale = 1;
    }
}

static int check_fresh_locked(int64_t now, secsock_error *err)
{
    ss_counts k = {-1, -1, -1}, mine;
    uint32_t flags = 0xffffffffu; /* the request body: the kernel ignores its value */
    int stale_before;

    check_age_locked(now);
    if ((g.cur.pol_stale && g.cur.sa_stale) || now - g.cur.checked_at < SS_XCHECK_INTERVAL_MS) {
        return 0;
    }
    if ((!g.cur.pol_stale && xfrm_request(XFRM_MSG_GETSPDINFO, NLM_F_ACK, &flags, sizeof(flags), on_spdinfo, &k,
                                      "XFRM_MSG_GETSPDINFO", err) != 0) ||
        (!g.cur.sa_stale && xfrm_request(XFRM_MSG_GETSADINFO, NLM_F_ACK, &flags, sizeof(flags), on_spdinfo, &k,
                                     "XFRM_MSG_GETSADINFO", err) != 0)) {
        if (t_ns.wrong) {
            return -1;
        }
        secsock_error_clear(err);
        g.cur.pol_stale = g.cur.sa_stale = 1;
        return 0;
    }
    g.cur.checked_at = now;
    /* Apply what is queued now: most changes made before the counts were read are announced by now. Not all
     * (a change counted but not yet announced, a larval SA never announced): a difference makes a dump only
     * when the next check finds it again. */
    drain_notify_locked();
    snapshot_counts(&g.cur.snap, &mine);
    stale_before = g.cur.pol_stale + g.cur.sa_stale;
    if (!g.cur.pol_stale) {
        int64_t din = k.in - mine.in, dout = k.out - mine.out;
        if (din == 0 && dout == 0) {
            g.cur.xdiff.pol_set = 0;
        } else if (g.cur.xdiff.pol_set && g.cur.xdiff.in == din && g.cur.xdiff.out == dout) {
            g.cur.pol_stale = 1; /* the same difference a second apart: no change in flight explains it */
        } else {
            g.cur.xdiff.pol_set = 1;
            g.cur.xdiff.in = din;
            g.cur.xdiff.out = dout;
        }
    }
    if (!g.cur.sa_stale) {
        int64_t dsas = k.sas - mine.sas;
        if (dsas == 0) {
            g.cur.xdiff.sa_set = 0;
        } else if (g.cur.xdiff.sa_set && g.cur.xdiff.sas == dsas) {
            g.cur.sa_stale = 1;
        } else {
            g.cur.xdiff.sa_set = 1;
            g.cur.xdiff.sas = dsas;
        }
    }
    g.xcheck_reloads += (uint64_t)(g.cur.pol_stale + g.cur.sa_stale - stale_before);
    return 0;
}

/* Is the calling thread in the snapshot's namespace (so may open sockets for it)? Asks without failing the
 * query: t_ns.wrong is left as it was. */
static int thread_in_snapshot_ns(void)
{
    secsock_error scratch;
    int wrong = t_ns.wrong;

    if (thread_ns_ok("", &scratch) == 0) {
        return 1;
    }
    t_ns.wrong = wrong;
    return 0;
}

/*
 * Bring the snapshot up to date for the network namespace ns, which the calling thread is in (query_now sees
 * to it). Called with g_lock held.
 */
/*
 * refresh_locked for secsock_query_at_once: 0 when it would do nothing but look at the queue, finding it empty
 * (the snapshot is this namespace's and whole, within its maximum age and its cross-check interval, no
 * settling read due, nothing queued); else refused, before anything is changed but what check_age_locked
 * marks (as refresh_locked would).
 */
static int refresh_at_once_locked(const ss_netns *ns, int64_t now, secsock_error *err)
{
    if (g.cur.gen != g_fork_gen || !ns->known || ns->dev != g.cur.ns_dev || ns->ino != g.cur.ns_ino ||
        g.cur.notify_fd < 0) {
        return ss_may_wait(err);
    }
    check_age_locked(now);
    if (g.cur.pol_stale || g.cur.sa_stale || now - g.cur.checked_at >= SS_XCHECK_INTERVAL_MS ||
        notify_queued_locked()) {
        return ss_may_wait(err);
    }
    return 0;
}

int refresh_locked(const ss_netns *ns, int64_t *now_out, secsock_error *err)
{
    uint64_t gen = g_fork_gen;
    int dumped = 0;
    int64_t now = ss_clock_ms(); /* the one clock read of a query that dumps nothing (issue 14, speed) */

    if (t_ns.at_once) {
        *now_out = now;
        return refresh_at_once_locked(ns, now, err);
    }
    if (g.cur.gen != gen) {
        /* After a fork the descriptors are the child's copies (the parent still reads its own): close them. */
        parked_drop_all_locked();
        state_drop_locked();
        g.cur.ns_dev = 0;
        g.cur.ns_ino = 0;
        g.cur.gen = gen;
    }
    if (!ns->known || ns->dev != g.cur.ns_dev || ns->ino != g.cur.ns_ino) {
        int kept = 0;
        if (ns->known) {
            int first = g.cur.ns_ino == 0;
            kept = ns_switch_locked(ns);
            if (!kept && !first) {
                __atomic_add_fetch(&g_netns_switches, 1, __ATOMIC_RELAXED); /* a snapshot built anew */
            }
        } else {
            state_drop_locked();
        }
        if (!kept) {
            g.cur.gen = gen;
            g.cur.ns_dev = ns->known ? ns->dev : 0;
            g.cur.ns_ino = ns->known ? ns->ino : 0;
        }
    }
    if (ns->known && g.cur.notify_fd >= 0) {
        check_age_locked(now);
        if (g.cur.pol_stale && g.cur.sa_stale && thread_in_snapshot_ns()) {
            /* Whatever is queued (up to the socket's buffer, after a long time parked) could only mark the
             * tables stale again: drop it with the socket rather than read it, and dump under a new one. A
             * thread elsewhere (which may not be able to enter) drains it and dumps on the request socket. */
            notify_close_locked();
        }
    }
    if (ns->known && g.cur.notify_fd < 0) {
        g.cur.pol_stale = g.cur.sa_stale = 1;
        if (open_notify(err) != 0) {
            return -1;
        }
    }
    if (!ns->known) {
        g.cur.pol_stale = g.cur.sa_stale = 1; /* no way to tell namespaces apart: never trust a cached answer */
    }
    drain_notify_locked();
    if (ns->known && check_fresh_locked(now, err) != 0) {
        return -1;
    }
    if (g.cur.pol_stale) {
        if (dump_policies(&g.cur.snap, err) != 0) {
            return -1;
        }
        g.cur.pol_stale = 0;
        g.cur.pol_dumped_at = now = ss_clock_ms();
        g.cur.xdiff.pol_set = 0;
        dumped++;
    }
    if (g.cur.sa_stale) {
        if (dump_sas(&g.cur.snap, err) != 0) {
            return -1;
        }
        g.cur.sa_stale = 0;
        g.cur.sa_dumped_at = now = ss_clock_ms();
        g.cur.xdiff.sa_set = 0;
        dumped++;
    }
    if (dumped == 2) {
        g.cur.checked_at = g.cur.sa_dumped_at; /* both tables as fresh as a cross-check could make them */
    }
    if (!ns->known) {
        g.cur.pol_stale = g.cur.sa_stale = 1;
    }
    *now_out = now;
    return 0;
}
