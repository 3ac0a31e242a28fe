/*
 * Control API of the fwpuclnt.dll test double (fwpuclnt_double.c), shared with the test program, which reaches
 * it with GetProcAddress on the loaded fwpuclnt.dll (the code under test links the real import library).
 *
 * The double answers WSAQuerySocketSecurity as /work/shared/reference (CONTRACT.md) says, from a queue of
 * scripted steps: one step per call that gets past the documented argument checks. All functions are cdecl so
 * their exported names carry no decoration on x86.
 */
#ifndef FWPUCLNT_DOUBLE_H
#define FWPUCLNT_DOUBLE_H

#include <winsock2.h>
#include <windows.h>

/* What a scripted step makes the call do. */
enum {
    DBL_ANSWER = 0, /* answer as the system would: size negotiation (Q6/Q7), Flags-only default (Q2), tokens (Q3) */
    DBL_MSGSIZE,    /* fail with WSAEMSGSIZE writing back `needed`, whatever the buffer (absurd or tiny sizes) */
    DBL_ERROR       /* fail with the WSA error `error` (E1..E6 on a real socket) */
};

/* When the outcome is delivered. */
enum {
    DBL_NOW = 0,    /* synchronously */
    DBL_PEND,       /* WSA_IO_PENDING (overlapped socket + OVERLAPPED); completed by dbl_release() or a cancel */
    DBL_PEND_AUTO,  /* WSA_IO_PENDING, completed by a worker thread after delay_ms */
    DBL_BLOCK       /* fault injection: the call blocks inside the system until dbl_release() (or delay_ms, when
                       nonzero), then answers as DBL_NOW: a slow system call, to show who waits for it */
};

typedef struct {
    int kind;        /* DBL_ANSWER / DBL_MSGSIZE / DBL_ERROR */
    int when;        /* DBL_NOW / DBL_PEND / DBL_PEND_AUTO */
    int delay_ms;    /* DBL_PEND_AUTO */
    int error;       /* DBL_ERROR: the WSA code */
    ULONG needed;    /* DBL_MSGSIZE: the size written back */
    int ipsec2;      /* DBL_ANSWER: answer with the IPSEC2 structure when the template asks for it (else plain, R5) */
    ULONG short_len; /* DBL_ANSWER: when nonzero, copy and report only this many bytes */
    ULONG protocol;  /* DBL_ANSWER: SecurityProtocol for a non-default query */
    ULONG flags;     /* DBL_ANSWER: Flags */
    UINT64 mm_sa_id, qm_sa_id;
    UINT32 negotiation_winerr;
    GUID sa_lookup_context;
} dbl_step;

/* Which export was called. The other functions of the family follow their SDK pages (statements S/T/D/I/R in
   test_backend.c): the double records their arguments, returns the errors those arguments decide (taking no
   step), and otherwise answers with the next step's outcome (DBL_ERROR: that error; otherwise success). */
enum {
    DBL_FN_QUERY = 0,
    DBL_FN_SET_SECURITY,
    DBL_FN_SET_TARGET_NAME,
    DBL_FN_DELETE_TARGET_NAME,
    DBL_FN_IMPERSONATE,
    DBL_FN_REVERT
};

/* What one call was given. */
typedef struct {
    int function;       /* DBL_FN_* */
    SOCKET sock;
    int template_null;
    ULONG template_len;
    ULONG protocol;     /* template's SecurityProtocol (0 when no template) */
    ULONG token_mask;   /* PeerTokenAccessMask */
    ULONG ipsec2_flags; /* IPSEC2 template: Flags */
    ULONG field_mask;   /* IPSEC2 template: FieldMask */
    int peer_family;    /* PeerAddress.ss_family */
    USHORT peer_port;   /* host order */
    BYTE peer_addr[16];
    ULONG peer_flowinfo; /* IPv6, as stored (network order) */
    ULONG peer_scope_id;
    int info_null;
    int len_null;
    ULONG len_in;        /* *SecurityQueryInfoLen on entry */
    int overlapped_null;
    int event_low_bit;   /* the OVERLAPPED's hEvent had its low-order bit set */
    int routine_null;
    /* Set/delete/impersonate calls. */
    int input_null;      /* settings or target name pointer was NULL */
    ULONG input_len;     /* SecuritySettingsLen, PeerTargetNameLen or PeerAddrLen */
    ULONG security_flags, ipsec_flags;
    ULONG string_lens[3]; /* user, domain, password (settings) or the name (target name), in bytes */
    WCHAR strings[96];   /* AllStrings as passed (first 95 characters), for the test to compare */
    int result;          /* 0, or the WSA error the call returned (WSA_IO_PENDING when it pended) */
    int scripted;        /* a step was consumed (0: the argument checks ended the call first, or unscripted) */
} dbl_call;

#define DBL_MAX_CALLS 64

/*
 * Variants (issue 11): behaviours no page states, each a plausible answer of the real system, chosen for the
 * whole process until dbl_reset() (which restores the default: none). tests/windows/DOUBLE.md lists them; the
 * code under test must be right with every one. dbl_variants(flags, value) replaces the set in force.
 */
enum {
    /* Q2/Q3 say the token handles are "not returned" when not asked for, not that their bytes stay zero: fill
       both token fields with `value` for a default query or a zero PeerTokenAccessMask. */
    DBL_VAR_UNASKED_HANDLES = 0x1,
    /* A WSAEMSGSIZE completed later writes the size needed into *SecurityQueryInfoLen and InternalHigh at
       completion (no page says so; by default neither is written: Q7 speaks of the call's return). */
    DBL_VAR_LATE_LENGTH = 0x2,
    /* A success completed later reports the bytes copied only through *SecurityQueryInfoLen (InternalHigh 0)... */
    DBL_VAR_BYTES_LEN_ONLY = 0x4,
    /* ...or only through InternalHigh (the length left as the caller gave it). By default: both. */
    DBL_VAR_BYTES_OVERLAPPED_ONLY = 0x8,
    /* Fault injection: a pending call that CancelIoEx on the socket cannot find (ERROR_NOT_FOUND) while the
       OVERLAPPED stays pending; it completes only by dbl_release() or its delay. */
    DBL_VAR_UNCANCELLABLE = 0x10,
    /* WSASetSocketSecurity (IPSEC settings) and WSASetSocketPeerTargetName refuse with WSAEMSGSIZE a length
       below sizeof(the structure) + its strings, as a system measuring like Microsoft's sample would (the
       pages say only "the size of the parameter"; by default only the header before AllStrings is needed). */
    DBL_VAR_WHOLE_STRUCT = 0x20,
    /* A pending call leaves the caller's Internal and InternalHigh as they were (the WSAOVERLAPPED page: "non-IFS
       providers are free to use this parameter as necessary"); by default they hold STATUS_PENDING and 0. The
       double then issues no recv of its own either, so CancelIoEx finds nothing (as DBL_VAR_UNCANCELLABLE). */
    DBL_VAR_INTERNAL_UNTOUCHED = 0x40,
    /* WSASetSocketPeerTargetName reads PeerTargetNameStringLen as characters, as Microsoft's sample sets it
       (wcslen), not bytes as the SOCKET_PEER_TARGET_NAME page says: the name then needs twice the bytes. */
    DBL_VAR_TARGET_NAME_CHARS = 0x80
};
/* DBL_VAR_BYTES_LEN_ONLY | DBL_VAR_BYTES_OVERLAPPED_ONLY: a later success reports its length through neither. */

typedef void (*dbl_reset_fn)(void);
typedef void (*dbl_script_fn)(const dbl_step *step);
typedef int (*dbl_calls_fn)(dbl_call *out, int max);
typedef int (*dbl_release_fn)(void);
typedef void (*dbl_set_port_fn)(HANDLE port, ULONG_PTR key);
typedef int (*dbl_in_flight_fn)(void);
typedef int (*dbl_tokens_fn)(UINT64 *out, int max);
/* An ASSUMED VARIANT of real Windows (no page states it): on (1), an unscripted query about a loopback peer
   answers in the clear with no tokens, as tests/windows_only expects of a real machine. Off after load. */
typedef void (*dbl_set_loopback_clear_fn)(int on);
typedef void (*dbl_variants_fn)(unsigned int flags, UINT64 value);
/* How many calls are blocked inside the double now (DBL_BLOCK). */
typedef int (*dbl_blocked_fn)(void);
/* The SecurityQueryInfo pointer the last WSAQuerySocketSecurity call was given (bookkeeping, changes nothing). */
typedef void *(*dbl_last_query_buffer_fn)(void);

#endif /* FWPUCLNT_DOUBLE_H */
