/*
 * A small driver for the Linux backend without Python: makes a socket, asks secsock_query about it and prints
 * one JSON line. Used to develop the Linux backend (csrc/linux/) on the host and in the VM, and by tests/linux_c/test_driver.sh.
 *
 *   driver udp-peer  LOCAL_ADDR PEER_ADDR PEER_PORT [MARK]   unconnected UDP bound to LOCAL_ADDR:0, peer given
 *   driver udp-conn  PEER_ADDR PEER_PORT [MARK]              connected UDP (connect() sends nothing)
 *   driver tcp-conn  PEER_ADDR PEER_PORT                     TCP client
 *   driver tcp-serve ADDR PORT                               accept one TCP client, query the accepted socket
 *   driver udp-serve ADDR PORT                               receive one datagram, query with its sender as peer
 *   driver send-udp  PEER_ADDR PEER_PORT                     send one datagram (the client for udp-serve)
 *   driver errors                                            the error paths, one JSON line each
 *   driver repeat N LOCAL_ADDR PEER_ADDR PEER_PORT           N queries; prints the dumps they made
 *   (udp-peer and repeat bind their socket to the device SECSOCK_DRIVER_DEVICE names, when set)
 *   driver overrun RCVBUF LOCAL_ADDR PEER_ADDR PEER_PORT     query, wait for "go" on stdin, query again
 *   driver steps LOCAL_ADDR PEER_ADDR PEER_PORT CMD...       query, then after each shell CMD query again;
 *                                                            "@drop N" ignores the next N notifications and
 *                                                            "@clock MS" freezes the freshness clock and moves
 *                                                            it on, "@recheck MS" schedules the SA table's
 *                                                            settling read MS from it, "@checked MS" moves it on
 *                                                            and counts as just cross-checked (test hooks), "@held"/"@heldkind"
 *                                                            try the query at once with the snapshot's/socket
 *                                                            cache's mutex held (no query after), instead of a shell
 *                                                            command; SECSOCK_DRIVER_AT_ONCE=1 tries every query
 *                                                            at once first and says whether that answered
 *   driver release-cache RELEASE...                          ss_release_has_state_cache for each uname release
 *   driver policy-labels [FILE]                              ss_policy_labels_in(FILE) (whether a policy can carry
 *                                                            a security label), or ss_policy_labels_possible()
 *   driver synthetic CASE                                    a snapshot built in memory (synthetic.c), looked up
 *   driver netns LOCAL_ADDR PEER_ADDR PEER_PORT NS...        for each named namespace (ip netns), a thread
 *                                                            enters it, makes the socket and queries; then
 *                                                            the main thread (still in its own namespace)
 *                                                            queries that socket too; prints both
 *   driver nssteps LOCAL_ADDR PEER_ADDR PEER_PORT NS... -- STEP...  a socket in each namespace, then
 *                                                            the steps from the main thread (cmd_nssteps)
 *   driver nscycle ROUNDS LOCAL_ADDR PEER_ADDR PEER_PORT NS...  a socket in each namespace (made by a thread
 *                                                            there), then ROUNDS rounds of queries over them
 *                                                            from the main thread; then the open descriptors
 *                                                            before init, after the rounds, after fini
 */
#define _GNU_SOURCE
#include "linux/test_hooks.h"
#include "linux/xfrm_records.h"
#include "secsock_backend.h"

#include <arpa/inet.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <pthread.h>
#include <sched.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int cmd_synthetic(const char *name); /* synthetic.c */
int cmd_release_cache(int n, char **releases); /* synthetic.c */
int cmd_policy_labels(const char *filesystems); /* synthetic.c */

static int parse_addr(const char *text, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    if (strchr(text, ':') != NULL) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        *len = sizeof(*a);
        return inet_pton(AF_INET6, text, &a->sin6_addr) == 1 ? 0 : -1;
    }
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    *len = sizeof(*a);
    return inet_pton(AF_INET, text, &a->sin_addr) == 1 ? 0 : -1;
}

static void peer_of(const struct sockaddr_storage *ss, secsock_peer *p)
{
    memset(p, 0, sizeof(*p));
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        p->is_ipv6 = 1;
        memcpy(p->addr, &a->sin6_addr, 16);
        p->port = ntohs(a->sin6_port);
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        memcpy(p->addr, &a->sin_addr, 4);
        p->port = ntohs(a->sin_port);
    }
}

static void print_json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') {
            putchar('\\');
        }
        putchar((unsigned char)*s >= 0x20 ? *s : '?');
    }
    putchar('"');
}

static void print_dir(const char *name, const secsock_direction *d)
{
    size_t i;
    printf("\"%s\":[", name);
    for (i = 0; i < d->count; i++) {
        const secsock_sa *a = &d->sas[i];
        printf("%s{\"proto\":%u,\"mode\":%u,\"spi\":%u,\"reqid\":%u,\"enc\":", i ? "," : "", a->proto, a->mode,
               (unsigned)a->spi, (unsigned)a->reqid);
        print_json_str(a->encryption);
        printf(",\"auth\":");
        print_json_str(a->integrity);
        printf(",\"aead\":");
        print_json_str(a->aead);
        printf("}");
    }
    printf("]");
}

/* SECSOCK_DRIVER_AT_ONCE=1: each query is first tried at once (secsock_query_at_once), and the report says
 * whether that answered ("at_once"); an answer it gave must be the one secsock_query then gives. */
static int g_at_once = -1;

static int same_direction(const secsock_direction *a, const secsock_direction *b)
{
    return a->count == b->count && a->count <= SECSOCK_MAX_SAS &&
           memcmp(a->sas, b->sas, a->count * sizeof(a->sas[0])) == 0;
}

static int same_answer(const secsock_result *a, const secsock_result *b)
{
    return a->flags == b->flags && a->protocol == b->protocol && a->has_ipsec_detail == b->has_ipsec_detail &&
           a->reason_out == b->reason_out && a->reason_in == b->reason_in &&
           same_direction(&a->outbound, &b->outbound) && same_direction(&a->inbound, &b->inbound);
}

static int report(int rc, const secsock_result *r, const secsock_error *e)
{
    if (rc != 0) {
        printf("{\"error\":{\"kind\":%d,\"errnum\":%d,\"call\":", (int)e->kind, e->errnum);
        print_json_str(e->call);
        printf(",\"message\":");
        print_json_str(e->message);
        printf("}}\n");
    } else {
        printf("{\"flags\":%u,\"protocol\":%u,\"detail\":%d,", r->flags, r->protocol, r->has_ipsec_detail);
        print_dir("out", &r->outbound);
        printf(",");
        print_dir("in", &r->inbound);
        int dir;
        for (dir = 0; dir < 2; dir++) {
            uint32_t index, priority;
            printf(",\"pol_%s\":", dir == 0 ? "in" : "out");
            if (ss_debug_last_match(dir, &index, &priority)) {
                printf("{\"index\":%u,\"priority\":%u}", (unsigned)index, (unsigned)priority);
            } else {
                printf("null");
            }
        }
        printf(",\"dumps\":%llu,\"sa_updates\":%llu,\"pol_updates\":%llu,\"xcheck\":%llu,\"kept\":%u,"
               "\"counts_agree\":%s,\"reasons\":[%u,%u],\"conf_asks\":%llu",
               (unsigned long long)ss_debug_dump_count(), (unsigned long long)ss_debug_sa_updates(),
               (unsigned long long)ss_debug_pol_updates(), (unsigned long long)ss_debug_xcheck_reloads(),
               ss_debug_kept_netns(), ss_debug_counts_agree() ? "true" : "false", (unsigned)r->reason_out,
               (unsigned)r->reason_in, (unsigned long long)ss_debug_conf_asks());
        if (g_at_once >= 0) {
            printf(",\"at_once\":%s", g_at_once ? "true" : "false");
        }
        printf("}\n");
    }
    fflush(stdout);
    return rc == 0 ? 0 : 3;
}

/* The request for fd, with peer when not NULL. */
static void request_of(int fd, const secsock_peer *peer, secsock_query_request *req)
{
    memset(req, 0, sizeof(*req));
    req->sock = (secsock_fd)fd;
    if (peer != NULL) {
        req->has_peer = 1;
        req->peer = *peer;
    }
}

static int query_fd(int fd, const secsock_peer *peer)
{
    secsock_query_request req;
    secsock_result r;
    secsock_error e;
    int rc;

    request_of(fd, peer, &req);
    if (getenv("SECSOCK_DRIVER_AT_ONCE") != NULL) {
        secsock_result first;
        g_at_once = secsock_query_at_once(&req, &first);
        rc = secsock_query(&req, &r, &e);
        if (g_at_once && (rc != 0 || !same_answer(&first, &r))) {
            printf("{\"error\":{\"kind\":0,\"errnum\":0,\"call\":\"at_once\",\"message\":\"the answer at once "
                   "differs\"}}\n");
            return 3;
        }
        return report(rc, &r, &e);
    }
    rc = secsock_query(&req, &r, &e);
    return report(rc, &r, &e);
}

static int die(const char *what)
{
    fprintf(stderr, "driver: %s: %s\n", what, strerror(errno));
    return 2;
}

static int make_udp_peer(const char *local, const char *peer, const char *port, const char *mark, int *fd_out,
                         secsock_peer *p)
{
    struct sockaddr_storage ls, ps;
    socklen_t ll, pl;
    const char *device = getenv("SECSOCK_DRIVER_DEVICE"); /* bind the socket to this device (SO_BINDTODEVICE) */
    int fd;

    if (parse_addr(local, 0, &ls, &ll) != 0 || parse_addr(peer, (uint16_t)atoi(port), &ps, &pl) != 0) {
        fprintf(stderr, "driver: bad address\n");
        return 2;
    }
    fd = socket(ls.ss_family, SOCK_DGRAM, 0);
    if (fd < 0) {
        return die("socket");
    }
    if (mark != NULL) {
        int m = atoi(mark);
        if (setsockopt(fd, SOL_SOCKET, SO_MARK, &m, sizeof(m)) != 0) {
            return die("SO_MARK");
        }
    }
    if (device != NULL && setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, device, (socklen_t)strlen(device)) != 0) {
        return die("SO_BINDTODEVICE");
    }
    if (bind(fd, (struct sockaddr *)&ls, ll) != 0) {
        return die("bind");
    }
    peer_of(&ps, p);
    *fd_out = fd;
    return 0;
}

typedef struct {
    const char *ns, *local, *peer, *port;
    int fd, rc;
    secsock_peer p;
} ns_job;

/* A thread in the job's namespace makes its socket (no query). */
static void *make_in_netns(void *arg)
{
    ns_job *job = arg;
    char path[256];
    int nsfd;

    snprintf(path, sizeof(path), "/run/netns/%s", job->ns);
    nsfd = open(path, O_RDONLY | O_CLOEXEC);
    if (nsfd < 0 || setns(nsfd, CLONE_NEWNET) != 0) {
        job->rc = die("setns");
        return NULL;
    }
    close(nsfd);
    job->rc = make_udp_peer(job->local, job->peer, job->port, NULL, &job->fd, &job->p);
    return NULL;
}

static void *in_netns(void *arg)
{
    ns_job *job = arg;

    make_in_netns(job);
    if (job->rc == 0) {
        printf("thread ");
        job->rc = query_fd(job->fd, &job->p);
    }
    return NULL;
}

static int cmd_netns(int argc, char **argv)
{
    int i, rc = 0;

    for (i = 5; i < argc && rc == 0; i++) {
        ns_job job = {argv[i], argv[2], argv[3], argv[4], -1, 2, {0}};
        pthread_t t;
        if (pthread_create(&t, NULL, in_netns, &job) != 0 || pthread_join(t, NULL) != 0) {
            return die("pthread");
        }
        rc = job.rc;
        if (rc == 0) {
            printf("main ");
            rc = query_fd(job.fd, &job.p);
        }
        if (job.fd >= 0) {
            close(job.fd);
        }
    }
    return rc;
}

/* Open descriptors of this process. */
static int count_fds(void)
{
    int n = 0;
    char path[64];
    int fd;

    for (fd = 0; fd < 4096; fd++) {
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        n += access(path, F_OK) == 0;
    }
    return n;
}

/* A socket in each of the n namespaces names[] (each made by a thread there): 0, or die()'s code. */
static int sockets_in_netns(ns_job *jobs, int n, char **names, char *local, char *peer, char *port)
{
    int i;

    if (n <= 0 || n > 32) {
        return 2;
    }
    for (i = 0; i < n; i++) {
        pthread_t t;
        ns_job job = {names[i], local, peer, port, -1, 2, {0}};
        jobs[i] = job;
        jobs[i].rc = 0;
        if (pthread_create(&t, NULL, make_in_netns, &jobs[i]) != 0 || pthread_join(t, NULL) != 0 || jobs[i].rc != 0) {
            return die("a socket in a namespace");
        }
    }
    return 0;
}

static int cmd_nscycle(int argc, char **argv, int fds_before)
{
    ns_job jobs[32];
    int i, round, rounds = atoi(argv[2]), n = argc - 6, rc = 0;

    if ((rc = sockets_in_netns(jobs, n, argv + 6, argv[3], argv[4], argv[5])) != 0) {
        return rc;
    }
    for (round = 0; round < rounds && rc == 0; round++) {
        for (i = 0; i < n && rc == 0; i++) {
            printf("%d %s ", round, jobs[i].ns);
            rc = query_fd(jobs[i].fd, &jobs[i].p);
        }
    }
    printf("{\"fds_rounds\":%d}\n", count_fds());
    for (i = 0; i < n; i++) {
        close(jobs[i].fd);
    }
    secsock_backend_fini();
    printf("{\"fds_before\":%d,\"fds_after\":%d}\n", fds_before, count_fds());
    return rc;
}

/* A socket in each namespace (made by a thread there), then steps run by the main thread (in none of them):
 * "?NS" queries NS's socket (prints "NS {json}"), "@drop N" and "@clock MS" as in steps, "@failroutes N" the
 * next N IPv4 route dumps fail, "@rcvbuf BYTES" the
 * notification buffer of sockets opened from then on, "@fds" prints the open descriptors, "@nosysadmin" drops
 * CAP_SYS_ADMIN (setns); anything else is a shell command (system() keeps the dropped capability dropped). */
static int cmd_nssteps(int argc, char **argv)
{
    ns_job jobs[32];
    int i, j, n = 0, rc = 0, first_step = argc;

    for (i = 5; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            first_step = i + 1;
            break;
        }
        n++;
    }
    if ((rc = sockets_in_netns(jobs, n, argv + 5, argv[2], argv[3], argv[4])) != 0) {
        return rc;
    }
    for (i = first_step; i < argc && rc == 0; i++) {
        if (argv[i][0] == '?') {
            for (j = 0; j < n && strcmp(jobs[j].ns, argv[i] + 1) != 0; j++) {
            }
            if (j == n) {
                return 2;
            }
            printf("%s ", jobs[j].ns);
            rc = query_fd(jobs[j].fd, &jobs[j].p);
        } else if (strncmp(argv[i], "@drop ", 6) == 0) {
            ss_debug_drop_notifications((unsigned)atoi(argv[i] + 6));
        } else if (strncmp(argv[i], "@clock ", 7) == 0) {
            ss_debug_clock_advance(atoll(argv[i] + 7));
        } else if (strncmp(argv[i], "@failroutes ", 12) == 0) {
            ss_debug_fail_route_dumps((unsigned)atoi(argv[i] + 12));
        } else if (strncmp(argv[i], "@rcvbuf ", 8) == 0) {
            ss_debug_set_notify_rcvbuf(atoi(argv[i] + 8));
        } else if (strcmp(argv[i], "@nosysadmin") == 0) {
            /* This thread (the one querying) gives up CAP_SYS_ADMIN: no setns from now on. */
            struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
            struct __user_cap_data_struct data[2];
            if (syscall(SYS_capget, &hdr, data) != 0) {
                return die("capget");
            }
            data[CAP_TO_INDEX(CAP_SYS_ADMIN)].effective &= ~CAP_TO_MASK(CAP_SYS_ADMIN);
            data[CAP_TO_INDEX(CAP_SYS_ADMIN)].permitted &= ~CAP_TO_MASK(CAP_SYS_ADMIN);
            if (syscall(SYS_capset, &hdr, data) != 0) {
                return die("capset");
            }
        } else if (strcmp(argv[i], "@fds") == 0) {
            printf("{\"fds\":%d,\"overruns\":%llu}\n", count_fds(), (unsigned long long)ss_debug_overruns());
        } else if (system(argv[i]) != 0) {
            fprintf(stderr, "driver: command failed: %s\n", argv[i]);
            rc = 2;
        }
        fflush(stdout);
    }
    for (i = 0; i < n; i++) {
        close(jobs[i].fd);
    }
    return rc;
}

static int cmd_errors(void)
{
    secsock_query_request req;
    secsock_result r;
    secsock_error e;
    int fd, sv[2], devnull;
    struct sockaddr_storage ss;
    socklen_t sl;

    memset(&req, 0, sizeof(req));
    /* A descriptor that is not a socket. */
    devnull = open("/dev/null", O_RDONLY);
    req.sock = (secsock_fd)devnull;
    printf("notsock ");
    report(secsock_query(&req, &r, &e), &r, &e);
    close(devnull);
    /* A closed descriptor. */
    req.sock = (secsock_fd)devnull;
    printf("closed ");
    report(secsock_query(&req, &r, &e), &r, &e);
    /* A Unix socket. */
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
        return die("socketpair");
    }
    req.sock = (secsock_fd)sv[0];
    printf("unix ");
    report(secsock_query(&req, &r, &e), &r, &e);
    close(sv[0]);
    close(sv[1]);
    /* Unconnected UDP without a peer, then with a peer of the other family. */
    fd = socket(AF_INET, SOCK_DGRAM, 0);
    parse_addr("127.0.0.1", 0, &ss, &sl);
    if (bind(fd, (struct sockaddr *)&ss, sl) != 0) {
        return die("bind");
    }
    req.sock = (secsock_fd)fd;
    printf("nopeer ");
    report(secsock_query(&req, &r, &e), &r, &e);
    req.has_peer = 1;
    req.peer.is_ipv6 = 1;
    req.peer.port = 9;
    printf("wrongfamily ");
    report(secsock_query(&req, &r, &e), &r, &e);
    close(fd);
    /* An unconnected TCP socket. */
    memset(&req, 0, sizeof(req));
    fd = socket(AF_INET, SOCK_STREAM, 0);
    req.sock = (secsock_fd)fd;
    printf("tcpnotconn ");
    report(secsock_query(&req, &r, &e), &r, &e);
    close(fd);
    /* A descriptor number beyond int. */
    req.sock = (secsock_fd)1 << 40;
    printf("huge ");
    report(secsock_query(&req, &r, &e), &r, &e);
    /* Tokens do not exist on Linux. */
    printf("token_close ");
    report(secsock_token_close(1, &e), &r, &e);
    return 0;
}

int main(int argc, char **argv)
{
    secsock_error e;
    int rc = 2, fds_before = count_fds();

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        fprintf(stderr, "usage: see the comment at the top of driver.c\n");
        return 2;
    }
    if (secsock_backend_init(&e) != 0) {
        fprintf(stderr, "driver: init: %s\n", e.message);
        return 2;
    }
    if (strcmp(argv[1], "udp-peer") == 0 && argc >= 5) {
        secsock_peer p;
        int fd;
        rc = make_udp_peer(argv[2], argv[3], argv[4], argc > 5 ? argv[5] : NULL, &fd, &p);
        if (rc == 0) {
            rc = query_fd(fd, &p);
            close(fd);
        }
    } else if ((strcmp(argv[1], "udp-conn") == 0 || strcmp(argv[1], "tcp-conn") == 0) && argc >= 4) {
        struct sockaddr_storage ps;
        socklen_t pl;
        int fd;
        if (parse_addr(argv[2], (uint16_t)atoi(argv[3]), &ps, &pl) != 0) {
            return 2;
        }
        fd = socket(ps.ss_family, argv[1][0] == 'u' ? SOCK_DGRAM : SOCK_STREAM, 0);
        if (fd < 0) {
            return die("socket");
        }
        if (argc > 4) {
            int m = atoi(argv[4]);
            if (setsockopt(fd, SOL_SOCKET, SO_MARK, &m, sizeof(m)) != 0) {
                return die("SO_MARK");
            }
        }
        if (connect(fd, (struct sockaddr *)&ps, pl) != 0) {
            return die("connect");
        }
        rc = query_fd(fd, NULL);
        close(fd);
    } else if ((strcmp(argv[1], "tcp-serve") == 0 || strcmp(argv[1], "udp-serve") == 0) && argc >= 4) {
        struct sockaddr_storage ls, from;
        socklen_t ll, fl = sizeof(from);
        int one = 1, fd, c;
        int tcp = argv[1][0] == 't';
        if (parse_addr(argv[2], (uint16_t)atoi(argv[3]), &ls, &ll) != 0) {
            return 2;
        }
        fd = socket(ls.ss_family, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *)&ls, ll) != 0 || (tcp && listen(fd, 1) != 0)) {
            return die("bind/listen");
        }
        fprintf(stderr, "ready\n");
        if (tcp) {
            c = accept(fd, NULL, NULL);
            if (c < 0) {
                return die("accept");
            }
            rc = query_fd(c, NULL);
            close(c);
        } else {
            char b[64];
            secsock_peer p;
            if (recvfrom(fd, b, sizeof(b), 0, (struct sockaddr *)&from, &fl) < 0) {
                return die("recvfrom");
            }
            peer_of(&from, &p);
            rc = query_fd(fd, &p);
        }
        close(fd);
    } else if (strcmp(argv[1], "send-udp") == 0 && argc >= 4) {
        struct sockaddr_storage ps;
        socklen_t pl;
        int fd;
        if (parse_addr(argv[2], (uint16_t)atoi(argv[3]), &ps, &pl) != 0) {
            return 2;
        }
        fd = socket(ps.ss_family, SOCK_DGRAM, 0);
        if (sendto(fd, "x", 1, 0, (struct sockaddr *)&ps, pl) != 1) {
            return die("sendto");
        }
        close(fd);
        rc = 0;
    } else if (strcmp(argv[1], "errors") == 0) {
        rc = cmd_errors();
    } else if (strcmp(argv[1], "repeat") == 0 && argc >= 6) {
        secsock_peer p;
        int fd, i, n = atoi(argv[2]);
        uint64_t before, asks = 0;
        rc = make_udp_peer(argv[3], argv[4], argv[5], NULL, &fd, &p);
        if (rc == 0) {
            ss_debug_clock_advance(0); /* frozen: what the first query read stays fresh, however slow the run */
            rc = query_fd(fd, &p);
            before = ss_debug_dump_count();
            asks = ss_debug_conf_asks();
            for (i = 0; i < n && rc == 0; i++) {
                secsock_query_request req;
                secsock_result r;
                request_of(fd, &p, &req);
                if (secsock_query(&req, &r, &e) != 0) {
                    rc = report(-1, &r, &e);
                }
            }
            printf("{\"repeat\":%d,\"dumps_during\":%llu,\"conf_asks_during\":%llu}\n", n,
                   (unsigned long long)(ss_debug_dump_count() - before),
                   (unsigned long long)(ss_debug_conf_asks() - asks));
            close(fd);
        }
    } else if (strcmp(argv[1], "netns") == 0 && argc >= 6) {
        rc = cmd_netns(argc, argv);
    } else if (strcmp(argv[1], "nscycle") == 0 && argc >= 7) {
        return cmd_nscycle(argc, argv, fds_before); /* it calls fini itself, to count what fini closed */
    } else if (strcmp(argv[1], "nssteps") == 0 && argc >= 7) {
        rc = cmd_nssteps(argc, argv);
    } else if (strcmp(argv[1], "steps") == 0 && argc >= 5) {
        secsock_peer p;
        int fd, i;
        rc = make_udp_peer(argv[2], argv[3], argv[4], NULL, &fd, &p);
        if (rc == 0) {
            rc = query_fd(fd, &p);
            for (i = 5; i < argc && rc == 0; i++) {
                if (strncmp(argv[i], "@drop ", 6) == 0) {
                    ss_debug_drop_notifications((unsigned)atoi(argv[i] + 6));
                } else if (strncmp(argv[i], "@clock ", 7) == 0) {
                    ss_debug_clock_advance(atoll(argv[i] + 7));
                } else if (strncmp(argv[i], "@recheck ", 9) == 0) {
                    ss_debug_recheck_in(atoll(argv[i] + 9));
                } else if (strncmp(argv[i], "@checked ", 9) == 0) {
                    ss_debug_clock_advance(atoll(argv[i] + 9));
                    ss_debug_mark_checked();
                } else if (strcmp(argv[i], "@held") == 0 || strcmp(argv[i], "@heldkind") == 0) {
                    /* The query at once while the snapshot's (or the socket-facts cache's) mutex is held, here
                     * by this thread as another query would hold it: it must refuse at once, never wait. No
                     * query follows this step. */
                    int kind = strcmp(argv[i], "@heldkind") == 0;
                    secsock_query_request req;
                    secsock_result held;
                    int answered;
                    request_of(fd, &p, &req);
                    ss_debug_hold_lock(kind, 1);
                    answered = secsock_query_at_once(&req, &held);
                    ss_debug_hold_lock(kind, 0);
                    printf("{\"held_at_once\":%s}\n", answered ? "true" : "false");
                    continue;
                } else if (system(argv[i]) != 0) {
                    fprintf(stderr, "driver: command failed: %s\n", argv[i]);
                    rc = 2;
                    break;
                }
                rc = query_fd(fd, &p);
            }
            close(fd);
        }
    } else if (strcmp(argv[1], "synthetic") == 0 && argc >= 3) {
        rc = cmd_synthetic(argv[2]);
    } else if (strcmp(argv[1], "release-cache") == 0) {
        rc = cmd_release_cache(argc - 2, argv + 2);
    } else if (strcmp(argv[1], "policy-labels") == 0) {
        rc = cmd_policy_labels(argc >= 3 ? argv[2] : NULL);
    } else if (strcmp(argv[1], "overrun") == 0 && argc >= 6) {
        secsock_peer p;
        char line[16];
        int fd;
        ss_debug_set_notify_rcvbuf(atoi(argv[2]));
        rc = make_udp_peer(argv[3], argv[4], argv[5], NULL, &fd, &p);
        if (rc == 0) {
            rc = query_fd(fd, &p);
            fprintf(stderr, "ready\n");
            if (fgets(line, sizeof(line), stdin) == NULL) {
                return 2;
            }
            rc = query_fd(fd, &p);
            printf("{\"overruns\":%llu}\n", (unsigned long long)ss_debug_overruns());
            close(fd);
        }
    } else {
        fprintf(stderr, "driver: unknown command or missing arguments\n");
    }
    secsock_backend_fini();
    return rc;
}
