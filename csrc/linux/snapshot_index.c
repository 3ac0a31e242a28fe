/* The snapshot's index: sorted policies with per-bucket hashes, the SA hash, and changes applied in place. */
#include "backend_linux.h"

#include <linux/ipsec.h> /* IPSEC_PROTO_ANY */

void snap_free_policies(ss_snap *s)
{
    int i;
    for (i = 0; i < SS_NBUCKETS; i++) {
        free(s->b[i].heads);
    }
    memset(s->b, 0, sizeof(s->b));
    free(s->pols);
    free(s->pnext);
    s->pols = NULL;
    s->pnext = NULL;
    s->npols = s->cap = 0;
    s->pol_kept[0] = s->pol_kept[1] = 0;
}

void snap_free_sas(ss_snap *s)
{
    if (s->sas != NULL) {
        explicit_bzero(s->sas, s->sacap * sizeof(*s->sas));
    }
    free(s->sas);
    free(s->sanext);
    free(s->saheads);
    free(s->plain);
    s->sas = NULL;
    s->sanext = s->saheads = s->plain = NULL;
    s->nsas = s->sacap = s->nplain = s->plaincap = 0;
    s->sahmask = 0;
    s->sa_live = 0;
    s->recheck_at = 0; /* no SA left to settle; the seen list stays: the dump that follows reads with it */
}

static uint32_t table_size(size_t n)
{
    uint32_t size = 16;
    while (size < n * 2 && size < (1u << 24)) {
        size <<= 1;
    }
    return size;
}

/*
 * The order within a bucket: lower priority value first (the kernel's), then lower index, only to make the
 * order total. The kernel breaks a tie by its list order, which neither the index nor the dump gives (an
 * update to a new priority goes last among its ties but keeps its index; 6.18 compares a fresh pos across
 * inexact lists): lookup_from answers a tie between policies that differ as not decidable (tie_differs).
 */
int pol_order(const void *a, const void *b)
{
    const ss_policy *x = a, *y = b;
    int bx = bucket_of(x->dir, x->sel.family, x->type), by = bucket_of(y->dir, y->sel.family, y->type);
    if (bx != by) {
        return bx < by ? -1 : 1;
    }
    if (x->priority != y->priority) {
        return x->priority < y->priority ? -1 : 1;
    }
    return x->index < y->index ? -1 : (x->index > y->index);
}

/* Sort the policies (unless they already are) and build the per-bucket indexes. 0, or -1 (out of memory). */
int snap_index_policies_sorted(ss_snap *s, int sorted)
{
    size_t i;
    int b;

    if (s->npols > 1 && !sorted) {
        qsort(s->pols, s->npols, sizeof(*s->pols), pol_order);
    }
    free(s->pnext);
    for (b = 0; b < SS_NBUCKETS; b++) {
        free(s->b[b].heads);
    }
    memset(s->b, 0, sizeof(s->b)); /* before any return: snap_free_policies must not free these heads again */
    s->pnext = malloc((s->npols > 0 ? s->npols : 1) * sizeof(*s->pnext));
    if (s->pnext == NULL) {
        return -1;
    }
    i = 0;
    for (b = 0; b < SS_NBUCKETS; b++) {
        ss_bucket *bk = &s->b[b];
        uint8_t seen[129];
        size_t j, count;
        int pl;

        bk->start = i;
        while (i < s->npols && bucket_of(s->pols[i].dir, s->pols[i].sel.family, s->pols[i].type) == b) {
            i++;
        }
        bk->end = i;
        count = bk->end - bk->start;
        bk->hmask = table_size(count) - 1;
        bk->heads = malloc(((size_t)bk->hmask + 1) * sizeof(*bk->heads));
        if (bk->heads == NULL) {
            return -1;
        }
        memset(bk->heads, 0xff, ((size_t)bk->hmask + 1) * sizeof(*bk->heads));
        memset(seen, 0, sizeof(seen));
        /* Insert from the worst to the best so each chain runs best first. */
        for (j = bk->end; j > bk->start; j--) {
            ss_policy *p = &s->pols[j - 1];
            uint8_t masked[16];
            uint32_t h;

            mask_addr(masked, p->sel.daddr, p->sel.prefixlen_d, p->sel.family);
            h = pol_key_hash(p->sel.prefixlen_d, masked, p->sel.family) & bk->hmask;
            s->pnext[j - 1] = bk->heads[h];
            bk->heads[h] = (int32_t)(j - 1);
            seen[p->sel.prefixlen_d] = 1;
            if (p->if_id != 0) {
                bk->has_if_id = 1;
            }
        }
        bk->nplens = 0;
        for (pl = 128; pl >= 0; pl--) {
            if (seen[pl]) {
                bk->plens[bk->nplens++] = (uint8_t)pl;
            }
        }
    }
    return 0;
}

int snap_index_policies(ss_snap *s)
{
    return snap_index_policies_sorted(s, 0);
}

int snap_index_sas(ss_snap *s)
{
    size_t i;

    s->nplain = 0; /* before any return: no slot of an older layout stays listed */
    s->sahmask = table_size(s->nsas) - 1;
    s->saheads = malloc(((size_t)s->sahmask + 1) * sizeof(*s->saheads));
    /* As long as the SA array's capacity, so notifications can append without reallocating it. */
    s->sanext = malloc((s->sacap > 0 ? s->sacap : 1) * sizeof(*s->sanext));
    if (s->saheads == NULL || s->sanext == NULL) {
        return -1;
    }
    memset(s->saheads, 0xff, ((size_t)s->sahmask + 1) * sizeof(*s->saheads));
    for (i = 0; i < s->nsas; i++) {
        uint32_t h = sa_key_hash(s->sas[i].family, s->sas[i].proto, s->sas[i].daddr) & s->sahmask;
        s->sanext[i] = s->saheads[h];
        s->saheads[h] = (int32_t)i;
        if (!s->sas[i].dead && sa_may_be_plain(&s->sas[i])) {
            if (grow((void **)&s->plain, &s->plaincap, s->nplain + 1, sizeof(*s->plain)) != 0) {
                return -1;
            }
            s->plain[s->nplain++] = (int32_t)i;
        }
    }
    return 0;
}

int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    size_t ncap;
    void *p;

    if (need <= *cap) {
        return 0;
    }
    ncap = *cap ? *cap * 2 : 64;
    while (ncap < need) {
        ncap *= 2;
    }
    p = realloc(*arr, ncap * elem);
    if (p == NULL) {
        return -1;
    }
    *arr = p;
    *cap = ncap;
    return 0;
}

/* ---- Incremental SA updates from notifications ---- */

int sa_same_id(const ss_sa *a, const ss_sa *b)
{
    return a->family == b->family && a->proto == b->proto && a->spi == b->spi && a->mark_v == b->mark_v &&
           a->mark_m == b->mark_m && a->if_id == b->if_id && addr_eq(a->daddr, b->daddr, a->family);
}

/* The slot of the live SA with key's identity, or -1; *prev gets its predecessor in the chain (-1: head). */
int32_t sa_find(const ss_snap *s, const ss_sa *key, int32_t *prev)
{
    int32_t j, p = -1;

    if (s->saheads == NULL) {
        return -1;
    }
    for (j = s->saheads[sa_key_hash(key->family, key->proto, key->daddr) & s->sahmask]; j >= 0; j = s->sanext[j]) {
        if (sa_same_id(&s->sas[j], key)) {
            *prev = p;
            return j;
        }
        p = j;
    }
    return -1;
}

/*
 * Is there an unreadable SA (on_sa keeps only its family, proto, SPI, destination and what marks it read) that
 * a notification for key may be about? Then sa_same_id cannot be trusted to find it: only a dump can tell.
 */
static int sa_unreadable_twin(const ss_snap *s, const ss_sa *key)
{
    int32_t j;

    for (j = s->saheads[sa_key_hash(key->family, key->proto, key->daddr) & s->sahmask]; j >= 0; j = s->sanext[j]) {
        const ss_sa *a = &s->sas[j];
        if (a->unreadable && a->family == key->family && a->proto == key->proto && a->spi == key->spi &&
            addr_eq(a->daddr, key->daddr, a->family)) {
            return 1;
        }
    }
    return 0;
}

/* Drop the holes left by deletions and rebuild the hash: 0, or -1 (out of memory). */
static int sa_compact(ss_snap *s)
{
    size_t i, n = 0;

    for (i = 0; i < s->nsas; i++) {
        if (!s->sas[i].dead) {
            s->sas[n++] = s->sas[i];
        }
    }
    if (n < s->nsas) {
        explicit_bzero(s->sas + n, (s->nsas - n) * sizeof(*s->sas));
    }
    s->nsas = n;
    free(s->saheads);
    free(s->sanext);
    s->saheads = s->sanext = NULL;
    return snap_index_sas(s);
}

/* Unlink slot j (prev: its predecessor in the chain, or -1) and leave a hole. */
static void sa_unlink(ss_snap *s, int32_t j, int32_t prev)
{
    const ss_sa *a = &s->sas[j];

    if (prev < 0) {
        s->saheads[sa_key_hash(a->family, a->proto, a->daddr) & s->sahmask] = s->sanext[j];
    } else {
        s->sanext[prev] = s->sanext[j];
    }
    explicit_bzero(&s->sas[j], sizeof(s->sas[j]));
    s->sas[j].dead = 1;
    s->sanext[j] = -1;
    s->sa_live--;
}

/*
 * xfrm_state_add deletes the acquire's larval SA that a new SA replaces without a notification
 * (xfrm_state_delete, no km_state_notify): the one __find_acq_core finds for the new SA's tuple (mode, reqid,
 * family, proto, spi 0, mark, if_id, daddr, saddr). Mirror it, so the snapshot's count stays the kernel's.
 * (The kernel looks an acquire up by the new SA's km.seq first, which the snapshot does not keep: if that
 * finds another larval SA, the counts differ and the cross-check re-reads.)
 */
static void sa_drop_replaced_acquire(ss_snap *s, const ss_sa *a)
{
    int32_t j, prev = -1;
    uint32_t mark = a->mark_v & a->mark_m;

    for (j = s->saheads[sa_key_hash(a->family, a->proto, a->daddr) & s->sahmask]; j >= 0; prev = j, j = s->sanext[j]) {
        const ss_sa *x = &s->sas[j];
        if (x->spi == 0 && !x->unreadable && !sa_valid(x) && x->reqid == a->reqid && x->mode == a->mode &&
            x->family == a->family && x->proto == a->proto && (mark & x->mark_m) == x->mark_v &&
            x->if_id == a->if_id && addr_eq(x->daddr, a->daddr, a->family) &&
            addr_eq(x->saddr, a->saddr, a->family)) {
            sa_unlink(s, j, prev);
            return;
        }
    }
}

/*
 * km.dying set by xfrm_timer_proc or xfrm_state_check_expire stays set (only xfrm_state_update clears it: an
 * update re-dumps, and sa_apply forgets the notification then), but a dump shows only the limits, from which
 * ss_parse_sa cannot always tell it (the timer's second, a byte limit crossed and reported): so a dump keeps
 * what a soft-expire notification said, by SA id and add_time.
 */
int sa_save_dying(const ss_snap *s, ss_sa **out, size_t *n)
{
    size_t i, count = 0;

    *out = NULL;
    *n = 0;
    for (i = 0; i < s->nsas; i++) {
        count += !s->sas[i].dead && s->sas[i].dying_notified;
    }
    if (count == 0) {
        return 0;
    }
    if ((*out = malloc(count * sizeof(**out))) == NULL) {
        return -1;
    }
    for (i = 0; i < s->nsas; i++) {
        if (!s->sas[i].dead && s->sas[i].dying_notified) {
            (*out)[(*n)++] = s->sas[i];
        }
    }
    return 0;
}

void sa_restore_dying(ss_snap *s, const ss_sa *kept, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        int32_t prev, j = sa_find(s, &kept[i], &prev);
        /* The same add_time too: an SA deleted and added again with the same SPI is a new state, not dying. */
        if (j >= 0 && s->sas[j].add_time == kept[i].add_time) {
            s->sas[j].dying = s->sas[j].dying_notified = 1;
            s->sas[j].dying_maybe = 0;
        }
    }
}

void sa_note_seen(ss_snap *s, const ss_sa *a, int64_t now)
{
    ss_sa_seen *slot = NULL;
    size_t i;

    for (i = 0; i < SS_SA_SEEN_KEPT && slot == NULL; i++) {
        if (s->seen[i].at != 0 && sa_same_id(&s->seen[i].sa, a)) {
            slot = &s->seen[i];
        }
    }
    for (i = 0; i < SS_SA_SEEN_KEPT && slot == NULL; i++) {
        if (s->seen[i].at == 0 || s->seen[i].at + SS_TIMER_LATE_S <= now) {
            slot = &s->seen[i]; /* free, or too old to change what ss_sa_settle says */
        }
    }
    if (slot == NULL) {
        /* A burst of adds and updates: evicting a note that still matters would read a limit as surely acted
         * on while the timer the update restarted has not run; count every SA as seen now instead. */
        s->seen_all_at = now;
        return;
    }
    slot->sa = *a;
    slot->at = now;
}

void sa_settle_seen(ss_snap *s, ss_sa *a, int64_t now)
{
    int64_t seen_at = s->seen_all_at, settles;
    size_t i;

    for (i = 0; i < SS_SA_SEEN_KEPT; i++) {
        if (s->seen[i].at > seen_at && sa_same_id(&s->seen[i].sa, a)) {
            seen_at = s->seen[i].at;
        }
    }
    settles = ss_sa_settle(a, now, seen_at);
    if (settles != 0) {
        /* In the freshness clock's terms (refresh_locked compares it), from the wall clock's milliseconds, not
         * `now`'s whole seconds: counted from those, the read came up to 1 s after the maybe turned sure (seen in
         * the VM: an answer asked 0.2 s after it was still "not decidable"). 50 ms for time()'s coarse second. */
        struct timespec wall;
        int64_t at;
        if (clock_gettime(CLOCK_REALTIME, &wall) != 0) {
            wall.tv_sec = (time_t)now;
            wall.tv_nsec = 0;
        }
        at = ss_clock_ms() + settles * 1000 - ((int64_t)wall.tv_sec * 1000 + wall.tv_nsec / 1000000) + 50;
        if (s->recheck_at == 0 || at < s->recheck_at) {
            s->recheck_at = at;
        }
    }
}

int sa_notify_apply(ss_snap *s, int stale, uint16_t type, const void *payload, size_t len)
{
    ss_sa a;
    const char *why;
    int action, r;
    int64_t now = (int64_t)time(NULL);

    if (type == XFRM_MSG_FLUSHSA) {
        /* Every SA of the flushed protocol is gone (xfrm_state_flush: xfrm_id_proto_match, 0 for all,
         * IPSEC_PROTO_ANY for AH, ESP and IPComp), so a dying one notified is about none a dump can show.
         * Kept, the dump that follows (stale or not, a flush reads the table again) would give it back by id
         * and add time (sa_restore_dying) to one added again with the same SPI in the same second, whose
         * NEWSA came after the drain, before the dump: dying, it lost to an older SA the kernel does not
         * prefer. Only the kernel's own IPComp tunnel states outlive a flush, which have no limits. A flush
         * lost with other notifications (ENOBUFS) cannot be seen: then, as for a lost delete and add, a
         * notified dying stays for an SA added again in the same second until an update of it. */
        struct xfrm_usersa_flush fl;
        size_t i;
        fl.proto = IPSEC_PROTO_ANY;
        if (payload != NULL && len >= sizeof(fl)) {
            memcpy(&fl, payload, sizeof(fl));
        }
        for (i = 0; i < s->nsas; i++) {
            uint8_t p = s->sas[i].proto;
            if (fl.proto == 0 || p == fl.proto ||
                (fl.proto == IPSEC_PROTO_ANY && (p == IPPROTO_AH || p == IPPROTO_ESP || p == IPPROTO_COMP))) {
                s->sas[i].dying_notified = 0;
            }
        }
    }
    if (stale && type != XFRM_MSG_NEWSA && type != XFRM_MSG_UPDSA && type != XFRM_MSG_DELSA &&
        type != XFRM_MSG_EXPIRE) {
        return 0; /* the dump to come reads it */
    }
    if (ss_parse_sa_notify(type, payload, len, &a, &action, &why) != SS_PARSE_OK) {
        explicit_bzero(&a, sizeof(a));
        return stale ? 0 : -1;
    }
    if (action == SS_SA_UPSERT || action == SS_SA_UPDATE) {
        /* The kernel (re)started the SA's timer (__xfrm_state_insert, xfrm_state_update: in 1 s), and an
         * update cleared km.dying: for a while its time limits may not be acted on, in this copy and in
         * what a dump reads of it, even a dump for a stale table, which must not keep a notified dying. */
        /* Only what can be read wrongly needs a note: an update (its message holds the request's add time,
         * not the SA's, so whether a limit is due cannot be told from it), an add whose time limit is due. An
         * add's limits count from its add time, due later than the timer's first run. */
        if (action == SS_SA_UPDATE || a.soft_due_at != 0 || a.hard_due_at != 0) {
            sa_note_seen(s, &a, now);
        }
        sa_settle_seen(s, &a, now);
    }
    if (stale && (action == SS_SA_UPSERT || action == SS_SA_UPDATE || action == SS_SA_DELETE)) {
        /* The state a notified dying was about is gone or updated (km.dying 0): the dump must not keep it,
         * and sa_restore_dying would, for one deleted and added again with the same SPI in the same second. */
        int32_t prev, j = sa_find(s, &a, &prev);
        if (j >= 0) {
            s->sas[j].dying_notified = 0;
        }
    }
    if (stale && action == SS_SA_DYING) {
        /* The kernel made the SA dying (km.dying, kept until an update), which the dump to come may not show
         * (the timer's second, a byte limit crossed): note it for sa_save_dying, as sa_apply does on a fresh
         * table, or the expiry is lost and an SA the kernel no longer prefers is read as preferred. The note
         * keeps the table's add time (sa_restore_dying): where the table holds an older state of the same id
         * (deleted and added again since its dump) it comes back only if both were added in the same second.
         * An SA the stale table does not hold (added since its dump) keeps only what the dump shows of it. */
        int32_t prev, j = sa_find(s, &a, &prev);
        if (j >= 0) {
            s->sas[j].dying_notified = 1;
        }
    }
    r = stale ? 0 : sa_apply(s, action, &a) != 0 ? -1 : 1;
    explicit_bzero(&a, sizeof(a));
    return r;
}

/* Apply one SA notification to the snapshot's SA table: 0, or -1 when only a new dump can be trusted. */
int sa_apply(ss_snap *s, int action, const ss_sa *a)
{
    int32_t j, prev = -1;

    if (action == SS_SA_NONE) {
        return 0; /* a soft expire userspace sent (ss_parse_sa_notify): the kernel changed nothing */
    }
    if (action == SS_SA_RESYNC || s->saheads == NULL) {
        return -1;
    }
    j = sa_find(s, a, &prev);
    if (j < 0 && sa_unreadable_twin(s, a)) {
        return -1; /* maybe about an SA we could not read whole: it must not stay in the table */
    }
    if (action == SS_SA_UPDATE && j >= 0 && (sa_valid(&s->sas[j]) || s->sas[j].expired)) {
        /* The kernel updates a valid SA only in part (lifetimes, selector, encapsulation) yet announces the
         * request as sent: only a dump tells what the SA is now. So for one read as expired: the kernel took
         * the update, so its timer had not yet acted (xfrm_state_update needs XFRM_STATE_VALID), and the SA
         * keeps its add time, not the request's. A larval SA is replaced whole: apply it.
         * The update clears km.dying (xfrm_state_update): the dump must not keep a notified one. */
        s->sas[j].dying_notified = 0;
        return -1;
    }
    if (action == SS_SA_DYING) {
        if (j >= 0) {
            s->sas[j].dying = s->sas[j].dying_notified = 1;
            s->sas[j].dying_maybe = 0;
        }
        return 0;
    }
    if (action == SS_SA_DELETE || j >= 0) {
        if (j >= 0) {
            sa_unlink(s, j, prev);
        }
        if (action == SS_SA_DELETE) {
            return 0;
        }
    }
    if (action == SS_SA_UPSERT && j < 0 && a->spi != 0) {
        sa_drop_replaced_acquire(s, a);
    }
    /* Insert (an update was unlinked above): append, then link at the head of its chain. */
    {
        uint32_t h;

        if (s->nsas + 1 > s->sacap || s->sanext == NULL) {
            /* sanext first, to the capacity sas will get: if either realloc fails, sacap still bounds both
             * arrays (a failed sas grow leaves sanext merely longer), so the table stays safe to free and to
             * look up until the dump that replaces it. */
            size_t ncap = s->sacap, need = s->nsas + 1;
            int32_t *next;

            if (need > ncap) {
                ncap = ncap != 0 ? ncap * 2 : 64;
                while (ncap < need) {
                    ncap *= 2;
                }
            }
            next = realloc(s->sanext, ncap * sizeof(*next));
            if (next == NULL) {
                return -1;
            }
            s->sanext = next;
            if (grow((void **)&s->sas, &s->sacap, ncap, sizeof(*s->sas)) != 0) {
                return -1;
            }
        }
        if (sa_may_be_plain(a) &&
            grow((void **)&s->plain, &s->plaincap, s->nplain + 1, sizeof(*s->plain)) != 0) {
            return -1;
        }
        if (sa_may_be_plain(a)) {
            s->plain[s->nplain++] = (int32_t)s->nsas;
        }
        s->sas[s->nsas] = *a;
        s->sas[s->nsas].dead = 0;
        h = sa_key_hash(a->family, a->proto, a->daddr) & s->sahmask;
        s->sanext[s->nsas] = s->saheads[h];
        s->saheads[h] = (int32_t)s->nsas;
        s->nsas++;
        s->sa_live++;
        /* Keep chains short and holes few: rebuild when the table has outgrown its hash. */
        if (s->nsas > 2 * ((size_t)s->sahmask + 1)) {
            return sa_compact(s);
        }
    }
    return 0;
}

/*
 * Apply one policy notification to the sorted policy array in place: remove the policy with the same index
 * (the kernel numbers each namespace's policies uniquely, and an update keeps the replaced one's number),
 * then for NEW/UPD insert the new one in pol_order's place, which is the replaced one's on a tie. The index is rebuilt once per drain by the
 * caller (the array stays sorted, so without a sort). 0, or -1: dump again.
 */
int pol_apply(ss_snap *s, int action, const ss_policy *p)
{
    size_t i, lo, hi;
    ss_policy np;

    if (action == SS_POL_NONE) {
        return 0;
    }
    if (action != SS_POL_UPSERT && action != SS_POL_DELETE) {
        return -1;
    }
    for (i = 0; i < s->npols; i++) {
        if (s->pols[i].index == p->index && s->pols[i].dir == p->dir) {
            if (p->dir == XFRM_POLICY_IN || p->dir == XFRM_POLICY_OUT) {
                s->pol_kept[p->dir]--;
            }
            memmove(&s->pols[i], &s->pols[i + 1], (s->npols - i - 1) * sizeof(*s->pols));
            s->npols--;
            break;
        }
    }
    if (action == SS_POL_UPSERT) {
        if (grow((void **)&s->pols, &s->cap, s->npols + 1, sizeof(*s->pols)) != 0) {
            return -1;
        }
        np = *p;
        lo = 0;
        hi = s->npols;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (pol_order(&s->pols[mid], &np) < 0) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        memmove(&s->pols[lo + 1], &s->pols[lo], (s->npols - lo) * sizeof(*s->pols));
        s->pols[lo] = np;
        s->npols++;
        if (np.dir == XFRM_POLICY_IN || np.dir == XFRM_POLICY_OUT) {
            s->pol_kept[np.dir]++;
        }
    }
    return 0;
}
