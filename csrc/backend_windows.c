/*
 * Windows backend: WSAQuerySocketSecurity (fwpuclnt.dll), called directly.
 *
 * Every Windows #ifdef of the project lives in this file. It builds with mingw-w64 (cross, tested under Wine
 * against a double of fwpuclnt.dll: tests/windows/) and with MSVC /W4 (the wheels), so: portable C (declarations
 * first, no VLAs, no GCC-only constructs, static assertions by negative-size arrays).
 *
 * Life of a query (struct secsock_pending, heap): the template, the output buffer, the in/out length and the
 * WSAOVERLAPPED all live in it, because the system may write to them until the operation is done. The event in
 * the OVERLAPPED carries a set low-order bit so that a socket bound to an I/O completion port (asyncio's
 * proactor) gets no completion packet for our query; we wait on the untagged event ourselves. Whenever a
 * completion is observed (settle), the outcome is recorded and, on success, decoded at once: from then on the
 * pending owns the token handles until secsock_pending_result hands them over, or secsock_pending_free closes
 * them. A WSAEMSGSIZE outcome re-issues the call with the size the system asked for, within bounds.
 */
#ifndef _WIN32_WINNT
#define _WIN32_WINNT 0x0601 /* Windows 7: WSAQuerySocketSecurity and the IPSEC2 structures */
#endif
#ifndef NTDDI_VERSION
#define NTDDI_VERSION 0x06010000 /* NTDDI_WIN7 */
#endif
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif

#include <winsock2.h>
#include <ws2tcpip.h>
#include <mstcpip.h>
#include <windows.h>
#include <sddl.h>

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "secsock_backend.h"
#include "secsock_decode.h"

/* A static assertion both mingw-w64 and MSVC's C mode accept (MSVC may lack _Static_assert in C). */
#define SECSOCK_STATIC_ASSERT(name, cond) typedef char secsock_static_assert_##name[(cond) ? 1 : -1]

/*
 * The _IPSEC2 template and info structures are in the Windows SDK's mstcpip.h (NTDDI_VERSION >= NTDDI_WIN7)
 * but not in mingw-w64's. The SDK defines the field-mask macros alongside the structures, so their absence
 * says the structures are missing too. Field order as documented for mstcpip.h.
 */
#ifndef SOCKET_QUERY_IPSEC2_FIELD_MASK_MM_SA_ID
#define SOCKET_QUERY_IPSEC2_ABORT_CONNECTION_ON_FIELD_CHANGE 0x1
#define SOCKET_QUERY_IPSEC2_FIELD_MASK_MM_SA_ID 0x1
#define SOCKET_QUERY_IPSEC2_FIELD_MASK_QM_SA_ID 0x2
typedef struct _SOCKET_SECURITY_QUERY_TEMPLATE_IPSEC2 {
    SOCKET_SECURITY_PROTOCOL SecurityProtocol;
    SOCKADDR_STORAGE PeerAddress;
    ULONG PeerTokenAccessMask;
    ULONG Flags;
    ULONG FieldMask;
} SOCKET_SECURITY_QUERY_TEMPLATE_IPSEC2;
typedef struct _SOCKET_SECURITY_QUERY_INFO_IPSEC2 {
    SOCKET_SECURITY_PROTOCOL SecurityProtocol;
    ULONG Flags;
    UINT64 PeerApplicationAccessTokenHandle;
    UINT64 PeerMachineAccessTokenHandle;
    UINT64 MmSaId;
    UINT64 QmSaId;
    UINT32 NegotiationWinerr;
    GUID SaLookupContext;
} SOCKET_SECURITY_QUERY_INFO_IPSEC2;
#endif

/* In fwpuclnt.dll (and mingw-w64's import library) but not declared by mingw-w64's ws2tcpip.h. */
#ifdef __MINGW32__
WINSOCK_API_LINKAGE INT WSAAPI WSADeleteSocketPeerTargetName(SOCKET Socket, const struct sockaddr *PeerAddr,
                                                            ULONG PeerAddrLen, LPWSAOVERLAPPED Overlapped,
                                                            LPWSAOVERLAPPED_COMPLETION_ROUTINE CompletionRoutine);
#endif

/*
 * The layout is the ABI shared with fwpuclnt.dll: the same on x86 and x64 (UINT64 members are 8-aligned in
 * both, so the x86 IPSEC2 info is 64 bytes, not 56; SOCKADDR_STORAGE is 8-aligned, hence PeerAddress at 8).
 */
SECSOCK_STATIC_ASSERT(protocol_size, sizeof(SOCKET_SECURITY_PROTOCOL) == 4);
SECSOCK_STATIC_ASSERT(template_size, sizeof(SOCKET_SECURITY_QUERY_TEMPLATE) == 144);
SECSOCK_STATIC_ASSERT(template_peer, offsetof(SOCKET_SECURITY_QUERY_TEMPLATE, PeerAddress) == 8);
SECSOCK_STATIC_ASSERT(template_mask, offsetof(SOCKET_SECURITY_QUERY_TEMPLATE, PeerTokenAccessMask) == 136);
SECSOCK_STATIC_ASSERT(template2_size, sizeof(SOCKET_SECURITY_QUERY_TEMPLATE_IPSEC2) == 152);
SECSOCK_STATIC_ASSERT(template2_peer, offsetof(SOCKET_SECURITY_QUERY_TEMPLATE_IPSEC2, PeerAddress) == 8);
SECSOCK_STATIC_ASSERT(template2_mask, offsetof(SOCKET_SECURITY_QUERY_TEMPLATE_IPSEC2, PeerTokenAccessMask) == 136);
SECSOCK_STATIC_ASSERT(template2_flags, offsetof(SOCKET_SECURITY_QUERY_TEMPLATE_IPSEC2, Flags) == 140);
SECSOCK_STATIC_ASSERT(template2_fields, offsetof(SOCKET_SECURITY_QUERY_TEMPLATE_IPSEC2, FieldMask) == 144);
SECSOCK_STATIC_ASSERT(info_size, sizeof(SOCKET_SECURITY_QUERY_INFO) == 24);
SECSOCK_STATIC_ASSERT(info_flags, offsetof(SOCKET_SECURITY_QUERY_INFO, Flags) == 4);
SECSOCK_STATIC_ASSERT(info_app, offsetof(SOCKET_SECURITY_QUERY_INFO, PeerApplicationAccessTokenHandle) == 8);
SECSOCK_STATIC_ASSERT(info_machine, offsetof(SOCKET_SECURITY_QUERY_INFO, PeerMachineAccessTokenHandle) == 16);
SECSOCK_STATIC_ASSERT(info2_size, sizeof(SOCKET_SECURITY_QUERY_INFO_IPSEC2) == 64);
SECSOCK_STATIC_ASSERT(info2_app, offsetof(SOCKET_SECURITY_QUERY_INFO_IPSEC2, PeerApplicationAccessTokenHandle) == 8);
SECSOCK_STATIC_ASSERT(info2_machine, offsetof(SOCKET_SECURITY_QUERY_INFO_IPSEC2, PeerMachineAccessTokenHandle) == 16);
SECSOCK_STATIC_ASSERT(info2_mm, offsetof(SOCKET_SECURITY_QUERY_INFO_IPSEC2, MmSaId) == 24);
SECSOCK_STATIC_ASSERT(info2_qm, offsetof(SOCKET_SECURITY_QUERY_INFO_IPSEC2, QmSaId) == 32);
SECSOCK_STATIC_ASSERT(info2_winerr, offsetof(SOCKET_SECURITY_QUERY_INFO_IPSEC2, NegotiationWinerr) == 40);
SECSOCK_STATIC_ASSERT(info2_context, offsetof(SOCKET_SECURITY_QUERY_INFO_IPSEC2, SaLookupContext) == 44);
SECSOCK_STATIC_ASSERT(guid_size, sizeof(GUID) == 16);
/* secsock_decode.c reads through these names: they must be the real structures' offsets. */
SECSOCK_STATIC_ASSERT(decode_flags, offsetof(SOCKET_SECURITY_QUERY_INFO, Flags) == SECSOCK_INFO_OFF_FLAGS);
SECSOCK_STATIC_ASSERT(decode_app, offsetof(SOCKET_SECURITY_QUERY_INFO, PeerApplicationAccessTokenHandle) ==
                                      SECSOCK_INFO_OFF_APP_TOKEN);
SECSOCK_STATIC_ASSERT(decode_machine, offsetof(SOCKET_SECURITY_QUERY_INFO, PeerMachineAccessTokenHandle) ==
                                          SECSOCK_INFO_OFF_MACHINE_TOKEN);
SECSOCK_STATIC_ASSERT(decode_size, sizeof(SOCKET_SECURITY_QUERY_INFO) == SECSOCK_INFO_SIZE);
SECSOCK_STATIC_ASSERT(decode2_mm, offsetof(SOCKET_SECURITY_QUERY_INFO_IPSEC2, MmSaId) == SECSOCK_INFO2_OFF_MM_SA_ID);
SECSOCK_STATIC_ASSERT(decode2_qm, offsetof(SOCKET_SECURITY_QUERY_INFO_IPSEC2, QmSaId) == SECSOCK_INFO2_OFF_QM_SA_ID);
SECSOCK_STATIC_ASSERT(decode2_winerr,
                      offsetof(SOCKET_SECURITY_QUERY_INFO_IPSEC2, NegotiationWinerr) == SECSOCK_INFO2_OFF_WINERR);
SECSOCK_STATIC_ASSERT(decode2_context,
                      offsetof(SOCKET_SECURITY_QUERY_INFO_IPSEC2, SaLookupContext) == SECSOCK_INFO2_OFF_CONTEXT);
SECSOCK_STATIC_ASSERT(decode2_size, sizeof(SOCKET_SECURITY_QUERY_INFO_IPSEC2) == SECSOCK_INFO2_SIZE);
SECSOCK_STATIC_ASSERT(sockaddr_in6_fits, sizeof(SOCKADDR_IN6) <= sizeof(SOCKADDR_STORAGE));
SECSOCK_STATIC_ASSERT(settings_size, sizeof(SOCKET_SECURITY_SETTINGS) == 8);
SECSOCK_STATIC_ASSERT(settings_ipsec_strings, offsetof(SOCKET_SECURITY_SETTINGS_IPSEC, AllStrings) == 84);
SECSOCK_STATIC_ASSERT(target_name_strings, offsetof(SOCKET_PEER_TARGET_NAME, AllStrings) == 140);

/* Bounds of the two-call negotiation: calls per query, and the largest buffer the system may ask for. */
#define SECSOCK_MAX_ISSUES 4
#define SECSOCK_MAX_INFO 65536u

enum { PENDING_IN_FLIGHT, PENDING_DONE };

/* The overlapped calls a pending can carry. */
enum { OP_QUERY, OP_SET_SECURITY, OP_SET_TARGET_NAME, OP_DELETE_TARGET_NAME };
static const char *const op_names[] = {"WSAQuerySocketSecurity", "WSASetSocketSecurity",
                                       "WSASetSocketPeerTargetName", "WSADeleteSocketPeerTargetName"};

struct secsock_pending {
    WSAOVERLAPPED ov;  /* the system's until the operation completes */
    int op;            /* OP_* */
    HANDLE event;      /* manual-reset, untagged; ov.hEvent is this with the low bit set */
    SOCKET sock;
    SRWLOCK lock;      /* serializes settle/re-issue between threads (wait may run in several at once) */
    int state;         /* PENDING_IN_FLIGHT / PENDING_DONE */
    int issues;        /* calls made so far (bounded by SECSOCK_MAX_ISSUES) */
    int taken;         /* the outcome was handed to secsock_pending_result */

    union {
        SOCKET_SECURITY_QUERY_TEMPLATE plain;
        SOCKET_SECURITY_QUERY_TEMPLATE_IPSEC2 ipsec2;
    } tmpl;
    const void *tmpl_ptr; /* NULL (TCP default query) or &tmpl */
    ULONG tmpl_len;

    /* Inputs of the set/delete calls, read by the system until it is done. */
    void *in;           /* SOCKET_SECURITY_SETTINGS(_IPSEC) or SOCKET_PEER_TARGET_NAME; calloc'ed, owned here */
    ULONG in_len;
    int wipe_in;        /* holds a password: zeroed before it is freed */
    SOCKADDR_STORAGE addr;
    ULONG addr_len;

    unsigned char *buf; /* the query's output buffer; calloc'ed, owned here */
    ULONG buf_size;
    ULONG len;          /* in/out SecurityQueryInfoLen */

    /* The outcome, valid once state == PENDING_DONE. */
    secsock_error error; /* kind NONE on success */
    secsock_result held; /* decoded answer; its token handles are owned here until handed over */
};

const char *secsock_backend_name(void)
{
    return "windows";
}

int secsock_backend_init(secsock_error *err)
{
    WSADATA data;
    int rc;

    secsock_error_clear(err);
    rc = WSAStartup(MAKEWORD(2, 2), &data);
    if (rc != 0) {
        return secsock_error_set(err, SECSOCK_ERR_OS, 0, rc, "WSAStartup", "WSAStartup(2.2) failed (error %d)", rc);
    }
    if (LOBYTE(data.wVersion) != 2 || HIBYTE(data.wVersion) != 2) {
        WSACleanup();
        return secsock_error_set(err, SECSOCK_ERR_OS, 0, WSAVERNOTSUPPORTED, "WSAStartup",
                                 "Winsock 2.2 is not available (got %u.%u)", (unsigned)LOBYTE(data.wVersion),
                                 (unsigned)HIBYTE(data.wVersion));
    }
    return 0;
}

void secsock_backend_fini(void)
{
    WSACleanup();
}

static SOCKET to_socket(secsock_fd fd)
{
    return (SOCKET)(UINT_PTR)fd;
}

static HANDLE to_handle(uint64_t h)
{
    return (HANDLE)(UINT_PTR)h;
}

int secsock_socket_kind_of(secsock_fd sock, secsock_socket_kind *kind, secsock_error *err)
{
    WSAPROTOCOL_INFOW info;
    int size = (int)sizeof(info);

    secsock_error_clear(err);
    memset(kind, 0, sizeof(*kind));
    memset(&info, 0, sizeof(info));
    /* SO_PROTOCOL_INFOW gives family, type and protocol in one call; a non-socket fails with WSAENOTSOCK. */
    if (getsockopt(to_socket(sock), SOL_SOCKET, SO_PROTOCOL_INFOW, (char *)&info, &size) != 0) {
        int e = WSAGetLastError();
        return secsock_error_set(err, SECSOCK_ERR_OS, 0, e, "getsockopt",
                                 "getsockopt(SO_PROTOCOL_INFOW) failed on descriptor %llu (error %d)",
                                 (unsigned long long)sock, e);
    }
    kind->family = info.iAddressFamily == AF_INET    ? SECSOCK_FAMILY_INET
                   : info.iAddressFamily == AF_INET6 ? SECSOCK_FAMILY_INET6
                                                     : SECSOCK_FAMILY_OTHER;
    kind->type = info.iSocketType == SOCK_STREAM  ? SECSOCK_TYPE_STREAM
                 : info.iSocketType == SOCK_DGRAM ? SECSOCK_TYPE_DGRAM
                                                  : SECSOCK_TYPE_OTHER;
    kind->protocol = info.iProtocol;
    return 0;
}

/* A secsock_peer as a SOCKADDR_IN or SOCKADDR_IN6 in dst; returns its length. */
static ULONG peer_to_sockaddr(const secsock_peer *peer, SOCKADDR_STORAGE *dst)
{
    memset(dst, 0, sizeof(*dst));
    if (peer->is_ipv6) {
        SOCKADDR_IN6 *sin6 = (SOCKADDR_IN6 *)dst;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(peer->port);
        sin6->sin6_flowinfo = htonl(peer->flowinfo); /* as CPython's socket module does */
        memcpy(&sin6->sin6_addr, peer->addr, 16);
        sin6->sin6_scope_id = peer->scope_id;
        return (ULONG)sizeof(*sin6);
    } else {
        SOCKADDR_IN *sin = (SOCKADDR_IN *)dst;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(peer->port);
        memcpy(&sin->sin_addr, peer->addr, 4);
        return (ULONG)sizeof(*sin);
    }
}

/* Fill PeerAddress from the request's peer; the family must be the socket's. */
static int fill_peer(SOCKADDR_STORAGE *dst, const secsock_query_request *req, const secsock_socket_kind *kind,
                     secsock_error *err)
{
    int want_v6 = kind->family == SECSOCK_FAMILY_INET6;

    if (!req->has_peer) {
        return secsock_error_set(err, SECSOCK_ERR_ARGUMENT, 0, 0, "peer",
                                 "peer is required for a non-TCP socket (protocol %d): WSAQuerySocketSecurity "
                                 "needs the peer's address and port",
                                 kind->protocol);
    }
    if ((req->peer.is_ipv6 != 0) != want_v6) {
        return secsock_error_set(err, SECSOCK_ERR_ARGUMENT, 0, 0, "peer",
                                 "peer is an %s address but the socket is %s", req->peer.is_ipv6 ? "IPv6" : "IPv4",
                                 want_v6 ? "AF_INET6" : "AF_INET");
    }
    (void)peer_to_sockaddr(&req->peer, dst);
    return 0;
}

/* Build the template (or none) for the request. 0 or -1 with err set; nothing allocated. */
static int build_template(secsock_pending *p, const secsock_query_request *req, const secsock_socket_kind *kind,
                          secsock_error *err)
{
    int is_tcp = kind->protocol == IPPROTO_TCP;
    SOCKADDR_STORAGE *peer;

    memset(&p->tmpl, 0, sizeof(p->tmpl));
    /* Q1: for TCP a NULL template asks for the default information; only needed to ask for more. */
    if (is_tcp && req->token_access == 0 && !req->ipsec2 && !req->has_peer) {
        p->tmpl_ptr = NULL;
        p->tmpl_len = 0;
        return 0;
    }
    if (req->ipsec2) {
        p->tmpl.ipsec2.SecurityProtocol = (SOCKET_SECURITY_PROTOCOL)SECSOCK_PROTOCOL_IPSEC2;
        p->tmpl.ipsec2.PeerTokenAccessMask = req->token_access;
        p->tmpl.ipsec2.FieldMask = SOCKET_QUERY_IPSEC2_FIELD_MASK_MM_SA_ID | SOCKET_QUERY_IPSEC2_FIELD_MASK_QM_SA_ID;
        peer = &p->tmpl.ipsec2.PeerAddress;
        p->tmpl_len = (ULONG)sizeof(p->tmpl.ipsec2);
    } else {
        p->tmpl.plain.SecurityProtocol = (SOCKET_SECURITY_PROTOCOL)SECSOCK_PROTOCOL_DEFAULT;
        p->tmpl.plain.PeerTokenAccessMask = req->token_access;
        peer = &p->tmpl.plain.PeerAddress;
        p->tmpl_len = (ULONG)sizeof(p->tmpl.plain);
    }
    p->tmpl_ptr = &p->tmpl;
    /* Q4: other protocols need the peer; for TCP it is optional and, when given, sent too. */
    if (!is_tcp || req->has_peer) {
        if (fill_peer(peer, req, kind, err) != 0) {
            return -1;
        }
    }
    return 0;
}

static int error_os(secsock_error *err, long code, const char *call, const char *what)
{
    return secsock_error_set(err, SECSOCK_ERR_OS, 0, code, call, "%s failed: %s (error %ld)", call, what, code);
}

static const char *describe(long code)
{
    switch (code) {
    case WSAEAFNOSUPPORT: return "the address family is not supported";
    case WSAECONNRESET: return "the connection was reset, or an earlier datagram drew ICMP Port Unreachable";
    case WSAEFAULT: return "an invalid pointer was passed";
    case WSAEINVAL: return "the socket must be AF_INET or AF_INET6 with SOCK_STREAM or SOCK_DGRAM";
    case WSAEMSGSIZE: return "a buffer was too small";
    case WSAENOTSOCK: return "the descriptor is not a socket";
    case WSA_OPERATION_ABORTED: return "the query was cancelled";
    default: return "the system reported an error";
    }
}

/* Close the token handles the pending still owns. */
static void release_held(secsock_pending *p)
{
    secsock_result_release(&p->held);
}

/* The operation is over: waiters (and whoever waits on secsock_pending_event) may go on. */
static void mark_done(secsock_pending *p)
{
    p->state = PENDING_DONE;
    SetEvent(p->event);
}

/* Record a failed outcome; the operation is over. */
static void finish_error(secsock_pending *p, long code, const char *call)
{
    error_os(&p->error, code, call, describe(code));
    mark_done(p);
}

/*
 * Decode a successful answer of n bytes (R5: by the size and protocol actually returned; secsock_decode.c) and
 * take ownership of the token handles in it.
 */
static void finish_success(secsock_pending *p, ULONG n)
{
    mark_done(p);
    (void)secsock_decode_info(p->buf, p->buf_size, n, &p->held, &p->error);
}

/* The system asked for `needed` bytes: grow the buffer and call again, or end with a clear error. */
static void renegotiate(secsock_pending *p, ULONG needed);

/* A set/delete call succeeded: nothing to decode. */
static void finish_call(secsock_pending *p)
{
    memset(&p->held, 0, sizeof(p->held));
    mark_done(p);
}

/* Make the pending's call (the query with its current buffer); records the outcome unless it pends. */
static void issue(secsock_pending *p)
{
    int rc;

    p->issues++;
    memset(&p->ov, 0, sizeof(p->ov));
    /* The low-order bit keeps the completion off any I/O completion port the socket is bound to. */
    p->ov.hEvent = (HANDLE)((UINT_PTR)p->event | 1);
    ResetEvent(p->event);
    p->state = PENDING_IN_FLIGHT;
    switch (p->op) {
    case OP_QUERY:
        memset(p->buf, 0, p->buf_size);
        p->len = p->buf_size;
        rc = WSAQuerySocketSecurity(p->sock, (const SOCKET_SECURITY_QUERY_TEMPLATE *)p->tmpl_ptr, p->tmpl_len,
                                    (SOCKET_SECURITY_QUERY_INFO *)p->buf, &p->len, &p->ov, NULL);
        break;
    case OP_SET_SECURITY:
        rc = WSASetSocketSecurity(p->sock, (const SOCKET_SECURITY_SETTINGS *)p->in, p->in_len, &p->ov, NULL);
        break;
    case OP_SET_TARGET_NAME:
        rc = WSASetSocketPeerTargetName(p->sock, (const SOCKET_PEER_TARGET_NAME *)p->in, p->in_len, &p->ov, NULL);
        break;
    default:
        rc = WSADeleteSocketPeerTargetName(p->sock, (const struct sockaddr *)&p->addr, p->addr_len, &p->ov, NULL);
        break;
    }
    if (rc == 0) {
        /* Done at once (always so for a non-overlapped socket, Q9): the length holds the bytes copied (Q7). */
        if (p->op == OP_QUERY) {
            finish_success(p, p->len);
        } else {
            finish_call(p);
        }
        return;
    }
    rc = WSAGetLastError();
    if (rc == WSA_IO_PENDING) {
        return;
    }
    if (rc == WSAEMSGSIZE && p->op == OP_QUERY) {
        renegotiate(p, p->len);
        return;
    }
    finish_error(p, rc, op_names[p->op]);
}

static void renegotiate(secsock_pending *p, ULONG needed)
{
    const char *why = NULL;

    if (needed < SECSOCK_INFO_HEADER) {
        why = "fewer than the 8-byte header";
    } else if (needed > SECSOCK_MAX_INFO) {
        why = "more than the 65536-byte limit";
    } else if (needed <= p->buf_size) {
        why = "no more than the buffer it was given";
    } else if (p->issues >= SECSOCK_MAX_ISSUES) {
        why = "still more after 4 calls";
    }
    if (why == NULL) {
        unsigned char *bigger = (unsigned char *)calloc(1, needed);
        if (bigger == NULL) {
            secsock_error_set(&p->error, SECSOCK_ERR_NOMEM, 0, 0, "WSAQuerySocketSecurity",
                              "out of memory for a %lu-byte WSAQuerySocketSecurity buffer", (unsigned long)needed);
            mark_done(p);
            return;
        }
        free(p->buf);
        p->buf = bigger;
        p->buf_size = needed;
        issue(p);
        return;
    }
    secsock_error_set(&p->error, SECSOCK_ERR_OS, 0, WSAEMSGSIZE, "WSAQuerySocketSecurity",
                      "WSAQuerySocketSecurity reported WSAEMSGSIZE and asked for a %lu-byte buffer, %s "
                      "(the buffer had %lu bytes)",
                      (unsigned long)needed, why, (unsigned long)p->buf_size);
    mark_done(p);
}

/*
 * Called with the lock held: if the operation in flight has completed, record its outcome (re-issuing on
 * WSAEMSGSIZE when allowed). Returns the state.
 */
static int settle(secsock_pending *p, int may_reissue)
{
    DWORD transferred = 0, flags = 0;
    int e;

    if (p->state != PENDING_IN_FLIGHT || WaitForSingleObject(p->event, 0) != WAIT_OBJECT_0) {
        return p->state;
    }
    if (WSAGetOverlappedResult(p->sock, &p->ov, &transferred, FALSE, &flags)) {
        if (p->op != OP_QUERY) {
            finish_call(p);
        } else {
            /*
             * Q7 says the length is written back; the Winsock overlapped model reports the bytes through the
             * OVERLAPPED. Take the latter, the former when it says nothing.
             */
            finish_success(p, transferred != 0 ? (ULONG)transferred : p->len);
        }
        return p->state;
    }
    e = WSAGetLastError();
    if (e == WSAEMSGSIZE && p->op == OP_QUERY) {
        ULONG needed = transferred != 0 ? (ULONG)transferred : p->len;
        if (may_reissue) {
            renegotiate(p, needed);
        } else {
            finish_error(p, WSAEMSGSIZE, op_names[p->op]);
        }
    } else if (e == WSA_IO_INCOMPLETE) {
        /* The event fired but the OVERLAPPED still says pending: report it rather than spin. */
        finish_error(p, WSA_IO_INCOMPLETE, "WSAGetOverlappedResult");
    } else {
        finish_error(p, e, op_names[p->op]);
    }
    return p->state;
}

static int settle_locked(secsock_pending *p, int may_reissue)
{
    int state;

    AcquireSRWLockExclusive(&p->lock);
    state = settle(p, may_reissue);
    ReleaseSRWLockExclusive(&p->lock);
    return state;
}

static void pending_destroy(secsock_pending *p)
{
    release_held(p);
    if (p->event != NULL) {
        CloseHandle(p->event);
    }
    if (p->in != NULL && p->wipe_in) {
        SecureZeroMemory(p->in, p->in_len); /* the password the system no longer reads */
    }
    free(p->in);
    free(p->buf);
    free(p);
}

/* A new pending for op on sock, with its event: NULL with err set. */
static secsock_pending *pending_new(int op, secsock_fd sock, secsock_error *err)
{
    secsock_pending *p = (secsock_pending *)calloc(1, sizeof(*p));

    if (p == NULL) {
        secsock_error_set(err, SECSOCK_ERR_NOMEM, 0, 0, op_names[op], "out of memory for a %s call", op_names[op]);
        return NULL;
    }
    InitializeSRWLock(&p->lock);
    p->op = op;
    p->sock = to_socket(sock);
    p->event = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (p->event == NULL) {
        DWORD e = GetLastError();
        pending_destroy(p);
        error_os(err, (long)e, "CreateEvent", "no event for the call");
        return NULL;
    }
    return p;
}

/* Issue the pending's first call; it may complete at once. */
static secsock_pending *pending_start(secsock_pending *p)
{
    /* No other thread can see p yet, but issue() and settle() expect the lock's discipline anyway. */
    AcquireSRWLockExclusive(&p->lock);
    issue(p);
    ReleaseSRWLockExclusive(&p->lock);
    return p;
}

secsock_pending *secsock_query_begin(const secsock_query_request *req, secsock_error *err)
{
    secsock_socket_kind kind;
    secsock_pending *p;

    secsock_error_clear(err);
    if (req == NULL) {
        secsock_error_set(err, SECSOCK_ERR_ARGUMENT, 0, 0, "request", "no query request was given");
        return NULL;
    }
    if (secsock_socket_kind_of(req->sock, &kind, err) != 0) {
        return NULL;
    }
    /* Q8/E4: refuse what the system would refuse, with the code it would give. */
    if (kind.family == SECSOCK_FAMILY_OTHER || kind.type == SECSOCK_TYPE_OTHER) {
        secsock_error_set(err, SECSOCK_ERR_OS, 0, WSAEINVAL, "WSAQuerySocketSecurity",
                          "WSAQuerySocketSecurity needs an AF_INET or AF_INET6 socket of type SOCK_STREAM or "
                          "SOCK_DGRAM");
        return NULL;
    }
    p = pending_new(OP_QUERY, req->sock, err);
    if (p == NULL) {
        return NULL;
    }
    if (build_template(p, req, &kind, err) != 0) {
        pending_destroy(p);
        return NULL;
    }
    /* Start with room for the structure we expect; the system says if it needs more. */
    p->buf_size = req->ipsec2 ? (ULONG)sizeof(SOCKET_SECURITY_QUERY_INFO_IPSEC2) : (ULONG)sizeof(SOCKET_SECURITY_QUERY_INFO);
    p->buf = (unsigned char *)calloc(1, p->buf_size);
    if (p->buf == NULL) {
        pending_destroy(p);
        secsock_error_set(err, SECSOCK_ERR_NOMEM, 0, 0, "WSAQuerySocketSecurity", "out of memory for a query");
        return NULL;
    }
    return pending_start(p);
}

/*
 * UTF-8 text as UTF-16 without terminator into dst (NULL: only measure). Returns the length in bytes, or -1
 * with an argument error naming `what` when the text is not valid UTF-8.
 */
static int utf16_of(const char *text, WCHAR *dst, int room, const char *what, secsock_error *err)
{
    int n;

    if (text == NULL || text[0] == '\0') {
        return 0;
    }
    n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, text, -1, dst, dst != NULL ? room + 1 : 0);
    if (n <= 0) {
        return secsock_error_set(err, SECSOCK_ERR_ARGUMENT, 0, 0, what, "%s is not valid UTF-8", what);
    }
    return (n - 1) * (int)sizeof(WCHAR); /* without the terminator */
}

/*
 * Pack the strings (user, domain, password, or a name) as UTF-16 after `header` bytes: allocates *out, and
 * the lengths in bytes go to lens[]. 0 or -1 with err set.
 */
static int pack_strings(size_t header, const char *const *texts, const char *const *names, int count, void **out,
                        ULONG *out_len, ULONG *lens, secsock_error *err)
{
    size_t total = header;
    unsigned char *block;
    int i, n;

    for (i = 0; i < count; i++) {
        n = utf16_of(texts[i], NULL, 0, names[i], err);
        if (n < 0) {
            return -1;
        }
        lens[i] = (ULONG)n;
        total += (size_t)n;
    }
    /* Room for one terminator more than needed: MultiByteToWideChar writes it. */
    block = (unsigned char *)calloc(1, total + sizeof(WCHAR));
    if (block == NULL) {
        return secsock_error_set(err, SECSOCK_ERR_NOMEM, 0, 0, names[0], "out of memory for the %s", names[0]);
    }
    total = header;
    for (i = 0; i < count; i++) {
        if (lens[i] != 0) {
            (void)utf16_of(texts[i], (WCHAR *)(block + total), (int)(lens[i] / sizeof(WCHAR)), names[i], err);
            total += lens[i];
        }
    }
    *out = block;
    *out_len = (ULONG)total;
    return 0;
}

secsock_pending *secsock_set_security_begin(secsock_fd sock, const secsock_settings *settings, secsock_error *err)
{
    secsock_pending *p;

    secsock_error_clear(err);
    p = pending_new(OP_SET_SECURITY, sock, err);
    if (p == NULL) {
        return NULL;
    }
    if (settings == NULL) {
        /* NULL settings: the system's defaults. */
    } else if (!settings->is_ipsec) {
        SOCKET_SECURITY_SETTINGS *plain = (SOCKET_SECURITY_SETTINGS *)calloc(1, sizeof(*plain));
        if (plain == NULL) {
            pending_destroy(p);
            secsock_error_set(err, SECSOCK_ERR_NOMEM, 0, 0, "settings", "out of memory for the settings");
            return NULL;
        }
        plain->SecurityProtocol = (SOCKET_SECURITY_PROTOCOL)settings->protocol;
        plain->SecurityFlags = settings->security_flags;
        p->in = plain;
        p->in_len = (ULONG)sizeof(*plain);
    } else {
        const char *texts[3], *names[3] = {"user", "domain", "password"};
        ULONG lens[3];
        SOCKET_SECURITY_SETTINGS_IPSEC *ipsec;

        texts[0] = settings->user;
        texts[1] = settings->domain;
        texts[2] = settings->password;
        if (pack_strings(offsetof(SOCKET_SECURITY_SETTINGS_IPSEC, AllStrings), texts, names, 3, &p->in, &p->in_len,
                         lens, err) != 0) {
            pending_destroy(p);
            return NULL;
        }
        p->wipe_in = settings->password != NULL;
        ipsec = (SOCKET_SECURITY_SETTINGS_IPSEC *)p->in;
        ipsec->SecurityProtocol = SOCKET_SECURITY_PROTOCOL_IPSEC;
        ipsec->SecurityFlags = settings->security_flags;
        ipsec->IpsecFlags = settings->ipsec_flags;
        memcpy(&ipsec->AuthipMMPolicyKey, settings->mm_policy_key, 16);
        memcpy(&ipsec->AuthipQMPolicyKey, settings->qm_policy_key, 16);
        ipsec->UserNameStringLen = lens[0];
        ipsec->DomainNameStringLen = lens[1];
        ipsec->PasswordStringLen = lens[2];
    }
    return pending_start(p);
}

secsock_pending *secsock_set_peer_target_name_begin(secsock_fd sock, uint32_t protocol, const secsock_peer *peer,
                                                    const char *name, secsock_error *err)
{
    const char *names[1] = {"name"};
    ULONG len;
    secsock_pending *p;
    SOCKET_PEER_TARGET_NAME *target;

    secsock_error_clear(err);
    if (name == NULL || name[0] == '\0') {
        secsock_error_set(err, SECSOCK_ERR_ARGUMENT, 0, 0, "name", "name (the peer's SPN) must not be empty");
        return NULL;
    }
    p = pending_new(OP_SET_TARGET_NAME, sock, err);
    if (p == NULL) {
        return NULL;
    }
    if (pack_strings(offsetof(SOCKET_PEER_TARGET_NAME, AllStrings), &name, names, 1, &p->in, &p->in_len, &len,
                     err) != 0) {
        pending_destroy(p);
        return NULL;
    }
    target = (SOCKET_PEER_TARGET_NAME *)p->in;
    target->SecurityProtocol = (SOCKET_SECURITY_PROTOCOL)protocol;
    if (peer != NULL) {
        (void)peer_to_sockaddr(peer, &target->PeerAddress);
    }
    target->PeerTargetNameStringLen = len;
    return pending_start(p);
}

secsock_pending *secsock_delete_peer_target_name_begin(secsock_fd sock, const secsock_peer *peer, secsock_error *err)
{
    secsock_pending *p;

    secsock_error_clear(err);
    if (peer == NULL) {
        secsock_error_set(err, SECSOCK_ERR_ARGUMENT, 0, 0, "peer", "peer is required to delete its target name");
        return NULL;
    }
    p = pending_new(OP_DELETE_TARGET_NAME, sock, err);
    if (p == NULL) {
        return NULL;
    }
    p->addr_len = peer_to_sockaddr(peer, &p->addr);
    return pending_start(p);
}

int secsock_impersonate_peer(secsock_fd sock, const secsock_peer *peer, secsock_error *err)
{
    SOCKADDR_STORAGE addr;
    ULONG len = 0;

    secsock_error_clear(err);
    if (peer != NULL) {
        len = peer_to_sockaddr(peer, &addr);
    } else {
        /* The page ignores PeerAddr only for connection-oriented sockets: refuse the datagram case before the
           call, naming the argument, as the query does (the system would answer WSAEFAULT). */
        secsock_socket_kind kind;
        if (secsock_socket_kind_of(sock, &kind, err) != 0) {
            return -1;
        }
        if (kind.type == SECSOCK_TYPE_DGRAM) {
            return secsock_error_set(err, SECSOCK_ERR_ARGUMENT, 0, 0, "peer",
                                     "peer is required to impersonate the peer of a datagram socket");
        }
    }
    if (WSAImpersonateSocketPeer(to_socket(sock), peer != NULL ? (const struct sockaddr *)&addr : NULL, len) != 0) {
        long e = WSAGetLastError();
        return error_os(err, e, "WSAImpersonateSocketPeer", describe(e));
    }
    return 0;
}

int secsock_revert_impersonation(secsock_error *err)
{
    secsock_error_clear(err);
    if (WSARevertImpersonation() != 0) {
        long e = WSAGetLastError();
        return error_os(err, e, "WSARevertImpersonation", describe(e));
    }
    return 0;
}

/* Text of a wide string as UTF-8 into dst (always terminated). */
static void utf8_of(const WCHAR *text, char *dst, int room)
{
    if (WideCharToMultiByte(CP_UTF8, 0, text, -1, dst, room, NULL, NULL) <= 0) {
        dst[0] = '\0';
    }
    dst[room - 1] = '\0';
}

/* "S-1-..." and "DOMAIN\\name" (or "" when the SID maps to no name) of a SID. 0 or -1 with err set. */
static int describe_sid(PSID sid, secsock_account *out, secsock_error *err)
{
    WCHAR *text = NULL, name[256], domain[256], both[514];
    DWORD name_len = 256, domain_len = 256, at = 0;
    SID_NAME_USE use;

    memset(out, 0, sizeof(*out));
    if (!ConvertSidToStringSidW(sid, &text)) {
        return error_os(err, (long)GetLastError(), "ConvertSidToStringSid", "cannot print the SID");
    }
    utf8_of(text, out->sid, (int)sizeof(out->sid));
    LocalFree(text);
    if (LookupAccountSidW(NULL, sid, name, &name_len, domain, &domain_len, &use)) {
        if (domain[0] != 0) {
            memcpy(both, domain, domain_len * sizeof(WCHAR)); /* the lengths come back without terminator */
            at = domain_len;
            both[at++] = L'\\';
        }
        memcpy(both + at, name, (name_len + 1) * sizeof(WCHAR));
        utf8_of(both, out->account, (int)sizeof(out->account));
    } else if (GetLastError() != ERROR_NONE_MAPPED) {
        return error_os(err, (long)GetLastError(), "LookupAccountSid", "cannot name the SID");
    }
    return 0;
}

/* GetTokenInformation into a malloc'ed buffer (*out, freed by the caller). 0 or -1 with err set. */
static int token_info(uint64_t token, TOKEN_INFORMATION_CLASS what, void **out, secsock_error *err)
{
    DWORD size = 0;
    void *buf;

    *out = NULL;
    if (!GetTokenInformation(to_handle(token), what, NULL, 0, &size) && GetLastError() != ERROR_INSUFFICIENT_BUFFER) {
        return error_os(err, (long)GetLastError(), "GetTokenInformation", "cannot read the token");
    }
    buf = malloc(size != 0 ? size : 1);
    if (buf == NULL) {
        return secsock_error_set(err, SECSOCK_ERR_NOMEM, 0, 0, "GetTokenInformation", "out of memory for a token");
    }
    if (!GetTokenInformation(to_handle(token), what, buf, size, &size)) {
        free(buf);
        return error_os(err, (long)GetLastError(), "GetTokenInformation", "cannot read the token");
    }
    *out = buf;
    return 0;
}

int secsock_token_user(uint64_t token, secsock_account *user, secsock_error *err)
{
    void *info;
    int rc;

    secsock_error_clear(err);
    if (token_info(token, TokenUser, &info, err) != 0) {
        return -1;
    }
    rc = describe_sid(((TOKEN_USER *)info)->User.Sid, user, err);
    free(info);
    return rc;
}

int secsock_token_groups(uint64_t token, secsock_account **groups, size_t *count, secsock_error *err)
{
    void *info;
    TOKEN_GROUPS *tg;
    secsock_account *list;
    DWORD i;

    secsock_error_clear(err);
    *groups = NULL;
    *count = 0;
    if (token_info(token, TokenGroups, &info, err) != 0) {
        return -1;
    }
    tg = (TOKEN_GROUPS *)info;
    list = (secsock_account *)calloc(tg->GroupCount != 0 ? tg->GroupCount : 1, sizeof(*list));
    if (list == NULL) {
        free(info);
        return secsock_error_set(err, SECSOCK_ERR_NOMEM, 0, 0, "GetTokenInformation", "out of memory for groups");
    }
    for (i = 0; i < tg->GroupCount; i++) {
        if (describe_sid(tg->Groups[i].Sid, &list[i], err) != 0) {
            free(list);
            free(info);
            return -1;
        }
    }
    *groups = list;
    *count = tg->GroupCount;
    free(info);
    return 0;
}

int secsock_token_is_member(uint64_t token, const char *sid_or_account, int *member, secsock_error *err)
{
    WCHAR wide[520];
    PSID sid = NULL;
    BYTE account_sid[SECURITY_MAX_SID_SIZE];
    WCHAR domain[256];
    DWORD sid_size = sizeof(account_sid), domain_len = 256;
    SID_NAME_USE use;
    HANDLE imp = NULL;
    BOOL is = FALSE, ok;
    int rc = 0;

    secsock_error_clear(err);
    *member = 0;
    if (sid_or_account == NULL ||
        MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, sid_or_account, -1, wide, 520) <= 1) {
        return secsock_error_set(err, SECSOCK_ERR_ARGUMENT, 0, 0, "group",
                                 "group must be a SID (S-1-...) or an account name in valid UTF-8");
    }
    if ((wide[0] == L'S' || wide[0] == L's') && wide[1] == L'-') {
        if (!ConvertStringSidToSidW(wide, &sid)) {
            return secsock_error_set(err, SECSOCK_ERR_ARGUMENT, 0, 0, "group", "%s is not a valid SID",
                                     sid_or_account);
        }
    } else if (LookupAccountNameW(NULL, wide, account_sid, &sid_size, domain, &domain_len, &use)) {
        sid = (PSID)account_sid;
    } else {
        return error_os(err, (long)GetLastError(), "LookupAccountName", "no such account");
    }
    ok = CheckTokenMembership(to_handle(token), sid, &is);
    if (!ok && GetLastError() == ERROR_NO_IMPERSONATION_TOKEN) {
        /* CheckTokenMembership wants an impersonation token: check a duplicate at identification level. */
        if (DuplicateToken(to_handle(token), SecurityIdentification, &imp)) {
            ok = CheckTokenMembership(imp, sid, &is);
            CloseHandle(imp);
        }
    }
    if (!ok) {
        rc = error_os(err, (long)GetLastError(), "CheckTokenMembership", "cannot check the membership");
    } else {
        *member = is ? 1 : 0;
    }
    if (sid != (PSID)account_sid) {
        LocalFree(sid);
    }
    return rc;
}

int secsock_pending_done(secsock_pending *p)
{
    return settle_locked(p, 1) == PENDING_DONE;
}

int secsock_pending_wait(secsock_pending *p, int64_t timeout_ms, secsock_error *err)
{
    ULONGLONG deadline = 0;

    secsock_error_clear(err);
    if (timeout_ms >= 0) {
        deadline = GetTickCount64() + (ULONGLONG)timeout_ms;
    }
    for (;;) {
        DWORD wait_ms = INFINITE, rc;

        if (settle_locked(p, 1) == PENDING_DONE) {
            return 1;
        }
        if (timeout_ms >= 0) {
            ULONGLONG now = GetTickCount64();
            ULONGLONG left = now >= deadline ? 0 : deadline - now;
            wait_ms = left >= (ULONGLONG)(INFINITE - 1) ? INFINITE - 1 : (DWORD)left;
        }
        /* Wait outside the lock: several threads may wait at once; a re-issue resets the event under it. */
        rc = WaitForSingleObject(p->event, wait_ms);
        if (rc == WAIT_TIMEOUT) {
            if (timeout_ms >= 0 && GetTickCount64() >= deadline) {
                return settle_locked(p, 1) == PENDING_DONE;
            }
        } else if (rc == WAIT_FAILED) {
            return error_os(err, (long)GetLastError(), "WaitForSingleObject", "cannot wait for the query");
        }
    }
}

int secsock_pending_result(secsock_pending *p, secsock_result *out, secsock_error *err)
{
    int rc;

    secsock_error_clear(err);
    if (out != NULL) {
        memset(out, 0, sizeof(*out));
    }
    if (secsock_pending_wait(p, -1, err) != 1) {
        return -1;
    }
    AcquireSRWLockExclusive(&p->lock);
    if (p->taken) {
        rc = secsock_error_set(err, SECSOCK_ERR_ARGUMENT, 0, 0, "pending",
                               "the result of this query was already taken");
    } else if (p->error.kind != SECSOCK_ERR_NONE) {
        p->taken = 1;
        *err = p->error;
        rc = -1;
    } else {
        p->taken = 1;
        if (out != NULL) {
            *out = p->held; /* hands the token handles over: they are no longer ours to close */
            p->held.peer_application_token = 0;
            p->held.peer_machine_token = 0;
        } /* else any token handles stay ours and secsock_pending_free closes them */
        rc = 0;
    }
    ReleaseSRWLockExclusive(&p->lock);
    return rc;
}

int secsock_pending_cancel(secsock_pending *p, secsock_error *err)
{
    int rc = 1;

    secsock_error_clear(err);
    AcquireSRWLockExclusive(&p->lock);
    if (settle(p, 1) == PENDING_DONE) {
        rc = 0;
    } else if (!CancelIoEx((HANDLE)p->sock, &p->ov)) {
        DWORD e = GetLastError();
        /* ERROR_NOT_FOUND: the system holds nothing to cancel any more; the completion is on its way. */
        rc = e == ERROR_NOT_FOUND ? 0 : error_os(err, (long)e, "CancelIoEx", "cannot cancel the query");
    }
    ReleaseSRWLockExclusive(&p->lock);
    return rc;
}

uint64_t secsock_pending_event(secsock_pending *p)
{
    return p == NULL ? 0 : (uint64_t)(UINT_PTR)p->event;
}

void secsock_pending_free(secsock_pending *p)
{
    if (p == NULL) {
        return;
    }
    /*
     * Like CPython's Overlapped_dealloc: cancel what is in flight, then wait until the system is done with the
     * OVERLAPPED and the buffer before freeing them (no re-issue on the way out).
     */
    if (settle_locked(p, 0) == PENDING_IN_FLIGHT) {
        (void)CancelIoEx((HANDLE)p->sock, &p->ov);
        if (WaitForSingleObject(p->event, INFINITE) != WAIT_OBJECT_0) {
            /* Cannot know when the system is done: leaking beats letting it write into freed memory. */
            return;
        }
        (void)settle_locked(p, 0);
    }
    pending_destroy(p); /* closes the token handles never handed over */
}

int secsock_query(const secsock_query_request *req, secsock_result *out, secsock_error *err)
{
    secsock_pending *p;
    int rc;

    secsock_error_clear(err);
    if (out == NULL) {
        return secsock_error_set(err, SECSOCK_ERR_ARGUMENT, 0, 0, "out", "no result buffer was given");
    }
    memset(out, 0, sizeof(*out)); /* as the seam promises, before anything else */
    p = secsock_query_begin(req, err);
    if (p == NULL) {
        return -1;
    }
    rc = secsock_pending_result(p, out, err);
    secsock_pending_free(p);
    return rc;
}

int secsock_token_close(uint64_t handle, secsock_error *err)
{
    secsock_error_clear(err);
    if (handle == 0) {
        return secsock_error_set(err, SECSOCK_ERR_ARGUMENT, 0, 0, "handle", "no token handle to close");
    }
    if (!CloseHandle(to_handle(handle))) {
        return error_os(err, (long)GetLastError(), "CloseHandle", "cannot close the token handle");
    }
    return 0;
}
