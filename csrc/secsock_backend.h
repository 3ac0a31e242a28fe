/*
 * The seam between the platform backends and the Python module.
 *
 * A backend (csrc/windows/, csrc/linux/) implements these functions in plain C: it includes no
 * Python.h, so it can be built and tested on its own (the Windows one with mingw-w64 under Wine). The module
 * file (_secsock.c, with csrc/module/) is the only place that turns these structures into Python objects.
 *
 * Ownership rules, on every path:
 * - secsock_query_begin() allocates a secsock_pending; only secsock_pending_free() releases it. Everything the
 *   system may still write to (OVERLAPPED, template, buffer, length) lives inside it until the system is done.
 * - Token handles in a secsock_result belong to whoever holds the result: secsock_pending_result() hands them
 *   over exactly once; the holder closes each with secsock_token_close(). Handles delivered by the system but
 *   never handed over are closed by secsock_pending_free().
 * - Every function that can fail fills the caller's secsock_error and returns -1 (or NULL).
 */
#ifndef SECSOCK_BACKEND_H
#define SECSOCK_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* SOCKET_SECURITY_PROTOCOL values, as in mstcpip.h. */
enum {
    SECSOCK_PROTOCOL_DEFAULT = 0,
    SECSOCK_PROTOCOL_IPSEC = 1,
    SECSOCK_PROTOCOL_IPSEC2 = 2,
    SECSOCK_PROTOCOL_INVALID = 3
};

/* SOCKET_INFO_CONNECTION_* flags, as in mstcpip.h. */
enum {
    SECSOCK_FLAG_SECURED = 0x1,
    SECSOCK_FLAG_ENCRYPTED = 0x2,
    SECSOCK_FLAG_IMPERSONATED = 0x4
};

/* A socket descriptor: a SOCKET (UINT_PTR) on Windows, an int file descriptor on POSIX. */
typedef uint64_t secsock_fd;

/* What kind of failure a secsock_error describes; the module maps each kind to one Python exception type. */
typedef enum {
    SECSOCK_ERR_NONE = 0,
    SECSOCK_ERR_OS,          /* a system call failed: OSError(errnum, message, None, winerror) */
    SECSOCK_ERR_ARGUMENT,    /* the caller's argument is wrong: ValueError(message) */
    SECSOCK_ERR_NOMEM,       /* allocation failed: MemoryError */
    SECSOCK_ERR_UNSUPPORTED  /* the platform cannot do this: secsock.UnsupportedOperation(message) */
} secsock_error_kind;

typedef struct {
    secsock_error_kind kind;
    int errnum;        /* errno value (POSIX), 0 when not applicable */
    long winerror;     /* Windows/Winsock error code, 0 when not applicable */
    char call[48];     /* the system call or argument the message is about, e.g. "WSAQuerySocketSecurity" */
    char message[208]; /* a complete sentence for a person; never empty when kind != NONE */
} secsock_error;

/* The peer address for datagram sockets (and optionally TCP). Family-neutral: AF_* values differ by platform. */
typedef struct {
    int is_ipv6;
    uint8_t addr[16];  /* network byte order; the first 4 bytes for IPv4 */
    uint16_t port;     /* host byte order */
    uint32_t flowinfo; /* IPv6 only */
    uint32_t scope_id; /* IPv6 only */
} secsock_peer;

/* The socket's kind, read from the system before any query. */
typedef enum { SECSOCK_FAMILY_OTHER = 0, SECSOCK_FAMILY_INET, SECSOCK_FAMILY_INET6 } secsock_family;
typedef enum { SECSOCK_TYPE_OTHER = 0, SECSOCK_TYPE_STREAM, SECSOCK_TYPE_DGRAM } secsock_type;

typedef struct {
    secsock_family family;
    secsock_type type;
    int protocol; /* IPPROTO_* number (6 TCP, 17 UDP); 0 when the system does not say */
} secsock_socket_kind;

typedef struct {
    secsock_fd sock;
    int has_peer;
    secsock_peer peer;
    uint32_t token_access; /* PeerTokenAccessMask; 0 asks for no tokens */
    int ipsec2;            /* ask for the SOCKET_SECURITY_QUERY_INFO_IPSEC2 fields */
} secsock_query_request;

/* One IPsec security association applied to the flow in one direction (Linux: read from XFRM). */
#define SECSOCK_ALG_NAME_MAX 64
#define SECSOCK_MAX_SAS 4
typedef struct {
    uint8_t proto;  /* 50 ESP, 51 AH, 108 IPCOMP */
    uint8_t mode;   /* 0 transport, 1 tunnel, 2 route optimization, 3 in trigger, 4 BEET (XFRM_MODE_*) */
    uint32_t spi;   /* host byte order */
    uint32_t reqid;
    char encryption[SECSOCK_ALG_NAME_MAX]; /* "" when none; "ecb(cipher_null)" for ESP with null encryption */
    char integrity[SECSOCK_ALG_NAME_MAX];  /* "" when none */
    char aead[SECSOCK_ALG_NAME_MAX];       /* "" when none */
} secsock_sa;

typedef struct {
    size_t count;                   /* 0 when the direction is not protected */
    secsock_sa sas[SECSOCK_MAX_SAS]; /* outermost first, in the policy's template order */
} secsock_direction;

typedef struct {
    uint32_t protocol; /* SECSOCK_PROTOCOL_* as the system returned it */
    uint32_t flags;    /* SECSOCK_FLAG_* */
    uint64_t peer_application_token; /* 0 when not returned; owned by the holder of this result */
    uint64_t peer_machine_token;     /* 0 when not returned; owned by the holder of this result */

    int has_ipsec2; /* the system answered with SOCKET_SECURITY_QUERY_INFO_IPSEC2 */
    uint64_t mm_sa_id;
    uint64_t qm_sa_id;
    uint32_t negotiation_winerr;
    uint8_t sa_lookup_context[16]; /* the GUID as it lies in memory (Python: uuid.UUID(bytes_le=...)) */

    int has_ipsec_detail; /* the per-direction SAs below are known (Linux) */
    secsock_direction outbound;
    secsock_direction inbound;
    /* Why each direction is (not) protected, SECSOCK_REASON_*; 0 where the backend does not say (Windows). */
    uint8_t reason_out, reason_in;
} secsock_result;

/* Why a direction is or is not protected (Linux). The module turns each into a text (csrc/module/results.c). */
enum {
    SECSOCK_REASON_NONE = 0,
    SECSOCK_REASON_NO_POLICY,       /* no policy selects the flow */
    SECSOCK_REASON_BYPASS,          /* the policy allows the flow without IPsec */
    SECSOCK_REASON_BLOCK,           /* the policy blocks the flow */
    SECSOCK_REASON_NO_SA,           /* a required template has no SA yet */
    SECSOCK_REASON_OPTIONAL_ONLY,   /* only optional templates (or IPComp): nothing is required */
    SECSOCK_REASON_ENCRYPTED,       /* protected by SAs that encrypt */
    SECSOCK_REASON_NOT_ENCRYPTING,  /* protected, but an SA it uses or accepts does not encrypt */
    SECSOCK_REASON_MARK_UNDECIDABLE, /* a policy (or inbound the only fitting SAs) has a mark: the packet's decides */
    SECSOCK_REASON_SA_WRONG_DIR,    /* outbound, the SA the kernel picks is an inbound one: it drops the flow */
    SECSOCK_REASON_XFRM_DISABLED,   /* disable_xfrm (out) / disable_policy (in) of `all` or lo: no XFRM at all */
    SECSOCK_REASON_TIE_UNDECIDABLE, /* policies of the best priority differ: the kernel's order among them decides */
    SECSOCK_REASON_DEV_UNDECIDABLE, /* a selector names a device; which one the kernel compares is unknown (VRF) */
    SECSOCK_REASON_SA_ORDER_UNDECIDABLE, /* outbound SAs that differ tie: the kernel's hash chain order decides */
    SECSOCK_REASON_OUT_DEV_UNDECIDABLE, /* the device the socket sends by decides (if_id, a local peer): unknown */
    SECSOCK_REASON_XFRM_MAYBE_DISABLED, /* a device the flow may use has disable_xfrm/disable_policy: undecidable */
    SECSOCK_REASON_TUNNEL_SOURCE_UNDECIDABLE, /* a tunnel template's source is any: the route's source decides */
    SECSOCK_REASON_SA_CACHE_UNDECIDABLE, /* 6.12+: SAs that differ fit; the policy's state cache decides */
    SECSOCK_REASON_SA_KIND_UNDECIDABLE, /* a per-CPU, packet-offload or unreadable SA fits (may be the pick) */
    SECSOCK_REASON_MULTIPATH_UNDECIDABLE, /* MPTCP subflows, SCTP paths: other addresses and devices */
    SECSOCK_REASON_SEC_CTX_UNDECIDABLE, /* a labeled policy or SA (XFRMA_SEC_CTX) may apply: the LSM decides */
    SECSOCK_REASON_COUNT
};

typedef struct secsock_pending secsock_pending;

/* Name of the compiled backend: "windows" or "linux". */
const char *secsock_backend_name(void);

/* Process-wide set-up and tear-down (Winsock start-up, netlink state). Balanced calls; 0 or -1. */
int secsock_backend_init(secsock_error *err);
void secsock_backend_fini(void);

/*
 * Counters of the backend's own upkeep since the module was loaded, for the facade's DEBUG log (it reads them
 * only when that level is on): full re-reads of the system's state, notification overruns, switches to a
 * network namespace whose state was not kept (so it was read afresh), and tables re-read because the
 * kernel's count showed a change no notification announced (Linux's cross-check). A backend that keeps no
 * state (Windows asks the system on every query) reports zeros. Never fails; does not block beyond a short
 * lock.
 */
typedef struct {
    uint64_t reloads;
    uint64_t overruns;
    uint64_t netns_switches;
    uint64_t crosscheck_reloads;
} secsock_backend_stats;
void secsock_backend_stats_read(secsock_backend_stats *out);

/* Family, type and protocol of a descriptor: 0, or -1 (not a socket, closed...). */
int secsock_socket_kind_of(secsock_fd sock, secsock_socket_kind *kind, secsock_error *err);

/*
 * Start a query. Validates the request (family, type, peer required for non-TCP and in the socket's family)
 * and issues the system call. Returns a pending query (which may already be complete), or NULL with err set.
 * Never blocks for long: the two-call negotiation that a completion may need happens in secsock_pending_result.
 */
secsock_pending *secsock_query_begin(const secsock_query_request *req, secsock_error *err);

/* 1 when the system is done with the query (success or failure), 0 while it is in flight. May re-issue the
   call (a WSAEMSGSIZE that completed later: a synchronous size query, then the call again): call without the GIL,
   never on an event loop's thread. */
int secsock_pending_done(secsock_pending *p);

/* secsock_pending_done for an event loop: never blocks and never makes a call that may (no re-issue, no wait
   for a lock). SECSOCK_POLL_NEEDS_REISSUE: a WSAEMSGSIZE completed; secsock_pending_wait (in a worker thread)
   re-issues the call. */
enum { SECSOCK_POLL_IN_FLIGHT = 0, SECSOCK_POLL_DONE = 1, SECSOCK_POLL_NEEDS_REISSUE = 2 };
int secsock_pending_poll(secsock_pending *p);

/* Wait up to timeout_ms (negative: forever). 1 when done, 0 on time-out, -1 on error. Call without the GIL. */
int secsock_pending_wait(secsock_pending *p, int64_t timeout_ms, secsock_error *err);

/*
 * Wait for completion, then decode. On WSAEMSGSIZE, re-issues the call with the size the system asked for
 * (bounded in count and size). Fills out and hands over the token handles: 0, or -1 with err set.
 * A result can be taken once; a second call fails with SECSOCK_ERR_ARGUMENT. For the set/delete calls of
 * the family there is no result to decode: out may be NULL, and 0 means the call succeeded.
 */
int secsock_pending_result(secsock_pending *p, secsock_result *out, secsock_error *err);

/* Ask the system to cancel (CancelIoEx). 1 if a cancel was requested, 0 if already done, -1 on error. Never
   re-issues: a WSAEMSGSIZE that completed meanwhile ends the query. */
int secsock_pending_cancel(secsock_pending *p, secsock_error *err);

/* The event handle signalled on completion (Windows), or 0 where the backend has none. */
uint64_t secsock_pending_event(secsock_pending *p);

/* Cancel if still in flight, wait until the system is done, close unclaimed tokens, free. NULL is allowed. */
void secsock_pending_free(secsock_pending *p);

/* The same, telling: 0 when freed; -1 with err set when the cancel failed and the system may still own the
   OVERLAPPED, so p was leaked on purpose rather than waited on forever (the caller warns). Call without the GIL. */
int secsock_pending_free_or_leak(secsock_pending *p, secsock_error *err);

/* The query in one step, made synchronously (Windows: no OVERLAPPED, no event, no wait; the size negotiation
   included). Call without the GIL. Zeroes out and clears err before anything else, so the caller need not
   (the module's per-connection call relies on it); a direction's SA slots past its count, which nothing
   reads, may be left as they were (Linux: clearing them was a measurable part of a clear answer). */
int secsock_query(const secsock_query_request *req, secsock_result *out, secsock_error *err);

/* The same query when it can be answered at once, with nothing to wait for, so the caller may keep holding a
   lock of its own (the module: Python's GIL, whose release and re-acquisition cost as much as the rest of a
   steady Linux query under the VM's emulation). 1: answered, *out whole. 0: not answered, because the answer
   needs something that may wait (a netlink request or dump, a file, entering a namespace, another thread's
   lock) or failed: nothing of *out is to be read; call secsock_query, without the lock, which answers or
   gives the error. Windows answers 0 always (the query is the system call itself). */
int secsock_query_at_once(const secsock_query_request *req, secsock_result *out);

/* Close a token handle from a result (CloseHandle). 0, or -1 with err set. */
int secsock_token_close(uint64_t handle, secsock_error *err);

/* Close every token handle still in a result and zero them; used on the module's error paths. */
void secsock_result_release(secsock_result *r);

/* ---- The rest of the Secure Socket Extensions family (issue 4) --------------------------------------------
 * Windows implements these; elsewhere each fails with SECSOCK_ERR_UNSUPPORTED and a reason (family_posix.c).
 * The calls that take an OVERLAPPED return a secsock_pending like the query: secsock_pending_result() then
 * reports the outcome and leaves `out` zeroed (out may be NULL for these).
 */

/* SOCKET_SECURITY_SETTINGS.SecurityFlags and SOCKET_SECURITY_SETTINGS_IPSEC.IpsecFlags (mstcpip.h). */
enum {
    SECSOCK_SETTINGS_GUARANTEE_ENCRYPTION = 0x1,
    SECSOCK_SETTINGS_ALLOW_INSECURE = 0x2
};
enum { SECSOCK_SETTINGS_IPSEC_SKIP_FILTER_INSTANTIATION = 0x1 };

typedef struct {
    int is_ipsec;            /* 0: SOCKET_SECURITY_SETTINGS; 1: SOCKET_SECURITY_SETTINGS_IPSEC (protocol IPSEC) */
    uint32_t protocol;       /* SECSOCK_PROTOCOL_*, for the plain structure only */
    uint32_t security_flags; /* SECSOCK_SETTINGS_* */
    uint32_t ipsec_flags;    /* SECSOCK_SETTINGS_IPSEC_*; is_ipsec only */
    uint8_t mm_policy_key[16]; /* AuthIP main-mode policy key, GUID in memory order; zero: none */
    uint8_t qm_policy_key[16]; /* AuthIP quick-mode policy key */
    /* Explicit credentials, UTF-8 and NUL-terminated, or NULL. Packed as UTF-16 into AllStrings in the order
       user, domain, password, each without terminator, with their lengths in bytes; the backend wipes its
       copy of the password once the system is done with it. */
    const char *user;
    const char *domain;
    const char *password;
} secsock_settings;

/* WSASetSocketSecurity; settings NULL means the system's default settings. */
secsock_pending *secsock_set_security_begin(secsock_fd sock, const secsock_settings *settings,
                                            secsock_error *err);
/* WSASetSocketPeerTargetName: the SPN (UTF-8) for the peer (peer may be NULL for a connection-oriented socket
   that is not yet connected); protocol is the SOCKET_SECURITY_PROTOCOL the settings used. */
secsock_pending *secsock_set_peer_target_name_begin(secsock_fd sock, uint32_t protocol, const secsock_peer *peer,
                                                    const char *name, secsock_error *err);
/* WSADeleteSocketPeerTargetName for peer. */
secsock_pending *secsock_delete_peer_target_name_begin(secsock_fd sock, const secsock_peer *peer,
                                                       secsock_error *err);
/* WSAImpersonateSocketPeer / WSARevertImpersonation: per thread. peer may be NULL for a connected socket. */
int secsock_impersonate_peer(secsock_fd sock, const secsock_peer *peer, secsock_error *err);
int secsock_revert_impersonation(secsock_error *err);

/* Peer identity from a token handle. Strings are UTF-8. */
typedef struct {
    char sid[192];      /* "S-1-5-21-..." */
    char account[1540]; /* "DOMAIN\name" in UTF-8, or "" when the SID has no name the system can find; a
                           longer name (over 1539 bytes) is an error, never cut */
} secsock_account;

/* The token's user. 0, or -1 with err set. */
int secsock_token_user(uint64_t token, secsock_account *user, secsock_error *err);
/* The token's groups: *groups is allocated by the backend (free it with secsock_free), *count entries. */
int secsock_token_groups(uint64_t token, secsock_account **groups, size_t *count, secsock_error *err);
/* CheckTokenMembership for a SID string ("S-1-...") or an account name ("DOMAIN\group"). *member is 0 or 1. */
int secsock_token_is_member(uint64_t token, const char *sid_or_account, int *member, secsock_error *err);
/* Free what a secsock_* function allocated for the caller. NULL is allowed. */
void secsock_free(void *memory);

/* Shared helpers (secsock_common.c), for the backends. */
void secsock_error_clear(secsock_error *err);
/* Fill err; fmt is a printf format for the message. Always returns -1, so `return secsock_error_set(...)`. */
int secsock_error_set(secsock_error *err, secsock_error_kind kind, int errnum, long winerror, const char *call,
                      const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 6, 7)))
#endif
    ;

#ifdef __cplusplus
}
#endif

#endif /* SECSOCK_BACKEND_H */
