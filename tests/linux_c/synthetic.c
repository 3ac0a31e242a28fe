/*
 * Synthetic snapshots for the driver (driver synthetic CASE): records no kernel here can make (an SA with
 * XFRMA_SA_DIR needs 6.10; this host has no ESP, Debian 12's 6.1 has no SA direction), built in memory and
 * looked up by eval_dir exactly as a query would. Prints one JSON line per direction.
 *
 *   sa-dir-in-best   out policy 10.0.0.1 -> 10.0.0.2 (ESP transport, reqid 7); an older SA without a direction
 *                    and a newer one marked "dir in". xfrm_state_find picks the newer; xfrm_tmpl_resolve_one
 *                    then drops the flow (x->dir != XFRM_SA_DIR_OUT: -EINVAL).
 *   xfrmi-sub-bypass-main-block
 *                    a flow routed through an XFRM interface (if_id 42): a sub bypass and a main block
 *                    without if_id, a main ESP policy with if_id 42 and its SA. The if_id 0 lookup bundles the
 *                    sub bypass with the main block (xfrm_expand_policies): blocked, so the interface never
 *                    looks the packet up again with its if_id (no host here can make an XFRM interface).
 *   sa-maybe-newer / sa-maybe-older
 *                    out ESP policy and two SAs: one (AES-GCM) without a selector, and one (GMAC) whose
 *                    selector names a device the backend cannot know for this flow (a VRF slave, a UDP
 *                    socket's per-message device), newer (add_time 200 against 100) or older than the sure one. xfrm_state_look_at prefers
 *                    the newer if its selector matches: newer, not decidable; older, the sure one.
 *   sa-same-second / sa-same-second-same-protection
 *                    two SAs of the same add_time and dying state, different SPIs: the kernel's hash chain
 *                    order picks (xfrm_state_look_at keeps the first met): AES-GCM and GMAC, not decidable; both
 *                    AES-GCM, the protection is known (ENCRYPTED) whichever SPI the kernel takes.
 *   sa-source-any-newer
 *                    an SA from the flow's source and a newer GMAC one toward any source: xfrm_state_find walks the
 *                    flow's source chain first, but the source-any SA may share its bucket: not decidable.
 *   sa-acquire-source-any
 *                    a larval (acquire) state from the flow's source and a valid SA toward any source: the
 *                    acquire stops xfrm_state_find before the second chain unless the SA shares its bucket.
 *   sa-tunnel-source-any-both / sa-tunnel-source-any-other / sa-tunnel-source-any-wild
 *                    out ESP tunnel policy whose template's source is any (gateway 10.0.0.2): the kernel puts the
 *                    route's preferred source toward the gateway there (xfrm_tmpl_resolve_one: xfrm_get_saddr),
 *                    not read here. both: a null-cipher SA from 10.0.0.1 (t100) and an AES-GCM one from
 *                    10.9.9.9 (t200); other: only the 10.9.9.9 one (the kernel acquires unless that is the
 *                    route's source); both not decidable. wild: only an SA toward any source: it is used.
 *   sa-wildcard-other-source / sa-wildcard-other-source-older
 *                    an SA toward any source (AES-GCM, t100) and a null-cipher SA from another source 10.0.0.8,
 *                    newer (t200) or older (t50): the kernel's second pass (source any) matches the
 *                    destination only, so the other source's SA competes there if it shares the bucket: newer,
 *                    not decidable; older, the source-any SA.
 *   sa-soft-use-dying / sa-soft-add-just-due / sa-soft-add-just-due-alone
 *                    out ESP policy; SA A (0x1001, AES-GCM) newer than B (0x1002, null cipher), both parsed from
 *                    a struct xfrm_usersa_info as dumped. soft-use-dying: A was first used 50 s ago with a soft
 *                    use limit of 10 s: xfrm_timer_proc made it dying long since (use_time + limit), so B is
 *                    used. soft-add-just-due: A's soft add limit falls due this second: whether the timer has
 *                    marked it dying yet cannot be told, and the pick changes: not decidable. -alone: the same A
 *                    without B: the pick is A either way.
 *   sa-soft-add-both-due
 *                    A (AES-GCM, added 99 s ago, soft add limit 99 s) and the older B (GMAC, added 100 s ago,
 *                    soft add limit 100 s): both fall due this second, each by its own timer, so any mix of
 *                    the two may be dying; with only A dying the kernel sends on B: not decidable.
 *   sa-limit-hard-add-just-due / sa-limit-soft-add-wraps / sa-limit-soft-bytes-crossed /
 *   sa-limit-soft-packets-passed
 *                    A (0x1001, added 100 s ago) and the older B (0x1002, 200 s ago, no limits). hard-add-just-
 *                    due: A (GMAC) reaches its hard add limit this second, B is AES-GCM: xfrm_timer_proc may not
 *                    have expired A yet: not decidable. soft-add-wraps: A's soft add limit is 2^63 + 200 s, which
 *                    the kernel's signed sum (time64_t tmo) reads as long past: A dying, B (GMAC) used.
 *                    soft-bytes-crossed: A's 1000 bytes reach its soft byte limit; xfrm_state_check_expire
 *                    acts before a packet's bytes are added, so only A's next packet makes it dying: not
 *                    decidable. soft-packets-passed: 2 packets over a limit of 1: the second's check made it
 *                    dying: B used.
 *   sa-dying-notified-redump
 *                    A (newer, AES-GCM) and B (older, GMAC) in a snapshot; a soft-expire notification makes A
 *                    dying (sa_apply); then the table is dumped again (same SAs, whose limits say nothing of
 *                    it) with what dump_sas keeps across (sa_save_dying / sa_restore_dying): A stays dying (the
 *                    kernel's km.dying is never cleared but by an update), so B is used.
 *   sa-dying-notified-readded
 *                    the same, but the dump's A has another add_time: A was deleted and added again with the
 *                    same SPI (a new state, km.dying 0), so A is used.
 *   sa-dying-notified-flushed / sa-dying-notified-flushed-ah
 *                    the same as -redump, but the SA table is flushed while stale before the dump, which shows A
 *                    again with the same add_time: added again with the same SPI in the same second, its NEWSA
 *                    not read before the dump. A is a new state (km.dying 0): used. Only AH flushed: B used.
 *   sa-dying-notified-flushed-esp / -flushed-all / -flushed-fresh
 *                    the same flush, of ESP only, of every protocol (proto 0), or of IPSEC_PROTO_ANY read while
 *                    the table is fresh (the flush makes it stale): A used.
 *   sa-dying-notified-stale-expire
 *                    the same as -redump, but A's soft expiry (from the kernel) is read while the SA table is
 *                    stale: the dump's A says nothing of it, yet A stays dying: B used.
 *   sa-expire-from-userspace / sa-expire-from-kernel
 *                    A (newer, AES-GCM) and B (older, GMAC); then a soft-expire notification for A. From
 *                    userspace (xfrm_add_sa_expire: km_state_expired only broadcasts it, km.dying stays 0) its
 *                    lifetimes show no soft limit reached: A is still used. From the kernel (xfrm_timer_proc,
 *                    which sets km.dying first) A's soft add limit was reached 50 s ago: B is used.
 *   sa-cache-6.1 / sa-cache-6.13 / sa-cache-same-protection
 *                    two SAs that answer differently (newer AES-GCM, older GMAC). Before 6.12 the kernel takes
 *                    the newer (xfrm_state_look_at); from 6.12 (6.13, and 6.12-stable) it walks the policy's
 *                    state cache first
 *                    (pol->state_cache_list: the SA it used before, an older one after a rekey, until deleted),
 *                    which the dump does not show: not decidable; both AES-GCM (-same-protection): ENCRYPTED.
 *   sa-pcpu / sa-offload-packet
 *                    one SA, dumped with XFRMA_SA_PCPU (a per-CPU SA: with XFRM_POLICY_CPU_ACQUIRE the CPU
 *                    decides) or with XFRMA_OFFLOAD_DEV flagged XFRM_OFFLOAD_PACKET (a software policy skips it;
 *                    an offload policy, not read here, takes only such): not decidable.
 *   sa-update-lost-overrun / sa-update-lost-truncated
 *                    as sa-update-soft-still-due, but the update is lost: the notification reader
 *                    (drain_notify_locked) meets ENOBUFS or a truncated datagram, then the table is dumped: A's
 *                    due soft limit is maybe acted on (the whole table seen then, seen_all_at): not decidable.
 *   local-dev-netns-unknown / local-dev-netns-known
 *                    not a lookup: flow_xfrm_disabled asked three times about a peer, its namespace not known or
 *                    known; the caller counts the rule and route dumps (local_dev_calls).
 *   sec-ctx-policy / sec-ctx-policy-behind / sec-ctx-policy-tie-older / sec-ctx-policy-tie-newer
 *                    out policies parsed from dumps, one labeled (XFRMA_SEC_CTX; only an LSM keeps labels, so no
 *                    kernel here dumps one), with an AES-GCM SA. -policy: the labeled ESP policy (priority 0)
 *                    before an unlabeled bypass (10): the LSM may skip it for the flow's label (xfrm_policy_match
 *                    -> security_xfrm_policy_lookup): not decidable. -behind: the labeled one at 10 behind an
 *                    unlabeled ESP one at 0: ENCRYPTED. -tie-*: both ESP at priority 0, the labeled one older or
 *                    newer: a priority tie.
 *   sec-ctx-sa-out-newer / sec-ctx-sa-out-older / sec-ctx-sa-out-alone
 *                    an unlabeled out policy; an unlabeled AES-GCM SA (t100) and a labeled GMAC one, newer (t200)
 *                    or older (t50), or the labeled one alone: xfrm_state_look_at takes it only if
 *                    security_xfrm_state_pol_flow_match says so: newer or alone, not decidable; older, AES-GCM.
 *   sec-ctx-sa-in-only / sec-ctx-sa-in-beside
 *                    an unlabeled in policy; a labeled AES-GCM SA from the peer alone (not decidable) or beside an
 *                    unlabeled one (ENCRYPTED, the unlabeled one listed).
 *   sec-ctx-notify-new / sec-ctx-notify-new-no-labels / sec-ctx-notify-upd / sec-ctx-notify-del-by-selector
 *                    g.cur's policy table dumped, then one policy notification through on_notify as
 *                    xfrm_notify_policy writes it (never with XFRMA_SEC_CTX), then the table dumped again if the
 *                    reader asked. An AES-GCM SA. new: an ESP policy added before a dumped bypass, labeled where
 *                    a label can exist (ss_policy_labels): not applied in place but dumped, not decidable;
 *                    -no-labels: applied in place, ENCRYPTED. upd: the labeled policy updated: dumped, not
 *                    decidable. del-by-selector: of two policies that differ only in the label, the unlabeled
 *                    one deleted by selector: applied in place by index, the labeled one stays: not decidable.
 *   sa-unreadable-out
 *                    an out ESP policy, an AES-GCM SA and one toward the same peer whose dump record cannot be
 *                    read (kept by on_sa as its identity only): it may be the pick: not decidable.
 *   unreadable-under-sub-bypass
 *                    a sub bypass (priority 0), an unreadable policy (priority 5, kept in the SUB bucket) and
 *                    a main bypass (priority 10): the sub bypass is bundled with MAIN's pick, which may be the
 *                    unreadable one (its real type may be MAIN): an error, not "bypass".
 */
#include "linux/backend_linux.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/netlink.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void v4(uint8_t *out, const char *text)
{
    memset(out, 0, 16);
    inet_pton(AF_INET, text, out);
}

static ss_policy esp_policy(int dir, const char *src, const char *dst, uint32_t index)
{
    ss_policy p;
    memset(&p, 0, sizeof(p));
    p.sel.family = AF_INET;
    v4(p.sel.saddr, src);
    v4(p.sel.daddr, dst);
    p.sel.prefixlen_s = p.sel.prefixlen_d = 32;
    p.dir = (uint8_t)dir;
    p.index = index;
    p.action = XFRM_POLICY_ALLOW;
    p.type = XFRM_POLICY_TYPE_MAIN;
    p.ntmpl = 1;
    p.tmpl[0].family = AF_INET;
    p.tmpl[0].proto = IPPROTO_ESP;
    p.tmpl[0].mode = XFRM_MODE_TRANSPORT;
    p.tmpl[0].reqid = 7;
    return p;
}

static ss_sa esp_sa(const char *src, const char *dst, uint32_t spi, uint64_t add_time, uint8_t sa_dir)
{
    ss_sa a;
    memset(&a, 0, sizeof(a));
    a.family = AF_INET;
    v4(a.saddr, src);
    v4(a.daddr, dst);
    a.spi = htonl(spi);
    a.reqid = 7;
    a.proto = IPPROTO_ESP;
    a.mode = XFRM_MODE_TRANSPORT;
    a.dir = sa_dir;
    a.add_time = add_time;
    a.has_aead = 1;
    snprintf(a.aead, sizeof(a.aead), "%s", "rfc4106(gcm(aes))");
    return a;
}

/* Append a netlink attribute at buf + *off (the caller sized buf), advancing *off past its padding. */
static void put_attr(uint8_t *buf, size_t *off, uint16_t type, const void *data, size_t len)
{
    struct nlattr at;

    at.nla_len = (uint16_t)(NLA_HDRLEN + len);
    at.nla_type = type;
    memcpy(buf + *off, &at, sizeof(at));
    memcpy(buf + *off + NLA_HDRLEN, data, len);
    *off += NLA_ALIGN(NLA_HDRLEN + len);
}

/* struct xfrm_usersa_info of an ESP transport SA from src to 10.0.0.2 (reqid 7) with these lifetimes. */
static struct xfrm_usersa_info usersa(const char *src, uint32_t spi, const struct xfrm_lifetime_cfg *lft,
                                      const struct xfrm_lifetime_cur *cur)
{
    struct xfrm_usersa_info info;

    memset(&info, 0, sizeof(info));
    info.family = AF_INET;
    inet_pton(AF_INET, src, &info.saddr);
    inet_pton(AF_INET, "10.0.0.2", &info.id.daddr);
    info.id.spi = htonl(spi);
    info.id.proto = IPPROTO_ESP;
    info.reqid = 7;
    info.mode = XFRM_MODE_TRANSPORT;
    info.lft = *lft;
    info.curlft = *cur;
    return info;
}

/* An SA as the kernel dumps it (struct xfrm_usersa_info with these lifetimes, then the attribute type with len
 * bytes of data unless type is 0), parsed by ss_parse_sa; its cipher set afterwards. */
static int parsed_sa_lft(ss_sa *out, const char *src, uint32_t spi, const struct xfrm_lifetime_cfg *lft,
                         const struct xfrm_lifetime_cur *cur, const char *aead, uint16_t type, const void *data,
                         size_t len)
{
    union {
        uint8_t bytes[NLMSG_ALIGN(sizeof(struct xfrm_usersa_info)) + NLA_HDRLEN + 64];
        uint64_t align;
    } msg;
    struct xfrm_usersa_info info;
    size_t fixed = NLMSG_ALIGN(sizeof(info));
    const char *why;

    memset(&msg, 0, sizeof(msg));
    info = usersa(src, spi, lft, cur);
    memcpy(msg.bytes, &info, sizeof(info));
    if (type != 0) {
        put_attr(msg.bytes, &fixed, type, data, len);
    }
    if (ss_parse_sa(msg.bytes, fixed, out, &why) != SS_PARSE_OK) {
        fprintf(stderr, "parse: %s\n", why);
        return -1;
    }
    out->has_aead = 1;
    snprintf(out->aead, sizeof(out->aead), "%s", aead);
    return 0;
}

/* Lifetimes without byte or packet limits: soft add and use limits in seconds (0: none), added added_ago
 * seconds ago and first used used_ago seconds ago (-1: never). */
static void lifetimes(struct xfrm_lifetime_cfg *lft, struct xfrm_lifetime_cur *cur, int64_t added_ago,
                      int64_t used_ago, uint64_t soft_add, uint64_t soft_use)
{
    int64_t now = (int64_t)time(NULL);

    memset(lft, 0, sizeof(*lft));
    memset(cur, 0, sizeof(*cur));
    lft->soft_byte_limit = lft->hard_byte_limit = XFRM_INF;
    lft->soft_packet_limit = lft->hard_packet_limit = XFRM_INF;
    lft->soft_add_expires_seconds = soft_add;
    lft->soft_use_expires_seconds = soft_use;
    cur->add_time = (uint64_t)(now - added_ago);
    cur->use_time = used_ago >= 0 ? (uint64_t)(now - used_ago) : 0;
}

/* parsed_sa_lft with lifetimes(). */
static int parsed_sa(ss_sa *out, const char *src, uint32_t spi, int64_t added_ago, int64_t used_ago,
                     uint64_t soft_add, uint64_t soft_use, const char *aead, uint16_t type, const void *data,
                     size_t len)
{
    struct xfrm_lifetime_cfg lft;
    struct xfrm_lifetime_cur cur;

    lifetimes(&lft, &cur, added_ago, used_ago, soft_add, soft_use);
    return parsed_sa_lft(out, src, spi, &lft, &cur, aead, type, data, len);
}

/* A security label as the kernel dumps it (XFRMA_SEC_CTX: copy_sec_ctx), written to out; its length. Only an
 * LSM (SELinux) keeps labels, so no kernel here dumps one. */
static size_t sec_ctx_attr(uint8_t *out, size_t room)
{
    static const char label[] = "system_u:object_r:ipsec_spd_t:s0";
    struct xfrm_user_sec_ctx uctx;

    if (room < sizeof(uctx) + sizeof(label)) {
        return 0;
    }
    memset(&uctx, 0, sizeof(uctx));
    uctx.len = (uint16_t)(sizeof(uctx) + sizeof(label));
    uctx.exttype = XFRMA_SEC_CTX;
    uctx.ctx_alg = 1; /* XFRM_SC_ALG_SELINUX */
    uctx.ctx_doi = 1; /* XFRM_SC_DOI_LSM */
    uctx.ctx_len = (uint16_t)sizeof(label);
    memcpy(out, &uctx, sizeof(uctx));
    memcpy(out + sizeof(uctx), label, sizeof(label));
    return sizeof(uctx) + sizeof(label);
}

/* A policy record as the kernel writes it: struct xfrm_userpolicy_info, then an ESP transport template (reqid
 * 7) unless bypass, then XFRMA_SEC_CTX if labeled. */
typedef struct {
    union {
        /* room for a deletion too: struct xfrm_userpolicy_id, then the policy in XFRMA_POLICY */
        uint8_t bytes[NLMSG_ALIGN(sizeof(struct xfrm_userpolicy_id)) + NLMSG_ALIGN(sizeof(struct xfrm_userpolicy_info)) +
                      3 * NLA_HDRLEN + NLA_ALIGN(sizeof(struct xfrm_user_tmpl)) + 64];
        uint64_t align;
    } msg;
    size_t len;
} policy_record;

static void make_policy_record(policy_record *r, int dir, const char *src, const char *dst, uint32_t index,
                               uint32_t priority, int labeled, int bypass)
{
    struct xfrm_userpolicy_info info;
    struct xfrm_user_tmpl t;
    uint8_t label[64];
    size_t llen;

    memset(r, 0, sizeof(*r));
    memset(&info, 0, sizeof(info));
    info.sel.family = AF_INET;
    inet_pton(AF_INET, src, &info.sel.saddr);
    inet_pton(AF_INET, dst, &info.sel.daddr);
    info.sel.prefixlen_s = info.sel.prefixlen_d = 32;
    info.lft.soft_byte_limit = info.lft.hard_byte_limit = XFRM_INF;
    info.lft.soft_packet_limit = info.lft.hard_packet_limit = XFRM_INF;
    info.priority = priority;
    info.index = index;
    info.dir = (uint8_t)dir;
    info.action = XFRM_POLICY_ALLOW;
    memcpy(r->msg.bytes, &info, sizeof(info));
    r->len = NLMSG_ALIGN(sizeof(info));
    if (!bypass) {
        memset(&t, 0, sizeof(t));
        t.family = AF_INET;
        t.id.proto = IPPROTO_ESP;
        t.mode = XFRM_MODE_TRANSPORT;
        t.reqid = 7;
        t.aalgos = t.ealgos = t.calgos = ~0u;
        put_attr(r->msg.bytes, &r->len, XFRMA_TMPL, &t, sizeof(t));
    }
    if (labeled) {
        llen = sec_ctx_attr(label, sizeof(label));
        put_attr(r->msg.bytes, &r->len, XFRMA_SEC_CTX, label, llen);
    }
}

/* An ESP transport policy (reqid 7) from src to dst as the kernel dumps it, labeled (XFRMA_SEC_CTX) or not,
 * parsed by ss_parse_policy. */
static int parsed_policy(ss_policy *out, int dir, const char *src, const char *dst, uint32_t index,
                         uint32_t priority, int labeled)
{
    policy_record r;
    const char *why;

    make_policy_record(&r, dir, src, dst, index, priority, labeled, 0);
    if (ss_parse_policy(r.msg.bytes, r.len, out, &why) != SS_PARSE_OK) {
        fprintf(stderr, "parse: %s\n", why);
        return -1;
    }
    return 0;
}

/* The policy table of s read again as dump_policies reads it (on_policy for each record, then the index). */
static int load_policies(ss_snap *s, const policy_record *records, size_t n)
{
    secsock_error err;
    dump_ctx c = {s, &err};
    size_t i;
    int rc = 0;

    snap_free_policies(s);
    s->pol_unkept[0] = s->pol_unkept[1] = 0;
    for (i = 0; i < n && rc == 0; i++) {
        rc = on_policy(&c, XFRM_MSG_NEWPOLICY, 0, records[i].msg.bytes, records[i].len);
    }
    return rc == 0 ? snap_index_policies(s) : -1;
}

/* The XFRM_MSG_DELPOLICY xfrm_notify_policy writes for the policy of record r deleted by selector (byid 0):
 * struct xfrm_userpolicy_id with r's selector and no index, then r's struct xfrm_userpolicy_info (its own index
 * included) in XFRMA_POLICY, then r's other attributes but its label (never written there). */
static void make_policy_delete(policy_record *out, const policy_record *r)
{
    struct xfrm_userpolicy_info info;
    struct xfrm_userpolicy_id id;
    size_t fixed = NLMSG_ALIGN(sizeof(info));
    attr_iter it;
    uint16_t at;
    const uint8_t *data;
    size_t dlen;

    memcpy(&info, r->msg.bytes, sizeof(info));
    memset(out, 0, sizeof(*out));
    memset(&id, 0, sizeof(id));
    id.sel = info.sel;
    id.dir = info.dir;
    memcpy(out->msg.bytes, &id, sizeof(id));
    out->len = NLMSG_ALIGN(sizeof(id));
    put_attr(out->msg.bytes, &out->len, XFRMA_POLICY, &info, sizeof(info));
    it.p = r->msg.bytes + fixed;
    it.left = r->len - fixed;
    while (attr_next(&it, &at, &data, &dlen) > 0) {
        if (at != XFRMA_SEC_CTX) {
            put_attr(out->msg.bytes, &out->len, at, data, dlen);
        }
    }
}

/* An ESP SA (AES-GCM unless aead says otherwise) from src to dst added at add_time, labeled or not, as parsed from
 * the kernel's dump. */
static int parsed_sa_at(ss_sa *out, const char *src, const char *dst, uint32_t spi, uint64_t add_time,
                        const char *aead, int labeled)
{
    struct xfrm_lifetime_cfg lft;
    struct xfrm_lifetime_cur cur;
    uint8_t label[64];
    size_t llen = labeled ? sec_ctx_attr(label, sizeof(label)) : 0;

    lifetimes(&lft, &cur, 0, -1, 0, 0);
    cur.add_time = add_time;
    if (parsed_sa_lft(out, src, spi, &lft, &cur, aead, labeled ? XFRMA_SEC_CTX : 0, label, llen) != 0) {
        return -1;
    }
    v4(out->daddr, dst);
    return 0;
}

/* A soft XFRM_MSG_EXPIRE for the ESP SA spi from 10.0.0.1 to 10.0.0.2 (reqid 7), added at add_time. */
static void soft_expire_msg(struct xfrm_user_expire *ue, uint32_t spi, uint64_t add_time, uint64_t soft_add)
{
    memset(ue, 0, sizeof(*ue));
    ue->state.family = AF_INET;
    inet_pton(AF_INET, "10.0.0.1", &ue->state.saddr);
    inet_pton(AF_INET, "10.0.0.2", &ue->state.id.daddr);
    ue->state.id.spi = htonl(spi);
    ue->state.id.proto = IPPROTO_ESP;
    ue->state.reqid = 7;
    ue->state.mode = XFRM_MODE_TRANSPORT;
    ue->state.lft.soft_byte_limit = ue->state.lft.hard_byte_limit = XFRM_INF;
    ue->state.lft.soft_packet_limit = ue->state.lft.hard_packet_limit = XFRM_INF;
    ue->state.lft.soft_add_expires_seconds = soft_add;
    ue->state.curlft.add_time = add_time;
}

/* A soft-expire notification (XFRM_MSG_EXPIRE, hard 0) for an SA from 10.0.0.1 added added_ago seconds ago with
 * a soft add limit of soft_add seconds (0: none), applied to the snapshot as the notification reader does. */
static int notify_soft_expire(ss_snap *s, uint32_t spi, int64_t added_ago, uint64_t soft_add)
{
    struct xfrm_user_expire ue;
    ss_sa a;
    const char *why;
    int action;

    soft_expire_msg(&ue, spi, (uint64_t)((int64_t)time(NULL) - added_ago), soft_add);
    if (ss_parse_sa_notify(XFRM_MSG_EXPIRE, &ue, sizeof(ue), &a, &action, &why) != SS_PARSE_OK) {
        fprintf(stderr, "parse: %s\n", why);
        return -1;
    }
    return sa_apply(s, action, &a);
}

static int add_policy(ss_snap *s, const ss_policy *p)
{
    if (grow((void **)&s->pols, &s->cap, s->npols + 1, sizeof(*p)) != 0) {
        return -1;
    }
    s->pols[s->npols++] = *p;
    return 0;
}

static int add_sa(ss_snap *s, const ss_sa *a)
{
    if (grow((void **)&s->sas, &s->sacap, s->nsas + 1, sizeof(*a)) != 0) {
        return -1;
    }
    s->sas[s->nsas++] = *a;
    return 0;
}

/* An SA record as the kernel dumps or announces it (struct xfrm_usersa_info from 10.0.0.1 to 10.0.0.2, then
 * XFRMA_ALG_AEAD with an empty key). */
typedef struct {
    union {
        uint8_t bytes[NLMSG_ALIGN(sizeof(struct xfrm_usersa_info)) + NLA_HDRLEN + sizeof(struct xfrm_algo_aead)];
        uint64_t align;
    } msg;
    size_t len;
} sa_record;

static void make_sa_record(sa_record *r, uint32_t spi, const struct xfrm_lifetime_cfg *lft,
                           const struct xfrm_lifetime_cur *cur, const char *aead)
{
    struct xfrm_usersa_info info;
    struct xfrm_algo_aead alg;

    memset(r, 0, sizeof(*r));
    info = usersa("10.0.0.1", spi, lft, cur);
    memcpy(r->msg.bytes, &info, sizeof(info));
    memset(&alg, 0, sizeof(alg));
    snprintf(alg.alg_name, sizeof(alg.alg_name), "%s", aead);
    alg.alg_icv_len = 128;
    r->len = NLMSG_ALIGN(sizeof(info));
    put_attr(r->msg.bytes, &r->len, XFRMA_ALG_AEAD, &alg, sizeof(alg));
}

/* A dump of the SA table into s as dump_sas makes one: what soft-expire notifications said kept across. */
static int redump(ss_snap *s, const sa_record *records, size_t n)
{
    ss_sa *kept = NULL;
    size_t nkept = 0, i;
    secsock_error err;
    dump_ctx c = {s, &err};
    int rc = 0;

    if (sa_save_dying(s, &kept, &nkept) != 0) {
        return -1;
    }
    snap_free_sas(s);
    for (i = 0; i < n && rc == 0; i++) {
        rc = on_sa(&c, XFRM_MSG_NEWSA, 0, records[i].msg.bytes, records[i].len);
    }
    if (rc == 0 && snap_index_sas(s) == 0) {
        sa_restore_dying(s, kept, nkept);
    } else {
        rc = -1;
    }
    free(kept);
    return rc;
}

/* The notification reader (drain_notify_locked) over a socket whose next read loses notifications, instead of
 * the XFRM one: ENOBUFS (lost == 0; a NETLINK_USERSOCK socket with the smallest buffer, overrun by another's
 * multicasts, which no privilege is needed for) or a datagram too large for its buffer (lost == 1; MSG_TRUNC,
 * from a Unix datagram socket pair). 0 when the reader went through that path (the table stale, and for ENOBUFS
 * an overrun counted), -1 otherwise. */
static int drain_losing_notifications(int truncated)
{
    int fds[2] = {-1, -1}, saved_fd = g.cur.notify_fd, saved_ep = g.cur.notify_ep, rc = -1;
    uint64_t overruns = g.overruns;

    if (truncated) {
        static uint8_t big[SS_NL_BUF + 4096];
        if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, fds) != 0) {
            return -1;
        }
        memset(big, 0, sizeof(big));
        if (send(fds[1], big, sizeof(big), 0) != (ssize_t)sizeof(big)) {
            goto out;
        }
    } else {
        struct sockaddr_nl a;
        uint8_t msg[NLMSG_HDRLEN + 1024];
        struct nlmsghdr h;
        int small = 1, i, group = 1;
        fds[0] = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_USERSOCK);
        fds[1] = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_USERSOCK);
        if (fds[0] < 0 || fds[1] < 0 || setsockopt(fds[0], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)) != 0) {
            goto out;
        }
        memset(&a, 0, sizeof(a));
        a.nl_family = AF_NETLINK;
        if (bind(fds[0], (struct sockaddr *)&a, sizeof(a)) != 0 ||
            setsockopt(fds[0], SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof(group)) != 0) {
            goto out;
        }
        memset(msg, 0, sizeof(msg));
        memset(&h, 0, sizeof(h));
        h.nlmsg_len = sizeof(msg);
        h.nlmsg_type = NLMSG_NOOP;
        memcpy(msg, &h, sizeof(h));
        a.nl_groups = 1u << (group - 1);
        for (i = 0; i < 64; i++) { /* far more than the smallest buffer holds: the kernel drops and flags it */
            /* Multicast, then unicast to port 0, which no kernel socket holds for NETLINK_USERSOCK: refused. */
            if (sendto(fds[1], msg, sizeof(msg), 0, (struct sockaddr *)&a, sizeof(a)) != (ssize_t)sizeof(msg) &&
                errno != ECONNREFUSED) {
                goto out;
            }
        }
    }
    g.cur.notify_fd = fds[0];
    g.cur.notify_ep = -1; /* poll */
    g.cur.sa_stale = 0;
    drain_notify_locked();
    rc = g.cur.sa_stale && (truncated || g.overruns > overruns) ? 0 : -1;
out:
    g.cur.notify_fd = saved_fd;
    g.cur.notify_ep = saved_ep;
    if (fds[0] >= 0) {
        close(fds[0]);
    }
    if (fds[1] >= 0) {
        close(fds[1]);
    }
    return rc;
}

int cmd_synthetic(const char *name);
int cmd_release_cache(int n, char **releases);
int cmd_policy_labels(const char *filesystems);

/* driver policy-labels [FILE]: whether a policy can carry a security label, read from FILE as from
 * /proc/filesystems (ss_policy_labels_in), or as the backend reads it (ss_policy_labels_possible). */
int cmd_policy_labels(const char *filesystems)
{
    printf("%d\n", filesystems != NULL ? ss_policy_labels_in(filesystems) : ss_policy_labels_possible());
    return 0;
}

/* driver release-cache RELEASE...: ss_release_has_state_cache's answer for each uname release, one a line. */
int cmd_release_cache(int n, char **releases)
{
    int i;
    for (i = 0; i < n; i++) {
        printf("%d\n", ss_release_has_state_cache(releases[i]));
    }
    return 0;
}

/* local-dev-netns-unknown / local-dev-netns-known: flow_xfrm_disabled asked three times whether a UDP socket's
 * peer (10.77.0.1 -> 10.77.0.2:500, in the namespace the driver runs in) is one of the host's addresses
 * (conf_local_dev, which reads the rules and, while they are plain, dumps the IPv4 routes), with the flow's
 * namespace not known (f.ns.known 0: nothing can be kept for it, conf_for) or known (the thread's). The caller
 * counts the dumps (strace): in a namespace not known the routes are never dumped, every call reading the rules
 * again; in a known one both are read once and kept (c07c407). Prints {"answers": [...]} (each call's value). */
static int local_dev_calls(const char *name)
{
    struct sockaddr_in peer;
    secsock_error err;
    int i, sock, v[3];

    sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    memset(&peer, 0, sizeof(peer));
    peer.sin_family = AF_INET;
    peer.sin_port = htons(500);
    inet_pton(AF_INET, "10.77.0.2", &peer.sin_addr);
    if (sock < 0 || connect(sock, (struct sockaddr *)&peer, sizeof(peer)) != 0) {
        if (sock >= 0) {
            close(sock);
        }
        return -1;
    }
    pthread_mutex_lock(&g_lock); /* as eval_dir calls it */
    for (i = 0; i < 3; i++) {
        ss_flow f;
        memset(&f, 0, sizeof(f));
        f.sock = sock;
        f.family = AF_INET;
        f.proto = IPPROTO_UDP;
        v4(f.local, "10.77.0.1");
        v4(f.peer, "10.77.0.2");
        f.lport = htons(4000);
        f.pport = htons(500);
        f.oif = -1;
        f.sel_dev[0] = f.sel_dev[1] = -1;
        f.lo_conf = SS_CONF_OUT_READ | SS_CONF_IN_READ; /* `all`'s settings read as off */
        if (strcmp(name, "local-dev-netns-known") == 0 && thread_netns(&f.ns, NULL) != 0) {
            f.ns.known = 0;
        }
        secsock_error_clear(&err);
        v[i] = flow_xfrm_disabled(&f, XFRM_POLICY_OUT, &err);
    }
    pthread_mutex_unlock(&g_lock);
    close(sock);
    printf("{\"answers\": [%d, %d, %d]}\n", v[0], v[1], v[2]);
    return 0;
}

int cmd_synthetic(const char *name)
{
    ss_snap s;
    ss_flow f;
    int dir, rc = 0;

    memset(&s, 0, sizeof(s));
    memset(&f, 0, sizeof(f));
    f.sock = -1;
    f.family = AF_INET;
    f.proto = IPPROTO_UDP;
    v4(f.local, "10.0.0.1");
    v4(f.peer, "10.0.0.2");
    f.lport = htons(4000);
    f.pport = htons(500);
    f.mark_read = 1; /* SO_MARK 0, without a socket */
    f.oif = 2;       /* no route lookup from a synthetic flow; not lo (1), whose settings a flow that leaves by
                      * it follows (remote_xfrm_disabled: with no namespace known, any route may be one by lo) */
    f.local_dev = -1; /* nor one for whether the peer is local (flow_xfrm_disabled) */
    ss_kernel_state_cache = 0; /* as on 6.1 (the VM's), whatever this host runs; sa-cache-* set it */
    f.lo_conf = SS_CONF_OUT_READ | SS_CONF_IN_READ; /* `all`'s settings read as off, whatever the host's */
    if (strncmp(name, "local-dev-netns-", 16) == 0) {
        return local_dev_calls(name);
    }
    if (strcmp(name, "sa-dir-in-best") == 0) {
        ss_policy p = esp_policy(XFRM_POLICY_OUT, "10.0.0.1", "10.0.0.2", 1);
        ss_sa older = esp_sa("10.0.0.1", "10.0.0.2", 0x1001, 100, 0);
        ss_sa newer = esp_sa("10.0.0.1", "10.0.0.2", 0x1002, 200, SS_SA_DIR_IN);
        rc = add_policy(&s, &p) | add_sa(&s, &older) | add_sa(&s, &newer);
    } else if (strcmp(name, "xfrmi-sub-bypass-main-block") == 0) {
        ss_policy sub = esp_policy(XFRM_POLICY_OUT, "10.0.0.1", "10.0.0.2", 1);
        ss_policy block = esp_policy(XFRM_POLICY_OUT, "10.0.0.1", "10.0.0.2", 2);
        ss_policy xfrmi = esp_policy(XFRM_POLICY_OUT, "10.0.0.1", "10.0.0.2", 3);
        ss_sa a = esp_sa("10.0.0.1", "10.0.0.2", 0x1001, 100, 0);
        sub.type = XFRM_POLICY_TYPE_SUB;
        sub.ntmpl = 0;
        block.action = XFRM_POLICY_BLOCK;
        block.ntmpl = 0;
        xfrmi.if_id = a.if_id = 42;
        f.if_id_known = 1;
        f.if_id = 42;
        rc = add_policy(&s, &sub) | add_policy(&s, &block) | add_policy(&s, &xfrmi) | add_sa(&s, &a);
    } else if (strncmp(name, "sa-maybe-", 9) == 0) {
        ss_policy p = esp_policy(XFRM_POLICY_OUT, "10.0.0.1", "10.0.0.2", 1);
        int newer = strcmp(name, "sa-maybe-newer") == 0;
        ss_sa sure = esp_sa("10.0.0.1", "10.0.0.2", 0x1001, 150, 0);
        ss_sa maybe = esp_sa("10.0.0.1", "10.0.0.2", 0x1002, newer ? 200 : 100, 0);
        maybe.sel = p.sel;
        maybe.sel.ifindex = 5;
        snprintf(maybe.aead, sizeof(maybe.aead), "%s", "rfc4543(gcm(aes))"); /* protects differently */
        f.sel_dev[1] = SS_DEV_UNKNOWN; /* as flow_sel_dev says for a VRF-bound or unbound UDPv6 socket */
        rc = add_policy(&s, &p) | add_sa(&s, &sure) | add_sa(&s, &maybe);
    } else if (strncmp(name, "sa-same-second", 14) == 0) {
        ss_policy p = esp_policy(XFRM_POLICY_OUT, "10.0.0.1", "10.0.0.2", 1);
        ss_sa one = esp_sa("10.0.0.1", "10.0.0.2", 0x1001, 100, 0);
        ss_sa two = esp_sa("10.0.0.1", "10.0.0.2", 0x1002, 100, 0);
        if (strcmp(name, "sa-same-second") == 0) {
            snprintf(two.aead, sizeof(two.aead), "%s", "rfc4543(gcm(aes))");
        }
        rc = add_policy(&s, &p) | add_sa(&s, &one) | add_sa(&s, &two);
    } else if (strcmp(name, "sa-source-any-newer") == 0 || strcmp(name, "sa-acquire-source-any") == 0) {
        ss_policy p = esp_policy(XFRM_POLICY_OUT, "10.0.0.1", "10.0.0.2", 1);
        ss_sa own = esp_sa("10.0.0.1", "10.0.0.2", 0x1001, 100, 0);
        ss_sa any = esp_sa("0.0.0.0", "10.0.0.2", 0x1002, 200, 0);
        snprintf(any.aead, sizeof(any.aead), "%s", "rfc4543(gcm(aes))"); /* protects differently */
        if (strcmp(name, "sa-acquire-source-any") == 0) {
            own.spi = 0; /* larval: no SPI, no algorithms yet */
            own.has_aead = 0;
        }
        rc = add_policy(&s, &p) | add_sa(&s, &own) | add_sa(&s, &any);
    } else if (strncmp(name, "sa-tunnel-source-any-", 21) == 0) {
        ss_policy p = esp_policy(XFRM_POLICY_OUT, "10.0.0.1", "10.0.0.2", 1);
        ss_sa own = esp_sa("10.0.0.1", "10.0.0.2", 0x1001, 100, 0);
        ss_sa other = esp_sa("10.9.9.9", "10.0.0.2", 0x1002, 200, 0);
        ss_sa wild = esp_sa("0.0.0.0", "10.0.0.2", 0x1003, 100, 0);
        p.tmpl[0].mode = XFRM_MODE_TUNNEL;
        v4(p.tmpl[0].daddr, "10.0.0.2"); /* the gateway; the template's source stays any */
        own.mode = other.mode = wild.mode = XFRM_MODE_TUNNEL;
        own.has_aead = 0;
        own.has_crypt = 1;
        snprintf(own.encryption, sizeof(own.encryption), "%s", "ecb(cipher_null)");
        rc = add_policy(&s, &p);
        if (strcmp(name, "sa-tunnel-source-any-both") == 0) {
            rc |= add_sa(&s, &own) | add_sa(&s, &other);
        } else if (strcmp(name, "sa-tunnel-source-any-other") == 0) {
            rc |= add_sa(&s, &other);
        } else {
            rc |= add_sa(&s, &wild);
        }
    } else if (strncmp(name, "sa-wildcard-other-source", 24) == 0) {
        ss_policy p = esp_policy(XFRM_POLICY_OUT, "10.0.0.1", "10.0.0.2", 1);
        ss_sa wild = esp_sa("0.0.0.0", "10.0.0.2", 0x1001, 100, 0);
        uint64_t other_time = strcmp(name, "sa-wildcard-other-source") == 0 ? 200 : 50;
        ss_sa other = esp_sa("10.0.0.8", "10.0.0.2", 0x1002, other_time, 0);
        other.has_aead = 0;
        other.has_crypt = 1;
        snprintf(other.encryption, sizeof(other.encryption), "%s", "ecb(cipher_null)");
        rc = add_policy(&s, &p) | add_sa(&s, &wild) | add_sa(&s, &other);
    } else if (strncmp(name, "sa-soft-", 8) == 0) {
        ss_policy p = esp_policy(XFRM_POLICY_OUT, "10.0.0.1", "10.0.0.2", 1);
        ss_sa a, b;
        if (strcmp(name, "sa-soft-use-dying") == 0) {
            rc = parsed_sa(&a, "10.0.0.1", 0x1001, 100, 50, 0, 10, "rfc4106(gcm(aes))", 0, NULL, 0);
        } else if (strcmp(name, "sa-soft-add-both-due") == 0) {
            rc = parsed_sa(&a, "10.0.0.1", 0x1001, 99, -1, 99, 0, "rfc4106(gcm(aes))", 0, NULL, 0);
        } else {
            rc = parsed_sa(&a, "10.0.0.1", 0x1001, 100, -1, 100, 0, "rfc4106(gcm(aes))", 0, NULL, 0);
        }
        rc |= parsed_sa(&b, "10.0.0.1", 0x1002, strcmp(name, "sa-soft-add-both-due") == 0 ? 100 : 200, -1,
                        strcmp(name, "sa-soft-add-both-due") == 0 ? 100 : 0, 0, "rfc4543(gcm(aes))", 0, NULL, 0);
        rc |= add_policy(&s, &p) | add_sa(&s, &a);
        if (strcmp(name, "sa-soft-add-just-due-alone") != 0) {
            rc |= add_sa(&s, &b);
        }
    } else if (strncmp(name, "sa-limit-", 9) == 0) {
        /* A (0x1001, newer) with the case's lifetimes, B (0x1002, older) without limits. */
        ss_policy p = esp_policy(XFRM_POLICY_OUT, "10.0.0.1", "10.0.0.2", 1);
        struct xfrm_lifetime_cfg lft;
        struct xfrm_lifetime_cur cur;
        const char *a_alg = "rfc4106(gcm(aes))", *b_alg = "rfc4543(gcm(aes))";
        ss_sa a, b;
        lifetimes(&lft, &cur, 100, -1, 0, 0);
        if (strcmp(name, "sa-limit-hard-add-just-due") == 0) {
            lft.hard_add_expires_seconds = 100;
            a_alg = "rfc4543(gcm(aes))";
            b_alg = "rfc4106(gcm(aes))";
        } else if (strcmp(name, "sa-limit-soft-add-wraps") == 0) {
            lft.soft_add_expires_seconds = ((uint64_t)1 << 63) + 200;
        } else if (strcmp(name, "sa-limit-soft-bytes-crossed") == 0) {
            lft.soft_byte_limit = 1000;
            cur.bytes = 1000;
            cur.packets = 1;
            cur.use_time = cur.add_time;
        } else if (strcmp(name, "sa-limit-soft-packets-passed") == 0) {
            lft.soft_packet_limit = 1;
            cur.bytes = 2000;
            cur.packets = 2;
            cur.use_time = cur.add_time;
        }
        rc = parsed_sa_lft(&a, "10.0.0.1", 0x1001, &lft, &cur, a_alg, 0, NULL, 0);
        rc |= parsed_sa(&b, "10.0.0.1", 0x1002, 200, -1, 0, 0, b_alg, 0, NULL, 0);
        rc |= add_policy(&s, &p) | add_sa(&s, &a) | add_sa(&s, &b);
    } else if (strncmp(name, "sa-dying-notified-", 18) == 0) {
        ss_policy p = esp_policy(XFRM_POLICY_OUT, "10.0.0.1", "10.0.0.2", 1);
        ss_sa a = esp_sa("10.0.0.1", "10.0.0.2", 0x1001, 200, 0);
        ss_sa b = esp_sa("10.0.0.1", "10.0.0.2", 0x1002, 100, 0);
        ss_sa *kept = NULL;
        size_t nkept = 0;
        snprintf(b.aead, sizeof(b.aead), "%s", "rfc4543(gcm(aes))");
        rc = add_policy(&s, &p) | add_sa(&s, &a) | add_sa(&s, &b);
        /* -flushed: then the SA table is flushed (`ip xfrm state flush`: IPSEC_PROTO_ANY) while stale, and A
         * added again with the same SPI in the same second, its NEWSA not yet read when the table is dumped (it
         * came after the drain, or was lost): A is a new state, not dying. -flushed-ah: only AH is flushed, A
         * stays (and dying). -flushed-esp: only ESP (`ip xfrm state flush proto esp`), -flushed-all: every
         * protocol (proto 0): A is new. -flushed-fresh: the flush (IPSEC_PROTO_ANY) is read while the table is
         * fresh, which it makes stale (sa_notify_apply answers -1): A is new.
         * -stale-expire: A's soft expiry (from the kernel: its soft add limit long reached) is read while the
         * table is stale, instead of applied to a fresh one: A stays dying. */
        int stale_expire = strcmp(name, "sa-dying-notified-stale-expire") == 0;
        int fresh = strcmp(name, "sa-dying-notified-flushed-fresh") == 0;
        int flushed = strncmp(name, "sa-dying-notified-flush", 23) == 0;
        struct xfrm_usersa_flush flush = {255};
        struct xfrm_user_expire ue;
        if (strcmp(name, "sa-dying-notified-flushed-ah") == 0) {
            flush.proto = IPPROTO_AH;
        } else if (strcmp(name, "sa-dying-notified-flushed-esp") == 0) {
            flush.proto = IPPROTO_ESP;
        } else if (strcmp(name, "sa-dying-notified-flushed-all") == 0) {
            flush.proto = 0;
        }
        soft_expire_msg(&ue, 0x1001, a.add_time, 50);
        if (rc == 0 && snap_index_sas(&s) == 0 &&
            (stale_expire ? sa_notify_apply(&s, 1, XFRM_MSG_EXPIRE, &ue, sizeof(ue)) == 0
                          : sa_apply(&s, SS_SA_DYING, &a) == 0) &&
            (!flushed || sa_notify_apply(&s, !fresh, XFRM_MSG_FLUSHSA, &flush, sizeof(flush)) == (fresh ? -1 : 0)) &&
            sa_save_dying(&s, &kept, &nkept) == 0) {
            /* the dump: the same SAs read again, as on_sa makes them */
            snap_free_sas(&s);
            if (strcmp(name, "sa-dying-notified-readded") == 0) {
                a.add_time = 300; /* deleted and added again with the same SPI before the dump */
            }
            rc = add_sa(&s, &a) | add_sa(&s, &b);
            if (rc == 0 && snap_index_sas(&s) == 0) {
                sa_restore_dying(&s, kept, nkept);
            } else {
                rc = -1;
            }
            free(kept);
        } else {
            rc = -1;
        }
    } else if (strncmp(name, "sa-expire-", 10) == 0) {
        ss_policy p = esp_policy(XFRM_POLICY_OUT, "10.0.0.1", "10.0.0.2", 1);
        ss_sa a = esp_sa("10.0.0.1", "10.0.0.2", 0x1001, (uint64_t)time(NULL) - 100, 0);
        ss_sa b = esp_sa("10.0.0.1", "10.0.0.2", 0x1002, (uint64_t)time(NULL) - 200, 0);
        int user = strcmp(name, "sa-expire-from-userspace") == 0;
        snprintf(b.aead, sizeof(b.aead), "%s", "rfc4543(gcm(aes))");
        rc = add_policy(&s, &p) | add_sa(&s, &a) | add_sa(&s, &b);
        if (rc == 0 && snap_index_sas(&s) == 0) {
            rc = notify_soft_expire(&s, 0x1001, 100, user ? 0 : 50);
        } else {
            rc = -1;
        }
    } else if (strncmp(name, "sa-cache-", 9) == 0) {
        ss_policy p = esp_policy(XFRM_POLICY_OUT, "10.0.0.1", "10.0.0.2", 1);
        ss_sa a = esp_sa("10.0.0.1", "10.0.0.2", 0x1001, 200, 0);
        ss_sa b = esp_sa("10.0.0.1", "10.0.0.2", 0x1002, 100, 0);
        if (strcmp(name, "sa-cache-same-protection") != 0) {
            snprintf(b.aead, sizeof(b.aead), "%s", "rfc4543(gcm(aes))");
        }
        ss_kernel_state_cache = strcmp(name, "sa-cache-6.1") != 0;
        rc = add_policy(&s, &p) | add_sa(&s, &a) | add_sa(&s, &b);
    } else if (strcmp(name, "sa-pcpu") == 0 || strcmp(name, "sa-offload-packet") == 0) {
        ss_policy p = esp_policy(XFRM_POLICY_OUT, "10.0.0.1", "10.0.0.2", 1);
        ss_sa a;
        if (strcmp(name, "sa-pcpu") == 0) {
            uint32_t cpu = 1;
            rc = parsed_sa(&a, "10.0.0.1", 0x1001, 100, -1, 0, 0, "rfc4106(gcm(aes))", XFRMA_SA_PCPU, &cpu,
                           sizeof(cpu));
        } else {
            struct xfrm_user_offload off;
            memset(&off, 0, sizeof(off));
            off.ifindex = 2;
            off.flags = XFRM_OFFLOAD_PACKET;
            rc = parsed_sa(&a, "10.0.0.1", 0x1001, 100, -1, 0, 0, "rfc4106(gcm(aes))", XFRMA_OFFLOAD_DEV, &off,
                           sizeof(off));
        }
        rc |= add_policy(&s, &p) | add_sa(&s, &a);
    } else if (strncmp(name, "sa-due-", 7) == 0) {
        /* A (0x1001, added 102 s ago) and the older B (0x1002, 200 s ago, no limits), read by a dump: A's
         * limit fell due 2 s ago, which xfrm_timer_handler may not have acted on yet (its hrtimer runs late).
         * hard-10s-ago: A added 110 s ago, its hard add limit due 10 s ago; the timer deletes an SA it expires,
         * so a dump that still shows A shows one the timer has not acted on (a forward clock step, NEWAE). */
        ss_policy p = esp_policy(XFRM_POLICY_OUT, "10.0.0.1", "10.0.0.2", 1);
        struct xfrm_lifetime_cfg lft_a, lft_b;
        struct xfrm_lifetime_cur cur_a, cur_b;
        sa_record dump[2];
        int hard = strncmp(name, "sa-due-hard-", 12) == 0;
        lifetimes(&lft_a, &cur_a, strcmp(name, "sa-due-hard-10s-ago") == 0 ? 110 : 102, -1, hard ? 0 : 100, 0);
        lifetimes(&lft_b, &cur_b, 200, -1, 0, 0);
        lft_a.hard_add_expires_seconds = hard ? 100 : 0;
        if (strcmp(name, "sa-due-soft-bytes") == 0) {
            lft_a.soft_add_expires_seconds = 0;
            lft_a.soft_byte_limit = 1000; /* reached by the last packet: acted on at the next one */
            cur_a.bytes = 1000;
            cur_a.packets = 1;
            cur_a.use_time = cur_a.add_time;
        }
        /* hard: A is GMAC, so the pick changes only if A is taken as still usable */
        make_sa_record(&dump[0], 0x1001, &lft_a, &cur_a, hard ? "rfc4543(gcm(aes))" : "rfc4106(gcm(aes))");
        make_sa_record(&dump[1], 0x1002, &lft_b, &cur_b, hard ? "rfc4106(gcm(aes))" : "rfc4543(gcm(aes))");
        rc = add_policy(&s, &p) | redump(&s, dump, 2);
        if (rc == 0) {
            /* the tail below indexes the SAs anew */
            free(s.saheads);
            free(s.sanext);
            s.saheads = s.sanext = NULL;
        }
    } else if (strncmp(name, "sa-update-", 10) == 0) {
        /* The table of g.cur, as the notification reader keeps it: A (0x1001, AES-GCM, added 110 s ago) and the
         * older B (0x1002, GMAC, 200 s ago, no limits) dumped; then an XFRM_MSG_UPDSA for A (the request as
         * sent: the add time it gets is the request's); then a dump if the reader asks for one, which shows A
         * with its own add time and the update's lifetimes (xfrm_state_update copies lft only). */
        ss_policy p = esp_policy(XFRM_POLICY_OUT, "10.0.0.1", "10.0.0.2", 1);
        struct xfrm_lifetime_cfg lft_a, lft_b, lft_upd;
        struct xfrm_lifetime_cur cur_a, cur_b, cur_upd;
        sa_record dump[2], upd;
        size_t i;
        int stale = strncmp(name, "sa-update-while-stale", 21) == 0;
        /* -readded: instead of the update, A is deleted and added again with the same SPI in the same second
         * (a new state, km.dying 0, the same add time); -deleted: the same, its NEWSA lost. */
        int readded = strcmp(name, "sa-update-while-stale-readded") == 0;
        int deleted = readded || strcmp(name, "sa-update-while-stale-deleted") == 0;
        lifetimes(&lft_a, &cur_a, 110, -1, 0, 0);
        lifetimes(&lft_b, &cur_b, 200, -1, 0, 0);
        lifetimes(&lft_upd, &cur_upd, 0, -1, 0, 0);
        /* -burst / -burst-new: as -soft-still-due, then four other SAs updated (-burst) or added (-burst-new),
         * none with a limit due, before the dump: more adds and updates than sa_note_seen keeps. */
        int burst = strncmp(name, "sa-update-burst", 15) == 0;
        /* -lost-overrun / -lost-truncated: as -soft-still-due, but the update is lost (ENOBUFS, or a datagram
         * truncated), then the dump. */
        int lost = strcmp(name, "sa-update-lost-overrun") == 0     ? 0
                   : strcmp(name, "sa-update-lost-truncated") == 0 ? 1
                                                                   : -1;
        if (strcmp(name, "sa-update-soft-still-due") == 0 || burst || lost >= 0) {
            lft_a.soft_add_expires_seconds = 100; /* dying these 10 s */
            lft_upd.soft_add_expires_seconds = 100; /* the update leaves it due: its timer marks it again */
        } else if (strcmp(name, "sa-update-expired") == 0) {
            lft_a.hard_add_expires_seconds = 100; /* due 10 s ago: maybe expired */
            lft_upd.hard_add_expires_seconds = 100; /* the request's add time is now: not due in it */
        } else if (strcmp(name, "sa-update-while-stale-extended") == 0) {
            lft_upd.soft_add_expires_seconds = 1000; /* no longer due: the update made A live again */
        } else if (strcmp(name, "sa-update-while-stale-still-due") == 0) {
            lft_upd.soft_add_expires_seconds = 100; /* still due: dying again once its timer runs */
        }
        make_sa_record(&dump[0], 0x1001, &lft_a, &cur_a, "rfc4106(gcm(aes))");
        make_sa_record(&dump[1], 0x1002, &lft_b, &cur_b, "rfc4543(gcm(aes))");
        make_sa_record(&upd, 0x1001, &lft_upd, &cur_upd, "rfc4106(gcm(aes))");
        memset(&g.cur.snap, 0, sizeof(g.cur.snap));
        g.cur.sa_stale = 0;
        rc = add_policy(&s, &p) | redump(&g.cur.snap, dump, 2);
        if (rc == 0 && stale) {
            /* The kernel's soft expire (a soft limit reached 50 s ago), then something else marks the table
             * stale (an overrun, a flush), so the update below comes while it is. */
            rc = notify_soft_expire(&g.cur.snap, 0x1001, 100, 50);
            g.cur.sa_stale = 1;
        }
        if (rc == 0 && deleted) {
            struct xfrm_usersa_id id;
            memset(&id, 0, sizeof(id));
            inet_pton(AF_INET, "10.0.0.2", &id.daddr);
            id.spi = htonl(0x1001);
            id.family = AF_INET;
            id.proto = IPPROTO_ESP;
            (void)on_notify(NULL, XFRM_MSG_DELSA, 0, &id, sizeof(id));
            if (readded) {
                make_sa_record(&upd, 0x1001, &lft_upd, &cur_a, "rfc4106(gcm(aes))");
                (void)on_notify(NULL, XFRM_MSG_NEWSA, 0, upd.msg.bytes, upd.len);
            }
            make_sa_record(&dump[0], 0x1001, &lft_upd, &cur_a, "rfc4106(gcm(aes))");
            rc = redump(&g.cur.snap, dump, 2);
        } else if (rc == 0 && lost >= 0) {
            /* The update lost with others (the reader sees ENOBUFS or a truncated datagram, never the UPDSA):
             * no note of it can be kept, so the whole table counts as seen then (seen_all_at). */
            if (drain_losing_notifications(lost) != 0) {
                rc = -1;
            } else {
                make_sa_record(&dump[0], 0x1001, &lft_upd, &cur_a, "rfc4106(gcm(aes))");
                rc = redump(&g.cur.snap, dump, 2);
            }
        } else if (rc == 0) {
            (void)on_notify(NULL, XFRM_MSG_UPDSA, 0, upd.msg.bytes, upd.len);
            for (i = 0; burst && i < 4; i++) {
                sa_record other;
                make_sa_record(&other, 0x3001 + (uint32_t)i, &lft_b, &cur_upd, "rfc4106(gcm(aes))");
                (void)on_notify(NULL, strcmp(name, "sa-update-burst-new") == 0 ? XFRM_MSG_NEWSA : XFRM_MSG_UPDSA,
                                0, other.msg.bytes, other.len);
            }
            if (g.cur.sa_stale) {
                make_sa_record(&dump[0], 0x1001, &lft_upd, &cur_a, "rfc4106(gcm(aes))");
                rc = redump(&g.cur.snap, dump, 2);
            }
        }
        for (i = 0; rc == 0 && i < g.cur.snap.nsas; i++) {
            if (!g.cur.snap.sas[i].dead) {
                rc = add_sa(&s, &g.cur.snap.sas[i]);
            }
        }
        snap_free_sas(&g.cur.snap);
    } else if (strcmp(name, "unreadable-under-sub-bypass") == 0) {
        ss_policy sub = esp_policy(XFRM_POLICY_OUT, "10.0.0.1", "10.0.0.2", 1);
        ss_policy unreadable = esp_policy(XFRM_POLICY_OUT, "10.0.0.1", "10.0.0.2", 2);
        ss_policy main_bypass = esp_policy(XFRM_POLICY_OUT, "10.0.0.1", "10.0.0.2", 3);
        sub.type = XFRM_POLICY_TYPE_SUB;
        sub.ntmpl = 0;
        unreadable.type = XFRM_POLICY_TYPE_SUB; /* where on_policy keeps it, whatever its real type */
        unreadable.unreadable = 1;
        unreadable.ntmpl = 0;
        unreadable.priority = 5;
        main_bypass.ntmpl = 0;
        main_bypass.priority = 10;
        rc = add_policy(&s, &sub) | add_policy(&s, &unreadable) | add_policy(&s, &main_bypass);
    } else if (strncmp(name, "sec-ctx-policy", 14) == 0) {
        /* Out policies parsed from dumps: a labeled ESP one and an unlabeled one (bypass, or ESP), by case. */
        ss_policy labeled, plain;
        ss_sa a;
        uint32_t labeled_prio = 0, labeled_index = 1, plain_index = 2;
        int plain_esp = 0;
        if (strcmp(name, "sec-ctx-policy-behind") == 0) {
            labeled_prio = 10;
            plain_esp = 1;
        } else if (strcmp(name, "sec-ctx-policy-tie-older") == 0) {
            plain_esp = 1;
        } else if (strcmp(name, "sec-ctx-policy-tie-newer") == 0) {
            plain_esp = 1;
            labeled_index = 2;
            plain_index = 1;
        }
        rc = parsed_policy(&labeled, XFRM_POLICY_OUT, "10.0.0.1", "10.0.0.2", labeled_index, labeled_prio, 1);
        rc |= parsed_policy(&plain, XFRM_POLICY_OUT, "10.0.0.1", "10.0.0.2", plain_index, plain_esp ? 0 : 10, 0);
        if (!plain_esp) {
            plain.ntmpl = 0; /* a bypass */
        }
        rc |= parsed_sa_at(&a, "10.0.0.1", "10.0.0.2", 0x1001, 100, "rfc4106(gcm(aes))", 0);
        rc |= add_policy(&s, &labeled) | add_policy(&s, &plain) | add_sa(&s, &a);
    } else if (strncmp(name, "sec-ctx-sa-out-", 15) == 0) {
        /* An unlabeled out policy; an unlabeled AES-GCM SA (t100) and a labeled GMAC one, newer or older. */
        ss_policy p;
        ss_sa plain, labeled;
        int alone = strcmp(name, "sec-ctx-sa-out-alone") == 0;
        rc = parsed_policy(&p, XFRM_POLICY_OUT, "10.0.0.1", "10.0.0.2", 1, 0, 0);
        rc |= parsed_sa_at(&plain, "10.0.0.1", "10.0.0.2", 0x1001, 100, "rfc4106(gcm(aes))", 0);
        rc |= parsed_sa_at(&labeled, "10.0.0.1", "10.0.0.2", 0x1002,
                           strcmp(name, "sec-ctx-sa-out-older") == 0 ? 50 : 200, "rfc4543(gcm(aes))", 1);
        rc |= add_policy(&s, &p) | add_sa(&s, &labeled);
        if (!alone) {
            rc |= add_sa(&s, &plain);
        }
    } else if (strncmp(name, "sec-ctx-sa-in-", 14) == 0) {
        /* An unlabeled in policy; a labeled AES-GCM SA from the peer, alone or beside an unlabeled one. */
        ss_policy p;
        ss_sa plain, labeled;
        rc = parsed_policy(&p, XFRM_POLICY_IN, "10.0.0.2", "10.0.0.1", 1, 0, 0);
        rc |= parsed_sa_at(&labeled, "10.0.0.2", "10.0.0.1", 0x2002, 200, "rfc4106(gcm(aes))", 1);
        rc |= parsed_sa_at(&plain, "10.0.0.2", "10.0.0.1", 0x2001, 100, "rfc4106(gcm(aes))", 0);
        rc |= add_policy(&s, &p) | add_sa(&s, &labeled);
        if (strcmp(name, "sec-ctx-sa-in-beside") == 0) {
            rc |= add_sa(&s, &plain);
        }
    } else if (strncmp(name, "sec-ctx-notify-", 15) == 0) {
        /* g.cur's policy table as the notification reader keeps it: read by a dump (labels included:
         * dump_one_policy), then one policy notification as xfrm_notify_policy writes it (no XFRMA_SEC_CTX,
         * whatever the policy's label) through on_notify, then, if the reader asked for one, the kernel's
         * table dumped again. ss_policy_labels says whether a label can exist (an LSM keeps them).
         *   -new: a bypass (priority 10) dumped; then an ESP policy (priority 0) added, labeled where a label
         *         can exist. -new-no-labels: the same where none can (the kernel dropped the label).
         *   -upd: the bypass and the labeled ESP policy dumped; then that policy updated (the same).
         *   -del-by-selector: a labeled and an unlabeled ESP policy that differ only in the label (priority
         *         5), dumped; then the unlabeled one deleted by selector (xfrm_policy_bysel_ctx, no label). */
        int del = strcmp(name, "sec-ctx-notify-del-by-selector") == 0;
        int upd = strcmp(name, "sec-ctx-notify-upd") == 0;
        policy_record dump[2], after[2], note;
        size_t ndump = 2, nafter = 2, i;
        uint64_t applied = g.pol_updates;
        uint16_t type = del ? XFRM_MSG_DELPOLICY : upd ? XFRM_MSG_UPDPOLICY : XFRM_MSG_NEWPOLICY;
        int stale;
        ss_sa a;
        ss_policy_labels = strcmp(name, "sec-ctx-notify-new-no-labels") != 0;
        if (del) {
            make_policy_record(&dump[0], XFRM_POLICY_OUT, "10.0.0.1", "10.0.0.2", 9, 5, 1, 0);
            make_policy_record(&dump[1], XFRM_POLICY_OUT, "10.0.0.1", "10.0.0.2", 17, 5, 0, 0);
            make_policy_delete(&note, &dump[1]);
            after[0] = dump[0];
            nafter = 1;
        } else {
            make_policy_record(&dump[0], XFRM_POLICY_OUT, "10.0.0.1", "10.0.0.2", 9, 10, 0, 1);
            make_policy_record(&dump[1], XFRM_POLICY_OUT, "10.0.0.1", "10.0.0.2", 17, 0, 1, 0);
            ndump = upd ? 2 : 1;
            after[0] = dump[0];
            make_policy_record(&after[1], XFRM_POLICY_OUT, "10.0.0.1", "10.0.0.2", 17, 0, ss_policy_labels, 0);
            make_policy_record(&note, XFRM_POLICY_OUT, "10.0.0.1", "10.0.0.2", 17, 0, 0, 0);
        }
        memset(&g.cur.snap, 0, sizeof(g.cur.snap));
        g.cur.pol_stale = 0;
        g.pol_applied = 0;
        rc = load_policies(&g.cur.snap, dump, ndump);
        if (rc == 0) {
            (void)on_notify(NULL, type, 0, note.msg.bytes, note.len);
        }
        stale = g.cur.pol_stale;
        if (rc == 0 && stale) {
            rc = load_policies(&g.cur.snap, after, nafter);
        }
        for (i = 0; rc == 0 && i < g.cur.snap.npols; i++) {
            rc = add_policy(&s, &g.cur.snap.pols[i]);
        }
        snap_free_policies(&g.cur.snap);
        printf("{\"dir\": \"notify\", \"stale\": %d, \"applied\": %llu}\n", stale,
               (unsigned long long)(g.pol_updates - applied));
        rc |= parsed_sa_at(&a, "10.0.0.1", "10.0.0.2", 0x1001, 100, "rfc4106(gcm(aes))", 0);
        rc |= add_sa(&s, &a);
    } else if (strcmp(name, "sa-unreadable-out") == 0) {
        /* An out ESP policy, an AES-GCM SA, and an SA toward the same peer the dump cannot read (an AEAD
         * attribute shorter than its structure): on_sa keeps its identity only. */
        ss_policy p = esp_policy(XFRM_POLICY_OUT, "10.0.0.1", "10.0.0.2", 1);
        ss_sa a = esp_sa("10.0.0.1", "10.0.0.2", 0x1001, 100, 0);
        union {
            uint8_t bytes[NLMSG_ALIGN(sizeof(struct xfrm_usersa_info)) + NLA_HDRLEN + 16];
            uint64_t align;
        } msg;
        struct xfrm_usersa_info info;
        struct xfrm_lifetime_cfg lft;
        struct xfrm_lifetime_cur cur;
        uint8_t short_aead[16] = {0};
        size_t off = NLMSG_ALIGN(sizeof(info));
        secsock_error derr;
        dump_ctx c = {&s, &derr};
        memset(&msg, 0, sizeof(msg));
        lifetimes(&lft, &cur, 10, -1, 0, 0);
        info = usersa("10.0.0.1", 0x1002, &lft, &cur);
        memcpy(msg.bytes, &info, sizeof(info));
        put_attr(msg.bytes, &off, XFRMA_ALG_AEAD, short_aead, sizeof(short_aead));
        rc = add_policy(&s, &p) | add_sa(&s, &a) | on_sa(&c, XFRM_MSG_NEWSA, 0, msg.bytes, off);
    } else {
        fprintf(stderr, "unknown synthetic case %s\n", name);
        return 2;
    }
    if (rc != 0 || snap_index_policies(&s) != 0 || snap_index_sas(&s) != 0) {
        fprintf(stderr, "out of memory\n");
        snap_free_policies(&s);
        snap_free_sas(&s);
        return 1;
    }
    for (dir = XFRM_POLICY_IN; dir <= XFRM_POLICY_OUT; dir++) {
        secsock_direction out;
        dir_verdict v;
        secsock_error err;
        size_t i;

        secsock_error_clear(&err);
        if (eval_dir(&s, &f, dir, &out, &v, &err) != 0) {
            printf("{\"dir\": \"%s\", \"error\": \"%s\"}\n", dir == XFRM_POLICY_OUT ? "out" : "in", err.message);
            continue;
        }
        printf("{\"dir\": \"%s\", \"protected\": %d, \"encrypted\": %d, \"reason\": %u, \"spis\": [",
               dir == XFRM_POLICY_OUT ? "out" : "in", v.protected_, v.encrypted, (unsigned)v.reason);
        for (i = 0; i < out.count; i++) {
            printf("%s%u", i > 0 ? ", " : "", (unsigned)out.sas[i].spi);
        }
        printf("]}\n");
    }
    if (strncmp(name, "sa-due-", 7) == 0) {
        /* When the SA table is to be read again to settle a time limit's maybe (ms from now; -1: never). */
        printf("{\"dir\": \"recheck\", \"in_ms\": %lld}\n",
               s.recheck_at != 0 ? (long long)(s.recheck_at - ss_clock_ms()) : -1LL);
    }
    snap_free_policies(&s);
    snap_free_sas(&s);
    return 0;
}
