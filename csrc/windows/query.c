/* The query: WSAStartup, the socket's kind, the template, WSAQuerySocketSecurity's two-call size negotiation. */
#include "backend_windows.h"

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
/* pack_strings measures sizeof + strings and relies on room for a terminator after the strings. */
SECSOCK_STATIC_ASSERT(settings_ipsec_whole, sizeof(SOCKET_SECURITY_SETTINGS_IPSEC) >=
                                                offsetof(SOCKET_SECURITY_SETTINGS_IPSEC, AllStrings) + sizeof(WCHAR));
SECSOCK_STATIC_ASSERT(target_name_whole,
                      sizeof(SOCKET_PEER_TARGET_NAME) >= offsetof(SOCKET_PEER_TARGET_NAME, AllStrings) + sizeof(WCHAR));

/* Bounds of the two-call negotiation: calls per query, and the largest buffer the system may ask for. */
#define SECSOCK_MAX_ISSUES 4
#define SECSOCK_MAX_INFO 65536u
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

SOCKET to_socket(secsock_fd fd)
{
    return (SOCKET)(UINT_PTR)fd;
}

HANDLE to_handle(uint64_t h)
{
    return (HANDLE)(UINT_PTR)h;
}

/*
 * A socket or handle value as the seam carries it (64 bits) must be one: x86 would truncate a larger value,
 * and even x64 Windows reads only the low 32 bits of a handle ("only the lower 32 bits are significant",
 * Interprocess Communication Between 32-bit and 64-bit Applications; Wine does the same). A larger one is
 * refused, naming the argument, never taken for another socket or handle (issue 11, defect 9). 0, or -1.
 * Known refusal: the same page lets a 64-bit process sign-extend a 32-bit handle, so the token pseudo-handles
 * -4, -5 and -6 (GetCurrentProcessToken, GetCurrentThreadToken, GetCurrentThreadEffectiveToken) are valid
 * handles that this refuses. The module only ever passes handles the system returned (tokens from the query),
 * never pseudo-handles, so none is lost; a caller who needs one must duplicate it first (review finding 15).
 */
int check_fits(uint64_t value, const char *what, secsock_error *err)
{
    if (value > 0xFFFFFFFFull) {
        /* The module prefixes the argument's name (err->call). */
        return secsock_error_set(err, SECSOCK_ERR_ARGUMENT, 0, 0, what,
                                 "%llu is not a Windows handle value (only 32 bits are significant)",
                                 (unsigned long long)value);
    }
    return 0;
}

int secsock_socket_kind_of(secsock_fd sock, secsock_socket_kind *kind, secsock_error *err)
{
    WSAPROTOCOL_INFOW info;
    int size = (int)sizeof(info);

    secsock_error_clear(err);
    memset(kind, 0, sizeof(*kind));
    memset(&info, 0, sizeof(info));
    if (check_fits(sock, "sock", err) != 0) {
        return -1;
    }
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
ULONG peer_to_sockaddr(const secsock_peer *peer, SOCKADDR_STORAGE *dst)
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
    int is_tcp = kind == NULL || kind->protocol == IPPROTO_TCP; /* NULL: not read (secsock_query's sock alone) */
    SOCKADDR_STORAGE *peer;

    memset(&p->tmpl, 0, sizeof(p->tmpl));
    p->tokens_asked = req->token_access != 0;
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
/*
 * Decode a successful answer of n bytes (R5: by the size and protocol actually returned; secsock_decode.c) and
 * take ownership of the token handles in it.
 */
void finish_success(secsock_pending *p, ULONG n)
{
    mark_done(p);
    (void)secsock_decode_info_asked(p->buf, p->buf_size, n, p->tokens_asked, &p->held, &p->error);
}

/*
 * WSAEMSGSIZE asked for `needed` bytes: re-issue with a buffer that large, within bounds. after_size_query: the
 * size came from a size query after a WSAEMSGSIZE that completed later; the answer may have shrunk meanwhile
 * (R5: IPSEC2 -> plain), so a size no larger than the buffer is re-issued as is (finding 12).
 */
void renegotiate(secsock_pending *p, ULONG needed, int after_size_query)
{
    const char *why = NULL;

    if (needed < SECSOCK_INFO_HEADER) {
        why = "fewer than the 8-byte header";
    } else if (needed > SECSOCK_MAX_INFO) {
        why = "more than the 65536-byte limit";
    } else if (needed <= p->buf_size && !after_size_query) {
        why = "no more than the buffer it was given";
    } else if (p->issues >= SECSOCK_MAX_ISSUES) {
        why = "still more after 4 calls";
    }
    if (why == NULL && needed <= p->buf_size) {
        issue(p); /* the buffer already fits */
        return;
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
 * A WSAEMSGSIZE that completed later: no page says where the size needed is then (neither InternalHigh nor a
 * length written after WSA_IO_PENDING is documented; issue 11, defect 5). Ask the documented way: a size
 * query with a NULL buffer (Q6; E5: it answers WSAEMSGSIZE and the size), without an OVERLAPPED, so it is
 * synchronous, then re-issue with that size. The length is the pending's own (p->len), not the stack's: should
 * the call ever pend anyway, the system writes into memory that is leaked, never reused (finding 13).
 */
void size_query(secsock_pending *p)
{
    int e;

    p->len = 0;
    if (WSAQuerySocketSecurity(p->sock, (const SOCKET_SECURITY_QUERY_TEMPLATE *)p->tmpl_ptr, p->tmpl_len, NULL,
                               &p->len, NULL, NULL) == 0) {
        /* A size query that succeeds gives no size: report the first call's outcome. */
        finish_error(p, WSAEMSGSIZE, op_names[p->op]);
        return;
    }
    e = WSAGetLastError();
    if (e == WSA_IO_PENDING) {
        abandon(p, op_names[p->op]); /* the WSAIoctl page says a call without an OVERLAPPED cannot pend */
        return;
    }
    if (e != WSAEMSGSIZE) {
        finish_error(p, e, op_names[p->op]);
        return;
    }
    renegotiate(p, p->len, 1);
}

/* The socket's kind; Q8/E4: refuses what the system would refuse, with the code it would give. 0 or -1. */
static int read_kind(secsock_fd sock, secsock_socket_kind *kind, secsock_error *err)
{
    if (secsock_socket_kind_of(sock, kind, err) != 0) {
        return -1;
    }
    if (kind->family == SECSOCK_FAMILY_OTHER || kind->type == SECSOCK_TYPE_OTHER) {
        return secsock_error_set(err, SECSOCK_ERR_OS, 0, WSAEINVAL, "WSAQuerySocketSecurity",
                                 "WSAQuerySocketSecurity needs an AF_INET or AF_INET6 socket of type SOCK_STREAM or "
                                 "SOCK_DGRAM");
    }
    return 0;
}

/*
 * A query's pending, checked and built but not issued; sync: made without an OVERLAPPED; unread_kind: the
 * socket's kind is not read and the template is NULL (only for sock alone: secsock_query). NULL with err set.
 */
static secsock_pending *query_prepare(const secsock_query_request *req, int sync, int unread_kind, secsock_error *err)
{
    secsock_socket_kind kind;
    secsock_pending *p;

    if (req == NULL) {
        secsock_error_set(err, SECSOCK_ERR_ARGUMENT, 0, 0, "request", "no query request was given");
        return NULL;
    }
    if (!unread_kind && read_kind(req->sock, &kind, err) != 0) {
        return NULL;
    }
    p = pending_new_for(OP_QUERY, req->sock, sync, err);
    if (p == NULL) {
        return NULL;
    }
    if (build_template(p, req, unread_kind ? NULL : &kind, err) != 0) {
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
    return p;
}

secsock_pending *secsock_query_begin(const secsock_query_request *req, secsock_error *err)
{
    secsock_pending *p;

    secsock_error_clear(err);
    p = query_prepare(req, 0, 0, err);
    return p != NULL ? pending_start(p) : NULL;
}

/*
 * sock alone was refused with an error the socket's kind may explain (E6 not a socket, E4 and E1 the family or
 * type, E5 a non-TCP socket without template): replace it with what query_prepare's checks say of that socket,
 * so bad input gets the same exception either way (a UDP socket: the peer it needs, naming peer). For a TCP
 * socket of the right family and type the system's answer stands.
 */
static void explain_refusal(const secsock_query_request *req, secsock_error *err)
{
    secsock_socket_kind kind;
    secsock_pending scratch; /* build_template's checks only: it allocates nothing */
    secsock_error why;

    if (err->kind != SECSOCK_ERR_OS || (err->winerror != WSAENOTSOCK && err->winerror != WSAEINVAL &&
                                        err->winerror != WSAEAFNOSUPPORT && err->winerror != WSAEMSGSIZE)) {
        return;
    }
    if (read_kind(req->sock, &kind, &why) != 0 || build_template(&scratch, req, &kind, &why) != 0) {
        *err = why;
    }
}

/*
 * The blocking query, made synchronously: no OVERLAPPED, no event, no wait (issue 9: Microsoft's sample calls
 * it so). Every call completes before it returns, the size negotiation included, so the pending is done once
 * pending_start returns; its outcome and tokens move to out.
 * sock alone (no peer, no tokens, not IPSEC2), a server's question on every accepted connection, is asked with
 * the NULL template Q1 allows for TCP without reading the socket's kind first: that getsockopt costs as much as
 * the query under Wine (issue 9 review, finding 2). The kind is read only if the system refuses.
 */
int secsock_query_at_once(const secsock_query_request *req, secsock_result *out)
{
    (void)req;
    (void)out;
    return 0; /* WSAQuerySocketSecurity itself may wait: always without the GIL (secsock_query) */
}

int secsock_query(const secsock_query_request *req, secsock_result *out, secsock_error *err)
{
    secsock_pending *p;
    int rc = 0;
    int sock_alone = req != NULL && !req->has_peer && req->token_access == 0 && !req->ipsec2;

    secsock_error_clear(err);
    if (out == NULL) {
        return secsock_error_set(err, SECSOCK_ERR_ARGUMENT, 0, 0, "out", "no result buffer was given");
    }
    memset(out, 0, sizeof(*out)); /* as the seam promises, before anything else */
    p = query_prepare(req, 1, sock_alone, err);
    if (p == NULL) {
        return -1;
    }
    (void)pending_start(p);
    if (p->abandoned) {
        *err = p->error;
        return -1; /* leaked on purpose: the system may still write the buffer and the length */
    }
    if (p->error.kind != SECSOCK_ERR_NONE) {
        *err = p->error;
        if (sock_alone) {
            explain_refusal(req, err);
        }
        rc = -1;
    } else {
        *out = p->held; /* hands the token handles over */
        p->held.peer_application_token = 0;
        p->held.peer_machine_token = 0;
    }
    pending_destroy(p);
    return rc;
}
