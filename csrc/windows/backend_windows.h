/*
 * The Windows backend's internal header: what the units of csrc/windows/ share, and which unit owns what.
 *
 * Windows backend: WSAQuerySocketSecurity (fwpuclnt.dll), called directly.
 *
 * Every Windows #ifdef of the project lives in csrc/windows/. It builds with mingw-w64 (cross, tested under Wine
 * against a double of fwpuclnt.dll: tests/windows/) and with MSVC /W4 (the wheels), so: portable C (declarations
 * first, no VLAs, no GCC-only constructs, static assertions by negative-size arrays).
 *
 * Life of a query (struct secsock_pending, heap): the template, the output buffer, the in/out length and the
 * WSAOVERLAPPED all live in it, because the system may write to them until the operation is done. The event in
 * the OVERLAPPED carries a set low-order bit so that a socket bound to an I/O completion port (asyncio's
 * proactor) gets no completion packet for our query; we wait on the untagged event ourselves. Whenever a
 * completion is observed (settle), the outcome is recorded and, on success, decoded at once: from then on the
 * pending owns the token handles until secsock_pending_result hands them over, or secsock_pending_free closes
 * them. A WSAEMSGSIZE outcome re-issues the call with the size the system asked for, within bounds: the length
 * written back by a call that failed at once (Q7), or a size query (Q6) after one that failed later. That size
 * query is synchronous, so only threads that may block make it (wait, result, done); poll, cancel and free never
 * do (SETTLE_*). Internal is set to STATUS_PENDING before each overlapped call, so an OVERLAPPED the provider
 * leaves untouched reads as in flight.
 *
 * Units:
 *   query.c       init/fini, the socket's kind, the template, secsock_query(_begin), the size negotiation
 *   overlapped.c  struct secsock_pending's lifecycle: issue, settle, wait, result, cancel, free; error wording
 *   family.c      set_security, set/delete peer target name (overlapped, via overlapped.c), impersonation
 *   tokens.c      token user/groups/membership, token close
 *   secsock_decode.c  the answer's decoder (no windows.h, so it is fuzzed natively on Linux)
 *   stats.c       secsock_backend_stats_read: zeros (no state is kept between queries)
 *   sys_calls.c   the table of the system calls a test may replace (sys_calls.h); test_hooks.c, never in the
 *                 extension, replaces it
 * The pending owns its buffers, event and token handles; overlapped.c frees them (pending_destroy).
 */
#ifndef SECSOCK_WINDOWS_BACKEND_WINDOWS_H
#define SECSOCK_WINDOWS_BACKEND_WINDOWS_H

#ifndef _WIN32_WINNT
#define _WIN32_WINNT 0x0601 /* Windows 7: WSAQuerySocketSecurity and the IPSEC2 structures */
#endif
#ifndef NTDDI_VERSION
#define NTDDI_VERSION 0x06010000 /* NTDDI_WIN7 */
#endif
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif

/* mstcpip.h before ws2tcpip.h, as in Microsoft's sample: the SDK's ws2tcpip.h declares WSAQuerySocketSecurity
   and its siblings only once mstcpip.h has defined _SECURE_SOCKET_TYPES_DEFINED_ (issue 11, defect 2;
   tools/sdk_include_order/ makes mingw-w64 enforce the same). */
#include <winsock2.h>
#include <mstcpip.h>
#include <ws2tcpip.h>
#include <windows.h>
#include <sddl.h>

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "secsock_backend.h"
#include "secsock_decode.h"
#include "sys_calls.h"

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

/* PENDING_NEEDS_REISSUE: a WSAEMSGSIZE completed and the system holds nothing; the size query and the call
   again wait for a thread that may block (wait, result, done), never an event loop's poll. */
enum { PENDING_IN_FLIGHT, PENDING_DONE, PENDING_NEEDS_REISSUE };

/* How settle() takes a completed WSAEMSGSIZE: re-issue it, park it (PENDING_NEEDS_REISSUE), or end the query. */
enum { SETTLE_REISSUE, SETTLE_PARK, SETTLE_END };

/* The NTSTATUS an OVERLAPPED's Internal holds while the request is in flight (HasOverlappedIoCompleted). */
#define SECSOCK_STATUS_PENDING 0x00000103L

/* The overlapped calls a pending can carry. */
enum { OP_QUERY, OP_SET_SECURITY, OP_SET_TARGET_NAME, OP_DELETE_TARGET_NAME };
extern const char *const op_names[]; /* by OP_*: the call's name (overlapped.c) */

struct secsock_pending {
    WSAOVERLAPPED ov;  /* the system's until the operation completes */
    int op;            /* OP_* */
    HANDLE event;      /* manual-reset, untagged; ov.hEvent is this with the low bit set */
    SOCKET sock;
    SRWLOCK lock;      /* serializes settle/re-issue between threads (wait may run in several at once) */
    int state;         /* PENDING_IN_FLIGHT / PENDING_DONE / PENDING_NEEDS_REISSUE */
    int issues;        /* calls made so far (bounded by SECSOCK_MAX_ISSUES) */
    int taken;         /* the outcome was handed to secsock_pending_result */
    int sync;          /* no OVERLAPPED and no event: every call completes before it returns (secsock_query) */
    int winsock_ref;   /* holds a WSAStartup of its own, released by pending_destroy */
    int abandoned;     /* a call without an OVERLAPPED said WSA_IO_PENDING: never freed (abandon) */

    union {
        SOCKET_SECURITY_QUERY_TEMPLATE plain;
        SOCKET_SECURITY_QUERY_TEMPLATE_IPSEC2 ipsec2;
    } tmpl;
    const void *tmpl_ptr; /* NULL (TCP default query) or &tmpl */
    ULONG tmpl_len;
    int tokens_asked;     /* a nonzero PeerTokenAccessMask: only then are the token fields handles (Q2/Q3) */

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

/* ---- query.c ------------------------------------------------------------------------------------------- */
SOCKET to_socket(secsock_fd fd);
HANDLE to_handle(uint64_t h);
int check_fits(uint64_t value, const char *what, secsock_error *err);
ULONG peer_to_sockaddr(const secsock_peer *peer, SOCKADDR_STORAGE *dst);
void finish_success(secsock_pending *p, ULONG n);
void renegotiate(secsock_pending *p, ULONG needed, int after_size_query);
void size_query(secsock_pending *p);

/* ---- overlapped.c -------------------------------------------------------------------------------------- */
int error_os(secsock_error *err, long code, const char *call, const char *what);
const char *describe(long code);
void mark_done(secsock_pending *p);
void finish_error(secsock_pending *p, long code, const char *call);
void issue(secsock_pending *p);
void abandon(secsock_pending *p, const char *call);
void pending_destroy(secsock_pending *p);
secsock_pending *pending_new(int op, secsock_fd sock, secsock_error *err);
secsock_pending *pending_new_for(int op, secsock_fd sock, int sync, secsock_error *err);
secsock_pending *pending_start(secsock_pending *p);

/* ---- sys_calls.c ---------------------------------------------------------------------------------------- */
extern const struct sys_call_table sys_calls_real;
#ifdef SECSOCK_TEST_HOOKS
/* &sys_calls_real, but while a test (test_hooks.c) injects faults. Only the builds of tests/windows/run.sh and
   benchmarks/windows/run.sh define SECSOCK_TEST_HOOKS: the extension has no writable pointer to redirect. */
extern const struct sys_call_table *sys_calls;
#else
#define sys_calls (&sys_calls_real)
#endif

#endif /* SECSOCK_WINDOWS_BACKEND_WINDOWS_H */
