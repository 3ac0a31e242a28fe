/* Pure parsers of XFRM netlink records, the fuzzed surface: bytes in, a record out; no system calls, no state. */
#include "backend_linux.h"

/* ------------------------------------------------------------------------------------------------------ */
/* Pure parsers: a buffer and its length in, a record out. Every length read from the kernel is checked.   */

/* 1 with type, data and dlen set, 0 at the end, -1 when an attribute's length is impossible. */
int attr_next(attr_iter *it, uint16_t *type, const uint8_t **data, size_t *dlen)
{
    struct nlattr a;
    size_t step;

    if (it->left < sizeof(struct nlattr)) {
        return 0; /* trailing bytes shorter than a header are padding */
    }
    memcpy(&a, it->p, sizeof(a));
    if (a.nla_len < sizeof(struct nlattr) || a.nla_len > it->left) {
        return -1;
    }
    *type = (uint16_t)(a.nla_type & NLA_TYPE_MASK);
    *data = it->p + NLA_HDRLEN;
    *dlen = a.nla_len - NLA_HDRLEN;
    step = NLA_ALIGN((size_t)a.nla_len);
    if (step > it->left) {
        step = it->left;
    }
    it->p += step;
    it->left -= step;
    return 1;
}

static void copy_sel(ss_sel *dst, const struct xfrm_selector *s)
{
    memset(dst, 0, sizeof(*dst));
    memcpy(dst->daddr, &s->daddr, 16);
    memcpy(dst->saddr, &s->saddr, 16);
    dst->dport = s->dport;
    dst->dport_mask = s->dport_mask;
    dst->sport = s->sport;
    dst->sport_mask = s->sport_mask;
    dst->family = s->family;
    dst->prefixlen_d = s->prefixlen_d;
    dst->prefixlen_s = s->prefixlen_s;
    dst->proto = s->proto;
    dst->ifindex = s->ifindex;
}

/* A selector of AF_INET or AF_INET6 (or, when allowed, AF_UNSPEC) with prefix lengths its family allows. */
int sel_valid(const ss_sel *s, int allow_unspec)
{
    unsigned max;

    if (s->family == AF_INET) {
        max = 32;
    } else if (s->family == AF_INET6) {
        max = 128;
    } else {
        return allow_unspec && s->family == AF_UNSPEC;
    }
    return s->prefixlen_d <= max && s->prefixlen_s <= max;
}

/* An algorithm attribute: name NUL-terminated within its field, the key no longer than the attribute. */
static int parse_alg(const uint8_t *data, size_t dlen, size_t fixed, char *name_out, const char **why)
{
    unsigned int key_bits;
    size_t key_bytes;

    if (dlen < fixed) {
        *why = "algorithm attribute shorter than its structure";
        return SS_PARSE_BAD;
    }
    /* alg_name[64] then alg_key_len (bits) at offset 64 in all three structures. */
    if (memchr(data, '\0', SS_ALG_NAME) == NULL) {
        *why = "algorithm name not terminated";
        return SS_PARSE_BAD;
    }
    memcpy(&key_bits, data + SS_ALG_NAME, sizeof(key_bits));
    key_bytes = ((size_t)key_bits + 7) / 8;
    if (key_bytes > dlen - fixed) {
        *why = "algorithm key longer than its attribute";
        return SS_PARSE_BAD;
    }
    memcpy(name_out, data, SS_ALG_NAME);
    return SS_PARSE_OK;
}

/* XFRMA_MARK (struct xfrm_mark) or XFRMA_IF_ID (u32), shared by policies and SAs. */
static int parse_mark_or_if_id(uint16_t type, const uint8_t *data, size_t dlen, uint32_t *mark_v, uint32_t *mark_m,
                               uint32_t *if_id, const char **why)
{
    if (type == XFRMA_MARK) {
        struct xfrm_mark m;
        if (dlen < sizeof(m)) {
            *why = "mark attribute too short";
            return SS_PARSE_BAD;
        }
        memcpy(&m, data, sizeof(m));
        *mark_v = m.v;
        *mark_m = m.m;
        return 0;
    }
    if (dlen < sizeof(uint32_t)) {
        *why = "if_id attribute too short";
        return SS_PARSE_BAD;
    }
    memcpy(if_id, data, sizeof(uint32_t));
    return 0;
}

/* XFRMA_SEC_CTX (struct xfrm_user_sec_ctx, then ctx_len bytes of label: copy_sec_ctx), shared by policies and
 * SAs: only its presence is kept, since the label is matched by the LSM against the flow's, which is not read. */
static int parse_sec_ctx(const uint8_t *data, size_t dlen, uint8_t *sec_ctx, const char **why)
{
    struct xfrm_user_sec_ctx uctx;

    if (dlen < sizeof(uctx)) {
        *why = "security context attribute shorter than struct xfrm_user_sec_ctx";
        return SS_PARSE_BAD;
    }
    memcpy(&uctx, data, sizeof(uctx));
    if (uctx.ctx_len > dlen - sizeof(uctx)) {
        *why = "security context longer than its attribute";
        return SS_PARSE_BAD;
    }
    *sec_ctx = 1;
    return SS_PARSE_OK;
}

int ss_parse_policy(const void *payload, size_t len, ss_policy *out, const char **why)
{
    struct xfrm_userpolicy_info info;
    size_t fixed = NLMSG_ALIGN(sizeof(info));
    attr_iter it;
    uint16_t type;
    const uint8_t *data;
    size_t dlen;
    int r;

    *why = "";
    memset(out, 0, sizeof(*out));
    if (payload == NULL || len < sizeof(info)) {
        *why = "policy message shorter than struct xfrm_userpolicy_info";
        return SS_PARSE_BAD;
    }
    memcpy(&info, payload, sizeof(info));
    copy_sel(&out->sel, &info.sel);
    out->priority = info.priority;
    out->index = info.index;
    out->dir = info.dir;
    out->action = info.action;
    out->type = XFRM_POLICY_TYPE_MAIN;
    /* Forward policies never see a local socket's flow; per-socket policies (dir 3..5: IP_XFRM_POLICY, and
     * PF_KEY's IP_IPSEC_POLICY, whose pfkey_compile_policy leaves the selector zero) name no socket here.
     * A selector of another family never matches an IP flow (xfrm_policy_match: pol->family != family).
     * Skipped before any other check: one such record must not fail every query (issue 14 item 2). */
    if (out->dir != XFRM_POLICY_IN && out->dir != XFRM_POLICY_OUT) {
        return SS_PARSE_SKIP;
    }
    if (out->sel.family != AF_INET && out->sel.family != AF_INET6) {
        return SS_PARSE_SKIP;
    }
    if (!sel_valid(&out->sel, 0)) {
        *why = "policy selector has a bad family or prefix length";
        return SS_PARSE_BAD;
    }
    if (info.action != XFRM_POLICY_ALLOW && info.action != XFRM_POLICY_BLOCK) {
        *why = "policy action unknown";
        return SS_PARSE_BAD;
    }

    it.p = (const uint8_t *)payload + (fixed < len ? fixed : len);
    it.left = fixed < len ? len - fixed : 0;
    while ((r = attr_next(&it, &type, &data, &dlen)) > 0) {
        switch (type) {
        case XFRMA_TMPL: {
            size_t n, i;
            if (dlen % sizeof(struct xfrm_user_tmpl) != 0) {
                *why = "template attribute not a whole number of templates";
                return SS_PARSE_BAD;
            }
            n = dlen / sizeof(struct xfrm_user_tmpl);
            if (n > SS_XFRM_MAX_TMPL) {
                *why = "policy has more templates than the kernel allows";
                return SS_PARSE_BAD;
            }
            for (i = 0; i < n; i++) {
                struct xfrm_user_tmpl t;
                ss_tmpl *o = &out->tmpl[i];
                memcpy(&t, data + i * sizeof(t), sizeof(t));
                memcpy(o->daddr, &t.id.daddr, 16);
                memcpy(o->saddr, &t.saddr, 16);
                o->spi = t.id.spi;
                o->proto = t.id.proto;
                o->reqid = t.reqid;
                o->mode = t.mode;
                o->optional = t.optional;
                o->family = t.family != 0 ? t.family : out->sel.family;
                if (o->family != AF_INET && o->family != AF_INET6) {
                    *why = "template has a bad family";
                    return SS_PARSE_BAD;
                }
            }
            out->ntmpl = (uint8_t)n;
            break;
        }
        case XFRMA_POLICY_TYPE: {
            struct xfrm_userpolicy_type pt;
            if (dlen < sizeof(pt)) {
                *why = "policy type attribute too short";
                return SS_PARSE_BAD;
            }
            memcpy(&pt, data, sizeof(pt));
            if (pt.type >= XFRM_POLICY_TYPE_MAX) {
                /* A type this backend does not model (the kernel's verify_policy_type refuses it today): kept
                 * as unreadable by the dump, a dump again for a notification; never silently skipped. */
                *why = "policy type this backend does not model";
                return SS_PARSE_BAD;
            }
            out->type = pt.type;
            break;
        }
        case XFRMA_MARK:
        case XFRMA_IF_ID:
            if (parse_mark_or_if_id(type, data, dlen, &out->mark_v, &out->mark_m, &out->if_id, why) != 0) {
                return SS_PARSE_BAD;
            }
            break;
        case XFRMA_SEC_CTX:
            if (parse_sec_ctx(data, dlen, &out->sec_ctx, why) != SS_PARSE_OK) {
                return SS_PARSE_BAD;
            }
            break;
        default:
            break; /* attributes that do not change which flows the policy selects */
        }
    }
    if (r < 0) {
        *why = "policy attribute length out of bounds";
        return SS_PARSE_BAD;
    }
    return SS_PARSE_OK;
}

/*
 * A byte or packet limit as xfrm_state_check_expire applies it, on the packet path, before that packet's count is
 * added (cur >= limit, XFRM_INF never reached): 0 not reached; 1 reached by the counts shown, which the check
 * acts on only at the next packet (sent or not, it cannot be told); 2 reached before the last packet, so acted on.
 */
static int count_limit_due(const struct xfrm_lifetime_cur *cur, uint64_t byte_limit, uint64_t packet_limit)
{
    if (cur->packets > packet_limit) {
        return 2;
    }
    return cur->bytes >= byte_limit || cur->packets >= packet_limit;
}

#define SS_DUE_AGE_MAX ((int64_t)1 << 30) /* a limit due longer ago counts as due this long ago */

/*
 * A time limit as xfrm_timer_handler applies it: tmo = limit + base - now in the kernel's signed time64_t (a
 * limit near 2^64 wraps to the past), base the add time or, for a use limit, use_time ?: now (never due while
 * the SA is unused). -1 not due (or no limit), else how many seconds ago it fell due (at most SS_DUE_AGE_MAX).
 */
static int64_t time_limit_age(uint64_t now, uint64_t base, uint64_t limit)
{
    int64_t tmo = (int64_t)(limit + base - now);
    if (limit == 0 || tmo > 0) {
        return -1;
    }
    return tmo < -SS_DUE_AGE_MAX ? SS_DUE_AGE_MAX : -tmo;
}

/* The second the earliest of two time limits fell due (ages as time_limit_age gives them), 0 when neither. */
static int64_t time_limits_due_at(int64_t now, int64_t age_a, int64_t age_b)
{
    int64_t age = age_a > age_b ? age_a : age_b;
    return age < 0 ? 0 : now - age;
}

/* 0 no reached time limit (due_at 0), 1 maybe acted on (a maybe that turns sure at *settles), 2 acted on. */
static int time_limit_state(int64_t due_at, int64_t now, int64_t seen_at, int64_t *settles)
{
    int64_t sure_at;
    if (due_at == 0) {
        return 0;
    }
    sure_at = due_at + SS_TIMER_LATE_S;
    if (seen_at != 0 && seen_at + SS_TIMER_LATE_S > sure_at) {
        sure_at = seen_at + SS_TIMER_LATE_S;
    }
    if (now >= sure_at) {
        return 2;
    }
    if (*settles == 0 || sure_at < *settles) {
        *settles = sure_at;
    }
    return 1;
}

int64_t ss_sa_settle(ss_sa *a, int64_t now, int64_t seen_at)
{
    int64_t settles = 0;
    int soft = time_limit_state(a->soft_due_at, now, seen_at, &settles);
    /* A keyed SA's hard time limit (add_time, use_time): xfrm_timer_handler deletes the SA then
     * (__xfrm_state_delete: XFRM_STATE_DEAD, off the list a dump walks) and sends the hard expire that removes it
     * here (sa_apply). So one that is read has not been acted on, however long ago the limit fell due (the timer
     * runs late after a forward wall-clock step, its hrtimer being on CLOCK_BOOTTIME; XFRM_MSG_NEWAE moves
     * add_time), and xfrm_state_look_at still takes it: maybe, never sure, with nothing to settle it but that
     * notification. A larval one (no SPI) the timer only marks XFRM_STATE_EXPIRED, deleting it 2 s later. */
    int hard = a->spi == 0 ? time_limit_state(a->hard_due_at, now, seen_at, &settles) : a->hard_due_at != 0;

    /* XFRM_STATE_EXPIRED: xfrm_state_check_expire (hard byte and packet limits; its timer, started at once,
     * deletes the SA). km.dying: xfrm_state_check_expire (soft byte and packet limits) and xfrm_timer_handler
     * (soft add and use limits); an update clears it (xfrm_state_update) until the timer it restarts runs. One
     * that may not have been acted on yet is ranked both ways (match.c). */
    a->expired = (uint8_t)(a->hard_count == 2 || hard == 2);
    a->expired_maybe = (uint8_t)(!a->expired && (a->hard_count == 1 || hard == 1));
    a->dying = (uint8_t)(a->dying_notified || a->soft_count == 2 || soft == 2);
    a->dying_maybe = (uint8_t)(!a->dying && (a->soft_count == 1 || soft == 1));
    return settles;
}

/* One of the SA's algorithm attributes: which structure it holds and where its name goes. */
static int parse_sa_alg(ss_sa *out, uint16_t type, const uint8_t *data, size_t dlen, const char **why)
{
    char ignored[SS_ALG_NAME];
    size_t fixed = sizeof(struct xfrm_algo);
    char *name = ignored;
    uint8_t *flag = &out->has_comp;

    switch (type) {
    case XFRMA_ALG_CRYPT:
        name = out->encryption;
        flag = &out->has_crypt;
        break;
    case XFRMA_ALG_AUTH_TRUNC:
        fixed = sizeof(struct xfrm_algo_auth);
        /* fall through */
    case XFRMA_ALG_AUTH:
        name = out->integrity;
        flag = &out->has_auth;
        break;
    case XFRMA_ALG_AEAD:
        fixed = sizeof(struct xfrm_algo_aead);
        name = out->aead;
        flag = &out->has_aead;
        break;
    default: /* XFRMA_ALG_COMP: only its presence matters */
        /* The kernel dumps it as a bare struct xfrm_algo, without the key its alg_key_len counts
         * (copy_to_user_state_extra: nla_put(skb, XFRMA_ALG_COMP, sizeof(*(x->calg)), x->calg)). */
        if (dlen < fixed) {
            *why = "compression attribute shorter than struct xfrm_algo";
            return SS_PARSE_BAD;
        }
        *flag = 1;
        return SS_PARSE_OK;
    }
    if (parse_alg(data, dlen, fixed, name, why) != SS_PARSE_OK) {
        return SS_PARSE_BAD;
    }
    *flag = 1;
    return SS_PARSE_OK;
}

/* struct xfrm_usersa_info at the start of payload, its attributes from offset fixed on. */
static int parse_sa_at(const void *payload, size_t len, size_t fixed, ss_sa *out, const char **why)
{
    struct xfrm_usersa_info info;
    attr_iter it;
    uint16_t type;
    const uint8_t *data;
    size_t dlen;
    int r;
    uint64_t now = (uint64_t)time(NULL), use_base;

    *why = "";
    memset(out, 0, sizeof(*out));
    if (payload == NULL || len < sizeof(info)) {
        *why = "SA message shorter than struct xfrm_usersa_info";
        return SS_PARSE_BAD;
    }
    memcpy(&info, payload, sizeof(info));
    copy_sel(&out->sel, &info.sel);
    memcpy(out->daddr, &info.id.daddr, 16);
    memcpy(out->saddr, &info.saddr, 16);
    out->spi = info.id.spi;
    out->proto = info.id.proto;
    out->reqid = info.reqid;
    out->family = info.family;
    out->mode = info.mode;
    out->flags = info.flags;
    out->add_time = info.curlft.add_time;
    if (out->family != AF_INET && out->family != AF_INET6) {
        *why = "SA has a bad family";
        return SS_PARSE_BAD;
    }
    if (!sel_valid(&out->sel, 1)) {
        *why = "SA selector has a bad family or prefix length";
        return SS_PARSE_BAD;
    }
    /* The limits as the kernel computes them (ss_sa_settle says what they mean now). A wall-clock step is not
     * modelled (the timer's XFRM_SOFT_EXPIRE fix-up). */
    use_base = info.curlft.use_time != 0 ? info.curlft.use_time : now;
    out->hard_count = (uint8_t)count_limit_due(&info.curlft, info.lft.hard_byte_limit, info.lft.hard_packet_limit);
    out->hard_due_at = time_limits_due_at((int64_t)now,
                                          time_limit_age(now, info.curlft.add_time, info.lft.hard_add_expires_seconds),
                                          time_limit_age(now, use_base, info.lft.hard_use_expires_seconds));
    out->soft_count = (uint8_t)count_limit_due(&info.curlft, info.lft.soft_byte_limit, info.lft.soft_packet_limit);
    out->soft_due_at = time_limits_due_at((int64_t)now,
                                          time_limit_age(now, info.curlft.add_time, info.lft.soft_add_expires_seconds),
                                          time_limit_age(now, use_base, info.lft.soft_use_expires_seconds));
    (void)ss_sa_settle(out, (int64_t)now, 0);

    it.p = (const uint8_t *)payload + (fixed < len ? fixed : len);
    it.left = fixed < len ? len - fixed : 0;
    while ((r = attr_next(&it, &type, &data, &dlen)) > 0) {
        switch (type) {
        case XFRMA_ALG_CRYPT:
        case XFRMA_ALG_AUTH:
        case XFRMA_ALG_AUTH_TRUNC:
        case XFRMA_ALG_AEAD:
        case XFRMA_ALG_COMP:
            if (parse_sa_alg(out, type, data, dlen, why) != SS_PARSE_OK) {
                return SS_PARSE_BAD;
            }
            break;
        case XFRMA_MARK:
        case XFRMA_IF_ID:
            if (parse_mark_or_if_id(type, data, dlen, &out->mark_v, &out->mark_m, &out->if_id, why) != 0) {
                return SS_PARSE_BAD;
            }
            break;
        case XFRMA_SA_DIR:
            if (dlen < 1) {
                *why = "SA direction attribute too short";
                return SS_PARSE_BAD;
            }
            out->dir = data[0];
            break;
        case XFRMA_SA_PCPU:
            out->pcpu = 1;
            break;
        case XFRMA_SEC_CTX:
            if (parse_sec_ctx(data, dlen, &out->sec_ctx, why) != SS_PARSE_OK) {
                return SS_PARSE_BAD;
            }
            break;
        case XFRMA_OFFLOAD_DEV: {
            struct xfrm_user_offload off;
            if (dlen < sizeof(off)) {
                *why = "SA offload attribute shorter than struct xfrm_user_offload";
                return SS_PARSE_BAD;
            }
            memcpy(&off, data, sizeof(off));
            out->offload_packet = (off.flags & XFRM_OFFLOAD_PACKET) != 0;
            break;
        }
        default:
            break;
        }
    }
    if (r < 0) {
        *why = "SA attribute length out of bounds";
        return SS_PARSE_BAD;
    }
    return SS_PARSE_OK;
}

int ss_parse_sa(const void *payload, size_t len, ss_sa *out, const char **why)
{
    return parse_sa_at(payload, len, NLMSG_ALIGN(sizeof(struct xfrm_usersa_info)), out, why);
}

int ss_parse_sa_notify(uint16_t type, const void *payload, size_t len, ss_sa *out, int *action, const char **why)
{
    *why = "";
    *action = SS_SA_RESYNC;
    memset(out, 0, sizeof(*out));
    switch (type) {
    case XFRM_MSG_NEWSA:
    case XFRM_MSG_UPDSA:
        if (ss_parse_sa(payload, len, out, why) != SS_PARSE_OK) {
            return SS_PARSE_BAD;
        }
        *action = type == XFRM_MSG_NEWSA ? SS_SA_UPSERT : SS_SA_UPDATE;
        return SS_PARSE_OK;
    case XFRM_MSG_EXPIRE: {
        uint8_t hard;
        if (payload == NULL || len < sizeof(struct xfrm_user_expire)) {
            *why = "expire message shorter than struct xfrm_user_expire";
            return SS_PARSE_BAD;
        }
        if (parse_sa_at(payload, len, NLMSG_ALIGN(sizeof(struct xfrm_user_expire)), out, why) != SS_PARSE_OK) {
            return SS_PARSE_BAD;
        }
        memcpy(&hard, (const uint8_t *)payload + offsetof(struct xfrm_user_expire, hard), 1);
        /* A hard expiry deletes the SA (the kernel sends no DELSA for it); a soft one from the kernel
         * (xfrm_timer_proc, xfrm_state_check_expire) made it dying first. But userspace may send one too
         * (XFRM_MSG_EXPIRE: xfrm_add_sa_expire -> km_state_expired), which is only broadcast and leaves
         * km.dying alone; its nlmsg_pid is the sender's header field, 0 from iproute2, so it does not tell.
         * The kernel sends a soft one only when a soft limit is reached, which its lifetimes then show:
         * without that, it changes nothing. */
        *action = hard ? SS_SA_DELETE : out->dying || out->dying_maybe ? SS_SA_DYING : SS_SA_NONE;
        return SS_PARSE_OK;
    }
    case XFRM_MSG_DELSA: {
        struct xfrm_usersa_id id;
        size_t fixed = NLMSG_ALIGN(sizeof(id));
        attr_iter it;
        uint16_t at;
        const uint8_t *data;
        size_t dlen;
        int r;

        if (payload == NULL || len < sizeof(id)) {
            *why = "SA delete message shorter than struct xfrm_usersa_id";
            return SS_PARSE_BAD;
        }
        memcpy(&id, payload, sizeof(id));
        if (id.family != AF_INET && id.family != AF_INET6) {
            *why = "SA delete message has a bad family";
            return SS_PARSE_BAD;
        }
        memcpy(out->daddr, &id.daddr, 16);
        out->spi = id.spi;
        out->family = id.family;
        out->proto = id.proto;
        it.p = (const uint8_t *)payload + (fixed < len ? fixed : len);
        it.left = fixed < len ? len - fixed : 0;
        while ((r = attr_next(&it, &at, &data, &dlen)) > 0) {
            if ((at == XFRMA_MARK || at == XFRMA_IF_ID) &&
                parse_mark_or_if_id(at, data, dlen, &out->mark_v, &out->mark_m, &out->if_id, why) != 0) {
                return SS_PARSE_BAD;
            }
        }
        if (r < 0) {
            *why = "SA delete attribute length out of bounds";
            return SS_PARSE_BAD;
        }
        *action = SS_SA_DELETE;
        return SS_PARSE_OK;
    }
    default:
        return SS_PARSE_OK; /* a flush or anything else: only a new dump is sure */
    }
}

/* The kernel's error numbers are below 4096 (MAX_ERRNO); anything larger is not an error number. */
int ss_parse_policy_notify(uint16_t type, const void *payload, size_t len, ss_policy *out, int *action,
                           const char **why)
{
    size_t fixed = NLMSG_ALIGN(sizeof(struct xfrm_userpolicy_id));
    const uint8_t *info = NULL;
    uint8_t *buf;
    size_t off, blen, ilen = 0;
    attr_iter it;
    uint16_t at;
    const uint8_t *data;
    size_t dlen;
    int r;

    *why = "";
    *action = SS_POL_RESYNC;
    memset(out, 0, sizeof(*out));
    if (type == XFRM_MSG_NEWPOLICY || type == XFRM_MSG_UPDPOLICY) {
        r = ss_parse_policy(payload, len, out, why);
        *action = r == SS_PARSE_OK ? SS_POL_UPSERT : r == SS_PARSE_SKIP ? SS_POL_NONE : SS_POL_RESYNC;
        return r == SS_PARSE_BAD ? SS_PARSE_BAD : SS_PARSE_OK;
    }
    if (type != XFRM_MSG_DELPOLICY) {
        return SS_PARSE_OK; /* a flush, an expiry: dump again */
    }
    /* XFRM_MSG_DELPOLICY: struct xfrm_userpolicy_id, then the whole policy in XFRMA_POLICY and the usual
     * attributes. Put them back together as a NEWPOLICY payload for ss_parse_policy. */
    if (payload == NULL || len < sizeof(struct xfrm_userpolicy_id)) {
        *why = "policy deletion shorter than struct xfrm_userpolicy_id";
        return SS_PARSE_BAD;
    }
    it.p = (const uint8_t *)payload + (fixed < len ? fixed : len);
    it.left = fixed < len ? len - fixed : 0;
    while ((r = attr_next(&it, &at, &data, &dlen)) > 0) {
        if (at == XFRMA_POLICY && info == NULL) {
            info = data;
            ilen = dlen;
        }
    }
    if (r < 0) {
        *why = "policy deletion attribute length out of bounds";
        return SS_PARSE_BAD;
    }
    if (info == NULL || ilen < sizeof(struct xfrm_userpolicy_info)) {
        return SS_PARSE_OK; /* no whole policy to identify: dump again */
    }
    blen = NLMSG_ALIGN(sizeof(struct xfrm_userpolicy_info)) + (len - (fixed < len ? fixed : len));
    buf = calloc(1, blen);
    if (buf == NULL) {
        return SS_PARSE_OK;
    }
    memcpy(buf, info, sizeof(struct xfrm_userpolicy_info));
    off = NLMSG_ALIGN(sizeof(struct xfrm_userpolicy_info));
    it.p = (const uint8_t *)payload + (fixed < len ? fixed : len);
    it.left = fixed < len ? len - fixed : 0;
    for (;;) {
        const uint8_t *start = it.p;
        size_t before = it.left;
        if (attr_next(&it, &at, &data, &dlen) <= 0) {
            break;
        }
        if (at != XFRMA_POLICY) {
            size_t used = before - it.left; /* the attribute with its padding */
            memcpy(buf + off, start, used);
            off += used;
        }
    }
    r = ss_parse_policy(buf, off, out, why);
    free(buf);
    if (r == SS_PARSE_BAD) {
        return SS_PARSE_BAD;
    }
    *action = r == SS_PARSE_SKIP ? SS_POL_NONE : SS_POL_DELETE;
    return SS_PARSE_OK;
}

#define SS_MAX_ERRNO 4095

int ss_nl_walk(const void *buf, size_t len, uint32_t seq, uint32_t portid, ss_nl_fn fn, void *ctx,
               const char **why)
{
    const uint8_t *p = buf;
    size_t left = len;

    *why = "";
    while (left > 0) {
        struct nlmsghdr h;
        const uint8_t *payload;
        size_t plen, step;

        if (left < sizeof(h)) {
            *why = "netlink datagram ends inside a message header";
            return -1;
        }
        memcpy(&h, p, sizeof(h));
        if (h.nlmsg_len < sizeof(h) || h.nlmsg_len > left) {
            *why = "netlink message length out of bounds";
            return -1;
        }
        payload = p + NLMSG_HDRLEN;
        plen = h.nlmsg_len - NLMSG_HDRLEN;
        step = NLMSG_ALIGN((size_t)h.nlmsg_len);
        if (step > left) {
            step = left;
        }
        p += step;
        left -= step;

        /* Replies to a request carry its sequence number and our port id; anything else is not ours. */
        if (portid != 0 && (h.nlmsg_seq != seq || h.nlmsg_pid != portid)) {
            continue;
        }
        if (h.nlmsg_flags & NLM_F_DUMP_INTR) {
            return -3; /* the table changed during the dump: start again */
        }
        switch (h.nlmsg_type) {
        case NLMSG_NOOP:
            continue;
        case NLMSG_OVERRUN:
            *why = "netlink reported an overrun";
            return -1;
        case NLMSG_DONE: {
            int e = 0;
            if (plen >= sizeof(int)) {
                memcpy(&e, payload, sizeof(e));
            }
            if (e < -SS_MAX_ERRNO) {
                *why = "netlink done message with an impossible error number";
                return -1;
            }
            return e < 0 ? -(1000 - e) : 1;
        }
        case NLMSG_ERROR: {
            struct nlmsgerr e;
            if (plen < sizeof(e)) {
                *why = "netlink error message too short";
                return -1;
            }
            memcpy(&e, payload, sizeof(e));
            if (e.error == 0) {
                return 1; /* the acknowledgement that ends a non-dump request */
            }
            if (e.error > 0 || e.error < -SS_MAX_ERRNO) {
                *why = "netlink error message with an impossible error number";
                return -1;
            }
            return -(1000 - e.error);
        }
        default:
            if (fn(ctx, h.nlmsg_type, h.nlmsg_flags, payload, plen) != 0) {
                return -2;
            }
        }
    }
    return 0;
}
