/*
 * Writes the seed corpus for the fuzz targets (hardening/make_corpus.sh runs it inside a network namespace
 * holding a variety of policies):
 *   - real dumps: every datagram of an XFRM_MSG_GETPOLICY dump as the kernel sent it, and each policy message's
 *     payload on its own;
 *   - SAs built by hand with the kernel's own structures (this host's kernel has no ESP/AH, so it can hold no
 *     SA to dump): ESP with cbc(aes)+hmac(sha256), ESP with an AEAD, ESP with cipher_null, AH, IPComp, an
 *     IPv6 tunnel SA with a mark, an if_id and a direction, and an expired one;
 *   - netlink control messages: NLMSG_DONE, an acknowledgement, an error, an interrupted dump;
 *   - for the lookup target: a flow followed by a datagram of policies and SAs that protect it;
 *   - security labels (XFRMA_SEC_CTX) on policies and SAs, well-formed and malformed (uctx.len lying, ctx_len
 *     past the attribute, the attribute too short or running past its message), for every Linux target;
 *   - real policy notifications: the kernel's XFRMNLGRP_POLICY/EXPIRE messages for policies added, updated,
 *     deleted (by index, by selector), expired and flushed with `ip xfrm`, each on its own for
 *     xfrm_policy_notify, and in sequences of drains over a small dump for xfrm_policy_apply. What varies from
 *     run to run is zeroed (the lifetime counters' times, the sender's sequence and port id), so a second run
 *     writes the same bytes.
 * Usage: make_corpus OUTDIR
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netlink.h>
#include <linux/xfrm.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *outdir;

static void write_file(const char *target, const char *name, const void *data, size_t len)
{
    char path[512];
    FILE *f;
    snprintf(path, sizeof(path), "%s/%s", outdir, target);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/%s/%s", outdir, target, name);
    f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

/* A growing byte buffer. */
typedef struct {
    uint8_t b[16384];
    size_t n;
} buf_t;

static void put(buf_t *b, const void *p, size_t n)
{
    if (b->n + n > sizeof(b->b)) {
        fprintf(stderr, "make_corpus: buffer full\n");
        exit(1);
    }
    memcpy(b->b + b->n, p, n);
    b->n += n;
}

static void pad4(buf_t *b)
{
    static const uint8_t zero[4];
    put(b, zero, NLA_ALIGN(b->n) - b->n);
}

static void attr(buf_t *b, uint16_t type, const void *data, size_t len)
{
    struct nlattr a = {(uint16_t)(NLA_HDRLEN + len), type};
    put(b, &a, sizeof(a));
    put(b, data, len);
    pad4(b);
}

/* Wrap a payload in a netlink message header and append it to a datagram. */
static void message(buf_t *dgram, uint16_t type, uint16_t flags, uint32_t seq, uint32_t pid, const buf_t *payload)
{
    struct nlmsghdr h;
    memset(&h, 0, sizeof(h));
    h.nlmsg_len = (uint32_t)(NLMSG_HDRLEN + payload->n);
    h.nlmsg_type = type;
    h.nlmsg_flags = flags;
    h.nlmsg_seq = seq;
    h.nlmsg_pid = pid;
    put(dgram, &h, sizeof(h));
    put(dgram, payload->b, payload->n);
    pad4(dgram);
}

static void alg(buf_t *b, uint16_t type, const char *name, unsigned key_bits, unsigned trunc_or_icv)
{
    uint8_t raw[512];
    size_t fixed = type == XFRMA_ALG_AUTH_TRUNC ? sizeof(struct xfrm_algo_auth)
                   : type == XFRMA_ALG_AEAD     ? sizeof(struct xfrm_algo_aead)
                                                : sizeof(struct xfrm_algo);
    size_t key = (key_bits + 7) / 8, i;
    memset(raw, 0, sizeof(raw));
    snprintf((char *)raw, 64, "%s", name);
    memcpy(raw + 64, &key_bits, 4);
    if (type == XFRMA_ALG_AUTH_TRUNC || type == XFRMA_ALG_AEAD) {
        memcpy(raw + 68, &trunc_or_icv, 4);
    }
    for (i = 0; i < key; i++) {
        raw[fixed + i] = (uint8_t)(0xA0 + i); /* a made-up key: these files are public */
    }
    attr(b, type, raw, fixed + key);
}

typedef struct {
    const char *name;
    int family;
    const char *src, *dst;
    uint8_t proto, mode;
    uint32_t spi, reqid;
    int kind; /* 0 enc+auth, 1 aead, 2 null enc, 3 auth only, 4 comp */
    uint32_t mark_v, mark_m, if_id;
    int dir;
    int expired;
} sa_spec;

static void build_sa(buf_t *p, const sa_spec *s)
{
    struct xfrm_usersa_info info;
    memset(&info, 0, sizeof(info));
    memset(p, 0, sizeof(*p));
    inet_pton(s->family, s->dst, &info.id.daddr);
    inet_pton(s->family, s->src, &info.saddr);
    info.id.spi = htonl(s->spi);
    info.id.proto = s->proto;
    info.family = (uint16_t)s->family;
    info.mode = s->mode;
    info.reqid = s->reqid;
    info.replay_window = 32;
    info.lft.soft_byte_limit = info.lft.hard_byte_limit = XFRM_INF;
    info.lft.soft_packet_limit = info.lft.hard_packet_limit = XFRM_INF;
    info.curlft.add_time = 1700000000;
    if (s->expired) {
        info.lft.hard_byte_limit = 1000;
        info.curlft.bytes = 5000;
    }
    if (s->mode == XFRM_MODE_TRANSPORT) {
        info.sel.family = (uint16_t)s->family;
        inet_pton(s->family, s->dst, &info.sel.daddr);
        inet_pton(s->family, s->src, &info.sel.saddr);
        info.sel.prefixlen_d = info.sel.prefixlen_s = s->family == AF_INET ? 32 : 128;
    }
    put(p, &info, sizeof(info));
    pad4(p);
    switch (s->kind) {
    case 0:
        alg(p, XFRMA_ALG_AUTH_TRUNC, "hmac(sha256)", 256, 128);
        alg(p, XFRMA_ALG_CRYPT, "cbc(aes)", 128, 0);
        break;
    case 1:
        alg(p, XFRMA_ALG_AEAD, "rfc4106(gcm(aes))", 160, 128);
        break;
    case 2:
        alg(p, XFRMA_ALG_AUTH, "digest_null", 0, 0);
        alg(p, XFRMA_ALG_CRYPT, "ecb(cipher_null)", 0, 0);
        break;
    case 3:
        alg(p, XFRMA_ALG_AUTH_TRUNC, "hmac(sha1)", 160, 96);
        break;
    default:
        alg(p, XFRMA_ALG_COMP, "deflate", 0, 0);
        break;
    }
    if (s->mark_m != 0) {
        struct xfrm_mark m = {s->mark_v, s->mark_m};
        attr(p, XFRMA_MARK, &m, sizeof(m));
    }
    if (s->if_id != 0) {
        attr(p, XFRMA_IF_ID, &s->if_id, sizeof(s->if_id));
    }
    if (s->dir != 0) {
        uint8_t d = (uint8_t)s->dir;
        attr(p, 33 /* XFRMA_SA_DIR */, &d, 1);
    }
}

static const sa_spec sas[] = {
    {"esp-aes-sha256-out", AF_INET, "10.0.0.1", "10.0.0.2", IPPROTO_ESP, XFRM_MODE_TRANSPORT, 0x1001, 1, 0, 0, 0, 0, 0, 0},
    {"esp-aes-sha256-in", AF_INET, "10.0.0.2", "10.0.0.1", IPPROTO_ESP, XFRM_MODE_TRANSPORT, 0x1002, 1, 0, 0, 0, 0, 0, 0},
    {"esp-gcm", AF_INET, "10.0.0.1", "10.0.0.2", IPPROTO_ESP, XFRM_MODE_TRANSPORT, 0x2001, 2, 1, 0, 0, 0, 0, 0},
    {"esp-null", AF_INET, "10.0.0.1", "10.0.0.2", IPPROTO_ESP, XFRM_MODE_TRANSPORT, 0x3001, 3, 2, 0, 0, 0, 0, 0},
    {"ah-sha1", AF_INET, "10.0.0.1", "10.0.0.2", IPPROTO_AH, XFRM_MODE_TRANSPORT, 0x4001, 4, 3, 0, 0, 0, 0, 0},
    {"ipcomp", AF_INET, "10.0.0.1", "10.0.0.2", IPPROTO_COMP, XFRM_MODE_TRANSPORT, 0x5001, 5, 4, 0, 0, 0, 0, 0},
    {"esp6-tunnel-mark-ifid-dir", AF_INET6, "fd00::1", "fd00::2", IPPROTO_ESP, XFRM_MODE_TUNNEL, 0x6001, 6, 1, 7, 0xff, 9, 2, 0},
    {"esp-expired", AF_INET, "10.0.0.1", "10.0.0.2", IPPROTO_ESP, XFRM_MODE_TRANSPORT, 0x7001, 1, 0, 0, 0, 0, 0, 1},
};

/* A transport policy for 10.0.0.1 <-> 10.0.0.2 with one ESP template, built by hand for the lookup seed. */
static void build_policy(buf_t *p, int dir, const char *src, const char *dst, uint32_t reqid, uint32_t index)
{
    struct xfrm_userpolicy_info info;
    struct xfrm_user_tmpl t;
    memset(&info, 0, sizeof(info));
    memset(&t, 0, sizeof(t));
    memset(p, 0, sizeof(*p));
    info.sel.family = AF_INET;
    inet_pton(AF_INET, dst, &info.sel.daddr);
    inet_pton(AF_INET, src, &info.sel.saddr);
    info.sel.prefixlen_d = info.sel.prefixlen_s = 32;
    info.dir = (uint8_t)dir;
    info.action = XFRM_POLICY_ALLOW;
    info.priority = 100;
    info.index = index;
    info.lft.soft_byte_limit = info.lft.hard_byte_limit = XFRM_INF;
    info.lft.soft_packet_limit = info.lft.hard_packet_limit = XFRM_INF;
    put(p, &info, sizeof(info));
    pad4(p);
    t.id.proto = IPPROTO_ESP;
    t.family = AF_INET;
    t.reqid = reqid;
    t.mode = XFRM_MODE_TRANSPORT;
    t.aalgos = t.ealgos = t.calgos = ~0u;
    attr(p, XFRMA_TMPL, &t, sizeof(t));
}

/* The out/in ESP policies of the lookup seeds' flow and their SAs, appended to a datagram. */
static void protect_flow(buf_t *d)
{
    buf_t p;
    build_policy(&p, XFRM_POLICY_OUT, "10.0.0.1", "10.0.0.2", 1, 0x11);
    message(d, XFRM_MSG_NEWPOLICY, NLM_F_MULTI, 0, 0, &p);
    build_policy(&p, XFRM_POLICY_IN, "10.0.0.2", "10.0.0.1", 1, 0x18);
    message(d, XFRM_MSG_NEWPOLICY, NLM_F_MULTI, 0, 0, &p);
    build_sa(&p, &sas[0]);
    message(d, XFRM_MSG_NEWSA, NLM_F_MULTI, 0, 0, &p);
    build_sa(&p, &sas[1]);
    message(d, XFRM_MSG_NEWSA, NLM_F_MULTI, 0, 0, &p);
}

static void control_messages(void)
{
    buf_t d, p;
    int e;
    struct nlmsgerr err;

    memset(&d, 0, sizeof(d));
    memset(&p, 0, sizeof(p));
    e = 0;
    put(&p, &e, sizeof(e));
    message(&d, NLMSG_DONE, NLM_F_MULTI, 7, 4242, &p);
    {
        uint8_t with_mode[1 + sizeof(d.b)];
        with_mode[0] = 1; /* the reply mode of fuzz_nl_dump */
        memcpy(with_mode + 1, d.b, d.n);
        write_file("nl_dump", "done", with_mode, 1 + d.n);
        /* An error reply: EPERM, with the request echoed. */
        memset(&d, 0, sizeof(d));
        memset(&p, 0, sizeof(p));
        memset(&err, 0, sizeof(err));
        err.error = -EPERM;
        err.msg.nlmsg_len = NLMSG_HDRLEN;
        err.msg.nlmsg_type = XFRM_MSG_GETPOLICY;
        put(&p, &err, sizeof(err));
        message(&d, NLMSG_ERROR, 0, 7, 4242, &p);
        memcpy(with_mode + 1, d.b, d.n);
        write_file("nl_dump", "error-eperm", with_mode, 1 + d.n);
        /* An acknowledgement. */
        memset(&d, 0, sizeof(d));
        memset(&p, 0, sizeof(p));
        err.error = 0;
        put(&p, &err, sizeof(err));
        message(&d, NLMSG_ERROR, 0, 7, 4242, &p);
        memcpy(with_mode + 1, d.b, d.n);
        write_file("nl_dump", "ack", with_mode, 1 + d.n);
    }
}

static void hand_built(void)
{
    buf_t p, d;
    size_t i;
    uint8_t out[1 + sizeof(d.b)];

    memset(&d, 0, sizeof(d));
    for (i = 0; i < sizeof(sas) / sizeof(sas[0]); i++) {
        build_sa(&p, &sas[i]);
        write_file("xfrm_sa", sas[i].name, p.b, p.n);
        message(&d, XFRM_MSG_NEWSA, NLM_F_MULTI, 9, 4343, &p);
    }
    /* All the SAs as one dump datagram, ended by NLMSG_DONE (interrupted once, to reach that path). */
    memset(&p, 0, sizeof(p));
    {
        int e = 0;
        put(&p, &e, sizeof(e));
    }
    message(&d, NLMSG_DONE, NLM_F_MULTI, 9, 4343, &p);
    out[0] = 1;
    memcpy(out + 1, d.b, d.n);
    write_file("nl_dump", "sa-dump", out, 1 + d.n);
    out[0] = 0;
    write_file("nl_dump", "sa-notifications", out, 1 + d.n);
    {
        struct nlmsghdr h;
        memcpy(&h, d.b, sizeof(h));
        h.nlmsg_flags |= NLM_F_DUMP_INTR;
        memcpy(out + 1, &h, sizeof(h));
        out[0] = 1;
        write_file("nl_dump", "sa-dump-interrupted", out, 1 + d.n);
    }

    /* The lookup seed: flow 10.0.0.1:4000 -> 10.0.0.2:500 UDP, then out/in ESP policies and their SAs. */
    {
        uint8_t flow[44];
        uint16_t lport = htons(4000), pport = htons(500);
        buf_t all;
        memset(flow, 0, sizeof(flow));
        memset(&all, 0, sizeof(all));
        flow[0] = 0;
        flow[1] = IPPROTO_UDP;
        inet_pton(AF_INET, "10.0.0.1", flow + 2);
        inet_pton(AF_INET, "10.0.0.2", flow + 18);
        memcpy(flow + 34, &lport, 2);
        memcpy(flow + 36, &pport, 2);
        flow[42] = 1;
        put(&all, flow, sizeof(flow));
        memset(&d, 0, sizeof(d));
        protect_flow(&d);
        put(&all, d.b, d.n);
        write_file("xfrm_lookup", "esp-transport-both-ways", all.b, all.n);
        /* The same with the GCM and the expired SA too, to reach the choice between candidates. */
        build_sa(&p, &sas[2]);
        message(&d, XFRM_MSG_NEWSA, NLM_F_MULTI, 0, 0, &p);
        build_sa(&p, &sas[7]);
        message(&d, XFRM_MSG_NEWSA, NLM_F_MULTI, 0, 0, &p);
        all.n = sizeof(flow);
        put(&all, d.b, d.n);
        write_file("xfrm_lookup", "esp-several-candidates", all.b, all.n);
        /* Issue 14 item 2: records the backend does not model next to the ones that protect the flow. None
         * may fail the dump: a per-socket policy as PF_KEY's pfkey_compile_policy makes it (dir 4 = out +
         * XFRM_POLICY_MAX, selector all zero), an IPComp SA whose XFRMA_ALG_COMP is the bare struct
         * xfrm_algo the kernel dumps (alg_key_len counts a key the attribute does not hold), and a policy for
         * another flow whose mark attribute is cut short (kept as unreadable: only its flows get an error). */
        memset(&d, 0, sizeof(d));
        {
            struct xfrm_userpolicy_info sock_pol;
            struct xfrm_usersa_info comp;
            struct xfrm_algo bare;
            uint32_t short_mark = 5;
            memset(&sock_pol, 0, sizeof(sock_pol));
            sock_pol.dir = XFRM_POLICY_OUT + XFRM_POLICY_MAX;
            sock_pol.action = XFRM_POLICY_ALLOW;
            sock_pol.index = 0x1c;
            memset(&p, 0, sizeof(p));
            put(&p, &sock_pol, sizeof(sock_pol));
            pad4(&p);
            message(&d, XFRM_MSG_NEWPOLICY, NLM_F_MULTI, 0, 0, &p);

            build_policy(&p, XFRM_POLICY_OUT, "10.0.9.1", "10.0.9.2", 1, 0x21);
            attr(&p, XFRMA_MARK, &short_mark, sizeof(short_mark));
            message(&d, XFRM_MSG_NEWPOLICY, NLM_F_MULTI, 0, 0, &p);

            build_sa(&p, &sas[5]);
            memcpy(&comp, p.b, sizeof(comp));
            memset(&p, 0, sizeof(p));
            put(&p, &comp, sizeof(comp));
            pad4(&p);
            memset(&bare, 0, sizeof(bare));
            snprintf(bare.alg_name, sizeof(bare.alg_name), "deflate");
            bare.alg_key_len = 16;
            attr(&p, XFRMA_ALG_COMP, &bare, sizeof(bare));
            message(&d, XFRM_MSG_NEWSA, NLM_F_MULTI, 0, 0, &p);
        }
        protect_flow(&d);
        all.n = sizeof(flow);
        put(&all, d.b, d.n);
        write_file("xfrm_lookup", "regress-unusual-records", all.b, all.n);
    }
}

/* ---- Security labels (XFRMA_SEC_CTX), parsed since 7687a43 ---- */

static void frame(buf_t *in, int more, const buf_t *d);

/* The ways an XFRMA_SEC_CTX attribute is written: the kernel's own (copy_sec_ctx: len = the struct and the label,
 * ctx_len = the label's length) and malformed ones, each for a branch of parse_sec_ctx (parse.c) or of the
 * attribute walk around it. */
enum {
    SC_OK,             /* as copy_sec_ctx writes it */
    SC_EMPTY,          /* ctx_len 0, no label: still a label attribute */
    SC_LEN_LIES,       /* uctx.len says 0xffff (it is not checked: ctx_len and the attribute's length are) */
    SC_CTX_PAST_ATTR,  /* ctx_len runs 64 bytes past the attribute */
    SC_CTX_HUGE,       /* ctx_len 0xffff with no label */
    SC_SHORT,          /* the attribute holds 4 bytes, less than struct xfrm_user_sec_ctx */
    SC_ATTR_PAST_MSG,  /* nla_len runs past the end of the message (the attribute is the message's last) */
    SC_COUNT
};
static const char *const sc_names[SC_COUNT] = {"ok", "empty", "uctx-len-lies", "ctx-len-past-attr", "ctx-len-huge",
                                               "attr-too-short", "attr-past-message"};

static void sec_ctx(buf_t *b, int variant)
{
    static const char label[] = "system_u:object_r:ipsec_spd_t:s0"; /* an SELinux context, as a labeled IKE sets */
    uint8_t raw[sizeof(struct xfrm_user_sec_ctx) + sizeof(label)];
    struct xfrm_user_sec_ctx uctx;
    size_t llen = variant == SC_EMPTY || variant == SC_CTX_HUGE ? 0 : strlen(label);
    size_t start = b->n;

    memset(&uctx, 0, sizeof(uctx));
    uctx.exttype = XFRMA_SEC_CTX;
    uctx.ctx_alg = XFRM_SC_ALG_SELINUX;
    uctx.ctx_doi = XFRM_SC_DOI_LSM;
    uctx.ctx_len = (uint16_t)llen;
    uctx.len = (uint16_t)(sizeof(uctx) + llen);
    if (variant == SC_LEN_LIES) {
        uctx.len = 0xffff;
    } else if (variant == SC_CTX_PAST_ATTR) {
        uctx.ctx_len = (uint16_t)(llen + 64);
    } else if (variant == SC_CTX_HUGE) {
        uctx.ctx_len = 0xffff;
    }
    memcpy(raw, &uctx, sizeof(uctx));
    memcpy(raw + sizeof(uctx), label, llen);
    attr(b, XFRMA_SEC_CTX, raw, variant == SC_SHORT ? 4 : sizeof(uctx) + llen);
    if (variant == SC_ATTR_PAST_MSG) {
        struct nlattr a;
        memcpy(&a, b->b + start, sizeof(a));
        a.nla_len = (uint16_t)(a.nla_len + 40);
        memcpy(b->b + start, &a, sizeof(a));
    }
}

/* Into d, a DELPOLICY's payload for the out policy 10.0.0.1 -> 10.0.0.2 (index 0x11): struct
 * xfrm_userpolicy_id, the policy in XFRMA_POLICY, its template and the label (variant) after it, as
 * ss_parse_policy_notify puts them back together for ss_parse_policy. p is scratch. */
static void delpolicy_with_label(buf_t *d, buf_t *p, int variant)
{
    struct xfrm_userpolicy_id id;
    size_t fixed = NLMSG_ALIGN(sizeof(struct xfrm_userpolicy_info));

    build_policy(p, XFRM_POLICY_OUT, "10.0.0.1", "10.0.0.2", 1, 0x11);
    memset(&id, 0, sizeof(id));
    id.dir = XFRM_POLICY_OUT;
    id.index = 0x11;
    memset(d, 0, sizeof(*d));
    put(d, &id, sizeof(id));
    pad4(d);
    attr(d, XFRMA_POLICY, p->b, sizeof(struct xfrm_userpolicy_info));
    put(d, p->b + fixed, p->n - fixed);
    sec_ctx(d, variant);
}

/* The lookup seeds' flow: 10.0.0.1:4000 -> 10.0.0.2:500 UDP (fuzz_xfrm_lookup.c's 44 bytes). */
static void lookup_flow(buf_t *all)
{
    uint8_t flow[44];
    uint16_t lport = htons(4000), pport = htons(500);
    memset(flow, 0, sizeof(flow));
    flow[1] = IPPROTO_UDP;
    inet_pton(AF_INET, "10.0.0.1", flow + 2);
    inet_pton(AF_INET, "10.0.0.2", flow + 18);
    memcpy(flow + 34, &lport, 2);
    memcpy(flow + 36, &pport, 2);
    flow[42] = 1;
    put(all, flow, sizeof(flow));
}

/* Labeled policies and SAs, well-formed and not, for every target whose parser or index may meet one: the
 * policy and SA parsers, both notification parsers (NEWSA, UPDSA, EXPIRE; NEWPOLICY, DELPOLICY with the label
 * outside XFRMA_POLICY), a dump datagram, the lookup (a labeled out policy, a labeled SA: not decidable,
 * SECSOCK_REASON_SEC_CTX_UNDECIDABLE), the in-place SA and policy updates and the allocation failures. The
 * kernel's policy notifications (xfrm_notify_policy) carry no XFRMA_SEC_CTX; the dumps, POLEXPIRE and every SA
 * message (copy_to_user_state_extra) do. Built by hand: this host has no LSM that keeps labels. */
static void sec_ctx_seeds(void)
{
    buf_t p, d, all;
    char name[64];
    int v;
    uint8_t out[1 + sizeof(d.b)];

    for (v = 0; v < SC_COUNT; v++) {
        /* The parsers: an out policy and an ESP SA with the attribute last (where a lying nla_len runs out). */
        build_policy(&p, XFRM_POLICY_OUT, "10.0.0.1", "10.0.0.2", 1, 0x11);
        sec_ctx(&p, v);
        snprintf(name, sizeof(name), "sec-ctx-%s", sc_names[v]);
        write_file("xfrm_policy", name, p.b, p.n);
        out[0] = 0; /* NEWPOLICY */
        memcpy(out + 1, p.b, p.n);
        write_file("xfrm_policy_notify", name, out, 1 + p.n);

        build_sa(&p, &sas[0]);
        sec_ctx(&p, v);
        write_file("xfrm_sa", name, p.b, p.n);
        out[0] = 0; /* NEWSA */
        memcpy(out + 1, p.b, p.n);
        snprintf(name, sizeof(name), "sec-ctx-%s-type0", sc_names[v]);
        write_file("xfrm_sa_notify", name, out, 1 + p.n);
    }
    /* UPDSA, and EXPIRE (struct xfrm_user_expire, then the SA's attributes), labeled. */
    build_sa(&p, &sas[0]);
    sec_ctx(&p, SC_OK);
    out[0] = 1;
    memcpy(out + 1, p.b, p.n);
    write_file("xfrm_sa_notify", "sec-ctx-ok-type1", out, 1 + p.n);
    {
        struct xfrm_user_expire ue;
        size_t fixed = NLMSG_ALIGN(sizeof(struct xfrm_usersa_info));
        memset(&ue, 0, sizeof(ue));
        memcpy(&ue.state, p.b, sizeof(ue.state));
        ue.state.lft.soft_add_expires_seconds = 10; /* a soft expiry the lifetimes show */
        ue.state.curlft.add_time = 1;
        ue.hard = 0;
        memset(&d, 0, sizeof(d));
        put(&d, &ue, sizeof(ue));
        pad4(&d);
        put(&d, p.b + fixed, p.n - fixed);
        out[0] = 3;
        memcpy(out + 1, d.b, d.n);
        write_file("xfrm_sa_notify", "sec-ctx-ok-type3", out, 1 + d.n);
        d.n = NLMSG_ALIGN(sizeof(ue));
        sec_ctx(&d, SC_CTX_PAST_ATTR);
        memcpy(out + 1, d.b, d.n);
        write_file("xfrm_sa_notify", "sec-ctx-ctx-len-past-attr-type3", out, 1 + d.n);
    }
    /* DELPOLICY, the label outside XFRMA_POLICY (delpolicy_with_label). */
    for (v = SC_OK; v <= SC_CTX_PAST_ATTR; v += SC_CTX_PAST_ATTR - SC_OK) {
        delpolicy_with_label(&d, &p, v);
        out[0] = 2;
        memcpy(out + 1, d.b, d.n);
        snprintf(name, sizeof(name), "sec-ctx-%s-delpolicy", sc_names[v]);
        write_file("xfrm_policy_notify", name, out, 1 + d.n);
    }

    /* A dump datagram: a labeled policy, a labeled SA, one of each whose label runs past its attribute. */
    memset(&d, 0, sizeof(d));
    build_policy(&p, XFRM_POLICY_OUT, "10.0.0.1", "10.0.0.2", 1, 0x11);
    sec_ctx(&p, SC_OK);
    message(&d, XFRM_MSG_NEWPOLICY, NLM_F_MULTI, 9, 4343, &p);
    build_policy(&p, XFRM_POLICY_IN, "10.0.0.2", "10.0.0.1", 1, 0x18);
    sec_ctx(&p, SC_CTX_PAST_ATTR);
    message(&d, XFRM_MSG_NEWPOLICY, NLM_F_MULTI, 9, 4343, &p);
    build_sa(&p, &sas[0]);
    sec_ctx(&p, SC_OK);
    message(&d, XFRM_MSG_NEWSA, NLM_F_MULTI, 9, 4343, &p);
    build_sa(&p, &sas[1]);
    sec_ctx(&p, SC_SHORT);
    message(&d, XFRM_MSG_NEWSA, NLM_F_MULTI, 9, 4343, &p);
    out[0] = 1;
    memcpy(out + 1, d.b, d.n);
    write_file("nl_dump", "sec-ctx-dump", out, 1 + d.n);

    /* The lookup: the flow's out policy labeled (its SAs not), then its out SA labeled (the policy not), then
     * a labeled policy whose label is malformed (unreadable: an error for its flows). */
    for (v = 0; v < 3; v++) {
        static const char *const names[] = {"sec-ctx-policy", "sec-ctx-sa", "sec-ctx-policy-unreadable"};
        memset(&all, 0, sizeof(all));
        lookup_flow(&all);
        memset(&d, 0, sizeof(d));
        build_policy(&p, XFRM_POLICY_OUT, "10.0.0.1", "10.0.0.2", 1, 0x11);
        if (v != 1) {
            sec_ctx(&p, v == 0 ? SC_OK : SC_CTX_PAST_ATTR);
        }
        message(&d, XFRM_MSG_NEWPOLICY, NLM_F_MULTI, 0, 0, &p);
        build_policy(&p, XFRM_POLICY_IN, "10.0.0.2", "10.0.0.1", 1, 0x18);
        message(&d, XFRM_MSG_NEWPOLICY, NLM_F_MULTI, 0, 0, &p);
        build_sa(&p, &sas[0]);
        if (v == 1) {
            sec_ctx(&p, SC_OK);
        }
        message(&d, XFRM_MSG_NEWSA, NLM_F_MULTI, 0, 0, &p);
        build_sa(&p, &sas[1]);
        message(&d, XFRM_MSG_NEWSA, NLM_F_MULTI, 0, 0, &p);
        put(&all, d.b, d.n);
        write_file("xfrm_lookup", names[v], all.b, all.n);
        if (v == 0) {
            /* The same for the allocation failures: the 3rd allocation fails. */
            uint8_t nth[2] = {3, 0};
            memset(&all, 0, sizeof(all));
            put(&all, nth, sizeof(nth));
            put(&all, d.b, d.n);
            write_file("xfrm_alloc_fail", "sec-ctx", all.b, all.n);
        }
    }

    /* In-place SA updates: a dump of two SAs, the FLUSHPOLICY that ends it (fuzz_xfrm_sa_apply.c), then a
     * labeled update of one, a labeled new SA and a malformed labeled update (a dump again). */
    memset(&d, 0, sizeof(d));
    build_sa(&p, &sas[0]);
    message(&d, XFRM_MSG_NEWSA, NLM_F_MULTI, 0, 0, &p);
    build_sa(&p, &sas[1]);
    message(&d, XFRM_MSG_NEWSA, NLM_F_MULTI, 0, 0, &p);
    memset(&p, 0, sizeof(p));
    message(&d, XFRM_MSG_FLUSHPOLICY, 0, 0, 0, &p);
    build_sa(&p, &sas[0]);
    sec_ctx(&p, SC_OK);
    message(&d, XFRM_MSG_UPDSA, 0, 0, 0, &p);
    build_sa(&p, &sas[2]);
    sec_ctx(&p, SC_EMPTY);
    message(&d, XFRM_MSG_NEWSA, 0, 0, 0, &p);
    build_sa(&p, &sas[1]);
    sec_ctx(&p, SC_CTX_PAST_ATTR);
    message(&d, XFRM_MSG_UPDSA, 0, 0, 0, &p);
    write_file("xfrm_sa_apply", "sec-ctx-updates", d.b, d.n);

    /* In-place policy updates: a dump holding a labeled policy, then a labeled one added (as no kernel sends
     * it, but the parser reads it) and the dumped one deleted. */
    memset(&all, 0, sizeof(all));
    memset(&d, 0, sizeof(d));
    build_policy(&p, XFRM_POLICY_OUT, "10.0.0.1", "10.0.0.2", 1, 0x11);
    sec_ctx(&p, SC_OK);
    message(&d, XFRM_MSG_NEWPOLICY, NLM_F_MULTI, 0, 0, &p);
    build_policy(&p, XFRM_POLICY_IN, "10.0.0.2", "10.0.0.1", 1, 0x18);
    message(&d, XFRM_MSG_NEWPOLICY, NLM_F_MULTI, 0, 0, &p);
    frame(&all, 0, &d);
    memset(&d, 0, sizeof(d));
    build_policy(&p, XFRM_POLICY_OUT, "10.0.0.1", "10.0.0.3", 1, 0x19);
    sec_ctx(&p, SC_OK);
    message(&d, XFRM_MSG_NEWPOLICY, 0, 0, 0, &p);
    frame(&all, 0, &d);
    delpolicy_with_label(&d, &p, SC_OK);
    memcpy(&p, &d, sizeof(p));
    memset(&d, 0, sizeof(d));
    message(&d, XFRM_MSG_DELPOLICY, 0, 0, 0, &p);
    frame(&all, 0, &d);
    write_file("xfrm_policy_apply", "sec-ctx-add-delete", all.b, all.n);
}

/* A real GETPOLICY dump from the kernel, in the current network namespace. */
static void real_dump(void)
{
    struct sockaddr_nl local, kernel;
    socklen_t alen = sizeof(local);
    struct {
        struct nlmsghdr h;
    } req;
    static uint8_t buf[65536];
    uint8_t *lookup = NULL;
    size_t lookup_n = 0;
    int fd, dgrams = 0, pols = 0, done = 0;

    fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_XFRM);
    if (fd < 0) {
        perror("socket(NETLINK_XFRM)");
        exit(1);
    }
    memset(&local, 0, sizeof(local));
    local.nl_family = AF_NETLINK;
    if (bind(fd, (struct sockaddr *)&local, sizeof(local)) != 0 ||
        getsockname(fd, (struct sockaddr *)&local, &alen) != 0) {
        perror("bind");
        exit(1);
    }
    memset(&req, 0, sizeof(req));
    req.h.nlmsg_len = NLMSG_LENGTH(0);
    req.h.nlmsg_type = XFRM_MSG_GETPOLICY;
    req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    req.h.nlmsg_seq = 77;
    memset(&kernel, 0, sizeof(kernel));
    kernel.nl_family = AF_NETLINK;
    if (sendto(fd, &req, req.h.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0) {
        perror("sendto");
        exit(1);
    }
    while (!done) {
        ssize_t n = recv(fd, buf + 1, sizeof(buf) - 1, 0);
        size_t off = 0;
        char name[64];
        if (n <= 0) {
            perror("recv");
            exit(1);
        }
        buf[0] = 1; /* reply mode */
        snprintf(name, sizeof(name), "policy-dump-%d", dgrams++);
        write_file("nl_dump", name, buf, 1 + (size_t)n);
        while (off + NLMSG_HDRLEN <= (size_t)n) {
            struct nlmsghdr h;
            memcpy(&h, buf + 1 + off, sizeof(h));
            if (h.nlmsg_len < NLMSG_HDRLEN || off + h.nlmsg_len > (size_t)n) {
                break;
            }
            if (h.nlmsg_type == NLMSG_DONE || h.nlmsg_type == NLMSG_ERROR) {
                done = 1;
            } else if (h.nlmsg_type == XFRM_MSG_NEWPOLICY) {
                struct xfrm_userpolicy_info info;
                memcpy(&info, buf + 1 + off + NLMSG_HDRLEN, sizeof(info));
                pols++;
                off += NLMSG_ALIGN(h.nlmsg_len);
                if (info.sel.family == AF_INET && ((const uint8_t *)&info.sel.daddr)[0] == 10 &&
                    ((const uint8_t *)&info.sel.daddr)[1] == 30) {
                    continue; /* the bulk policies (10.30.0.0/16) fill the dump datagrams; one seed each is enough */
                }
                snprintf(name, sizeof(name), "kernel-%02d", pols);
                write_file("xfrm_policy", name, buf + 1 + off + NLMSG_HDRLEN, h.nlmsg_len - NLMSG_HDRLEN);
                /* Real policies for the lookup target too, behind a flow they select. */
                if (pols <= 40) {
                    lookup = realloc(lookup, lookup_n + NLMSG_ALIGN(h.nlmsg_len));
                    memset(lookup + lookup_n, 0, NLMSG_ALIGN(h.nlmsg_len));
                    memcpy(lookup + lookup_n, buf + 1 + off, h.nlmsg_len);
                    lookup_n += NLMSG_ALIGN(h.nlmsg_len);
                }
                continue;
            }
            off += NLMSG_ALIGN(h.nlmsg_len);
        }
    }
    if (lookup != NULL) {
        uint8_t *all = calloc(1, 44 + lookup_n);
        uint16_t lport = htons(4000), pport = htons(500);
        all[1] = IPPROTO_TCP;
        inet_pton(AF_INET, "10.9.0.1", all + 2);
        inet_pton(AF_INET, "10.9.0.2", all + 18);
        memcpy(all + 34, &lport, 2);
        memcpy(all + 36, &pport, 2);
        all[42] = 1;
        memcpy(all + 44, lookup, lookup_n);
        write_file("xfrm_lookup", "kernel-policies", all, 44 + lookup_n);
        free(all);
        free(lookup);
    }
    close(fd);
    printf("make_corpus: %d datagrams, %d policies from the kernel\n", dgrams, pols);
}

/* ---- Policy notifications, as the kernel sends them ---- */

typedef struct {
    char name[32];
    uint8_t b[2048]; /* one whole netlink message: header and payload */
    size_t n;
} note_t;

static note_t notes[64];
static size_t nnotes;

/* Zero what differs between two runs: the policy's lifetime counters (add_time, use_time). */
static void zero_curlft(uint8_t *info, size_t avail)
{
    if (avail >= sizeof(struct xfrm_userpolicy_info)) {
        memset(info + offsetof(struct xfrm_userpolicy_info, curlft), 0, sizeof(struct xfrm_lifetime_cur));
    }
}

static void normalise(uint8_t *msg, size_t n)
{
    struct nlmsghdr h;
    uint8_t *payload = msg + NLMSG_HDRLEN;
    size_t plen = n - NLMSG_HDRLEN;

    memcpy(&h, msg, sizeof(h));
    h.nlmsg_seq = 0; /* the ip command's request */
    h.nlmsg_pid = 0;
    memcpy(msg, &h, sizeof(h));
    if (h.nlmsg_type == XFRM_MSG_DELPOLICY) {
        /* The policy is in XFRMA_POLICY, after struct xfrm_userpolicy_id. */
        size_t off = NLMSG_ALIGN(sizeof(struct xfrm_userpolicy_id));
        while (off + NLA_HDRLEN <= plen) {
            struct nlattr a;
            memcpy(&a, payload + off, sizeof(a));
            if (a.nla_len < NLA_HDRLEN || off + a.nla_len > plen) {
                break;
            }
            if ((a.nla_type & NLA_TYPE_MASK) == XFRMA_POLICY) {
                zero_curlft(payload + off + NLA_HDRLEN, a.nla_len - NLA_HDRLEN);
            }
            off += NLA_ALIGN(a.nla_len);
        }
    } else if (h.nlmsg_type != XFRM_MSG_FLUSHPOLICY) {
        zero_curlft(payload, plen); /* NEWPOLICY, UPDPOLICY, POLEXPIRE: the policy comes first */
    }
}

/* Read what the kernel queued, waiting up to wait_ms for the first message and until want messages came. */
static void take_notes(int fd, const char *name, int want, int wait_ms)
{
    static uint8_t buf[65536];
    int got = 0;

    for (;;) {
        struct pollfd pfd = {fd, POLLIN, 0};
        ssize_t n;
        size_t off = 0;
        if (poll(&pfd, 1, got >= want ? 100 : wait_ms) <= 0) {
            break;
        }
        n = recv(fd, buf, sizeof(buf), 0);
        if (n <= 0) {
            perror("recv(notification)");
            exit(1);
        }
        while (off + NLMSG_HDRLEN <= (size_t)n) {
            struct nlmsghdr h;
            note_t *t;
            memcpy(&h, buf + off, sizeof(h));
            if (h.nlmsg_len < NLMSG_HDRLEN || off + h.nlmsg_len > (size_t)n) {
                break;
            }
            if (nnotes == sizeof(notes) / sizeof(notes[0]) || h.nlmsg_len > sizeof(notes[0].b)) {
                fprintf(stderr, "make_corpus: too many or too large notifications\n");
                exit(1);
            }
            t = &notes[nnotes++];
            snprintf(t->name, sizeof(t->name), got == 0 ? "%s" : "%s-%d", name, got);
            memcpy(t->b, buf + off, h.nlmsg_len);
            t->n = h.nlmsg_len;
            normalise(t->b, t->n);
            got++;
            off += NLMSG_ALIGN(h.nlmsg_len);
        }
    }
    if (got < want) {
        fprintf(stderr, "make_corpus: %s: %d of %d notifications\n", name, got, want);
        exit(1);
    }
}

static void run(int fd, const char *name, const char *cmd)
{
    if (system(cmd) != 0) {
        fprintf(stderr, "make_corpus: failed: %s\n", cmd);
        exit(1);
    }
    take_notes(fd, name, 1, 2000);
}

static const note_t *note(const char *name)
{
    size_t i;
    for (i = 0; i < nnotes; i++) {
        if (strcmp(notes[i].name, name) == 0) {
            return &notes[i];
        }
    }
    fprintf(stderr, "make_corpus: no notification %s\n", name);
    exit(1);
}

/* The first byte of an xfrm_policy_notify input picks the type from this list (fuzz_xfrm_policy_notify.c). */
static uint8_t notify_type_byte(uint16_t type)
{
    static const uint16_t types[] = {XFRM_MSG_NEWPOLICY, XFRM_MSG_UPDPOLICY, XFRM_MSG_DELPOLICY,
                                     XFRM_MSG_POLEXPIRE, XFRM_MSG_FLUSHPOLICY};
    uint8_t i;
    for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (types[i] == type) {
            return i;
        }
    }
    return 5; /* another type */
}

static void notify_seed(const char *file, const note_t *t, size_t payload_len)
{
    uint8_t out[sizeof(t->b)];
    struct nlmsghdr h;
    memcpy(&h, t->b, sizeof(h));
    out[0] = notify_type_byte(h.nlmsg_type);
    memcpy(out + 1, t->b + NLMSG_HDRLEN, payload_len);
    write_file("xfrm_policy_notify", file, out, 1 + payload_len);
}

/* An xfrm_policy_apply input: datagrams behind a byte of flags (bit 0: the drain goes on) and a length. */
static void frame(buf_t *in, int more, const buf_t *d)
{
    uint8_t hdr[3] = {(uint8_t)more, (uint8_t)(d->n & 0xff), (uint8_t)(d->n >> 8)};
    put(in, hdr, sizeof(hdr));
    put(in, d->b, d->n);
}

static void datagram(buf_t *in, int more, const char *const *names)
{
    buf_t d;
    memset(&d, 0, sizeof(d));
    for (; *names != NULL; names++) {
        const note_t *t = note(*names);
        put(&d, t->b, t->n);
        pad4(&d);
    }
    frame(in, more, &d);
}

/* The first count of the 34 policies added in one batch, in one datagram. */
static void bulk_datagram(buf_t *in, int count)
{
    buf_t d;
    char name[16];
    int i;
    memset(&d, 0, sizeof(d));
    for (i = 0; i < count; i++) {
        const note_t *t;
        snprintf(name, sizeof(name), i == 0 ? "bulk" : "bulk-%d", i);
        t = note(name);
        put(&d, t->b, t->n);
    }
    frame(in, 0, &d);
}

#define DGRAM(in, more, ...) datagram(in, more, (const char *const[]){__VA_ARGS__, NULL})

static void real_notifications(void)
{
    struct sockaddr_nl a;
    buf_t in;
    int fd, i;
    char cmd[4096];
    size_t off;
    const note_t *t;

    fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_XFRM);
    memset(&a, 0, sizeof(a));
    a.nl_family = AF_NETLINK;
    a.nl_groups = (1u << (XFRMNLGRP_POLICY - 1)) | (1u << (XFRMNLGRP_EXPIRE - 1));
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        perror("notification socket");
        exit(1);
    }
    /* Indexes given, with the direction in the low bits as the kernel's own: the same bytes every run. */
    run(fd, "new-esp-transport-out", "ip xfrm policy add src 10.50.0.1 dst 10.50.0.2 dir out priority 10 "
                                     "index 0x5001 tmpl proto esp mode transport reqid 50");
    run(fd, "new-esp-transport-in", "ip xfrm policy add src 10.50.0.2 dst 10.50.0.1 dir in priority 10 "
                                    "index 0x5000 tmpl proto esp mode transport reqid 50");
    run(fd, "new-esp-tunnel", "ip xfrm policy add src 10.50.1.0/24 dst 10.50.2.0/24 proto tcp dport 443 dir out "
                              "priority 20 index 0x5009 tmpl src 192.0.2.1 dst 192.0.2.2 proto esp mode tunnel "
                              "reqid 51");
    run(fd, "new-mark", "ip xfrm policy add src 10.50.0.1 dst 10.50.0.3 dir out priority 10 index 0x5011 "
                        "mark 0x10 mask 0xff tmpl proto esp mode transport");
    run(fd, "new-if-id", "ip xfrm policy add src 10.50.0.1 dst 10.50.0.4 dir out priority 10 index 0x5019 if_id 7 "
                         "tmpl src 10.50.0.1 dst 10.50.0.4 proto esp mode tunnel");
    run(fd, "new-ipv6-sub", "ip xfrm policy add src fd50::1 dst fd50::2 dir out ptype sub priority 5 "
                            "index 0x5021 tmpl proto esp mode transport");
    run(fd, "new-fwd", "ip xfrm policy add src 10.50.3.0/24 dst 10.50.0.0/16 dir fwd index 0x5022 "
                       "tmpl proto esp mode transport");
    /* A tie at priority 10 with new-esp-transport-out for UDP flows, which the older policy wins... */
    run(fd, "new-tie", "ip xfrm policy add src 10.50.0.1 dst 10.50.0.2 proto udp dir out priority 10 "
                       "index 0x5029 tmpl proto esp mode transport reqid 53");
    /* ...until an update makes the other one the newest (it keeps its index). */
    run(fd, "upd-esp-transport-out", "ip xfrm policy update src 10.50.0.1 dst 10.50.0.2 dir out priority 10 "
                                     "tmpl proto esp mode transport reqid 52");
    run(fd, "del-by-index", "ip xfrm policy delete dir out index 0x5011 mark 0x10 mask 0xff");
    run(fd, "del-by-selector", "ip xfrm policy delete src 10.50.1.0/24 dst 10.50.2.0/24 proto tcp dport 443 "
                               "dir out");
    /* A soft then a hard expiry; the hard one removes the policy without a DELPOLICY. */
    run(fd, "new-expiring", "ip xfrm policy add src 10.50.0.1 dst 10.50.0.5 dir out priority 10 index 0x5031 "
                            "limit time-soft 1 limit time-hard 2 tmpl proto esp mode transport");
    take_notes(fd, "polexpire", 2, 5000);
    snprintf(notes[nnotes - 2].name, sizeof(notes[0].name), "polexpire-soft");
    snprintf(notes[nnotes - 1].name, sizeof(notes[0].name), "polexpire-hard");
    /* 34 in one go: more than one drain applies in place (SS_POL_APPLY_MAX, 32). */
    off = (size_t)snprintf(cmd, sizeof(cmd), "ip -batch - <<'EOF'\n");
    for (i = 0; i < 34; i++) {
        off += (size_t)snprintf(cmd + off, sizeof(cmd) - off,
                                "xfrm policy add src 10.50.4.%d dst 10.50.5.0/24 dir out priority %d index 0x%x "
                                "tmpl proto esp mode transport\n",
                                i + 1, 100 + i % 3, 0x6001 + 8 * i);
    }
    snprintf(cmd + off, sizeof(cmd) - off, "EOF\n");
    if (system(cmd) != 0) {
        fprintf(stderr, "make_corpus: the batch failed\n");
        exit(1);
    }
    take_notes(fd, "bulk", 34, 2000); /* bulk, bulk-1 ... bulk-33 */
    run(fd, "flush", "ip xfrm policy flush");
    close(fd);

    /* Each on its own for the parser, and a truncated one (inside its template). */
    for (i = 0; i < (int)nnotes; i++) {
        if (strncmp(notes[i].name, "bulk", 4) != 0 || strcmp(notes[i].name, "bulk") == 0) {
            notify_seed(notes[i].name, &notes[i], notes[i].n - NLMSG_HDRLEN);
        }
    }
    t = note("new-esp-tunnel");
    notify_seed("truncated-new-esp-tunnel", t, t->n - NLMSG_HDRLEN - 20);
    t = note("del-by-selector");
    notify_seed("truncated-del-by-selector", t, NLMSG_ALIGN(sizeof(struct xfrm_userpolicy_id)) + 40);

    /* Sequences: a dump (the newest first), then drains. */
    memset(&in, 0, sizeof(in));
    DGRAM(&in, 0, "new-esp-transport-in", "new-esp-transport-out");
    DGRAM(&in, 0, "new-esp-tunnel");
    DGRAM(&in, 0, "new-mark");
    DGRAM(&in, 0, "del-by-selector");
    DGRAM(&in, 0, "del-by-index");
    write_file("xfrm_policy_apply", "add-then-delete-by-selector-and-index", in.b, in.n);

    memset(&in, 0, sizeof(in));
    DGRAM(&in, 0, "new-esp-transport-out");
    DGRAM(&in, 0, "new-tie");
    DGRAM(&in, 0, "upd-esp-transport-out");
    write_file("xfrm_policy_apply", "tie-flipped-by-update", in.b, in.n);

    memset(&in, 0, sizeof(in));
    DGRAM(&in, 0, "new-esp-transport-out");
    DGRAM(&in, 1, "new-if-id");
    DGRAM(&in, 1, "new-ipv6-sub", "new-fwd");
    DGRAM(&in, 0, "new-mark");
    write_file("xfrm_policy_apply", "one-drain-several-datagrams", in.b, in.n);

    memset(&in, 0, sizeof(in));
    DGRAM(&in, 0, "new-esp-transport-out", "new-esp-transport-in");
    DGRAM(&in, 0, "new-expiring", "polexpire-soft");
    DGRAM(&in, 0, "polexpire-hard");
    DGRAM(&in, 0, "new-mark", "flush", "new-if-id");
    write_file("xfrm_policy_apply", "expiry-and-flush", in.b, in.n);

    /* 32 changes in one drain are applied in place; the 33rd makes it a dump. */
    memset(&in, 0, sizeof(in));
    DGRAM(&in, 0, "new-esp-transport-out");
    bulk_datagram(&in, 32);
    write_file("xfrm_policy_apply", "bulk-32-in-one-drain", in.b, in.n);
    memset(&in, 0, sizeof(in));
    DGRAM(&in, 0, "new-esp-transport-out");
    bulk_datagram(&in, 34);
    write_file("xfrm_policy_apply", "bulk-34-in-one-drain", in.b, in.n);

    /* A notification the parser refuses (cut inside its template): the table is dumped again. */
    memset(&in, 0, sizeof(in));
    DGRAM(&in, 0, "new-esp-transport-out");
    {
        buf_t d;
        struct nlmsghdr h;
        t = note("new-esp-tunnel");
        memset(&d, 0, sizeof(d));
        put(&d, t->b, t->n - 20);
        memcpy(&h, d.b, sizeof(h));
        h.nlmsg_len = (uint32_t)d.n;
        memcpy(d.b, &h, sizeof(h));
        frame(&in, 0, &d);
    }
    DGRAM(&in, 0, "new-mark");
    write_file("xfrm_policy_apply", "truncated-then-add", in.b, in.n);
    printf("make_corpus: %zu policy notifications from the kernel\n", nnotes);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_corpus OUTDIR\n");
        return 2;
    }
    outdir = argv[1];
    mkdir(outdir, 0755);
    control_messages();
    hand_built();
    sec_ctx_seeds();
    real_dump();
    real_notifications(); /* last: it flushes the namespace's policies */
    return 0;
}
