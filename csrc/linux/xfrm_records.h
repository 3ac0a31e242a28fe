/*
 * The compact XFRM records and the pure netlink parsers of csrc/linux/parse.c (a byte buffer and its length in, a
 * record out; no system calls, no global state), which tests and fuzzers drive directly.
 * Not part of the seam: only csrc/linux/, tests/linux_c/ and the fuzz targets include this file.
 */
/* The guard keeps the name before issue 10 (backend_linux_xfrm.h): hardening/fuzz/fuzz_common.h tests it. */
#ifndef SECSOCK_BACKEND_LINUX_XFRM_H
#define SECSOCK_BACKEND_LINUX_XFRM_H

#include <stddef.h>
#include <stdint.h>

/* Internal to the backend, as backend_linux.h's declarations are: out of the extension's dynamic symbol table,
 * so no library can interpose them and calls stay direct (ss_sel_match is inlined into the policy lookup). */
#pragma GCC visibility push(hidden)

#define SS_XFRM_MAX_TMPL 6 /* XFRM_MAX_DEPTH in the kernel: it refuses policies with more templates */
#define SS_ALG_NAME 64     /* the size of alg_name in struct xfrm_algo */

/* A selector, as struct xfrm_selector, with addresses in network order and ports/masks in network order. */
typedef struct {
    uint8_t daddr[16];
    uint8_t saddr[16];
    uint16_t dport, dport_mask, sport, sport_mask;
    uint16_t family; /* AF_INET, AF_INET6, or 0 (an SA selector that selects everything) */
    uint8_t prefixlen_d, prefixlen_s;
    uint8_t proto;
    int32_t ifindex;
} ss_sel;

typedef struct {
    uint8_t daddr[16]; /* id.daddr: the outer destination for tunnel/BEET templates, any for transport */
    uint8_t saddr[16];
    uint32_t spi;      /* network order; 0: any */
    uint32_t reqid;
    uint16_t family;   /* the encapsulation family (the policy's when the template left it 0) */
    uint8_t proto;     /* IPPROTO_ESP, IPPROTO_AH, IPPROTO_COMP */
    uint8_t mode;
    uint8_t optional;  /* "level use": the kernel lets the flow through without this transform */
} ss_tmpl;

typedef struct {
    ss_sel sel;
    uint32_t priority;
    uint32_t index;
    uint8_t dir;    /* XFRM_POLICY_IN/OUT/FWD; 3..5 are per-socket policies */
    uint8_t action; /* XFRM_POLICY_ALLOW / XFRM_POLICY_BLOCK */
    uint8_t type;   /* XFRM_POLICY_TYPE_MAIN / SUB */
    uint8_t ntmpl;
    uint32_t mark_v, mark_m;
    uint32_t if_id;
    uint8_t unreadable; /* its selector was read, the rest not: a flow it selects gets an error, not a guess */
    uint8_t sec_ctx;    /* XFRMA_SEC_CTX: a security label, whose match with the flow's the LSM decides */
    ss_tmpl tmpl[SS_XFRM_MAX_TMPL];
} ss_policy;

typedef struct {
    ss_sel sel;
    uint8_t daddr[16];
    uint8_t saddr[16];
    uint32_t spi; /* network order */
    uint32_t reqid;
    uint16_t family;
    uint8_t proto, mode, flags;
    uint8_t dir; /* XFRMA_SA_DIR when the kernel sent it (1 in, 2 out), else 0 */
    uint8_t has_crypt, has_auth, has_aead, has_comp;
    uint32_t mark_v, mark_m;
    uint32_t if_id;
    uint64_t add_time;
    /* The lifetimes as read (ss_sa_settle makes the four flags below from them): the wall-clock second the
     * earliest reached soft (hard) time limit fell due, 0 when none is reached; the byte and packet limits as
     * count_limit_due reads them (0 not reached, 1 reached by the last packet: acted on at the next, 2 acted on). */
    int64_t soft_due_at, hard_due_at;
    uint8_t soft_count, hard_count;
    uint8_t dying;   /* a soft limit was reached: the kernel prefers other SAs */
    uint8_t dying_maybe; /* a soft limit was reached just now: the kernel may not have marked it yet */
    uint8_t dying_notified; /* made dying by a soft-expire notification: kept across dumps (sa_restore_dying) */
    uint8_t pcpu;           /* XFRMA_SA_PCPU: a per-CPU SA */
    uint8_t offload_packet; /* XFRMA_OFFLOAD_DEV with XFRM_OFFLOAD_PACKET: software policies skip it */
    uint8_t expired; /* a hard limit was reached: the kernel will not use it */
    uint8_t expired_maybe; /* a hard limit was reached just now: the kernel may not have acted on it yet */
    uint8_t dead;    /* removed from the snapshot by a notification (a hole until the next compaction) */
    uint8_t unreadable; /* only its identity (family, proto, daddr) was read: never used, never trusted */
    uint8_t sec_ctx;    /* XFRMA_SEC_CTX: a security label, whose match with the policy and flow the LSM decides */
    char encryption[SS_ALG_NAME];
    char integrity[SS_ALG_NAME];
    char aead[SS_ALG_NAME];
} ss_sa;

/* How long the kernel may take to act on a time limit that fell due (xfrm_timer_handler, an hrtimer that may run
 * late), or that an add or update restarted (xfrm_state_update, __xfrm_state_insert: the timer runs again in
 * 1 s, and km.dying is 0 until then): within this many seconds, either way. */
#define SS_TIMER_LATE_S 3

/*
 * The SA's dying, dying_maybe, expired and expired_maybe at wall-clock second now, from its lifetimes as read
 * (ss_parse_sa) and seen_at, the second an add or update of it was last seen (0: none): a time limit counts as
 * maybe acted on for SS_TIMER_LATE_S after it fell due and after seen_at (a keyed SA's hard one: always, as the
 * timer deletes the SA it acts on); a byte or packet limit as
 * count_limit_due says. dying_notified keeps it dying. Returns the second from which a time limit's maybe turns
 * sure (the SA table is read again then to settle the answer), 0 when none is pending.
 */
int64_t ss_sa_settle(ss_sa *a, int64_t now, int64_t seen_at);

/* Results of the parsers. */
enum { SS_PARSE_OK = 0, SS_PARSE_SKIP = 1, SS_PARSE_BAD = -1 };

/*
 * Parse the payload of an XFRM_MSG_NEWPOLICY/UPDPOLICY message (what follows struct nlmsghdr):
 * struct xfrm_userpolicy_info then attributes. SS_PARSE_SKIP for policies no flow of a socket can meet
 * (forward and per-socket policies). On SS_PARSE_BAD, *why names the defect.
 */
int ss_parse_policy(const void *payload, size_t len, ss_policy *out, const char **why);

/* Parse the payload of an XFRM_MSG_NEWSA/UPDSA message: struct xfrm_usersa_info then attributes. */
int ss_parse_sa(const void *payload, size_t len, ss_sa *out, const char **why);

/*
 * What an SA notification (XFRMNLGRP_SA / XFRMNLGRP_EXPIRE) asks of a snapshot: put the SA (NEWSA), update it
 * (UPDSA: exact only when it replaces a larval SA), remove it (DELSA, hard EXPIRE), mark it dying (soft
 * EXPIRE the kernel sent), nothing (a soft EXPIRE userspace sent), or dump again (a flush, anything else). For DELETE and DYING only the identity fields of *out are
 * meaningful (family, proto, daddr, spi, mark, if_id).
 */
enum { SS_SA_UPSERT = 1, SS_SA_UPDATE, SS_SA_DELETE, SS_SA_DYING, SS_SA_RESYNC, SS_SA_NONE };
int ss_parse_sa_notify(uint16_t type, const void *payload, size_t len, ss_sa *out, int *action, const char **why);

/*
 * What a policy notification (XFRMNLGRP_POLICY) asks of a snapshot: put the policy (NEWPOLICY, UPDPOLICY),
 * remove it (DELPOLICY, identified by its index and direction; *out holds the whole policy), nothing (a
 * policy no socket's flow meets), or dump again (a flush, an expiry, a deletion without the policy in it).
 * SS_PARSE_OK with *action set, or SS_PARSE_BAD with *why set.
 */
enum { SS_POL_UPSERT = 1, SS_POL_DELETE, SS_POL_NONE, SS_POL_RESYNC };
int ss_parse_policy_notify(uint16_t type, const void *payload, size_t len, ss_policy *out, int *action,
                           const char **why);

/*
 * Walk the netlink messages in one datagram. For each message of the expected sequence and port id, calls
 * fn(ctx, type, flags, payload, payload_len); fn returns 0 to go on or -1 to stop with an error it recorded.
 * portid 0 accepts every message (notifications); otherwise messages of another sequence or port are skipped.
 * Returns 1 when NLMSG_DONE or an acknowledgement was seen, 0 when more datagrams follow, -1 on a malformed
 * datagram (*why set), -2 when fn stopped, -3 when the kernel flagged the dump as interrupted (NLM_F_DUMP_INTR),
 * or -(1000 + errno) for an NLMSG_ERROR (or NLMSG_DONE) carrying errno.
 */
typedef int (*ss_nl_fn)(void *ctx, uint16_t type, uint16_t flags, const void *payload, size_t len);
int ss_nl_walk(const void *buf, size_t len, uint32_t seq, uint32_t portid, ss_nl_fn fn, void *ctx,
               const char **why);

/* Does the selector match the flow (addresses in network order, ports in network order)? Defined in match.c
 * (it mirrors the kernel's xfrm_selector_match), not parse.c: a matcher, not a parser. */
int ss_sel_match(const ss_sel *s, int family, const uint8_t *saddr, const uint8_t *daddr, uint16_t sport,
                 uint16_t dport, uint8_t proto, int oif);

#pragma GCC visibility pop

#endif /* SECSOCK_BACKEND_LINUX_XFRM_H */
