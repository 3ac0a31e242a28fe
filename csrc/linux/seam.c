/* The Linux backend's seam functions (secsock_backend.h) but secsock_socket_kind_of (flow.c): init, query, pending. */
#include "backend_linux.h"

struct secsock_pending {
    int taken;
    secsock_result result;
};

const char *secsock_backend_name(void)
{
    return "linux";
}

int secsock_backend_init(secsock_error *err)
{
    secsock_error_clear(err);
    (void)pthread_once(&g_atfork_once, atfork_register);
    pthread_mutex_lock(&g_lock);
    g.init_count++;
    pthread_mutex_unlock(&g_lock);
    /* Sockets are opened on the first query, so importing the module needs no privilege. */
    return 0;
}

void secsock_backend_fini(void)
{
    pthread_mutex_lock(&g_lock);
    if (g.init_count > 0 && --g.init_count == 0) {
        parked_drop_all_locked();
        state_drop_locked();
        g.cur.gen = 0;
        g.cur.ns_dev = 0;
        g.cur.ns_ino = 0;
    }
    pthread_mutex_unlock(&g_lock);
}

/*
 * Network namespaces. The XFRM state that applies to a socket is its own namespace's, whatever namespace the
 * calling thread is in: SIOCGSKNS names the socket's namespace. When the calling thread is elsewhere, it
 * enters the socket's namespace (setns, this thread only; CAP_SYS_ADMIN) for the query and returns after.
 * A kernel without SIOCGSKNS (before 4.9) gets the calling thread's namespace, as documented.
 */
static int netns_of_fd(int nsfd, ss_netns *ns)
{
    struct stat st;

    if (fstat(nsfd, &st) != 0) {
        return -1;
    }
    ns->known = 1;
    ns->dev = st.st_dev;
    ns->ino = st.st_ino;
    return 0;
}

/* The calling thread's namespace; with nsfd non-NULL also a descriptor of it (to come back to). */
int thread_netns(ss_netns *ns, int *nsfd)
{
    struct stat st;
    int s, fd;

    memset(ns, 0, sizeof(*ns));
    if (nsfd == NULL && stat("/proc/thread-self/ns/net", &st) == 0) {
        ns->known = 1;
        ns->dev = st.st_dev;
        ns->ino = st.st_ino;
        return 0;
    }
    /* Without /proc (or to keep a descriptor): a new socket is born in the thread's namespace. */
    s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) {
        return -1;
    }
    fd = ioctl(s, SIOCGSKNS);
    close(s);
    if (fd < 0 || netns_of_fd(fd, ns) != 0) {
        if (fd >= 0) {
            close(fd);
        }
        memset(ns, 0, sizeof(*ns));
        return -1;
    }
    if (nsfd != NULL) {
        *nsfd = fd;
    } else {
        close(fd);
    }
    return 0;
}

/* The part of a query under g_lock (held by the caller): the snapshot brought up to date, both directions. */
static int query_locked(ss_flow *f, const ss_netns *ns, secsock_result *out, dir_verdict *vo, dir_verdict *vi,
                        secsock_error *err)
{
    int rc;

    f->ns = *ns; /* flow_xfrm_disabled's cache key */
    rc = refresh_locked(ns, &f->now, err);
    if (rc == 0) {
        f->now_read = 1; /* the thread's caches (flow.c) read no clock of their own */
        rc = eval_dir(&g.cur.snap, f, XFRM_POLICY_OUT, &out->outbound, vo, err);
    }
    if (rc == 0) {
        rc = eval_dir(&g.cur.snap, f, XFRM_POLICY_IN, &out->inbound, vi, err);
    }
    if (rc == 0 && f->multipath) {
        multipath_verdict(&g.cur.snap, XFRM_POLICY_OUT, &out->outbound, vo);
        multipath_verdict(&g.cur.snap, XFRM_POLICY_IN, &out->inbound, vi);
    }
    return rc;
}

/* The answer from query_locked's verdicts (after g_lock is released). */
static int query_answer(const ss_flow *f, int rc, const dir_verdict *vo, const dir_verdict *vi, secsock_result *out,
                        secsock_error *err)
{
    if (rc == 0 && f->mark_errno != 0) {
        rc = os_error(err, f->mark_errno, "getsockopt(SO_MARK)", NULL);
    }
    if (rc != 0) {
        return -1;
    }
    out->protocol = SECSOCK_PROTOCOL_IPSEC;
    out->has_ipsec_detail = 1;
    out->reason_out = vo->reason;
    out->reason_in = vi->reason;
    if (vo->protected_ && vi->protected_) {
        out->flags |= SECSOCK_FLAG_SECURED;
        if (vo->encrypted && vi->encrypted) {
            out->flags |= SECSOCK_FLAG_ENCRYPTED;
        }
    }
    return 0;
}

static int query_in_netns(ss_flow *f, const ss_netns *ns, secsock_result *out, secsock_error *err)
{
    dir_verdict vo, vi;
    int rc;

    if (finish_flow(f, err) != 0) {
        return -1;
    }
    if (ss_lock(&g_lock) != 0) {
        return ss_may_wait(err);
    }
    rc = query_locked(f, ns, out, &vo, &vi, err);
    pthread_mutex_unlock(&g_lock);
    return query_answer(f, rc, &vo, &vi, out, err);
}

/*
 * Zero every field of a result but the SA slots, which eval_dir fills only up to each direction's count
 * (fill_sa zeroes a slot before it writes it; nothing reads past count): clearing all eight slots, ~1.7 KB,
 * was a measurable part of a clear answer (issue 14, speed). Error paths still zero the whole result.
 */
static void result_clear(secsock_result *out)
{
    memset(out, 0, offsetof(secsock_result, outbound.sas));
    out->inbound.count = 0;
    out->reason_out = out->reason_in = SECSOCK_REASON_NONE;
}

static int query_now(const secsock_query_request *req, secsock_result *out, secsock_error *err)
{
    ss_flow f;
    ss_netns sock_ns, here;
    int sock_nsfd, home_fd = -1, rc;
    uint64_t cookie;

    result_clear(out);
    if (build_flow(req, &f, err) != 0) {
        return -1;
    }
    /* The socket in a namespace with a kept snapshot (equal netns cookies): answer from it, whichever namespace
     * the calling thread is in; only what must open a socket looks at the thread (thread_ns_ok). */
    cookie = f.ns_cookie;
    if (cookie != 0) {
        ss_flow f0 = f;
        int fast;
        if (ss_lock(&g_lock) != 0) {
            return ss_may_wait(err);
        }
        fast = snapshot_of_cookie_locked(cookie, &sock_ns); /* the current one, or a kept one (item 12) */
        if (fast) {
            t_ns.check = 1;
            t_ns.wrong = 0;
            t_ns.dev = sock_ns.dev;
            t_ns.ino = sock_ns.ino;
        }
        if (fast && !local_is_wildcard(f.local, f.family)) {
            /* A socket bound to an address: finish_flow asks nothing (no source to find), so the query goes on
             * under the lock just taken rather than releasing it and taking it again (issue 14, speed). */
            dir_verdict vo, vi;
            rc = finish_flow(&f, err);
            if (rc == 0) {
                rc = query_locked(&f, &sock_ns, out, &vo, &vi, err);
            }
            pthread_mutex_unlock(&g_lock);
            rc = query_answer(&f, rc, &vo, &vi, out, err);
        } else {
            pthread_mutex_unlock(&g_lock);
            if (fast) {
                rc = query_in_netns(&f, &sock_ns, out, err);
            }
        }
        if (fast) {
            t_ns.check = 0;
            if (rc == 0) {
                return 0;
            }
            memset(out, 0, sizeof(*out));
            if (!t_ns.wrong || t_ns.at_once) {
                return -1; /* at once: entering the namespace is for secsock_query */
            }
            /* The thread is elsewhere and something had to be asked in the socket's namespace: enter it. */
            t_ns.wrong = 0;
            secsock_error_clear(err);
            f = f0;
        }
    }
    /* ENOPROTOOPT (before Linux 5.14), a different namespace, no snapshot yet: SIOCGSKNS as before. */
    if (ss_may_wait(err) != 0) {
        return -1;
    }
    memset(&sock_ns, 0, sizeof(sock_ns));
    sock_nsfd = ioctl(f.sock, SIOCGSKNS);
    if (sock_nsfd < 0) {
        if (errno == EPERM) {
            return xfrm_os_error(err, EPERM, "ioctl(SIOCGSKNS)");
        }
        if (errno != ENOTTY && errno != EINVAL) {
            return os_error(err, errno, "ioctl(SIOCGSKNS)", "finding the socket's network namespace");
        }
    } else if (netns_of_fd(sock_nsfd, &sock_ns) != 0) {
        rc = errno;
        close(sock_nsfd);
        return os_error(err, rc, "fstat", "reading the socket's network namespace");
    }
    (void)thread_netns(&here, NULL);
    if (!sock_ns.known) {
        rc = query_in_netns(&f, &here, out, err); /* old kernel: the thread's namespace */
    } else if (here.known && here.dev == sock_ns.dev && here.ino == sock_ns.ino) {
        rc = query_in_netns(&f, &sock_ns, out, err);
    } else if (thread_netns(&here, &home_fd) != 0) {
        rc = os_error(err, errno, "ioctl(SIOCGSKNS)", "finding the calling thread's network namespace");
    } else if (setns(sock_nsfd, CLONE_NEWNET) != 0) {
        rc = os_error(err, errno, "setns",
                      "the socket belongs to another network namespace than the calling thread; entering it "
                      "(setns, which needs CAP_SYS_ADMIN)");
    } else {
        rc = query_in_netns(&f, &sock_ns, out, err);
        if (setns(home_fd, CLONE_NEWNET) != 0) {
            /* The thread could not go home: say so rather than leave it silently in the socket's namespace. */
            rc = os_error(err, errno, "setns", "returning the calling thread to its network namespace (setns)");
        }
    }
    if (home_fd >= 0) {
        close(home_fd);
    }
    if (sock_nsfd >= 0) {
        close(sock_nsfd);
    }
    if (rc != 0) {
        memset(out, 0, sizeof(*out));
        return -1;
    }
    return 0;
}

secsock_pending *secsock_query_begin(const secsock_query_request *req, secsock_error *err)
{
    secsock_pending *p;

    secsock_error_clear(err);
    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        secsock_error_set(err, SECSOCK_ERR_NOMEM, ENOMEM, 0, "secsock_query_begin", "out of memory");
        return NULL;
    }
    /* Linux answers synchronously: the result is ready when begin returns. */
    if (query_now(req, &p->result, err) != 0) {
        free(p);
        return NULL;
    }
    return p;
}

int secsock_pending_done(secsock_pending *p)
{
    (void)p;
    return 1;
}

int secsock_pending_poll(secsock_pending *p)
{
    (void)p;
    return SECSOCK_POLL_DONE; /* answered when issued */
}

int secsock_pending_wait(secsock_pending *p, int64_t timeout_ms, secsock_error *err)
{
    (void)timeout_ms;
    secsock_error_clear(err);
    if (p == NULL) {
        return secsock_error_set(err, SECSOCK_ERR_ARGUMENT, 0, 0, "pending", "no pending query was given");
    }
    return 1;
}

int secsock_pending_result(secsock_pending *p, secsock_result *out, secsock_error *err)
{
    secsock_error_clear(err);
    if (p == NULL || out == NULL) {
        return secsock_error_set(err, SECSOCK_ERR_ARGUMENT, 0, 0, "pending", "no pending query was given");
    }
    if (p->taken) {
        return secsock_error_set(err, SECSOCK_ERR_ARGUMENT, 0, 0, "pending", "the result was already taken");
    }
    *out = p->result;
    p->taken = 1;
    return 0;
}

int secsock_pending_cancel(secsock_pending *p, secsock_error *err)
{
    (void)p;
    secsock_error_clear(err);
    return 0;
}

uint64_t secsock_pending_event(secsock_pending *p)
{
    (void)p;
    return 0;
}

void secsock_pending_free(secsock_pending *p)
{
    free(p); /* Linux results hold no handles */
}

int secsock_pending_free_or_leak(secsock_pending *p, secsock_error *err)
{
    secsock_error_clear(err);
    secsock_pending_free(p); /* nothing is ever in flight here */
    return 0;
}

/*
 * The steady query, with the caller's lock (the GIL) held: the same query_now, in which whatever may wait
 * refuses (ss_may_wait, ss_lock). What is left is the system calls that read the socket and a zero-timeout
 * epoll_wait, then the snapshot's lookups: a query that finds its snapshot fresh, nothing queued and its
 * cached facts within their second. Anything else (a change to apply, a table to read, a cross-check due, a
 * namespace to enter, a mutex another thread holds, an error) answers 0, having changed nothing the full
 * query would not, and secsock_query (without the lock) answers or says what is wrong.
 *
 * A flow that needs a lookup no cache keeps (ss_may_wait_flow: a wildcard-bound socket's source, a route
 * toward an XFRM interface or a selector's device) would be refused on every query after reading the socket
 * for nothing: its socket is not tried again at once for the thread's next SS_AT_ONCE_SKIP queries of it.
 */
#define SS_AT_ONCE_SKIP 64

int secsock_query_at_once(const secsock_query_request *req, secsock_result *out)
{
    secsock_error err;
    int rc;

    if (out == NULL) {
        return 0;
    }
    if (t_ns.skip_left > 0 && t_ns.skip_fd == req->sock) {
        t_ns.skip_left--;
        return 0;
    }
    secsock_error_clear(&err);
    t_ns.at_once = 1;
    t_ns.at_once_refused = 0;
    t_ns.at_once_flow = 0;
    rc = query_now(req, out, &err);
    t_ns.at_once = 0;
    /* What a refusal left for the full query to set again (query_now's fast path sets them; its slow one not). */
    t_ns.check = 0;
    t_ns.wrong = 0;
    if (t_ns.at_once_flow) {
        t_ns.skip_fd = req->sock;
        t_ns.skip_left = SS_AT_ONCE_SKIP;
    }
    return rc == 0 && !t_ns.at_once_refused;
}

int secsock_query(const secsock_query_request *req, secsock_result *out, secsock_error *err)
{
    secsock_error_clear(err);
    if (out == NULL) {
        return secsock_error_set(err, SECSOCK_ERR_ARGUMENT, 0, 0, "out", "no result buffer was given");
    }
    return query_now(req, out, err);
}

int secsock_token_close(uint64_t handle, secsock_error *err)
{
    (void)handle;
    return secsock_error_set(err, SECSOCK_ERR_UNSUPPORTED, 0, 0, "secsock_token_close",
                             "Linux returns no peer tokens, so there is nothing to close");
}
