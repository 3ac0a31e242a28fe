/* The per-process snapshot: its dumps, the notification socket keeping it fresh, its namespace and fork state. */
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
        return 0;
    }
    if (r != SS_PARSE_OK) {
        /* One record this backend cannot read must not fail every query (issue 14 item 2): with a readable
         * in/out selector it is kept, so only a flow it selects gets an error (lookup_policy); without one
         * no socket's flow can meet it. */
        if (len < sizeof(struct xfrm_userpolicy_info) || (p.dir != XFRM_POLICY_IN && p.dir != XFRM_POLICY_OUT) ||
            !sel_valid(&p.sel, 0)) {
            return 0;
        }
        memset(p.tmpl, 0, sizeof(p.tmpl));
        p.ntmpl = 0;
        /* In the SUB bucket, which lookup_policy consults first: whatever its real type, a flow it selects
         * gets the error before any MAIN policy could answer for it. */
        p.type = XFRM_POLICY_TYPE_SUB;
        p.unreadable = 1;
    }
    if (grow((void **)&c->s->pols, &c->s->cap, c->s->npols + 1, sizeof(p)) != 0) {
        secsock_error_set(c->err, SECSOCK_ERR_NOMEM, ENOMEM, 0, "XFRM_MSG_GETPOLICY", "out of memory for policies");
        return -1;
    }
    c->s->pols[c->s->npols++] = p;
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
    if (ss_parse_sa(payload, len, &a, &why) != SS_PARSE_OK) {
        /* Not a failure of every query (issue 14 item 2): an SA of another family serves no socket; one whose
         * identity was read is kept as unreadable, so a flow it could serve is never called encrypted. */
        ss_sa id;
        if (len < sizeof(struct xfrm_usersa_info) || (a.family != AF_INET && a.family != AF_INET6)) {
            explicit_bzero(&a, sizeof(a));
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
    return 0;
}

uint64_t g_dump_count;
uint64_t g_netns_switches;

/* Dump every policy into a fresh snapshot part; on failure s is left empty and err is set. */
int dump_policies(ss_snap *s, secsock_error *err)
{
    int attempt, r = -1;

    for (attempt = 0; attempt < SS_DUMP_RETRIES; attempt++) {
        dump_ctx c = {s, err};
        snap_free_policies(s);
        __atomic_add_fetch(&g_dump_count, 1, __ATOMIC_RELAXED);
        r = nl_request(NETLINK_XFRM, XFRM_MSG_GETPOLICY, NLM_F_DUMP, NULL, 0, on_policy, &c,
                       "XFRM_MSG_GETPOLICY", err);
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

    for (attempt = 0; attempt < SS_DUMP_RETRIES; attempt++) {
        dump_ctx c = {s, err};
        snap_free_sas(s);
        __atomic_add_fetch(&g_dump_count, 1, __ATOMIC_RELAXED);
        r = nl_request(NETLINK_XFRM, XFRM_MSG_GETSA, NLM_F_DUMP, NULL, 0, on_sa, &c, "XFRM_MSG_GETSA", err);
        if (r != -3) {
            break;
        }
    }
    if (r == 0 && snap_index_sas(s) != 0) {
        secsock_error_set(err, SECSOCK_ERR_NOMEM, ENOMEM, 0, "XFRM_MSG_GETSA", "out of memory for the SA index");
        r = -1;
    }
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
 * Namespaces: the snapshot belongs to the network namespace whose netns inode (/proc/thread-self/ns/net)
 * it was built in, and to the process that built it (a fork child must not share the parent's
 * notification socket). When the calling thread's namespace or the pid differs, the notification socket is
 * reopened in the caller's namespace and both tables are dumped again. If the namespace cannot be read, every
 * query dumps afresh.
 */

pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t g_kind_lock = PTHREAD_MUTEX_INITIALIZER; /* the socket facts cache (build_flow) */
ss_state g = {0, -1, -1, 0, 0, 0, 0, 1, 1, {0}, 0, 0, 0, 0, 0};

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
 * with t_ns_wrong set, before changing anything, and the query starts again on the path that enters the
 * socket's namespace.
 */
__thread int t_ns_check, t_ns_wrong;
__thread dev_t t_ns_dev;
__thread ino_t t_ns_ino;

int thread_ns_verify(const char *call, secsock_error *err)
{
    struct stat st;

    if (stat("/proc/thread-self/ns/net", &st) == 0 && st.st_dev == t_ns_dev && st.st_ino == t_ns_ino) {
        t_ns_check = 0; /* checked once per query: the thread does not move during it */
        return 0;
    }
    t_ns_wrong = 1;
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
    if (g.notify_ep >= 0) {
        close(g.notify_ep);
        g.notify_ep = -1;
    }
    if (g.notify_fd >= 0) {
        close(g.notify_fd);
        g.notify_fd = -1;
    }
    g.ns_cookie = 0;
}

void state_drop_locked(void)
{
    notify_close_locked();
    snap_free_policies(&g.snap);
    snap_free_sas(&g.snap);
    g.pol_stale = g.sa_stale = 1;
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
    g.notify_fd = fd;
    g.ns_cookie = netns_cookie_of(fd, &e); /* 0 (never equal to a socket's) before Linux 5.14 */
    {
        /* Level-triggered, registered before any query reads the tables: the kernel marks the instance
         * ready in the same call that queues a notification (or an overrun error) on the socket, so it
         * answers exactly what poll would. Without one (out of descriptors), drain_notify_locked polls. */
        struct epoll_event ev;
        memset(&ev, 0, sizeof(ev));
        ev.events = EPOLLIN;
        g.notify_ep = epoll_create1(EPOLL_CLOEXEC);
        if (g.notify_ep >= 0 && epoll_ctl(g.notify_ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            close(g.notify_ep);
            g.notify_ep = -1;
        }
    }
    return 0;
}

int on_notify(void *vctx, uint16_t type, uint16_t flags, const void *payload, size_t len)
{
    (void)vctx;
    (void)flags;
    switch (type) {
    case XFRM_MSG_NEWPOLICY:
    case XFRM_MSG_DELPOLICY:
    case XFRM_MSG_UPDPOLICY:
        /* Applied in place as SAs are (the same replay argument holds: each message carries the policy's
         * whole new state or its removal, in order). Each costs a move of the array: past a few in one
         * drain, one dump is cheaper. */
        if (!g.pol_stale) {
            ss_policy p;
            const char *why;
            int action;
            if (g.pol_applied >= SS_POL_APPLY_MAX ||
                ss_parse_policy_notify(type, payload, len, &p, &action, &why) != SS_PARSE_OK ||
                pol_apply(&g.snap, action, &p) != 0) {
                g.pol_stale = 1;
            } else if (action != SS_POL_NONE) {
                g.pol_applied++;
                g.pol_updates++;
            }
        }
        break;
    case XFRM_MSG_POLEXPIRE: /* a hard expiry deletes the policy without a DELPOLICY */
    case XFRM_MSG_FLUSHPOLICY:
        g.pol_stale = 1;
        break;
    case XFRM_MSG_NEWSA:
    case XFRM_MSG_DELSA:
    case XFRM_MSG_UPDSA:
    case XFRM_MSG_EXPIRE:
    case XFRM_MSG_FLUSHSA:
        /* SAs come and go with every rekey: apply the change in place. Each message carries the SA's whole
         * new state (or its removal), so replaying what was queued since the subscription on top of a dump
         * converges to the kernel's table whatever the dump already held. Any doubt means a new dump. */
        if (!g.sa_stale) {
            ss_sa a;
            const char *why;
            int action;
            if (ss_parse_sa_notify(type, payload, len, &a, &action, &why) != SS_PARSE_OK ||
                sa_apply(&g.snap, action, &a) != 0) {
                g.sa_stale = 1;
            } else {
                g.sa_updates++;
            }
            explicit_bzero(&a, sizeof(a));
        }
        break;
    default:
        g.pol_stale = g.sa_stale = 1;
    }
    return 0;
}

/* Read every queued notification; never blocks. Any doubt marks both tables stale. The buffer is static
 * (g_lock guards it): most queries find nothing queued, and should not pay for a 64 KiB malloc to learn it. */
static uint8_t g_notify_buf[SS_NL_BUF];

void drain_notify_locked(void)
{
    uint8_t *buf = g_notify_buf;

    if (g.notify_fd < 0) {
        return;
    }
    {
        /* Most queries find nothing queued: epoll (or poll) answers that more cheaply than a recvmsg. A lost
         * notification (ENOBUFS) is a socket error, which both report (EPOLLERR, POLLERR). */
        int r;
        do {
            if (g.notify_ep >= 0) {
                struct epoll_event ev;
                r = epoll_wait(g.notify_ep, &ev, 1, 0);
            } else {
                struct pollfd pfd = {g.notify_fd, POLLIN, 0};
                r = poll(&pfd, 1, 0);
            }
        } while (r < 0 && errno == EINTR);
        if (r == 0) {
            return;
        }
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
        n = recvmsg(g.notify_fd, &msg, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                break;
            }
            g.pol_stale = g.sa_stale = 1;
            if (errno == ENOBUFS) {
                g.overruns++; /* messages were lost: only a full dump can be trusted now */
                continue;
            }
            notify_close_locked(); /* an unexpected error: reopen on the next query */
            break;
        }
        if ((msg.msg_flags & MSG_TRUNC) || n == 0) {
            g.pol_stale = g.sa_stale = 1;
            explicit_bzero(buf, (size_t)n); /* a truncated SA notification still holds its key (item 10) */
            continue;
        }
        if (ss_nl_walk(buf, (size_t)n, 0, 0, on_notify, NULL, &why) != 0) {
            g.pol_stale = g.sa_stale = 1;
        }
        explicit_bzero(buf, (size_t)n);
    }
    if (g.pol_applied > 0 && !g.pol_stale && snap_index_policies_sorted(&g.snap, 1) != 0) {
        g.pol_stale = 1;
    }
    g.pol_applied = 0;
}

/*
 * Bring the snapshot up to date for the network namespace ns, which the calling thread is in (query_now sees
 * to it). Called with g_lock held.
 */
int refresh_locked(const ss_netns *ns, secsock_error *err)
{
    uint64_t gen = g_fork_gen;

    if (!ns->known || g.gen != gen || ns->dev != g.ns_dev || ns->ino != g.ns_ino) {
        if (ns->known && g.ns_ino != 0 && (ns->dev != g.ns_dev || ns->ino != g.ns_ino)) {
            __atomic_add_fetch(&g_netns_switches, 1, __ATOMIC_RELAXED); /* not a first open, nor a fork */
        }
        /* After a fork the descriptors are the child's copies: the parent still reads its own. */
        state_drop_locked();
        g.gen = gen;
        g.ns_dev = ns->known ? ns->dev : 0;
        g.ns_ino = ns->known ? ns->ino : 0;
    }
    if (ns->known && g.notify_fd < 0) {
        g.pol_stale = g.sa_stale = 1;
        if (open_notify(err) != 0) {
            return -1;
        }
    }
    if (!ns->known) {
        g.pol_stale = g.sa_stale = 1; /* no way to tell namespaces apart: never trust a cached answer */
    }
    drain_notify_locked();
    if (g.pol_stale) {
        if (dump_policies(&g.snap, err) != 0) {
            return -1;
        }
        g.pol_stale = 0;
    }
    if (g.sa_stale) {
        if (dump_sas(&g.snap, err) != 0) {
            return -1;
        }
        g.sa_stale = 0;
    }
    if (!ns->known) {
        g.pol_stale = g.sa_stale = 1;
    }
    return 0;
}
