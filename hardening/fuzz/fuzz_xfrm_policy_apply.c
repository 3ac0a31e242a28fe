/*
 * libFuzzer target, differential: the policy table updated in place from notifications (pol_apply, 9227d04)
 * must answer every lookup as a table indexed afresh from the same policies would. Linked with the Linux
 * backend's units (csrc/linux/), it runs the backend's own drain (drain_notify_locked, hence
 * on_notify, pol_apply, its limit of SS_POL_APPLY_MAX changes per drain and the index rebuilt without a sort)
 * on its process state g, reading from one end of a socket pair instead of the XFRM notification socket.
 *
 * Input: datagrams, each a byte of flags, a 2-byte little-endian length and that many bytes (fewer at the end).
 * The first is the dump: its XFRM_MSG_NEWPOLICY messages, newest first as the kernel sends them (a policy
 * whose identity, index and direction, is already there is left out: the kernel numbers policies uniquely).
 * Every further datagram is queued on the socket as the kernel would queue a notification; one whose flags
 * have bit 0 clear (or the 8th queued) ends a drain, finished as refresh_locked finishes one: a stale table is
 * dumped again. Past 16 drains the rest is left out. SA notifications never touch the policy table (the SA
 * table stays stale here).
 *
 * A reference model, the kernel's list of policies oldest first, takes each change as the kernel makes it
 * (a new or updated policy is the newest, a deletion removes the policy with that index and direction, a
 * flush or hard expiry removes); a dump is built from it as dump_policies builds one. After every drain that
 * applied changes in place (a table dumped again is the fresh one by construction) the table kept must equal
 * one built afresh from the model: the same policies in the same order, each reachable once from its bucket's
 * hash, and the same answer from lookup_policy for flows made from the policies the input names, both
 * directions, both families, with and without their if_id.
 *
 * The model's identity of a policy is pol_apply's, index and direction: the kernel gives every policy of a
 * namespace its own index and an update keeps the replaced policy's (xfrm_policy_insert), so for what a kernel
 * can send, that is also the kernel's (selector, direction, type, mark, if_id) identity. What the dump itself
 * does (nl_request) is mirrored, not run: dump_model follows dump_policies line for line.
 */
#include "linux/backend_linux.h"

#include "fuzz_common.h"

#define MODEL_MAX 512
#define FLOW_SEEDS 8    /* policies whose selectors make the flows looked up */
#define QUEUED_MAX 8    /* datagrams queued before a drain is forced */
#define DRAINS_MAX 16   /* drains per input; the rest is left out (CI time: each drain builds an index or two) */

typedef struct {
    ss_policy model[MODEL_MAX]; /* oldest first */
    size_t nmodel;
    ss_policy seeds[FLOW_SEEDS];
    size_t nseeds;
    unsigned drains;
} apply_ctx;

static int sock_pair[2] = {-1, -1};

static void fail(const apply_ctx *c, const char *what)
{
    fprintf(stderr, "fuzz_xfrm_policy_apply: after drain %u: %s\n", c->drains, what);
    abort();
}

static int model_find(const apply_ctx *c, uint32_t index, uint8_t dir)
{
    size_t i;
    for (i = 0; i < c->nmodel; i++) {
        if (c->model[i].index == index && c->model[i].dir == dir) {
            return (int)i;
        }
    }
    return -1;
}

static void model_remove(apply_ctx *c, uint32_t index, uint8_t dir)
{
    int i = model_find(c, index, dir);
    if (i >= 0) {
        memmove(&c->model[i], &c->model[i + 1], (c->nmodel - (size_t)i - 1) * sizeof(c->model[0]));
        c->nmodel--;
    }
}

static void seed_flow(apply_ctx *c, const ss_policy *p)
{
    c->seeds[c->nseeds++ % FLOW_SEEDS] = *p; /* the latest FLOW_SEEDS policies named */
}

/* A dump of the model, as dump_policies makes one: the kernel sends the newest first; pol_order sorts. */
static void dump_model(const apply_ctx *c, ss_snap *s)
{
    size_t i;

    snap_free_policies(s);
    for (i = c->nmodel; i > 0; i--) {
        if (grow((void **)&s->pols, &s->cap, s->npols + 1, sizeof(ss_policy)) != 0) {
            abort();
        }
        s->pols[s->npols++] = c->model[i - 1];
    }
    if (snap_index_policies(s) != 0) {
        abort();
    }
}

/* The dump datagram, collected by the backend's own on_policy (a policy it cannot read ends the dump there):
 * the model, newest first. */
static void take_dump(apply_ctx *c, const uint8_t *dgram, size_t len)
{
    ss_snap s;
    secsock_error err;
    dump_ctx dc;
    const char *why;
    size_t i;

    memset(&s, 0, sizeof(s));
    dc.s = &s;
    dc.err = &err;
    (void)ss_nl_walk(dgram, len, 0, 0, on_policy, &dc, &why);
    for (i = s.npols; i > 0; i--) {
        const ss_policy *p = &s.pols[i - 1]; /* the oldest first: a newer one of the same identity wins */
        if (model_find(c, p->index, p->dir) >= 0) {
            model_remove(c, p->index, p->dir);
        } else if (c->nmodel == MODEL_MAX) {
            continue;
        }
        c->model[c->nmodel++] = *p;
        seed_flow(c, p);
    }
    snap_free_policies(&s);
}

/* A notification: the change the kernel made, in the model. */
static int on_change(void *vctx, uint16_t type, uint16_t flags, const void *payload, size_t len)
{
    apply_ctx *c = vctx;
    ss_policy p;
    const char *why;
    int action;

    (void)flags;
    switch (type) {
    case XFRM_MSG_NEWPOLICY:
    case XFRM_MSG_UPDPOLICY:
    case XFRM_MSG_DELPOLICY:
        if (ss_parse_policy_notify(type, payload, len, &p, &action, &why) != SS_PARSE_OK ||
            action == SS_POL_RESYNC) {
            return 0; /* the backend dumps again: whatever the kernel holds, the model is it */
        }
        seed_flow(c, &p);
        if (action == SS_POL_NONE) {
            return 0; /* forward and per-socket policies are in no snapshot */
        }
        model_remove(c, p.index, p.dir);
        if (action == SS_POL_UPSERT && c->nmodel < MODEL_MAX) {
            c->model[c->nmodel++] = p; /* linked at the head of the kernel's list: the newest */
        }
        return 0;
    case XFRM_MSG_FLUSHPOLICY:
        c->nmodel = 0;
        return 0;
    case XFRM_MSG_POLEXPIRE: {
        struct xfrm_user_polexpire e;
        if (len >= sizeof(e) && ss_parse_policy(payload, sizeof(e.pol), &p, &why) == SS_PARSE_OK) {
            memcpy(&e, payload, sizeof(e));
            if (e.hard) {
                model_remove(c, p.index, p.dir);
            }
        }
        return 0;
    }
    default:
        return 0;
    }
}

/* A snapshot's policy index is whole: buckets tile the sorted array, each policy reachable exactly once
 * from the head its destination prefix hashes to, the prefix lengths and the if_id flag as the policies say. */
static void check_index(const apply_ctx *c, const ss_snap *s)
{
    static uint8_t reached[MODEL_MAX];
    size_t i, at = 0;
    int b;

    if (s->npols > MODEL_MAX) {
        fail(c, "more policies than the model holds");
    }
    memset(reached, 0, s->npols);
    for (i = 1; i < s->npols; i++) {
        if (pol_order(&s->pols[i - 1], &s->pols[i]) >= 0) {
            fail(c, "policy array out of order");
        }
    }
    for (b = 0; b < SS_NBUCKETS; b++) {
        const ss_bucket *bk = &s->b[b];
        uint8_t seen[129];
        unsigned n = 0;
        uint32_t h;
        int has_if_id = 0, pl;

        if (bk->start != at || bk->end < bk->start || bk->end > s->npols || bk->heads == NULL) {
            fail(c, "bucket does not tile the array");
        }
        at = bk->end;
        memset(seen, 0, sizeof(seen));
        for (i = bk->start; i < bk->end; i++) {
            if (bucket_of(s->pols[i].dir, s->pols[i].sel.family, s->pols[i].type) != b) {
                fail(c, "policy in the wrong bucket");
            }
            seen[s->pols[i].sel.prefixlen_d] = 1;
            has_if_id |= s->pols[i].if_id != 0;
        }
        for (pl = 128; pl >= 0; pl--) {
            if (seen[pl] && (n >= bk->nplens || bk->plens[n++] != pl)) {
                fail(c, "bucket's prefix lengths differ from its policies'");
            }
        }
        if (n != bk->nplens || has_if_id != bk->has_if_id) {
            fail(c, "bucket's prefix lengths or if_id flag differ from its policies'");
        }
        for (h = 0; h <= bk->hmask; h++) {
            int32_t j;
            for (j = bk->heads[h]; j >= 0; j = s->pnext[j]) {
                const ss_policy *p = &s->pols[j];
                uint8_t masked[16];
                if ((size_t)j < bk->start || (size_t)j >= bk->end || reached[j]) {
                    fail(c, "chain leaves its bucket, or reaches a policy twice");
                }
                reached[j] = 1;
                mask_addr(masked, p->sel.daddr, p->sel.prefixlen_d, p->sel.family);
                if ((pol_key_hash(p->sel.prefixlen_d, masked, p->sel.family) & bk->hmask) != h) {
                    fail(c, "policy linked in the wrong chain");
                }
            }
        }
    }
    if (at != s->npols || memchr(reached, 0, s->npols) != NULL) {
        fail(c, "a policy is not reachable");
    }
}

static void same_policy(const apply_ctx *c, const ss_policy *kept, const ss_policy *fresh, const char *what)
{
    if (memcmp(kept, fresh, sizeof(*kept)) != 0) {
        fail(c, what);
    }
}

/* One lookup in both tables: the same policy, or the same refusal. */
static void same_answer(const apply_ctx *c, const ss_snap *kept, const ss_snap *fresh, const ss_flow *flow,
                        int dir, uint32_t if_id)
{
    ss_flow f1 = *flow, f2 = *flow;
    secsock_error e1, e2;
    int rc1, rc2;
    const ss_policy *p1, *p2;

    secsock_error_clear(&e1);
    secsock_error_clear(&e2);
    p1 = lookup_policy(kept, &f1, dir, if_id, &rc1, &e1);
    p2 = lookup_policy(fresh, &f2, dir, if_id, &rc2, &e2);
    if (rc1 != rc2 || (p1 == NULL) != (p2 == NULL) || f1.oif != f2.oif) {
        fail(c, "lookup_policy answers differently");
    }
    if (rc1 != 0 && (e1.kind != e2.kind || strcmp(e1.message, e2.message) != 0)) {
        fail(c, "lookup_policy refuses differently");
    }
    if (p1 != NULL) {
        same_policy(c, p1, p2, "lookup_policy finds another policy");
    }
}

/* Flows made from a policy's selector (as the flow it selects, in its own direction), in both families. */
static void compare_lookups(const apply_ctx *c, const ss_snap *kept, const ss_snap *fresh)
{
    size_t i, n = c->nseeds < FLOW_SEEDS ? c->nseeds : FLOW_SEEDS;
    int fam, dir;

    for (i = 0; i < n; i++) {
        const ss_policy *p = &c->seeds[i];
        const ss_sel *s = &p->sel;
        int in = p->dir == XFRM_POLICY_IN;
        ss_flow f;

        memset(&f, 0, sizeof(f));
        f.sock = -1;
        f.proto = s->proto;
        memcpy(f.local, in ? s->daddr : s->saddr, 16);
        memcpy(f.peer, in ? s->saddr : s->daddr, 16);
        f.lport = in ? s->dport : s->sport;
        f.pport = in ? s->sport : s->dport;
        f.mark = p->mark_v;
        f.mark_read = f.bif_read = f.if_id_known = 1; /* no socket to ask */
        f.oif = s->ifindex > 0 ? s->ifindex : 0;      /* known: never ask the routing table */
        f.sel_dev[0] = f.sel_dev[1] = f.oif;
        for (fam = 0; fam < 2; fam++) {
            f.family = (fam == 0) == (s->family == AF_INET) ? AF_INET : AF_INET6;
            if (f.family == AF_INET) {
                memset(f.local + 4, 0, 12);
                memset(f.peer + 4, 0, 12);
            }
            for (dir = XFRM_POLICY_IN; dir <= XFRM_POLICY_OUT; dir++) {
                same_answer(c, kept, fresh, &f, dir, 0);
                if (p->if_id != 0) {
                    same_answer(c, kept, fresh, &f, dir, p->if_id);
                }
            }
        }
    }
}

/* After a drain: the table kept in place against one indexed afresh from the model. */
static void check(const apply_ctx *c)
{
    static ss_snap fresh;
    const ss_snap *kept = &g.cur.snap;
    size_t i;

    dump_model(c, &fresh);
    check_index(c, kept);
    check_index(c, &fresh);
    if (kept->npols != fresh.npols) {
        fail(c, "the tables hold different numbers of policies");
    }
    for (i = 0; i < kept->npols; i++) {
        same_policy(c, &kept->pols[i], &fresh.pols[i], "the tables hold different policies, or in another order");
    }
    compare_lookups(c, kept, &fresh);
    snap_free_policies(&fresh);
}

/* The backend's drain, then what refresh_locked does next: a stale table is dumped again. */
static void drain(apply_ctx *c)
{
    drain_notify_locked();
    if (g.cur.notify_fd != sock_pair[0]) {
        abort(); /* it closed the socket: a read failed that cannot fail on a socket pair */
    }
    c->drains++;
    if (g.cur.pol_stale) {
        dump_model(c, &g.cur.snap); /* the same as the fresh table by construction: nothing to compare */
        g.cur.pol_stale = 0;
        return;
    }
    check(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static apply_ctx c;
    const char *why;
    size_t off = 0;
    unsigned queued = 0;
    int first = 1;

    if (sock_pair[0] < 0 && socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sock_pair) != 0) {
        abort();
    }
    memset(&c, 0, sizeof(c));
    g.cur.notify_fd = sock_pair[0];
    g.cur.notify_ep = -1; /* the drain polls */
    g.cur.sa_stale = 1;   /* SA notifications leave the (empty) SA table alone */
    g.pol_applied = 0;
    /* As where no security label can exist, whatever this host runs: there adds and updates are applied in
     * place (on_notify); where one can, they only make the table stale, which drain() takes as dumped. */
    ss_policy_labels = 0;
    while (off < size && c.drains < DRAINS_MAX) {
        uint8_t flags = data[off];
        size_t len = 0;
        if (size - off >= 3) {
            len = (size_t)data[off + 1] | (size_t)data[off + 2] << 8;
        }
        off += size - off >= 3 ? 3 : size - off;
        if (len > size - off) {
            len = size - off;
        }
        if (first) {
            take_dump(&c, data + off, len);
            dump_model(&c, &g.cur.snap); /* the dump the notifications apply to */
            g.cur.pol_stale = 0;
            first = 0;
        } else {
            /* The model walks the datagram as the backend will: the same messages, up to the same end. */
            (void)ss_nl_walk(data + off, len, 0, 0, on_change, &c, &why);
            if (send(sock_pair[1], data + off, len, MSG_DONTWAIT) != (ssize_t)len) {
                abort();
            }
            if (!(flags & 1) || ++queued >= QUEUED_MAX) {
                drain(&c);
                queued = 0;
            }
        }
        off += len;
    }
    if (first) {
        return 0;
    }
    if (queued > 0) {
        drain(&c); /* the query that follows the last notifications */
    }
    snap_free_policies(&g.cur.snap);
    return 0;
}
