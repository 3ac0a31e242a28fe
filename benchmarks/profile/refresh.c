/*
 * Where the time of "the first query after a change" goes: times each step of a policy-table refresh of
 * the Linux backend (csrc/linux/) in the current network namespace (linked with its units, whose internal
 * header declares the steps).
 * Built and run by benchmarks/profile/refresh.sh, inside a namespace holding N policies.
 *   refresh [ROUNDS]
 */
#include "linux/backend_linux.h"

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int count_only(void *ctx, uint16_t type, uint16_t flags, const void *payload, size_t len)
{
    (void)type;
    (void)flags;
    (void)payload;
    (void)len;
    ++*(size_t *)ctx;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#define MAXR 64

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 10, r;
    double dump_raw[MAXR], dump_parse[MAXR], index_ms[MAXR], whole[MAXR];
    secsock_error err;
    ss_netns here;
    size_t msgs = 0;

    if (rounds < 1 || rounds > MAXR) {
        rounds = 10;
    }
    if (thread_netns(&here, NULL) != 0) {
        fprintf(stderr, "refresh: cannot tell this thread's network namespace\n");
        return 1;
    }
    for (r = 0; r < rounds; r++) {
        ss_snap s;
        dump_ctx c;
        double t0, t1, t2, t3;

        memset(&s, 0, sizeof(s));
        msgs = 0;
        t0 = now_ms();
        if (nl_request(NETLINK_XFRM, XFRM_MSG_GETPOLICY, NLM_F_DUMP, NULL, 0, count_only, &msgs, "dump", &err) != 0) {
            fprintf(stderr, "dump: %s\n", err.message);
            return 1;
        }
        t1 = now_ms();
        c.s = &s;
        c.err = &err;
        if (nl_request(NETLINK_XFRM, XFRM_MSG_GETPOLICY, NLM_F_DUMP, NULL, 0, on_policy, &c, "dump", &err) != 0) {
            fprintf(stderr, "dump+parse: %s\n", err.message);
            return 1;
        }
        t2 = now_ms();
        if (snap_index_policies(&s) != 0) {
            return 1;
        }
        t3 = now_ms();
        snap_free_policies(&s);
        dump_raw[r] = t1 - t0;
        dump_parse[r] = t2 - t1;
        index_ms[r] = t3 - t2;
        /* The backend's own refresh after a change: drain, dump, index (the SA table is not stale). */
        pthread_mutex_lock(&g_lock);
        if (r == 0 && refresh_locked(&here, &err) != 0) {
            fprintf(stderr, "refresh: %s\n", err.message);
            return 1;
        }
        g.cur.pol_stale = 1;
        t0 = now_ms();
        if (refresh_locked(&here, &err) != 0) {
            fprintf(stderr, "refresh: %s\n", err.message);
            return 1;
        }
        whole[r] = now_ms() - t0;
        pthread_mutex_unlock(&g_lock);
    }
    qsort(dump_raw, rounds, sizeof(double), cmp_double);
    qsort(dump_parse, rounds, sizeof(double), cmp_double);
    qsort(index_ms, rounds, sizeof(double), cmp_double);
    qsort(whole, rounds, sizeof(double), cmp_double);
    printf("{\"policies\": %zu, \"rounds\": %d, \"dump_kernel_and_recv_ms\": %.2f, \"dump_with_parse_ms\": %.2f, "
           "\"sort_and_index_ms\": %.2f, \"refresh_locked_ms\": %.2f, \"refresh_locked_max_ms\": %.2f}\n",
           msgs, rounds, dump_raw[rounds / 2], dump_parse[rounds / 2], index_ms[rounds / 2], whole[rounds / 2],
           whole[rounds - 1]);
    return 0;
}
