/* Matching: the policy and SAs the kernel would apply to a flow; each rule names the kernel code it mirrors, if any. */
#include "backend_linux.h"

#include <stdio.h>
#include <sys/utsname.h>

#define SS_SEL_MAYBE 2 /* flow_sel_match: it may match (the device it names may be the flow's) */

/* The policy the calling thread's last query matched per direction (index + 1, 0 for none): a test hook. */
__thread ss_last_match t_last;

int ss_kernel_state_cache = -1;

/*
 * The kernel's xfrm_selector_match (include/net/xfrm.h): __xfrm4_selector_match or __xfrm6_selector_match by
 * family, the family itself checked by the caller's policy lookup. Declared in xfrm_records.h.
 */
int ss_sel_match(const ss_sel *s, int family, const uint8_t *saddr, const uint8_t *daddr, uint16_t sport,
                 uint16_t dport, uint8_t proto, int oif)
{
    return prefix_match(daddr, s->daddr, s->prefixlen_d) && prefix_match(saddr, s->saddr, s->prefixlen_s) &&
           ((dport ^ s->dport) & s->dport_mask) == 0 && ((sport ^ s->sport) & s->sport_mask) == 0 &&
           (s->proto == 0 || s->proto == proto) && (s->ifindex == 0 || s->ifindex == oif) && family != 0;
}

/*
 * Selector match (xfrm_selector_match), resolving the device the kernel compares (flow_sel_dev) only for
 * selectors that name one and otherwise match. 1 match, 0 none, SS_SEL_MAYBE when the selector names a
 * device and which one the kernel compares cannot be told here, -1 on error.
 */
static int flow_sel_match(const ss_sel *s, ss_flow *f, int dir, secsock_error *err)
{
    const uint8_t *sa = dir == XFRM_POLICY_OUT ? f->local : f->peer;
    const uint8_t *da = dir == XFRM_POLICY_OUT ? f->peer : f->local;
    uint16_t sp = dir == XFRM_POLICY_OUT ? f->lport : f->pport;
    uint16_t dp = dir == XFRM_POLICY_OUT ? f->pport : f->lport;
    int dev = 0, rc;

    /* Everything but the device first: given the selector's own device as the flow's, that test always holds. */
    if (!ss_sel_match(s, f->family, sa, da, sp, dp, f->proto, s->ifindex)) {
        return 0;
    }
    if (s->ifindex == 0) {
        return 1;
    }
    rc = flow_sel_dev(f, dir, &dev, err);
    if (rc != 0) {
        return rc == SS_DEV_UNKNOWN ? SS_SEL_MAYBE : -1;
    }
    return s->ifindex == dev;
}

/* The hash chain of bucket bk for its i-th prefix length and destination da (masked into masked[16]). */
static int32_t chain_of(const ss_bucket *bk, unsigned i, const uint8_t *da, int family, uint8_t *masked)
{
    mask_addr(masked, da, bk->plens[i], family);
    return bk->heads[pol_key_hash(bk->plens[i], masked, family) & bk->hmask];
}

/* Is p, met in the chain of prefix length plen and destination da, a policy of that prefix length and masked
 * destination (not a hash collision)? As comparing both addresses masked (mask_addr, which keeps at most the
 * family's address length), without building the masks. */
static int in_chain(const ss_policy *p, uint8_t plen, const uint8_t *da, int family)
{
    unsigned bits = (unsigned)addr_len(family) * 8;
    return p->sel.prefixlen_d == plen && prefix_match(p->sel.daddr, da, plen < bits ? plen : bits);
}

/* The error for a policy secsock cannot read that may be the one the kernel applies (issue 14 item 2). */
static void unreadable_error(const ss_policy *p, secsock_error *err)
{
    secsock_error_set(err, SECSOCK_ERR_OS, EBADMSG, 0, "XFRM_MSG_GETPOLICY",
                      "an XFRM policy (index %u) that secsock cannot read selects this flow", (unsigned)p->index);
}

/* Would the kernel do the same with either policy? Same action, mark and templates (the selector, priority and
 * if_id already agree where this is asked): then which of two tied policies wins decides nothing. A labeled one
 * never is: the LSM may skip it for the flow, and it takes other SAs (security_xfrm_state_pol_flow_match). */
static int pol_equivalent(const ss_policy *a, const ss_policy *b)
{
    int i;
    if (a->action != b->action || a->ntmpl != b->ntmpl || a->mark_v != b->mark_v || a->mark_m != b->mark_m ||
        a->if_id != b->if_id || a->unreadable || b->unreadable || a->sec_ctx || b->sec_ctx) {
        return 0;
    }
    for (i = 0; i < a->ntmpl; i++) {
        const ss_tmpl *x = &a->tmpl[i], *y = &b->tmpl[i];
        if (memcmp(x->daddr, y->daddr, 16) != 0 || memcmp(x->saddr, y->saddr, 16) != 0 || x->spi != y->spi ||
            x->reqid != y->reqid || x->family != y->family || x->proto != y->proto || x->mode != y->mode ||
            x->optional != y->optional) {
            return 0;
        }
    }
    return 1;
}

/*
 * Does another policy of best's priority, which the kernel could equally pick, select the flow and differ from
 * best (issue 14 review, item 1)? The kernel breaks a priority tie by its list order, which the dump does not
 * give: an update to a new priority puts the policy after every policy of that priority
 * (xfrm_policy_insert_list) though it keeps its index, and 6.18 compares a fresh pos (xfrm_gen_pos) across
 * inexact candidate lists. So such a tie is not decidable here. A policy with a mark the flow may carry counts
 * too, and a labeled one; an unreadable one is an error. 1 tie, 0 none, -1 on error.
 */
static int tie_differs(const ss_snap *s, const ss_bucket *bk, const int32_t *heads, ss_flow *f, int dir,
                       uint32_t if_id, const ss_policy *best, secsock_error *err)
{
    const uint8_t *da = dir == XFRM_POLICY_OUT ? f->peer : f->local;
    unsigned i;

    for (i = 0; i < bk->nplens; i++) {
        int32_t j = heads[i]; /* chain_of's, as lookup_from found them */

        for (; j >= 0 && s->pols[j].priority <= best->priority; j = s->pnext[j]) {
            const ss_policy *p = &s->pols[j];
            int m;

            if (p == best || p->priority != best->priority || (p->if_id != if_id && !p->unreadable) ||
                (p->mark_v & ~p->mark_m) != 0 || !in_chain(p, bk->plens[i], da, f->family)) {
                continue;
            }
            m = flow_sel_match(&p->sel, f, dir, err);
            if (m <= 0) {
                if (m < 0) {
                    return -1;
                }
                continue;
            }
            if (p->unreadable) {
                unreadable_error(p, err);
                return -1;
            }
            if (!pol_equivalent(p, best)) {
                return 1;
            }
        }
    }
    return 0;
}

/*
 * An unreadable policy's type is not known, so it is kept in the SUB bucket (snapshot.c: on_policy), which a
 * lookup from SUB meets first. A lookup that starts at MAIN (a sub policy's bundle, an XFRM interface's first
 * lookup after a sub bypass) must meet it too, since its real type may be MAIN: ranked among MAIN's policies as
 * xfrm_policy_lookup_bytype ranks them (lower priority value first; on a tie the kernel's list order, unknown
 * here), it could be the one the kernel applies unless best (MAIN's pick, or NULL) has a lower priority value.
 * Its if_id and mark may be unread: any selector match counts. 0, or -1 with the error set.
 */
static int unreadable_may_win(const ss_snap *s, ss_flow *f, int dir, const ss_policy *best, secsock_error *err)
{
    const ss_bucket *bk = &s->b[bucket_of(dir, f->family, XFRM_POLICY_TYPE_SUB)];
    const uint8_t *da = dir == XFRM_POLICY_OUT ? f->peer : f->local;
    unsigned i;

    if (bk->heads == NULL || bk->end == bk->start) {
        return 0;
    }
    for (i = 0; i < bk->nplens; i++) {
        uint8_t masked[16];
        int32_t j = chain_of(bk, i, da, f->family, masked);

        for (; j >= 0 && (best == NULL || s->pols[j].priority <= best->priority); j = s->pnext[j]) {
            const ss_policy *p = &s->pols[j];
            int m;

            if (!p->unreadable || !in_chain(p, bk->plens[i], da, f->family)) {
                continue;
            }
            if ((m = flow_sel_match(&p->sel, f, dir, err)) < 0) {
                return -1;
            }
            if (m != 0) {
                unreadable_error(p, err);
                return -1;
            }
        }
    }
    return 0;
}

/*
 * The policy of type top_type, else of a lower type, the kernel applies to the flow in one direction, as
 * xfrm_policy_lookup_bytype does (each candidate checked as xfrm_policy_match checks it), or NULL; -1 in *rc
 * on error.
 */
static const ss_policy *lookup_from(const ss_snap *s, ss_flow *f, int dir, uint32_t if_id, int top_type,
                                    int *rc, secsock_error *err)
{
    int type;
    const uint8_t *da = dir == XFRM_POLICY_OUT ? f->peer : f->local;

    *rc = 0;
    f->mark_doubt = 0;
    for (type = top_type; type >= XFRM_POLICY_TYPE_MAIN; type--) {
        const ss_bucket *bk = &s->b[bucket_of(dir, f->family, type)];
        const ss_policy *best = NULL, *doubt = NULL;
        int doubt_kind = SS_DOUBT_MARK;
        int32_t heads[sizeof(bk->plens)]; /* each prefix length's chain, for tie_differs */
        unsigned i;

        if (bk->heads == NULL || bk->end == bk->start) {
            if (type == XFRM_POLICY_TYPE_MAIN && top_type == XFRM_POLICY_TYPE_MAIN &&
                unreadable_may_win(s, f, dir, NULL, err) != 0) {
                *rc = -1;
                return NULL;
            }
            continue;
        }
        for (i = 0; i < bk->nplens; i++) {
            uint8_t masked[16];
            int32_t j = heads[i] = chain_of(bk, i, da, f->family, masked);

            for (; j >= 0; j = s->pnext[j]) {
                const ss_policy *p = &s->pols[j];
                int m;

                if (best != NULL && (p->priority > best->priority ||
                                     (p->priority == best->priority && p->index > best->index))) {
                    break; /* chains run best first: nothing further can win */
                }
                if (!in_chain(p, bk->plens[i], da, f->family) || (p->mark_v & ~p->mark_m) != 0) {
                    /* A mark value with bits outside its mask matches no packet: xfrm_policy_match compares
                     * (fl->flowi_mark & m) != v. (The kernels tried here store v masked, but the dump is what
                     * decides, and a kernel that keeps it whole must not make the answer undecidable.) */
                    continue;
                }
                m = flow_sel_match(&p->sel, f, dir, err);
                if (m < 0) {
                    *rc = -1;
                    return NULL;
                }
                if (!m) {
                    continue;
                }
                if (m == SS_SEL_MAYBE && !p->unreadable && p->if_id == if_id) {
                    /* It selects the flow if the device it names is the one the kernel compares, which is
                     * not known here: like a mark, it makes the answer undecidable if it could win. */
                    if (doubt == NULL || p->priority < doubt->priority ||
                        (p->priority == doubt->priority && p->index < doubt->index)) {
                        doubt = p;
                        doubt_kind = SS_DOUBT_DEV;
                    }
                    continue;
                }
                /*
                 * Marks (issue 14 item 4): the kernel compares the packet's mark (xfrm_policy_match:
                 * fl->flowi_mark & pol->mark.m). Inbound that is skb->mark, which has nothing to do with
                 * the socket's SO_MARK; outbound a VTI device (o_key) or netfilter may set it. A policy with
                 * a mask that selects the flow therefore makes the answer undecidable here (when it could
                 * win), unless outbound the socket's own mark already matches it.
                 */
                if (!p->unreadable && p->mark_m != 0 && p->if_id == if_id &&
                    (dir == XFRM_POLICY_IN || (flow_mark(f) & p->mark_m) != p->mark_v)) {
                    /* The best such policy, by the kernel's own order (pol_order: lower priority value, then
                     * lower index): chains are met longest prefix first, so the first one met may be worse. */
                    if (doubt == NULL || p->priority < doubt->priority ||
                        (p->priority == doubt->priority && p->index < doubt->index)) {
                        doubt = p;
                        doubt_kind = SS_DOUBT_MARK;
                    }
                    continue;
                }
                if (p->sec_ctx && !p->unreadable && p->if_id == if_id) {
                    /* A security label: xfrm_policy_match asks the LSM (security_xfrm_policy_lookup) whether the
                     * flow's label (fl->flowi_secid, the socket's or the packet's) may use it, and skips it
                     * when not. That label is not read here: like a mark, undecidable if it could win. */
                    if (doubt == NULL || p->priority < doubt->priority ||
                        (p->priority == doubt->priority && p->index < doubt->index)) {
                        doubt = p;
                        doubt_kind = SS_DOUBT_SEC_CTX;
                    }
                    continue;
                }
                if (p->unreadable) {
                    /* It may be the policy the kernel applies: say so rather than guess (issue 14 item 2). */
                    *rc = -1;
                    unreadable_error(p, err);
                    return NULL;
                }
                if (p->if_id != if_id) {
                    /* Another interface's policy, or an XFRM interface's policy for a flow not routed through
                     * one: the kernel skips it (xfrm_policy_match: pol->if_id != if_id -> -ESRCH), and so do
                     * we (issue 14 item 3). */
                    continue;
                }
                best = p;
                break;
            }
        }
        /* From SUB, the SUB walk already met every unreadable policy that selects the flow (and failed). */
        if (type == XFRM_POLICY_TYPE_MAIN && top_type == XFRM_POLICY_TYPE_MAIN &&
            unreadable_may_win(s, f, dir, best, err) != 0) {
            *rc = -1;
            return NULL;
        }
        if (doubt != NULL && (best == NULL || doubt->priority < best->priority ||
                              (doubt->priority == best->priority && doubt->index < best->index))) {
            /* A labeled policy tied with the sure pick: the kernel's list order decides first (tie_differs). */
            f->mark_doubt = doubt_kind == SS_DOUBT_SEC_CTX && best != NULL && doubt->priority == best->priority
                                ? SS_DOUBT_TIE
                                : doubt_kind;
            return NULL;
        }
        if (best != NULL) {
            /* A tied policy (a marked one included) that differs: the kernel's order decides, unknown here. */
            int tie = tie_differs(s, bk, heads, f, dir, if_id, best, err);
            if (tie != 0) {
                if (tie < 0) {
                    *rc = -1;
                } else {
                    f->mark_doubt = SS_DOUBT_TIE;
                }
                return NULL;
            }
            return best;
        }
    }
    return NULL;
}

/* Sub policies are consulted first: any match there wins over main (xfrm_policy_lookup). */
const ss_policy *lookup_policy(const ss_snap *s, ss_flow *f, int dir, uint32_t if_id, int *rc,
                               secsock_error *err)
{
    return lookup_from(s, f, dir, if_id, XFRM_POLICY_TYPE_SUB, rc, err);
}

/*
 * The ciphers of the kernel's algorithm table (net/xfrm/xfrm_algo.c: aead_list, ealg_list) that encrypt.
 * XFRM accepts no other name (xfrm_aead_get_byname / xfrm_ealg_get_byname fail with ENOSYS) and stores the
 * table's own name (attach_aead, attach_one_algo: strcpy(p->alg_name, algo->name)), so a dump names one of
 * these or of the non-encrypting entries: "rfc4543(gcm(aes))" (AES-GMAC, RFC 4543: authenticates, sends
 * the payload in the clear) and "ecb(cipher_null)". A name this list does not know (a newer kernel's) is
 * taken as not encrypting: ENCRYPTED is never guessed.
 */
static const char *const encrypting_aead[] = {
    "rfc4106(gcm(aes))",
    "rfc4309(ccm(aes))",
    "rfc7539esp(chacha20,poly1305)",
};
static const char *const encrypting_ealg[] = {
    "cbc(des)",     "cbc(des3_ede)", "cbc(cast5)", "cbc(blowfish)",     "cbc(aes)",
    "cbc(serpent)", "cbc(camellia)", "cbc(twofish)", "rfc3686(ctr(aes))", "cbc(sm4)",
};

static int name_in(const char *name, const char *const *names, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        if (strcmp(name, names[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Does the SA hide the payload? By the cipher's entry in the kernel's table (xfrm_algo.c, above). */
int sa_encrypts(const ss_sa *a)
{
    if (a->proto != IPPROTO_ESP) {
        return 0;
    }
    if (a->has_aead) {
        return name_in(a->aead, encrypting_aead, sizeof(encrypting_aead) / sizeof(encrypting_aead[0]));
    }
    return a->has_crypt &&
           name_in(a->encryption, encrypting_ealg, sizeof(encrypting_ealg) / sizeof(encrypting_ealg[0]));
}

/*
 * Inbound: could the peer send by an SA that does not encrypt and still pass the policy check for template t?
 * The kernel takes a packet by whichever SA its outer destination and SPI name (xfrm_input:
 * xfrm_state_lookup) and the policy check accepts it when that SA passes xfrm_state_ok for the template
 * (__xfrm_policy_check -> xfrm_policy_ok): proto, mode, reqid (any when the template's is 0), SPI (any when
 * 0), if_id; in tunnel and BEET mode only the SA's source is compared with the template's (xfrm_state_addr_cmp
 * -> __xfrm4_state_addr_cmp: tmpl->saddr, when set), never its destination, so an SA toward any of the host's
 * addresses counts; in transport mode the destination is the flow's own address and the source is not
 * compared. The mark is skb->mark, not the socket's: not compared. Reads only s->plain (usually empty).
 * 1 when some such SA does not encrypt (or cannot be read), 0 when none, -1 on error.
 */
static int inbound_plain_sa(const ss_snap *s, ss_flow *f, const ss_policy *pol, const ss_tmpl *t,
                            const uint8_t *daddr, secsock_error *err)
{
    int tunnel = t->mode != XFRM_MODE_TRANSPORT;
    size_t i;

    for (i = 0; i < s->nplain; i++) {
        const ss_sa *a = &s->sas[s->plain[i]];
        int m;

        if (a->dead || a->proto != t->proto) {
            continue;
        }
        if (!tunnel && (a->family != t->family || !addr_eq(a->daddr, daddr, t->family))) {
            continue;
        }
        if (a->unreadable) {
            return 1; /* maybe the SA the kernel accepts here: never call this template's SAs encrypting */
        }
        if (a->mode != t->mode || (t->spi != 0 && a->spi != t->spi) || !sa_valid(a) ||
            (t->reqid != 0 && a->reqid != t->reqid) || (pol->if_id != 0 && a->if_id != pol->if_id) ||
            (a->dir != 0 && a->dir != SS_SA_DIR_IN)) {
            continue;
        }
        if (tunnel && a->family == t->family && !addr_any(t->saddr, t->family) &&
            !addr_eq(a->saddr, t->saddr, t->family)) {
            continue;
        }
        /* The kernel's input check (__xfrm_policy_check) tests the SA's selector with xfrm_selector_match and
         * the flow's family, whatever the selector's own: an unspecified one is read as the flow's family,
         * and one of the other family, whose addresses mean nothing here, counts as matching. */
        if (a->sel.family == AF_UNSPEC || a->sel.family == f->family) {
            m = flow_sel_match(&a->sel, f, XFRM_POLICY_IN, err);
            if (m < 0) {
                return -1;
            }
            if (!m) {
                continue;
            }
        }
        return 1;
    }
    return 0;
}

/* Would SA b protect the flow as a does? Every field the answer's protection reads (sa_encrypts, the outbound
 * direction check, the algorithms fill_sa reports); the SA's identity (SPI, reqid) aside: when the kernel may
 * take either of two such SAs, the protection is known and the answer lists the one the kernel's rules give
 * from what the dump shows, whose SPI may not be the one the kernel uses (a rekey overlap, the state cache). */
static int sa_protection_same(const ss_sa *a, const ss_sa *b)
{
    return a->proto == b->proto && a->mode == b->mode && a->dir == b->dir && a->has_crypt == b->has_crypt &&
           a->has_auth == b->has_auth && a->has_aead == b->has_aead &&
           (!a->has_crypt || strcmp(a->encryption, b->encryption) == 0) &&
           (!a->has_auth || strcmp(a->integrity, b->integrity) == 0) &&
           (!a->has_aead || strcmp(a->aead, b->aead) == 0);
}

/* One guess at which SAs whose soft or hard limit was reached just now (dying_maybe, expired_maybe) the kernel
 * has acted on: none (NULL), or all but alive (each SA has its own timer and packets, so any mix may hold). */
typedef struct {
    const ss_sa *alive;
} dying_guess;

static int sa_acted(const ss_sa *a, const dying_guess *g)
{
    return g != NULL && a != g->alive;
}

/* km.dying as ranked under guess g. */
static int sa_dying(const ss_sa *a, const dying_guess *g)
{
    return a->dying || (a->dying_maybe && sa_acted(a, g));
}

/* XFRM_STATE_VALID under guess g. */
static int sa_valid_as(const ss_sa *a, const dying_guess *g)
{
    return sa_valid(a) && !(a->expired_maybe && sa_acted(a, g));
}

/* xfrm_state_look_at's order: does a rank at least as high as b (not more dying, then not older)? */
static int sa_ranks_at_least(const ss_sa *a, const ss_sa *b, const dying_guess *g)
{
    int da = sa_dying(a, g), db = sa_dying(b, g);
    return da < db || (da == db && a->add_time >= b->add_time);
}

/* xfrm_state_look_at's order: does a strictly outrank b (less dying, then newer)? */
static int sa_outranks(const ss_sa *a, const ss_sa *b, const dying_guess *g)
{
    int da = sa_dying(a, g), db = sa_dying(b, g);
    return da < db || (da == db && a->add_time > b->add_time);
}

/*
 * Does a kernel of this release (uname -r) keep a state cache per policy (xfrm_state_find walks
 * pol->state_cache_list first)? Added in 6.13 and backported to 6.12-stable, and vendor kernels backport
 * net/xfrm whatever their version: so 6.12 and later, and any release not read as MAJOR.MINOR, count as
 * having it; older ones are taken by their version alone, which a vendor backport would make wrong.
 */
int ss_release_has_state_cache(const char *release)
{
    unsigned major = 0, minor = 0;
    return release == NULL || sscanf(release, "%u.%u", &major, &minor) != 2 || major > 6 ||
           (major == 6 && minor >= 12);
}

/* ss_kernel_state_cache, read from uname once (a release it cannot read is taken as one with the cache). */
static int kernel_state_cache(void)
{
    int v = __atomic_load_n(&ss_kernel_state_cache, __ATOMIC_RELAXED);
    if (v < 0) {
        struct utsname u;
        v = uname(&u) != 0 || ss_release_has_state_cache(u.release);
        __atomic_store_n(&ss_kernel_state_cache, v, __ATOMIC_RELAXED);
    }
    return v;
}

/*
 * Is a a candidate of xfrm_state_find's chain walks for template t (family, reqid, mark, if_id, no WILDRECV,
 * mode, proto, SPI, destination), whether valid or not? -1 no; 0 one of the first chain (xfrm_state_addr_check:
 * its source is the flow's); 1 one toward any source (met in the first chain if it shares the bucket, else in
 * the second); 2 one from another specific source: the second (source-any) pass matches the destination only
 * (xfrm_addr_equal), so it competes there if it shares that bucket; and when local is any (a tunnel template's
 * source, which the kernel sets to the route's preferred source, not read here) it may be the first chain's.
 */
static int sa_out_candidate(const ss_sa *a, const ss_policy *pol, const ss_tmpl *t, const uint8_t *remote,
                            const uint8_t *local)
{
    if (a->unreadable || a->family != t->family || a->proto != t->proto || !addr_eq(a->daddr, remote, t->family) ||
        a->mode != t->mode || (t->spi != 0 && a->spi != t->spi) || a->reqid != t->reqid ||
        (pol->mark_v & pol->mark_m & a->mark_m) != a->mark_v || a->if_id != pol->if_id ||
        (a->flags & XFRM_STATE_WILDRECV)) {
        return -1;
    }
    if (addr_any(a->saddr, t->family)) {
        return 1;
    }
    return !addr_any(local, t->family) && addr_eq(a->saddr, local, t->family) ? 0 : 2;
}

/* The SA's selector against the outbound flow, as xfrm_state_look_at tests it (an unspecified one matches; one
 * of another family is skipped, as before): 1, 0, SS_SEL_MAYBE, -1 on error. */
static int sa_sel_match_out(const ss_sa *a, ss_flow *f, secsock_error *err)
{
    if (a->sel.family == AF_UNSPEC) {
        return 1;
    }
    if (a->sel.family != f->family) {
        return 0;
    }
    return flow_sel_match(&a->sel, f, XFRM_POLICY_OUT, err);
}

/* sa_sel_match_out's answers by position in the template's SA chain, shared by the walks of one lookup_sa_out
 * (a selector naming a device asks flow_sel_dev); -2: not asked yet. */
#define SS_SEL_SEEN 32
typedef struct {
    int8_t m[SS_SEL_SEEN];
} sel_seen;

static int sel_match_seen(sel_seen *seen, unsigned pos, const ss_sa *a, ss_flow *f, secsock_error *err)
{
    int m;
    if (pos < SS_SEL_SEEN && seen->m[pos] != -2) {
        return seen->m[pos];
    }
    m = sa_sel_match_out(a, f, err);
    if (pos < SS_SEL_SEEN && m >= 0) {
        seen->m[pos] = (int8_t)m;
    }
    return m;
}

/*
 * Outbound, the SA the kernel would use for template t, as xfrm_state_find picks it, or NULL with f->mark_doubt
 * set when that cannot be told and the candidates' answers differ.
 *
 * xfrm_state_find walks two hash chains of state_bydst: first the one of (daddr, the flow's saddr, reqid), taking
 * states that pass xfrm_state_addr_check (their source is the flow's, or any); only when that finds no valid
 * state and no acquire in progress, the chain of (daddr, saddr any, reqid). In each, xfrm_state_look_at keeps
 * among the VALID states whose selector matches the least dying, then the newest add_time; on a full tie the
 * first met, i.e. the chain's order, which the dump does not show (an insert goes to the head, a hash resize
 * reverses it). A state toward any source may share the first chain's bucket, and the second pass takes a state
 * from another source that shares its own (it compares the destination only); which buckets are shared is not
 * computed here (__xfrm_dst_hash is unseeded and GETSADINFO gives the mask: that would be exact, but is not
 * done), so such states may compete. And a selector naming a device the backend cannot know for this flow
 * (SS_SEL_MAYBE) may or may not match. When local is any (a tunnel or BEET template's source is any: the kernel
 * asks the route for its preferred source toward the gateway, xfrm_get_saddr, and carries it to the next
 * template), which source's chain comes first is not known: every SA or acquire from a specific source is then
 * a possible first-chain state. So the sure pick is taken as the kernel's rules give it from the SAs that
 * surely match, and the answer is not decidable when another candidate the kernel may consider would rank at
 * least as high (or a first-chain candidate exists while the pick comes from the second) and protects
 * differently (sa_protection_same: one of equal protection changes only the SPI the kernel uses):
 * SS_DOUBT_DEV for a selector's device, SS_DOUBT_SEC_CTX for a security label (the LSM decides whether it
 * matches), SS_DOUBT_SA_ORDER for chain order, SS_DOUBT_SOURCE for the tunnel source; and on 6.12+
 * (SS_DOUBT_SA_CACHE) whatever its rank. Per-CPU and packet-offload SAs, and an unreadable SA toward the
 * template's destination (its reqid, mode and state unknown): SS_DOUBT_SA_KIND.
 */
static const ss_sa *lookup_sa_out_as(const ss_snap *s, ss_flow *f, const ss_policy *pol, const ss_tmpl *t,
                                     const uint8_t *remote, const uint8_t *local, const dying_guess *g,
                                     int *dying_maybe, sel_seen *seen, int *rc, secsock_error *err)
{
    unsigned pos;
    const ss_sa *best[2] = {NULL, NULL}; /* [0] the first chain (the flow's own source), [1] source any */
    int acquiring = 0, pass, doubt = SS_DOUBT_NONE, source_unknown = addr_any(local, t->family), kind = 0;
    int cache = kernel_state_cache();
    const ss_sa *pick;
    int32_t j, head = s->saheads[sa_key_hash(t->family, t->proto, remote) & s->sahmask];

    /* The picks among the sure candidates, and whether an acquire holds the first chain. */
    for (j = head, pos = 0; j >= 0; j = s->sanext[j], pos++) {
        const ss_sa *a = &s->sas[j];
        int cls = sa_out_candidate(a, pol, t, remote, local), m;

        if (a->unreadable && a->family == t->family && a->proto == t->proto && addr_eq(a->daddr, remote, t->family) &&
            (t->spi == 0 || a->spi == t->spi)) {
            kind = 1; /* an SA whose reqid, mode, selector and state were not read may be the kernel's pick */
        }
        if (cls < 0 || cls == 2) {
            continue; /* another source's: only ever a possible candidate (below) */
        }
        if (!sa_valid_as(a, g)) {
            /* xfrm_state_look_at: an XFRM_STATE_ACQ state (larval: no SPI yet) marks an acquire in progress,
             * whatever its selector, and then the second chain is not walked. A source-any one shares its
             * bucket with the source-any SAs, so it never hides one the second pass would take. */
            acquiring |= !sa_valid(a) && !a->expired && cls == 0;
            continue;
        }
        if ((m = sel_match_seen(seen, pos, a, f, err)) < 0) {
            *rc = -1;
            return NULL;
        }
        *dying_maybe |= a->dying_maybe || a->expired_maybe;
        /* A per-CPU SA (with XFRM_POLICY_CPU_ACQUIRE the sending CPU picks), a packet-offload one (a software
         * policy skips it, an offload policy takes only such: the policy's offload is not read). */
        kind |= m != 0 && (a->pcpu || a->offload_packet);
        /* A labeled SA: xfrm_state_look_at takes it only when the LSM matches its label with the policy's and
         * the flow's (security_xfrm_state_pol_flow_match), which is not read here: never a sure candidate. */
        if (m == 1 && !a->sec_ctx && (best[cls] == NULL || sa_outranks(a, best[cls], g))) {
            best[cls] = a;
        }
    }
    if (kind) {
        f->mark_doubt = SS_DOUBT_SA_KIND;
        return NULL;
    }
    pass = best[0] != NULL || acquiring ? 0 : 1;
    pick = best[pass];
    /* Every other candidate the kernel may consider, against the pick. */
    for (j = head, pos = 0; j >= 0 && doubt == SS_DOUBT_NONE; j = s->sanext[j], pos++) {
        const ss_sa *a = &s->sas[j];
        int cls = sa_out_candidate(a, pol, t, remote, local), m;

        if (cls < 0 || a == pick || (cls == 2 && !source_unknown && pass == 0 && !cache)) {
            continue; /* the first pass compares the source (xfrm_state_addr_check) */
        }
        if (!sa_valid_as(a, g)) {
            if (cls == 2 && source_unknown && pick != NULL && !sa_valid(a) && !a->expired) {
                doubt = SS_DOUBT_SOURCE; /* an acquire from the route's source would hold the flow */
            }
            continue;
        }
        if ((m = sel_match_seen(seen, pos, a, f, err)) < 0) {
            *rc = -1;
            return NULL;
        }
        *dying_maybe |= a->dying_maybe || a->expired_maybe;
        if (m == 0 || (pick != NULL && sa_protection_same(a, pick))) {
            continue;
        }
        if (cls == 2 && source_unknown) {
            /* From the route's source, it is in the chain the kernel walks first, whatever its rank. */
            doubt = SS_DOUBT_SOURCE;
        } else if (pick == NULL || (cls == 0 && pass == 1) || sa_ranks_at_least(a, pick, g)) {
            /* It may be the kernel's pick instead: a maybe-matching selector or label (the first chain's even against a
             * second-chain pick, which the kernel would then not reach), or a sure one the chain order (a tie,
             * a source-any state sharing the first chain's bucket, another source's sharing the source-any
             * chain's) may put first. */
            doubt = a->sec_ctx ? SS_DOUBT_SEC_CTX : m == SS_SEL_MAYBE ? SS_DOUBT_DEV : SS_DOUBT_SA_ORDER;
        } else if (cache) {
            /* 6.12+: xfrm_state_find first walks pol->state_cache_list, the states it used for this policy
             * before (only a delete or the policy's end drops one): any valid candidate may be there. */
            doubt = SS_DOUBT_SA_CACHE;
        }
    }
    if (doubt != SS_DOUBT_NONE) {
        f->mark_doubt = doubt;
        return NULL;
    }
    return pick;
}

/*
 * lookup_sa_out_as under every guess at which SAs whose soft or hard limit was reached just now the kernel has
 * made dying or expired yet (whether each one's xfrm_timer_proc has run, or a packet's xfrm_state_check_expire,
 * cannot be told): when two guesses' picks protect differently, not decidable. Any mix's pick is also the pick
 * of "all acted on" (when it is a surely live SA, or every SA is dying) or of "all but it" (when it is one of
 * those SAs): so those guesses, and "none acted on", are all that is tried.
 */
static const ss_sa *lookup_sa_out(const ss_snap *s, ss_flow *f, const ss_policy *pol, const ss_tmpl *t,
                                  const uint8_t *remote, const uint8_t *local, int *rc, secsock_error *err)
{
    int dying_maybe = 0;
    sel_seen seen;
    const ss_sa *pick;
    int32_t j = -1, head = s->saheads[sa_key_hash(t->family, t->proto, remote) & s->sahmask];

    memset(seen.m, -2, sizeof(seen.m));
    pick = lookup_sa_out_as(s, f, pol, t, remote, local, NULL, &dying_maybe, &seen, rc, err);
    if (*rc != 0 || f->mark_doubt != SS_DOUBT_NONE || !dying_maybe) {
        return pick;
    }
    /* j -1: all acted on; then each candidate whose limit was reached just now as the one alive */
    do {
        dying_guess g = {j >= 0 ? &s->sas[j] : NULL};
        const ss_sa *other;
        if (j >= 0 && ((!s->sas[j].dying_maybe && !s->sas[j].expired_maybe) ||
                       sa_out_candidate(&s->sas[j], pol, t, remote, local) < 0)) {
            continue;
        }
        other = lookup_sa_out_as(s, f, pol, t, remote, local, &g, &dying_maybe, &seen, rc, err);
        if (*rc != 0 || f->mark_doubt != SS_DOUBT_NONE) {
            return NULL;
        }
        if (other != pick && (other == NULL || pick == NULL || !sa_protection_same(other, pick))) {
            f->mark_doubt = SS_DOUBT_SA_ORDER;
            return NULL;
        }
    } while ((j = j < 0 ? head : s->sanext[j]) >= 0);
    return pick;
}

/*
 * The SA the kernel would use for template t: outbound as xfrm_state_find (lookup_sa_out), inbound as
 * xfrm_state_ok (reqid/spi wildcards when 0). Inbound any acceptable SA may carry the peer's packets: the newest
 * least dying is listed, and ENCRYPTED asks inbound_plain_sa about all of them. Inbound an SA with a mark is never
 * picked: the kernel finds it by the arriving packet's mark (xfrm_input -> xfrm_state_lookup(net, skb->mark,
 * ...)), not the socket's SO_MARK, so whether it receives anything is not known here; when only such SAs (or
 * ones whose selector only maybe matches) fit, f->mark_doubt is set (issue 14 item 4). Outbound the packet's
 * mark is the socket's (sk->sk_mark).
 */
static const ss_sa *lookup_sa(const ss_snap *s, ss_flow *f, int dir, const ss_policy *pol, const ss_tmpl *t,
                              const uint8_t *remote, const uint8_t *local, int *rc, secsock_error *err)
{
    const ss_sa *best = NULL;
    int32_t j;

    *rc = 0;
    f->mark_doubt = 0;
    if (s->saheads == NULL) {
        return NULL;
    }
    if (dir == XFRM_POLICY_OUT) {
        return lookup_sa_out(s, f, pol, t, remote, local, rc, err);
    }
    j = s->saheads[sa_key_hash(t->family, t->proto, remote) & s->sahmask];
    for (; j >= 0; j = s->sanext[j]) {
        const ss_sa *a = &s->sas[j];
        int m = 1, marked;

        if (a->unreadable) {
            continue; /* never used (inbound_plain_sa counts it against ENCRYPTED) */
        }
        if (a->family != t->family || a->proto != t->proto || !addr_eq(a->daddr, remote, t->family) ||
            a->mode != t->mode || (t->spi != 0 && a->spi != t->spi) || !sa_valid(a)) {
            continue;
        }
        if (!addr_any(local, t->family) && !addr_any(a->saddr, t->family) && !addr_eq(a->saddr, local, t->family)) {
            continue;
        }
        if ((t->reqid != 0 && a->reqid != t->reqid) || (pol->if_id != 0 && a->if_id != pol->if_id) ||
            (a->dir != 0 && a->dir != SS_SA_DIR_IN)) {
            continue;
        }
        marked = a->mark_m != 0 || a->mark_v != 0;
        if (a->sel.family != AF_UNSPEC) {
            if (a->sel.family != f->family) {
                continue;
            }
            m = flow_sel_match(&a->sel, f, XFRM_POLICY_IN, err);
            if (m < 0) {
                *rc = -1;
                return NULL;
            }
            if (!m) {
                continue;
            }
        }
        if (marked || m == SS_SEL_MAYBE || a->sec_ctx) {
            /* cleared again if an SA that surely fits is found. A labeled SA carries the peer's packets only if
             * the LSM lets the flow's policy and socket take them (the packet's label is the SA's, matched in
             * the policy lookup and at the socket's receive), which is not read here. */
            f->mark_doubt = a->sec_ctx ? SS_DOUBT_SEC_CTX : marked ? SS_DOUBT_MARK : SS_DOUBT_DEV;
            continue;
        }
        if (best == NULL || sa_outranks(a, best, NULL)) {
            best = a;
        }
    }
    if (best != NULL) {
        f->mark_doubt = 0;
    }
    return best;
}

typedef char alg_name_sizes_agree[SS_ALG_NAME == SECSOCK_ALG_NAME_MAX ? 1 : -1]; /* fill_sa copies one to the other */
/* An algorithm name into a zeroed seam field, cut as snprintf would cut it (three snprintf calls were a
 * measurable part of a secured answer). */
static void copy_alg_name(char *dst, const char *src)
{
    memcpy(dst, src, strnlen(src, SECSOCK_ALG_NAME_MAX - 1));
}

/* Ours, no kernel counterpart: the seam's record of an SA (secsock_backend.h). */
static void fill_sa(secsock_sa *o, const ss_sa *a)
{
    memset(o, 0, sizeof(*o));
    o->proto = a->proto;
    o->mode = a->mode;
    o->spi = ntohl(a->spi);
    o->reqid = a->reqid;
    if (a->has_crypt) {
        copy_alg_name(o->encryption, a->encryption);
    }
    if (a->has_auth) {
        copy_alg_name(o->integrity, a->integrity);
    }
    if (a->has_aead) {
        copy_alg_name(o->aead, a->aead);
    }
}

/* Ours, no kernel counterpart: no SA protects this direction, so forget the ones filled so far. */
static void dir_clear(secsock_direction *out)
{
    memset(out->sas, 0, out->count * sizeof(out->sas[0]));
    out->count = 0;
}

/* The reason for a direction lookup_from or lookup_sa could not decide. */
static uint8_t doubt_reason(const ss_flow *f)
{
    return f->mark_doubt == SS_DOUBT_TIE        ? SECSOCK_REASON_TIE_UNDECIDABLE
           : f->mark_doubt == SS_DOUBT_DEV      ? SECSOCK_REASON_DEV_UNDECIDABLE
           : f->mark_doubt == SS_DOUBT_SA_ORDER ? SECSOCK_REASON_SA_ORDER_UNDECIDABLE
           : f->mark_doubt == SS_DOUBT_SOURCE   ? SECSOCK_REASON_TUNNEL_SOURCE_UNDECIDABLE
           : f->mark_doubt == SS_DOUBT_SA_CACHE ? SECSOCK_REASON_SA_CACHE_UNDECIDABLE
           : f->mark_doubt == SS_DOUBT_SA_KIND  ? SECSOCK_REASON_SA_KIND_UNDECIDABLE
           : f->mark_doubt == SS_DOUBT_SEC_CTX  ? SECSOCK_REASON_SEC_CTX_UNDECIDABLE
                                                : SECSOCK_REASON_MARK_UNDECIDABLE;
}

/*
 * One direction. Protected when the policy has templates, every non-optional template has a valid SA, and at
 * least one ESP/AH SA applies for sure (outbound: any found SA is used; inbound: the kernel also accepts
 * packets without an optional template's transform, so optional SAs are listed but do not count): outbound as
 * xfrm_tmpl_resolve resolves the templates, inbound as xfrm_policy_ok checks them.
 */
int eval_dir(const ss_snap *s, ss_flow *f, int dir, secsock_direction *out, dir_verdict *v,
             secsock_error *err)
{
    const ss_policy *pol, *pols[2] = {NULL, NULL};
    int rc, i, pi, counted = 0, encrypted = 0, if_id_unknown = 0;
    uint32_t if_id = 0;

    /* Only the entries counted are ever read: clearing the whole direction (4 SAs, ~800 bytes) twice per
     * query was a measurable part of the steady query (issue 5). */
    out->count = 0;
    v->protected_ = v->encrypted = 0;
    v->reason = SECSOCK_REASON_NONE;
    f->in_if_id_lookup = 0; /* set below only for the interface's own lookup */
    if (s->b[bucket_of(dir, f->family, XFRM_POLICY_TYPE_MAIN)].has_if_id ||
        s->b[bucket_of(dir, f->family, XFRM_POLICY_TYPE_SUB)].has_if_id) {
        rc = resolve_if_id(f, err);
        if (rc != 0 && rc != SS_DEV_UNKNOWN) {
            return -1;
        }
        /* SS_DEV_UNKNOWN: whether the flow leaves by an XFRM interface depends on a device the socket may
         * choose per message (flow_out_dev_knowable). Inbound that decides the if_id looked up; outbound
         * only a flow the if_id 0 lookup leaves untransformed reaches the interface (below). */
        if_id_unknown = rc == SS_DEV_UNKNOWN;
        if (if_id_unknown && dir != XFRM_POLICY_OUT) {
            t_last.index[dir] = t_last.priority[dir] = 0;
            v->reason = SECSOCK_REASON_OUT_DEV_UNDECIDABLE;
            return 0;
        }
        if_id = if_id_unknown ? 0 : f->if_id;
    }
    pol = lookup_policy(s, f, dir, dir == XFRM_POLICY_OUT ? 0 : if_id, &rc, err);
    if (rc != 0) {
        return -1;
    }
    if (dir == XFRM_POLICY_OUT && (if_id != 0 || if_id_unknown) && !f->mark_doubt &&
        (pol == NULL || (pol->action != XFRM_POLICY_BLOCK && pol->ntmpl == 0))) {
        /* Routed through an XFRM interface: the socket's packet is looked up with if_id 0 first
         * (xfrm_lookup_route -> xfrm_lookup_with_ifid(..., 0)); only when that leaves it untransformed (no
         * policy, or a bypass) does the interface look it up again with its own if_id (xfrmi_xmit2). Inbound
         * uses the interface's if_id only (__xfrm_policy_check asks the interface for it). A sub bypass is
         * bundled with its main policy first (xfrm_expand_policies): a main block or templates there
         * block or transform the packet, and there is no second lookup. */
        const ss_policy *main_pol = NULL;
        if (pol != NULL && pol->type == XFRM_POLICY_TYPE_SUB) {
            main_pol = lookup_from(s, f, dir, 0, XFRM_POLICY_TYPE_MAIN, &rc, err);
            if (rc != 0) {
                return -1;
            }
        }
        if (!f->mark_doubt &&
            (main_pol == NULL || (main_pol->action != XFRM_POLICY_BLOCK && main_pol->ntmpl == 0))) {
            if (if_id_unknown) {
                t_last.index[dir] = pol != NULL ? pol->index + 1 : 0;
                t_last.priority[dir] = pol != NULL ? pol->priority : 0;
                v->reason = SECSOCK_REASON_OUT_DEV_UNDECIDABLE;
                return 0;
            }
            /* The interface's lookup (and the SA pick that follows it) compares a selector's dev with
             * the interface's underlying device (xfrmi_xmit: fl.flowi_oif = xi->p.link): flow_sel_dev. */
            f->in_if_id_lookup = 1;
            pol = lookup_policy(s, f, dir, if_id, &rc, err);
            if (rc != 0) {
                return -1;
            }
        }
    }
    t_last.index[dir] = pol != NULL ? pol->index + 1 : 0;
    t_last.priority[dir] = pol != NULL ? pol->priority : 0;
    if (f->mark_doubt) {
        /* Never a guess: not protected, and the reason says the packet's mark (issue 14 item 4) or the
         * kernel's order among tied policies decides. */
        v->reason = doubt_reason(f);
        return 0;
    }
    if (pol != NULL && pol->action == XFRM_POLICY_ALLOW && (pol->ntmpl > 0 || pol->type == XFRM_POLICY_TYPE_SUB)) {
        /* A policy that may protect the flow: is XFRM disabled on its device (loopback)? Asked only here, so
         * loopback flows without such a policy cost nothing more; their answer is clear either way. */
        rc = flow_xfrm_disabled(f, dir, err);
        if (rc != 0) {
            if (rc == SS_DEV_UNKNOWN) {
                v->reason = SECSOCK_REASON_OUT_DEV_UNDECIDABLE;
                return 0;
            }
            if (rc < 0) {
                return -1;
            }
            v->reason = rc == SS_XFRM_MAYBE_DISABLED ? SECSOCK_REASON_XFRM_MAYBE_DISABLED
                                                     : SECSOCK_REASON_XFRM_DISABLED;
            return 0;
        }
    }
    pols[0] = pol;
    if (pol != NULL && pol->type == XFRM_POLICY_TYPE_SUB && pol->action == XFRM_POLICY_ALLOW) {
        /* A sub policy that allows is bundled with the main policy for the flow (out: xfrm_expand_policies;
         * in: __xfrm_policy_check): a main block blocks, and the main policy's templates follow the sub's. */
        pols[1] = lookup_from(s, f, dir, pol->if_id, XFRM_POLICY_TYPE_MAIN, &rc, err);
        if (rc != 0) {
            return -1;
        }
        if (f->mark_doubt) {
            v->reason = doubt_reason(f);
            return 0;
        }
        if (pols[1] != NULL && pols[1]->action == XFRM_POLICY_BLOCK) {
            pol = pols[1];
        }
    }
    /* No policy, a bypass (allow without templates) or a block: no SA protects the flow. */
    if (pol == NULL || pol->action == XFRM_POLICY_BLOCK || pol->ntmpl + (pols[1] ? pols[1]->ntmpl : 0) == 0) {
        v->reason = pol == NULL                           ? SECSOCK_REASON_NO_POLICY
                    : pol->action == XFRM_POLICY_BLOCK ? SECSOCK_REASON_BLOCK
                                                       : SECSOCK_REASON_BYPASS;
        return 0;
    }
    /* Each policy's templates resolve from the flow's own addresses (xfrm_tmpl_resolve_one per policy). */
    for (pi = 0; pi < 2 && pols[pi] != NULL; pi++) {
        const uint8_t *daddr = dir == XFRM_POLICY_OUT ? f->peer : f->local;
        const uint8_t *saddr = dir == XFRM_POLICY_OUT ? f->local : f->peer;
        pol = pols[pi];
        for (i = 0; i < pol->ntmpl; i++) {
            const ss_tmpl *t = &pol->tmpl[i];
            const uint8_t *remote = daddr, *local = saddr;
            const ss_sa *a;
            int all_encrypt = 1; /* inbound: every SA this template accepts encrypts */

            if (t->mode == XFRM_MODE_TUNNEL || t->mode == XFRM_MODE_BEET) {
                /* A source of any stays any here: the kernel's (xfrm_get_saddr, the route's preferred source)
                 * is not read, and lookup_sa_out treats any as unknown, also for the templates it carries to. */
                remote = t->daddr;
                local = t->saddr;
            }
            a = lookup_sa(s, f, dir, pol, t, remote, local, &rc, err);
            if (rc != 0) {
                return -1;
            }
            if (a != NULL && dir == XFRM_POLICY_IN && sa_encrypts(a)) {
                int plain = inbound_plain_sa(s, f, pol, t, remote, err);
                if (plain < 0) {
                    return -1;
                }
                all_encrypt = !plain;
            }
            if (dir == XFRM_POLICY_OUT && a != NULL && a->dir != 0 && a->dir != SS_SA_DIR_OUT) {
                /* The best SA is one for the other direction (XFRMA_SA_DIR, kernel 6.10): xfrm_tmpl_resolve_one
                 * drops the flow (-EINVAL, XfrmOutStateDirError), optional template or not; it does not look
                 * for another SA. */
                dir_clear(out);
                v->reason = SECSOCK_REASON_SA_WRONG_DIR;
                return 0;
            }
            if (a == NULL) {
                if (!t->optional || (dir == XFRM_POLICY_OUT && f->mark_doubt)) {
                    /* Outbound an optional template's SA is used when the kernel finds one: if that cannot be
                     * told (lookup_sa_out), neither can which SAs the flow uses. */
                    /* The kernel holds or drops the flow until a key manager adds the SA: not protected. Or,
                     * inbound, only SAs with a mark fit: the arriving packet's mark decides (lookup_sa). */
                    dir_clear(out);
                    v->reason = f->mark_doubt ? doubt_reason(f) : SECSOCK_REASON_NO_SA;
                    return 0;
                }
                continue;
            }
            if (out->count < SECSOCK_MAX_SAS) {
                fill_sa(&out->sas[out->count++], a);
            }
            if ((a->proto == IPPROTO_ESP || a->proto == IPPROTO_AH) && (dir == XFRM_POLICY_OUT || !t->optional)) {
                counted++;
                encrypted |= sa_encrypts(a) && all_encrypt;
            }
            daddr = remote;
            saddr = local;
        }
    }
    v->protected_ = counted > 0;
    v->encrypted = v->protected_ && encrypted;
    v->reason = !v->protected_ ? SECSOCK_REASON_OPTIONAL_ONLY
                : v->encrypted ? SECSOCK_REASON_ENCRYPTED
                               : SECSOCK_REASON_NOT_ENCRYPTING;
    if (!v->protected_) {
        dir_clear(out);
    }
    /* The kernel applies template 0 first, so it is the innermost transform; the seam lists outermost first. */
    for (i = 0; (size_t)i < out->count / 2; i++) {
        secsock_sa tmp = out->sas[i];
        out->sas[i] = out->sas[out->count - 1 - (size_t)i];
        out->sas[out->count - 1 - (size_t)i] = tmp;
    }
    return 0;
}

/*
 * A direction of a connection that may use several paths, after eval_dir has answered for the one the
 * socket names (issue 14 review 2, item 3). MPTCP: getsockname/getpeername describe the first subflow, and
 * the path manager may open or accept further ones (__mptcp_subflow_connect, an MP_JOIN from another peer
 * address) from and to other addresses, ports and devices, each looked up as its own TCP flow. SCTP: a
 * multihomed association sends to the peer's other addresses (retransmissions, a path failover) and from
 * the host's other addresses (a socket bound to the wildcard address offers them all). Where the direction
 * has no policy at all, every path meets none: the answer stands. Otherwise not decidable.
 */
void multipath_verdict(const ss_snap *s, int dir, secsock_direction *out, dir_verdict *v)
{
    static const int families[2] = {AF_INET, AF_INET6};
    int i, type;

    for (i = 0; i < 2; i++) {
        for (type = XFRM_POLICY_TYPE_MAIN; type <= XFRM_POLICY_TYPE_SUB; type++) {
            const ss_bucket *bk = &s->b[bucket_of(dir, families[i], type)];
            if (bk->end > bk->start) {
                out->count = 0;
                v->protected_ = v->encrypted = 0;
                v->reason = SECSOCK_REASON_MULTIPATH_UNDECIDABLE;
                return;
            }
        }
    }
}
