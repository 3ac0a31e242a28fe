/*
 * A test double of fwpuclnt.dll: WSAQuerySocketSecurity as /work/shared/reference/CONTRACT.md states it, and
 * no more, answering from a script (fwpuclnt_double.h), plus a control API for the test program. The rest of
 * the family (WSASetSocketSecurity, WSASetSocketPeerTargetName, WSADeleteSocketPeerTargetName,
 * WSAImpersonateSocketPeer, WSARevertImpersonation) checks its arguments as the SDK pages state (S/T/D/I/R in
 * test_backend.c) before it takes a step; see the end of this file.
 *
 * Argument checks (in this order; the pages give no order): not a socket -> WSAENOTSOCK (E6); not
 * AF_INET/AF_INET6 with SOCK_STREAM/SOCK_DGRAM -> WSAEINVAL (E4/Q8); NULL SecurityQueryInfoLen -> WSAEFAULT
 * (E3); a template shorter than SOCKET_SECURITY_QUERY_TEMPLATE (or than the IPSEC2 one when it says IPSEC2), or
 * none for a non-TCP socket -> WSAEMSGSIZE (E5/Q4/Q5); a non-TCP PeerAddress not AF_INET/AF_INET6 ->
 * WSAEAFNOSUPPORT (E1, inferred). Only then is a scripted step consumed.
 *
 * Overlapped (Q9): ignored for a socket opened without WSA_FLAG_OVERLAPPED. For an overlapped socket a step may
 * pend. To make the caller's CancelIoEx(socket, &ov) real under Wine (whose CancelIoEx only cancels I/O that
 * wineserver knows), the double issues its own one-byte overlapped WSARecv on the caller's socket using the
 * caller's OVERLAPPED as the status block but its own event (no data ever arrives in the tests). CancelIoEx with
 * that OVERLAPPED (or NULL) then cancels it, and the double completes the query as cancelled; when the script
 * says "complete now", the double cancels its own recv first and then completes with the scripted outcome.
 * Completion writes the buffer and, for a success, the length, then InternalHigh and Internal (the NTSTATUS
 * that Wine's WSAGetOverlappedResult reads and maps), then signals the event with the low bit masked off, and
 * posts a packet to the completion port the test named only when the event's low bit is clear. A WSAEMSGSIZE
 * completed later writes no length and InternalHigh 0 unless DBL_VAR_LATE_LENGTH says so (DOUBLE.md).
 */
/* Not ws2tcpip.h: it declares WSAQuerySocketSecurity as imported, and this DLL is where it is defined. */
#include <winsock2.h>
#include <ws2ipdef.h>
#include <mstcpip.h>
#include <windows.h>
#include <stddef.h>
#include <string.h>

#include "fwpuclnt_double.h"

/*
 * Defined here again rather than shared with csrc/windows/ on purpose: the double stands for the system,
 * so a layout mistake in the code under test must not be copied into the double.
 */
#ifndef SOCKET_QUERY_IPSEC2_FIELD_MASK_MM_SA_ID
#define SOCKET_QUERY_IPSEC2_FIELD_MASK_MM_SA_ID 0x1
#define SOCKET_QUERY_IPSEC2_FIELD_MASK_QM_SA_ID 0x2
typedef struct {
    SOCKET_SECURITY_PROTOCOL SecurityProtocol;
    SOCKADDR_STORAGE PeerAddress;
    ULONG PeerTokenAccessMask;
    ULONG Flags;
    ULONG FieldMask;
} SOCKET_SECURITY_QUERY_TEMPLATE_IPSEC2;
typedef struct {
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

#define STATUS_OK ((LONG)0x00000000)
#define STATUS_PENDING_ ((LONG)0x00000103)
#define STATUS_BUFFER_OVERFLOW_ ((LONG)0x80000005)
#define STATUS_CANCELLED_ ((LONG)0xC0000120)

#define MAX_STEPS 32
#define MAX_SLOTS 8
#define MAX_TOKENS 256

/* What the call was asked, kept for answering later. */
typedef struct {
    int default_query; /* no template, or an all-zero one (Q1/Q2) */
    int ipsec2;        /* the template says IPSEC2 */
    ULONG token_mask;
    ULONG field_mask;
} ask;

typedef struct {
    int used;
    int finishing; /* the worker is completing; dbl_release must not touch the events */
    SOCKET sock;
    WSAOVERLAPPED *ov;
    HANDLE caller_event; /* untagged */
    int post_packet;
    dbl_step step;
    int is_query;
    ask question;
    void *info;
    ULONG *len;
    HANDLE release_event;
    HANDLE recv_event; /* NULL when no recv could be issued */
    int self_cancel;
    char recv_byte;
} slot;

static CRITICAL_SECTION lock;
static dbl_step steps[MAX_STEPS];
static int step_head, step_count;
static dbl_call calls[DBL_MAX_CALLS];
static int call_count;
static HANDLE port;
static ULONG_PTR port_key;
static slot slots[MAX_SLOTS];
static UINT64 tokens[MAX_TOKENS];
static int token_count;
static int loopback_in_the_clear; /* dbl_set_loopback_clear */
static unsigned int variants; /* DBL_VAR_*, until dbl_reset */
static HANDLE unblock;         /* manual-reset: set by dbl_release for the DBL_BLOCK calls, reset by dbl_reset */
static LONG blocked;           /* DBL_BLOCK calls inside the double now */
static UINT64 variant_value;

BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID reserved)
{
    (void)instance;
    (void)reserved;
    if (reason == DLL_PROCESS_ATTACH) {
        InitializeCriticalSection(&lock);
        unblock = CreateEventW(NULL, TRUE, FALSE, NULL);
    }
    return TRUE;
}

/* ---- control API ---- */

void dbl_reset(void)
{
    EnterCriticalSection(&lock);
    step_head = step_count = 0;
    call_count = 0;
    token_count = 0;
    port = NULL;
    port_key = 0;
    variants = 0;
    variant_value = 0;
    ResetEvent(unblock);
    LeaveCriticalSection(&lock);
}

int dbl_blocked(void)
{
    return (int)InterlockedCompareExchange(&blocked, 0, 0);
}

/* The variants in force (DBL_VAR_*), replacing the previous set; value is what a variant writes. */
void dbl_variants(unsigned int flags, UINT64 value)
{
    EnterCriticalSection(&lock);
    variants = flags;
    variant_value = value;
    LeaveCriticalSection(&lock);
}

static int variant(unsigned int flag)
{
    int on;

    EnterCriticalSection(&lock);
    on = (variants & flag) != 0;
    LeaveCriticalSection(&lock);
    return on;
}

void dbl_script(const dbl_step *step)
{
    EnterCriticalSection(&lock);
    if (step_count < MAX_STEPS) {
        steps[(step_head + step_count) % MAX_STEPS] = *step;
        step_count++;
    }
    LeaveCriticalSection(&lock);
}

/* Copy up to max of the count records under the lock; returns count (out may be NULL when max is 0). */
static int copy_out(void *out, const void *records, const int *count, int max, size_t size)
{
    int n;

    EnterCriticalSection(&lock);
    n = *count;
    if (max > 0) {
        memcpy(out, records, (size_t)(n < max ? n : max) * size);
    }
    LeaveCriticalSection(&lock);
    return n;
}

int dbl_calls(dbl_call *out, int max)
{
    return copy_out(out, calls, &call_count, max, sizeof(*out));
}

/* Complete every DBL_PEND query now, with its scripted outcome. Returns how many were released. */
int dbl_release(void)
{
    int i, n = 0;

    EnterCriticalSection(&lock);
    for (i = 0; i < MAX_SLOTS; i++) {
        if (slots[i].used && !slots[i].finishing) {
            SetEvent(slots[i].release_event);
            n++;
        }
    }
    if (dbl_blocked() > 0) {
        n += dbl_blocked();
        SetEvent(unblock); /* DBL_BLOCK calls, now and later, until dbl_reset */
    }
    LeaveCriticalSection(&lock);
    return n;
}

/* Bookkeeping: the SecurityQueryInfo buffer the last WSAQuerySocketSecurity call was given (NULL too). */
static void *volatile last_query_buffer;

void *dbl_last_query_buffer(void)
{
    return last_query_buffer;
}

int dbl_in_flight(void)
{
    int i, n = 0;

    EnterCriticalSection(&lock);
    for (i = 0; i < MAX_SLOTS; i++) {
        n += slots[i].used;
    }
    LeaveCriticalSection(&lock);
    return n;
}

/* The completion port the test bound the socket to: packets go there when the event's low bit is clear. */
void dbl_set_port(HANDLE completion_port, ULONG_PTR key)
{
    EnterCriticalSection(&lock);
    port = completion_port;
    port_key = key;
    LeaveCriticalSection(&lock);
}

/* Every token handle the double handed out since dbl_reset. */
int dbl_tokens(UINT64 *out, int max)
{
    return copy_out(out, tokens, &token_count, max, sizeof(*out));
}

/*
 * ASSUMED VARIANT (no page states it): real Windows answers a loopback connection in the clear and, even when
 * PeerTokenAccessMask asks for them, returns no tokens (what tests/windows_only expects of a GitHub runner).
 * When on, an unscripted query whose peer is a loopback address answers so; scripted steps are unchanged.
 */
void dbl_set_loopback_clear(int on)
{
    EnterCriticalSection(&lock);
    loopback_in_the_clear = on;
    LeaveCriticalSection(&lock);
}

/* ---- the answer ---- */

/* A fresh handle to this process's token: a real handle the caller must close (R4). */
static UINT64 new_token(void)
{
    HANDLE process_token = NULL, dup = NULL;

    if (!OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY | TOKEN_DUPLICATE, &process_token)) {
        return 0;
    }
    if (!DuplicateHandle(GetCurrentProcess(), process_token, GetCurrentProcess(), &dup, 0, FALSE,
                         DUPLICATE_SAME_ACCESS)) {
        dup = NULL;
    }
    CloseHandle(process_token);
    if (dup != NULL) {
        EnterCriticalSection(&lock);
        if (token_count < MAX_TOKENS) {
            tokens[token_count++] = (UINT64)(UINT_PTR)dup;
        }
        LeaveCriticalSection(&lock);
    }
    return (UINT64)(UINT_PTR)dup;
}

/*
 * Produce the outcome of a step into the caller's buffer and length: 0 on success, else the WSA error. For
 * DBL_ANSWER: the size needed is the structure's; a NULL buffer or a short length gets WSAEMSGSIZE and the size
 * (Q6/Q7); tokens only with a nonzero PeerTokenAccessMask (Q3); a default query sets only Flags (Q2).
 */
static int produce(const dbl_step *step, const ask *q, void *info, ULONG *len)
{
    SOCKET_SECURITY_QUERY_INFO_IPSEC2 answer;
    ULONG size, copy;
    int ipsec2;

    if (step->kind == DBL_ERROR) {
        return step->error;
    }
    if (q == NULL) {
        return 0; /* a set/delete call: success, nothing to write */
    }
    if (step->kind == DBL_MSGSIZE) {
        *len = step->needed;
        return WSAEMSGSIZE;
    }
    ipsec2 = q->ipsec2 && step->ipsec2 && !q->default_query;
    size = ipsec2 ? (ULONG)sizeof(SOCKET_SECURITY_QUERY_INFO_IPSEC2) : (ULONG)sizeof(SOCKET_SECURITY_QUERY_INFO);
    if (info == NULL || *len < size) {
        *len = size;
        return WSAEMSGSIZE;
    }
    copy = step->short_len != 0 && step->short_len < size ? step->short_len : size;
    memset(&answer, 0, sizeof(answer));
    answer.Flags = step->flags;
    if ((q->default_query || q->token_mask == 0) && variant(DBL_VAR_UNASKED_HANDLES)) {
        /* Assumed variant: bytes in the token fields that are not handles of the caller's (Q2/Q3). */
        answer.PeerApplicationAccessTokenHandle = variant_value;
        answer.PeerMachineAccessTokenHandle = variant_value;
    }
    if (!q->default_query) {
        answer.SecurityProtocol = ipsec2 ? SOCKET_SECURITY_PROTOCOL_IPSEC2 : (SOCKET_SECURITY_PROTOCOL)step->protocol;
        /* Handles only where the bytes copied carry them, so that none is made and lost. */
        if (q->token_mask != 0 && copy >= 16) {
            answer.PeerApplicationAccessTokenHandle = new_token();
        }
        if (q->token_mask != 0 && copy >= 24) {
            answer.PeerMachineAccessTokenHandle = new_token();
        }
        if (ipsec2) {
            answer.MmSaId = (q->field_mask & SOCKET_QUERY_IPSEC2_FIELD_MASK_MM_SA_ID) ? step->mm_sa_id : 0;
            answer.QmSaId = (q->field_mask & SOCKET_QUERY_IPSEC2_FIELD_MASK_QM_SA_ID) ? step->qm_sa_id : 0;
            answer.NegotiationWinerr = step->negotiation_winerr;
            answer.SaLookupContext = step->sa_lookup_context;
        }
    }
    memcpy(info, &answer, copy);
    *len = copy;
    return 0;
}

/* The NTSTATUS an overlapped completion stores for a WSA error, as Wine's WSAGetOverlappedResult maps it back. */
static LONG status_of(int wsa_error)
{
    switch (wsa_error) {
    case 0: return STATUS_OK;
    case WSAEMSGSIZE: return STATUS_BUFFER_OVERFLOW_;
    case WSAECONNRESET: return (LONG)0xC000020D;   /* STATUS_CONNECTION_RESET */
    case WSAEFAULT: return (LONG)0xC0000005;       /* STATUS_ACCESS_VIOLATION */
    case WSAENOTSOCK: return (LONG)0xC0000008;     /* STATUS_INVALID_HANDLE */
    case WSAEINVAL: return (LONG)0xC000000D;       /* STATUS_INVALID_PARAMETER */
    default: return 0; /* no status Wine maps back to it: such a step completes synchronously */
    }
}

/* Write the final status into the caller's OVERLAPPED, signal, and post a packet if the caller allows it. */
static void deliver(WSAOVERLAPPED *ov, HANDLE caller_event, int post_packet, LONG status, ULONG bytes)
{
    HANDLE p;
    ULONG_PTR key;

    ov->InternalHigh = bytes;
    MemoryBarrier();
    InterlockedExchange((LONG *)&ov->Internal, status);
    SetEvent(caller_event);
    EnterCriticalSection(&lock);
    p = port;
    key = port_key;
    LeaveCriticalSection(&lock);
    if (post_packet && p != NULL) {
        PostQueuedCompletionStatus(p, bytes, key, ov);
    }
}

static DWORD WINAPI worker(LPVOID arg)
{
    slot *s = (slot *)arg;
    HANDLE waits[2];
    DWORD count = 1, rc, timeout;
    int cancelled = 0, error;
    ULONG bytes, len;
    slot copy;

    waits[0] = s->release_event;
    if (s->recv_event != NULL) {
        waits[count++] = s->recv_event;
    }
    timeout = s->step.when == DBL_PEND_AUTO ? (DWORD)s->step.delay_ms : INFINITE;
    rc = WaitForMultipleObjects(count, waits, FALSE, timeout);
    EnterCriticalSection(&lock);
    s->finishing = 1;
    LeaveCriticalSection(&lock);
    if (s->recv_event != NULL) {
        if (rc != WAIT_OBJECT_0 + 1) {
            /* Release or time-out: end our own recv first (the caller's OVERLAPPED is its status block). */
            s->self_cancel = 1;
            CancelIoEx((HANDLE)s->sock, s->ov);
            WaitForSingleObject(s->recv_event, INFINITE);
        } else {
            /* The recv ended on its own: cancelled by the caller's CancelIoEx. */
            cancelled = (LONG)s->ov->Internal == STATUS_CANCELLED_;
        }
        CloseHandle(s->recv_event);
    }
    CloseHandle(s->release_event);
    copy = *s;
    EnterCriticalSection(&lock);
    memset(s, 0, sizeof(*s));
    LeaveCriticalSection(&lock);
    /* The double's own handles are closed before the caller can see the completion. */
    if (cancelled) {
        deliver(copy.ov, copy.caller_event, copy.post_packet, STATUS_CANCELLED_, 0);
        return 0;
    }
    /* Produced into a local length: which of the caller's length and InternalHigh learn it is a variant. */
    len = copy.is_query ? *copy.len : 0;
    error = produce(&copy.step, copy.is_query ? &copy.question : NULL, copy.info, &len);
    bytes = 0;
    if (copy.is_query && error == 0) {
        if (!variant(DBL_VAR_BYTES_OVERLAPPED_ONLY)) {
            *copy.len = len; /* Q7: on success the bytes copied */
        }
        bytes = variant(DBL_VAR_BYTES_LEN_ONLY) ? 0 : len;
    } else if (copy.is_query && error == WSAEMSGSIZE && variant(DBL_VAR_LATE_LENGTH)) {
        *copy.len = len; /* assumed variant: no page says a size is written after WSA_IO_PENDING */
        bytes = len;
    }
    deliver(copy.ov, copy.caller_event, copy.post_packet, status_of(error), bytes);
    return 0;
}

/* Q9: is the socket overlapped? Wine opens a socket without WSA_FLAG_OVERLAPPED for synchronous I/O. */
static int socket_is_overlapped(SOCKET sock)
{
    typedef LONG(WINAPI * query_fn)(HANDLE, void *, void *, ULONG, int);
    struct {
        void *status;
        ULONG_PTR information;
    } iosb;
    ULONG mode = 0;
    query_fn query = (query_fn)(void (*)(void))GetProcAddress(GetModuleHandleA("ntdll.dll"), "NtQueryInformationFile");

    if (query == NULL || query((HANDLE)sock, &iosb, &mode, sizeof(mode), 16 /* FileModeInformation */) != 0) {
        return 1;
    }
    return (mode & (0x10 | 0x20)) == 0; /* FILE_SYNCHRONOUS_IO_ALERT | FILE_SYNCHRONOUS_IO_NONALERT */
}

static int all_zero(const void *p, ULONG n)
{
    const unsigned char *b = (const unsigned char *)p;
    ULONG i;

    for (i = 0; i < n; i++) {
        if (b[i] != 0) {
            return 0;
        }
    }
    return 1;
}

/* Start a pending completion in a free slot; 0 if there is none (the caller then completes synchronously). */
static int start_pending(SOCKET sock, WSAOVERLAPPED *ov, const dbl_step *step, const ask *q, void *info, ULONG *len)
{
    slot *s = NULL;
    HANDLE thread, tagged;
    WSABUF buf;
    DWORD got = 0, flags = 0;
    int i;

    EnterCriticalSection(&lock);
    for (i = 0; i < MAX_SLOTS; i++) {
        if (!slots[i].used) {
            s = &slots[i];
            memset(s, 0, sizeof(*s));
            s->used = 1;
            break;
        }
    }
    LeaveCriticalSection(&lock);
    if (s == NULL) {
        return 0;
    }
    s->sock = sock;
    s->ov = ov;
    s->caller_event = (HANDLE)((UINT_PTR)ov->hEvent & ~(UINT_PTR)1);
    s->post_packet = ((UINT_PTR)ov->hEvent & 1) == 0;
    s->step = *step;
    s->is_query = q != NULL;
    if (q != NULL) {
        s->question = *q;
    }
    s->info = info;
    s->len = len;
    s->release_event = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (variant(DBL_VAR_INTERNAL_UNTOUCHED)) {
        s->recv_event = NULL; /* the caller's Internal and InternalHigh stay as they were until completion */
        thread = CreateThread(NULL, 0, worker, s, 0, NULL);
        if (thread != NULL) {
            CloseHandle(thread);
        }
        return 1;
    }
    s->recv_event = CreateEventW(NULL, TRUE, FALSE, NULL);
    ov->Internal = (ULONG_PTR)STATUS_PENDING_;
    ov->InternalHigh = 0;
    /* Our own recv, with the caller's OVERLAPPED as its status block, so that CancelIoEx on it is real. */
    tagged = ov->hEvent;
    ov->hEvent = (HANDLE)((UINT_PTR)s->recv_event | 1);
    buf.buf = &s->recv_byte;
    buf.len = 1;
    if (variant(DBL_VAR_UNCANCELLABLE) || WSARecv(sock, &buf, 1, &got, &flags, ov, NULL) == 0 ||
        WSAGetLastError() != WSA_IO_PENDING) {
        CloseHandle(s->recv_event);
        s->recv_event = NULL;
    }
    ov->hEvent = tagged;
    ov->Internal = (ULONG_PTR)STATUS_PENDING_;
    thread = CreateThread(NULL, 0, worker, s, 0, NULL);
    if (thread == NULL) {
        /* Cannot happen in the tests; leave the OVERLAPPED pending forever rather than lie. */
        return 1;
    }
    CloseHandle(thread);
    return 1;
}

/* A place in the call log, taken when the call starts so that calls are logged in the order they came. */
static int reserve_record(void)
{
    int index;

    EnterCriticalSection(&lock);
    index = call_count < DBL_MAX_CALLS ? call_count++ : -1;
    LeaveCriticalSection(&lock);
    return index;
}

static int is_loopback(const SOCKADDR_STORAGE *a)
{
    if (a->ss_family == AF_INET) {
        return ((const BYTE *)&((const SOCKADDR_IN *)a)->sin_addr)[0] == 127;
    }
    if (a->ss_family == AF_INET6) {
        const BYTE *b = ((const SOCKADDR_IN6 *)a)->sin6_addr.s6_addr;
        static const BYTE loopback6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
        static const BYTE mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        return memcmp(b, loopback6, 16) == 0 || (memcmp(b, mapped_prefix, 12) == 0 && b[12] == 127);
    }
    return 0;
}

/*
 * The assumed loopback variant is on, no step is queued, and the peer the query is about (the template's
 * PeerAddress when it names one, else the connected peer) is a loopback address.
 */
static int loopback_unscripted(SOCKET sock, const SOCKADDR_STORAGE *template_peer)
{
    SOCKADDR_STORAGE peer;
    int peer_len = (int)sizeof(peer);
    int applies;

    EnterCriticalSection(&lock);
    applies = loopback_in_the_clear && step_count == 0;
    LeaveCriticalSection(&lock);
    if (!applies) {
        return 0;
    }
    if (template_peer != NULL && (template_peer->ss_family == AF_INET || template_peer->ss_family == AF_INET6)) {
        return is_loopback(template_peer);
    }
    memset(&peer, 0, sizeof(peer));
    return getpeername(sock, (struct sockaddr *)&peer, &peer_len) == 0 && is_loopback(&peer);
}

/* Log the call with its result and return as Winsock does. */
static int finish(dbl_call *rec, int index, int error)
{
    rec->result = error;
    if (index >= 0) {
        EnterCriticalSection(&lock);
        calls[index] = *rec;
        LeaveCriticalSection(&lock);
    }
    if (error != 0) {
        WSASetLastError(error);
        return SOCKET_ERROR;
    }
    return 0;
}

/*
 * Take the next step and deliver its outcome: pending (overlapped socket and OVERLAPPED, Q9) or at once. q is
 * NULL for the set/delete calls. Returns 0, WSA_IO_PENDING or the error.
 */
static int respond(SOCKET sock, LPWSAOVERLAPPED ov, const ask *q, void *info, ULONG *len, dbl_call *rec)
{
    dbl_step step;
    int error;

    memset(&step, 0, sizeof(step));
    EnterCriticalSection(&lock);
    if (step_count > 0) {
        step = steps[step_head];
        step_head = (step_head + 1) % MAX_STEPS;
        step_count--;
        rec->scripted = 1;
    }
    LeaveCriticalSection(&lock);
    if (step.when == DBL_BLOCK) {
        /* Fault injection: slow inside the system, whatever the OVERLAPPED says; then as DBL_NOW. */
        InterlockedIncrement(&blocked);
        WaitForSingleObject(unblock, step.delay_ms > 0 ? (DWORD)step.delay_ms : INFINITE);
        InterlockedDecrement(&blocked);
        step.when = DBL_NOW;
    }
    /* Unscripted (step all zero): an immediate success (for the query: a connection in the clear). */
    if (step.when != DBL_NOW && ov != NULL && ov->hEvent != NULL && socket_is_overlapped(sock) &&
        (step.kind != DBL_ERROR || status_of(step.error) != 0) && start_pending(sock, ov, &step, q, info, len)) {
        return WSA_IO_PENDING;
    }
    error = produce(&step, q, info, len);
    if (error == 0 && ov != NULL && socket_is_overlapped(sock)) {
        /* Immediate success of an overlapped operation still completes the OVERLAPPED. */
        deliver(ov, (HANDLE)((UINT_PTR)ov->hEvent & ~(UINT_PTR)1), ((UINT_PTR)ov->hEvent & 1) == 0, STATUS_OK,
                q != NULL ? *len : 0);
    }
    return error;
}

static void record_peer(dbl_call *rec, const SOCKADDR_STORAGE *a)
{
    rec->peer_family = a->ss_family;
    if (a->ss_family == AF_INET) {
        const SOCKADDR_IN *sin = (const SOCKADDR_IN *)a;
        rec->peer_port = ntohs(sin->sin_port);
        memcpy(rec->peer_addr, &sin->sin_addr, 4);
    } else if (a->ss_family == AF_INET6) {
        const SOCKADDR_IN6 *sin6 = (const SOCKADDR_IN6 *)a;
        rec->peer_port = ntohs(sin6->sin6_port);
        memcpy(rec->peer_addr, &sin6->sin6_addr, 16);
        rec->peer_flowinfo = sin6->sin6_flowinfo;
        rec->peer_scope_id = sin6->sin6_scope_id;
    }
}

/* A sockaddr argument and its length. */
static void record_sockaddr(dbl_call *rec, const struct sockaddr *addr, ULONG len)
{
    SOCKADDR_STORAGE a;

    rec->input_null = addr == NULL;
    rec->input_len = len;
    if (addr != NULL && len <= sizeof(a)) {
        memset(&a, 0, sizeof(a));
        memcpy(&a, addr, len);
        record_peer(rec, &a);
    }
}

static void record_strings(dbl_call *rec, const WCHAR *strings, ULONG bytes)
{
    ULONG chars = bytes / sizeof(WCHAR);

    if (chars > 95) {
        chars = 95;
    }
    memcpy(rec->strings, strings, chars * sizeof(WCHAR));
}

static void begin_record(dbl_call *rec, int function, SOCKET sock, LPWSAOVERLAPPED ov,
                         LPWSAOVERLAPPED_COMPLETION_ROUTINE routine)
{
    memset(rec, 0, sizeof(*rec));
    rec->function = function;
    rec->sock = sock;
    rec->overlapped_null = ov == NULL;
    rec->event_low_bit = ov != NULL && ((UINT_PTR)ov->hEvent & 1) != 0;
    rec->routine_null = routine == NULL;
}

int WSAAPI WSAQuerySocketSecurity(SOCKET Socket, const SOCKET_SECURITY_QUERY_TEMPLATE *SecurityQueryTemplate,
                                                        ULONG SecurityQueryTemplateLen, SOCKET_SECURITY_QUERY_INFO *SecurityQueryInfo,
                                                        ULONG *SecurityQueryInfoLen, LPWSAOVERLAPPED Overlapped,
                                                        LPWSAOVERLAPPED_COMPLETION_ROUTINE CompletionRoutine)
{
    const SOCKET_SECURITY_QUERY_TEMPLATE_IPSEC2 *t2 = (const SOCKET_SECURITY_QUERY_TEMPLATE_IPSEC2 *)SecurityQueryTemplate;
    WSAPROTOCOL_INFOW pi;
    int pi_len = (int)sizeof(pi);
    dbl_call rec;
    ask q;
    int error = 0, is_tcp, have_template;
    int index;

    begin_record(&rec, DBL_FN_QUERY, Socket, Overlapped, CompletionRoutine);
    rec.template_null = SecurityQueryTemplate == NULL;
    rec.template_len = SecurityQueryTemplateLen;
    have_template = SecurityQueryTemplate != NULL && SecurityQueryTemplateLen != 0;
    if (SecurityQueryTemplate != NULL && SecurityQueryTemplateLen >= sizeof(SOCKET_SECURITY_QUERY_TEMPLATE)) {
        rec.protocol = (ULONG)SecurityQueryTemplate->SecurityProtocol;
        rec.token_mask = SecurityQueryTemplate->PeerTokenAccessMask;
        record_peer(&rec, &SecurityQueryTemplate->PeerAddress);
        if (SecurityQueryTemplate->SecurityProtocol == SOCKET_SECURITY_PROTOCOL_IPSEC2 &&
            SecurityQueryTemplateLen >= sizeof(SOCKET_SECURITY_QUERY_TEMPLATE_IPSEC2)) {
            rec.ipsec2_flags = t2->Flags;
            rec.field_mask = t2->FieldMask;
        }
    }
    rec.info_null = SecurityQueryInfo == NULL;
    rec.len_null = SecurityQueryInfoLen == NULL;
    last_query_buffer = SecurityQueryInfo;
    rec.len_in = SecurityQueryInfoLen != NULL ? *SecurityQueryInfoLen : 0;

    index = reserve_record();
    memset(&q, 0, sizeof(q));
    memset(&pi, 0, sizeof(pi));
    if (getsockopt(Socket, SOL_SOCKET, SO_PROTOCOL_INFOW, (char *)&pi, &pi_len) != 0) {
        error = WSAENOTSOCK; /* E6 */
    } else if ((pi.iAddressFamily != AF_INET && pi.iAddressFamily != AF_INET6) ||
               (pi.iSocketType != SOCK_STREAM && pi.iSocketType != SOCK_DGRAM)) {
        error = WSAEINVAL; /* E4, Q8 */
    } else if (SecurityQueryInfoLen == NULL) {
        error = WSAEFAULT; /* E3 */
    } else {
        is_tcp = pi.iProtocol == IPPROTO_TCP;
        if (have_template && SecurityQueryTemplateLen < sizeof(SOCKET_SECURITY_QUERY_TEMPLATE)) {
            error = WSAEMSGSIZE; /* E5, Q5 */
        } else if (have_template && SecurityQueryTemplate->SecurityProtocol == SOCKET_SECURITY_PROTOCOL_IPSEC2 &&
                   SecurityQueryTemplateLen < sizeof(SOCKET_SECURITY_QUERY_TEMPLATE_IPSEC2)) {
            error = WSAEMSGSIZE; /* E5, for the IPSEC2 template (inferred) */
        } else if (!is_tcp && !have_template) {
            error = WSAEMSGSIZE; /* E5, Q4 */
        } else if (!is_tcp && SecurityQueryTemplate->PeerAddress.ss_family != AF_INET &&
                   SecurityQueryTemplate->PeerAddress.ss_family != AF_INET6) {
            error = WSAEAFNOSUPPORT; /* E1, Q4 (inferred) */
        }
    }

    if (error == 0) {
        q.default_query = !have_template || all_zero(SecurityQueryTemplate, SecurityQueryTemplateLen);
        if (have_template) {
            q.ipsec2 = SecurityQueryTemplate->SecurityProtocol == SOCKET_SECURITY_PROTOCOL_IPSEC2;
            q.token_mask = SecurityQueryTemplate->PeerTokenAccessMask;
            q.field_mask = q.ipsec2 ? t2->FieldMask : 0;
        }
        if (loopback_unscripted(Socket, have_template ? &SecurityQueryTemplate->PeerAddress : NULL)) {
            q.token_mask = 0; /* the assumed loopback variant (dbl_set_loopback_clear) */
        }
        error = respond(Socket, Overlapped, &q, SecurityQueryInfo, SecurityQueryInfoLen, &rec);
    }
    return finish(&rec, index, error);
}


/* ---- the rest of the family: the checks their pages state, then the script ---- */

/*
 * What every page of the family states about the socket (S5/T6/D5/I4: WSAENOTSOCK; S2/T3/D3: WSAEINVAL for
 * a socket not AF_INET/AF_INET6 with SOCK_STREAM/SOCK_DGRAM; I5: the impersonation page says only "an error",
 * WSAEINVAL as its siblings say). 0 or the error; *pi describes the socket.
 */
static int check_socket(SOCKET sock, WSAPROTOCOL_INFOW *pi)
{
    int pi_len = (int)sizeof(*pi);

    memset(pi, 0, sizeof(*pi));
    if (getsockopt(sock, SOL_SOCKET, SO_PROTOCOL_INFOW, (char *)pi, &pi_len) != 0) {
        return WSAENOTSOCK;
    }
    if ((pi->iAddressFamily != AF_INET && pi->iAddressFamily != AF_INET6) ||
        (pi->iSocketType != SOCK_STREAM && pi->iSocketType != SOCK_DGRAM)) {
        return WSAEINVAL;
    }
    return 0;
}

/* S3/T4: "not permitted with a connected socket, whether connection oriented or connectionless". */
static int is_connected(SOCKET sock)
{
    SOCKADDR_STORAGE a;
    int len = (int)sizeof(a);

    return getpeername(sock, (struct sockaddr *)&a, &len) == 0;
}

/*
 * A peer address argument (D2/D4/D1, I2/I3/I1): NULL -> WSAEFAULT; shorter than its family's sockaddr ->
 * WSAEMSGSIZE; a family other than AF_INET/AF_INET6 -> WSAEAFNOSUPPORT.
 */
static int check_peer_addr(const struct sockaddr *addr, ULONG len)
{
    if (addr == NULL) {
        return WSAEFAULT;
    }
    if (len < sizeof(ADDRESS_FAMILY)) {
        return WSAEMSGSIZE;
    }
    if (addr->sa_family == AF_INET) {
        return len < sizeof(SOCKADDR_IN) ? WSAEMSGSIZE : 0;
    }
    if (addr->sa_family == AF_INET6) {
        return len < sizeof(SOCKADDR_IN6) ? WSAEMSGSIZE : 0;
    }
    return WSAEAFNOSUPPORT;
}

/* T3: "the IP address and port in the PeerAddress member ... are zero". */
static int peer_is_zero(const SOCKADDR_STORAGE *a)
{
    if (a->ss_family == AF_INET) {
        const SOCKADDR_IN *sin = (const SOCKADDR_IN *)a;
        return sin->sin_port == 0 && sin->sin_addr.s_addr == 0;
    }
    if (a->ss_family == AF_INET6) {
        const SOCKADDR_IN6 *sin6 = (const SOCKADDR_IN6 *)a;
        return sin6->sin6_port == 0 && all_zero(&sin6->sin6_addr, sizeof(sin6->sin6_addr));
    }
    return all_zero(a, sizeof(*a));
}

int WSAAPI WSASetSocketSecurity(SOCKET Socket, const SOCKET_SECURITY_SETTINGS *SecuritySettings,
                                ULONG SecuritySettingsLen, LPWSAOVERLAPPED Overlapped,
                                LPWSAOVERLAPPED_COMPLETION_ROUTINE CompletionRoutine)
{
    const SOCKET_SECURITY_SETTINGS_IPSEC *ipsec = (const SOCKET_SECURITY_SETTINGS_IPSEC *)SecuritySettings;
    const ULONG header = (ULONG)offsetof(SOCKET_SECURITY_SETTINGS_IPSEC, AllStrings);
    WSAPROTOCOL_INFOW pi;
    dbl_call rec;
    int index = reserve_record();
    int error;

    begin_record(&rec, DBL_FN_SET_SECURITY, Socket, Overlapped, CompletionRoutine);
    rec.input_null = SecuritySettings == NULL;
    rec.input_len = SecuritySettingsLen;
    if (SecuritySettings != NULL && SecuritySettingsLen >= sizeof(SOCKET_SECURITY_SETTINGS)) {
        rec.protocol = (ULONG)SecuritySettings->SecurityProtocol;
        rec.security_flags = SecuritySettings->SecurityFlags;
    }
    if (SecuritySettings != NULL && SecuritySettingsLen >= sizeof(SOCKET_SECURITY_SETTINGS) &&
        SecuritySettings->SecurityProtocol == SOCKET_SECURITY_PROTOCOL_IPSEC && SecuritySettingsLen >= header) {
        rec.ipsec_flags = ipsec->IpsecFlags;
        rec.string_lens[0] = ipsec->UserNameStringLen;
        rec.string_lens[1] = ipsec->DomainNameStringLen;
        rec.string_lens[2] = ipsec->PasswordStringLen;
        record_strings(&rec, ipsec->AllStrings, SecuritySettingsLen - header);
    }
    error = check_socket(Socket, &pi); /* S5, S2 */
    if (error == 0 && is_connected(Socket)) {
        error = WSAEISCONN; /* S3 */
    } else if (error == 0 && SecuritySettings != NULL) {
        if (SecuritySettingsLen < sizeof(SOCKET_SECURITY_SETTINGS)) {
            error = WSAEMSGSIZE; /* S4 */
        } else if ((ULONG)SecuritySettings->SecurityProtocol >= (ULONG)SOCKET_SECURITY_PROTOCOL_INVALID) {
            /* S2: "an incorrect value" (the SOCKET_SECURITY_PROTOCOL page: INVALID and above are not legal) */
            error = WSAEINVAL;
        } else if (SecuritySettings->SecurityProtocol == SOCKET_SECURITY_PROTOCOL_IPSEC &&
                   SecuritySettingsLen >= header &&
                   (ULONGLONG)ipsec->UserNameStringLen + ipsec->DomainNameStringLen + ipsec->PasswordStringLen >
                       SecuritySettingsLen - header) {
            /* S4: a SOCKET_SECURITY_SETTINGS_IPSEC whose strings do not fit the length given. (A plain
               SOCKET_SECURITY_SETTINGS saying IPSEC is not refused: no page says it must be the IPSEC one.) */
            error = WSAEMSGSIZE;
        } else if (SecuritySettings->SecurityProtocol == SOCKET_SECURITY_PROTOCOL_IPSEC &&
                   SecuritySettingsLen >= header && variant(DBL_VAR_WHOLE_STRUCT) &&
                   (ULONGLONG)ipsec->UserNameStringLen + ipsec->DomainNameStringLen + ipsec->PasswordStringLen +
                           sizeof(SOCKET_SECURITY_SETTINGS_IPSEC) >
                       SecuritySettingsLen) {
            error = WSAEMSGSIZE; /* S4, assumed variant: measured as sizeof + strings */
        }
    }
    return finish(&rec, index, error != 0 ? error : respond(Socket, Overlapped, NULL, NULL, NULL, &rec));
}

int WSAAPI WSASetSocketPeerTargetName(SOCKET Socket, const SOCKET_PEER_TARGET_NAME *PeerTargetName,
                                      ULONG PeerTargetNameLen, LPWSAOVERLAPPED Overlapped,
                                      LPWSAOVERLAPPED_COMPLETION_ROUTINE CompletionRoutine)
{
    const ULONG header = (ULONG)offsetof(SOCKET_PEER_TARGET_NAME, AllStrings);
    WSAPROTOCOL_INFOW pi;
    dbl_call rec;
    int index = reserve_record();
    int error;

    begin_record(&rec, DBL_FN_SET_TARGET_NAME, Socket, Overlapped, CompletionRoutine);
    rec.input_null = PeerTargetName == NULL;
    rec.input_len = PeerTargetNameLen;
    if (PeerTargetName != NULL && PeerTargetNameLen >= header) {
        rec.protocol = (ULONG)PeerTargetName->SecurityProtocol;
        record_peer(&rec, &PeerTargetName->PeerAddress);
        rec.string_lens[0] = PeerTargetName->PeerTargetNameStringLen;
        record_strings(&rec, PeerTargetName->AllStrings, PeerTargetNameLen - header);
    }
    error = check_socket(Socket, &pi); /* T6, T3 */
    if (error == 0 && PeerTargetName == NULL) {
        error = WSAEFAULT; /* T2 */
    } else if (error == 0 && (PeerTargetNameLen < header ||
                              PeerTargetName->PeerTargetNameStringLen > PeerTargetNameLen - header)) {
        error = WSAEMSGSIZE; /* T5: shorter than the structure, or than the name it says it holds */
    } else if (error == 0 && variant(DBL_VAR_WHOLE_STRUCT) &&
               (ULONGLONG)PeerTargetName->PeerTargetNameStringLen + sizeof(SOCKET_PEER_TARGET_NAME) >
                   PeerTargetNameLen) {
        error = WSAEMSGSIZE; /* T5, assumed variant: measured as sizeof + the name */
    } else if (error == 0 && variant(DBL_VAR_TARGET_NAME_CHARS) &&
               (ULONGLONG)PeerTargetName->PeerTargetNameStringLen * sizeof(WCHAR) > PeerTargetNameLen - header) {
        error = WSAEMSGSIZE; /* T5, assumed variant: the length read as characters (the sample's wcslen) */
    } else if (error == 0 && is_connected(Socket)) {
        error = WSAEISCONN; /* T4 */
    } else if (error == 0 && pi.iSocketType == SOCK_DGRAM) {
        if (peer_is_zero(&PeerTargetName->PeerAddress)) {
            error = WSAEINVAL; /* T3: connectionless, zero IP address and port */
        } else if (PeerTargetName->PeerAddress.ss_family != AF_INET &&
                   PeerTargetName->PeerAddress.ss_family != AF_INET6) {
            error = WSAEAFNOSUPPORT; /* T1 (inferred: the page does not say for which address) */
        }
    }
    return finish(&rec, index, error != 0 ? error : respond(Socket, Overlapped, NULL, NULL, NULL, &rec));
}

int WSAAPI WSADeleteSocketPeerTargetName(SOCKET Socket, const struct sockaddr *PeerAddr, ULONG PeerAddrLen,
                                         LPWSAOVERLAPPED Overlapped, LPWSAOVERLAPPED_COMPLETION_ROUTINE CompletionRoutine)
{
    WSAPROTOCOL_INFOW pi;
    dbl_call rec;
    int index = reserve_record();
    int error;

    begin_record(&rec, DBL_FN_DELETE_TARGET_NAME, Socket, Overlapped, CompletionRoutine);
    record_sockaddr(&rec, PeerAddr, PeerAddrLen);
    error = check_socket(Socket, &pi); /* D5, D3 */
    if (error == 0) {
        error = check_peer_addr(PeerAddr, PeerAddrLen); /* D2, D4, D1 */
    }
    return finish(&rec, index, error != 0 ? error : respond(Socket, Overlapped, NULL, NULL, NULL, &rec));
}

int WSAAPI WSAImpersonateSocketPeer(SOCKET Socket, const struct sockaddr *PeerAddress, ULONG peerAddressLen)
{
    WSAPROTOCOL_INFOW pi;
    dbl_call rec;
    int index = reserve_record();
    int error;

    begin_record(&rec, DBL_FN_IMPERSONATE, Socket, NULL, NULL);
    record_sockaddr(&rec, PeerAddress, peerAddressLen);
    error = check_socket(Socket, &pi); /* I4, I5 */
    if (error == 0 && pi.iSocketType != SOCK_STREAM) {
        /* I6: for connection-oriented sockets the address is ignored; for the others it is checked. */
        error = check_peer_addr(PeerAddress, peerAddressLen); /* I1, I2, I3 */
    }
    return finish(&rec, index, error != 0 ? error : respond(Socket, NULL, NULL, NULL, NULL, &rec));
}

/* R1 (WSASYSCALLFAILURE) is the only documented error and nothing here decides it: scripted. */
int WSAAPI WSARevertImpersonation(void)
{
    dbl_call rec;
    int index = reserve_record();

    begin_record(&rec, DBL_FN_REVERT, INVALID_SOCKET, NULL, NULL);
    return finish(&rec, index, respond(INVALID_SOCKET, NULL, NULL, NULL, NULL, &rec));
}
