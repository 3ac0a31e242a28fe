/* The netlink transport: one request to the kernel, each reply message fed to a callback; errno wording. */
#include "backend_linux.h"

#include <assert.h>

int os_error(secsock_error *err, int errnum, const char *call, const char *what)
{
    char buf[96];
    const char *text = strerror_r(errnum, buf, sizeof(buf));

    return secsock_error_set(err, SECSOCK_ERR_OS, errnum, 0, call, "%s failed: %s", what != NULL ? what : call,
                             text);
}

/* EPERM from XFRM means the caller lacks CAP_NET_ADMIN in its network namespace: say so. */
int xfrm_os_error(secsock_error *err, int errnum, const char *call)
{
    if (errnum == EPERM || errnum == EACCES) {
        return secsock_error_set(err, SECSOCK_ERR_OS, errnum, 0, call,
                                 "reading the kernel's IPsec state (XFRM) needs CAP_NET_ADMIN in the socket's "
                                 "network namespace (%s was refused)",
                                 call);
    }
    return os_error(err, errnum, call, NULL);
}


/* A netlink socket of proto in the calling thread's namespace, bound, with a receive timeout (a reply that
 * never comes must not hang the caller's thread): the descriptor and its port id in *portid, or -1 with err
 * set. */
int nl_open_request_socket(int proto, uint32_t *portid, secsock_error *err)
{
    struct sockaddr_nl local;
    socklen_t alen = sizeof(local);
    struct timeval tv = {5, 0};
    int fd;

    if (ss_may_wait_flow(err) != 0) {
        return -1;
    }
    assert(!t_ns.at_once); /* nothing that waits runs with the caller's lock held (tests build with asserts) */
    fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, proto);
    if (fd < 0) {
        int e = errno;
        return proto == NETLINK_XFRM ? xfrm_os_error(err, e, "socket(AF_NETLINK, NETLINK_XFRM)")
                                     : os_error(err, e, "socket(AF_NETLINK)", NULL);
    }
    memset(&local, 0, sizeof(local));
    local.nl_family = AF_NETLINK;
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (bind(fd, (struct sockaddr *)&local, sizeof(local)) != 0 ||
        getsockname(fd, (struct sockaddr *)&local, &alen) != 0 || alen != sizeof(local)) {
        int e = errno;
        close(fd);
        return os_error(err, e, "bind(AF_NETLINK)", NULL);
    }
    *portid = local.nl_pid;
    return fd;
}

/*
 * Send one request (a dump when flags has NLM_F_DUMP) and feed every reply message to fn. 0, or -1 with err
 * set. The socket lives only for the request, in the calling thread's network namespace.
 */
int nl_request(int proto, uint16_t type, uint16_t flags, const void *body, size_t blen, ss_nl_fn fn,
               void *ctx, const char *call, secsock_error *err)
{
    uint32_t portid;
    int fd, rc;

    if (ss_may_wait_flow(err) != 0 || thread_ns_ok(call, err) != 0) {
        return -1; /* refused before the namespace check, which walks /proc */
    }
    fd = nl_open_request_socket(proto, &portid, err);
    if (fd < 0) {
        return -1;
    }
    rc = nl_request_on(fd, portid, proto, type, flags, body, blen, fn, ctx, call, err);
    close(fd);
    return rc;
}

/* nl_request on an open socket (nl_open_request_socket), which stays open: replies to an earlier request
 * left unread carry another sequence number and are skipped. */
int nl_request_on(int fd, uint32_t portid, int proto, uint16_t type, uint16_t flags, const void *body,
                  size_t blen, ss_nl_fn fn, void *ctx, const char *call, secsock_error *err)
{
    static uint32_t seq_counter;
    struct sockaddr_nl kernel;
    uint8_t *buf = NULL;
    struct nlmsghdr *h;
    size_t reqlen = NLMSG_SPACE(blen), dirty = 0; /* bytes of buf a reply has written */
    uint32_t seq;
    int rc = -1, walk;
    const char *why;

    if (ss_may_wait_flow(err) != 0) {
        return -1; /* a reply is waited for */
    }
    assert(!t_ns.at_once);
    buf = malloc(SS_NL_BUF);
    if (buf == NULL) {
        return secsock_error_set(err, SECSOCK_ERR_NOMEM, ENOMEM, 0, call, "out of memory for a netlink buffer");
    }
    for (;;) { /* what an earlier request left unread (it failed, or timed out and the reply came late) */
        ssize_t n = recv(fd, buf, SS_NL_BUF, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        if ((size_t)n > dirty) {
            dirty = (size_t)n;
        }
    }
    seq = __atomic_add_fetch(&seq_counter, 1, __ATOMIC_RELAXED) ^ (uint32_t)time(NULL);
    if (seq == 0) {
        seq = 1;
    }

    memset(buf, 0, reqlen);
    h = (struct nlmsghdr *)buf;
    h->nlmsg_len = (uint32_t)NLMSG_LENGTH(blen);
    h->nlmsg_type = type;
    h->nlmsg_flags = (uint16_t)(NLM_F_REQUEST | flags);
    h->nlmsg_seq = seq;
    if (blen > 0) {
        memcpy(NLMSG_DATA(h), body, blen);
    }
    memset(&kernel, 0, sizeof(kernel));
    kernel.nl_family = AF_NETLINK;
    if (sendto(fd, buf, h->nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0) {
        proto == NETLINK_XFRM ? xfrm_os_error(err, errno, call) : os_error(err, errno, call, NULL);
        goto out;
    }

    for (;;) {
        struct sockaddr_nl from;
        struct iovec iov = {buf, SS_NL_BUF};
        struct msghdr msg;
        ssize_t n;

        memset(&msg, 0, sizeof(msg));
        msg.msg_name = &from;
        msg.msg_namelen = sizeof(from);
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        n = recvmsg(fd, &msg, 0);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                secsock_error_set(err, SECSOCK_ERR_OS, ETIMEDOUT, 0, call, "the kernel did not answer %s", call);
            } else {
                os_error(err, errno, call, NULL);
            }
            goto out;
        }
        if ((size_t)n > dirty) {
            dirty = (size_t)n;
        }
        if (msg.msg_flags & MSG_TRUNC) {
            secsock_error_set(err, SECSOCK_ERR_OS, EMSGSIZE, 0, call, "a netlink reply to %s was truncated", call);
            goto out;
        }
        if (msg.msg_namelen != sizeof(from) || from.nl_pid != 0) {
            continue; /* only the kernel answers requests */
        }
        walk = ss_nl_walk(buf, (size_t)n, seq, portid, fn, ctx, &why);
        /* Dumps carry key material: do not leave it in freed memory. */
        explicit_bzero(buf, (size_t)n);
        if (walk == 1) {
            rc = 0;
            goto out;
        }
        if (walk == 0) {
            continue;
        }
        if (walk == -1) {
            secsock_error_set(err, SECSOCK_ERR_OS, EBADMSG, 0, call, "malformed netlink reply to %s: %s", call,
                              why);
        } else if (walk == -3) {
            secsock_error_set(err, SECSOCK_ERR_OS, EAGAIN, 0, call, "the kernel's table changed during %s", call);
            rc = -3;
        } else if (walk <= -1000) {
            proto == NETLINK_XFRM ? xfrm_os_error(err, -walk - 1000, call)
                                  : os_error(err, -walk - 1000, call, NULL);
        } /* walk == -2: fn recorded its error */
        goto out;
    }
out:
    /* Every exit, the truncated reply's and the skipped sender's included: dumps carry SA keys (item 10). */
    explicit_bzero(buf, dirty);
    free(buf);
    return rc == -3 ? -3 : rc;
}
