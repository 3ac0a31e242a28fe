/* The overlapped lifecycle of a pending call (struct secsock_pending): issue, settle, wait, cancel, free. */
#include "backend_windows.h"

const char *const op_names[] = {"WSAQuerySocketSecurity", "WSASetSocketSecurity",
                                "WSASetSocketPeerTargetName", "WSADeleteSocketPeerTargetName"};

int error_os(secsock_error *err, long code, const char *call, const char *what)
{
    return secsock_error_set(err, SECSOCK_ERR_OS, 0, code, call, "%s failed: %s (error %ld)", call, what, code);
}

const char *describe(long code)
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
void mark_done(secsock_pending *p)
{
    p->state = PENDING_DONE;
    if (p->event != NULL) {
        SetEvent(p->event);
    }
}

/* Record a failed outcome; the operation is over. */
void finish_error(secsock_pending *p, long code, const char *call)
{
    error_os(&p->error, code, call, describe(code));
    mark_done(p);
}

/* A set/delete call succeeded: nothing to decode. */
static void finish_call(secsock_pending *p)
{
    memset(&p->held, 0, sizeof(p->held));
    mark_done(p);
}

/* Make the pending's call (the query with its current buffer); records the outcome unless it pends. */
void issue(secsock_pending *p)
{
    int rc;

    p->issues++;
    memset(&p->ov, 0, sizeof(p->ov));
    /* "Untouched" must read as in flight, not as STATUS_SUCCESS (0): the WSAOVERLAPPED page lets a non-IFS
       provider leave Internal alone, and settle() falls back on it (HasOverlappedIoCompleted). kernel32's
       DeviceIoControl does the same (review of issue 11, finding 5). */
    p->ov.Internal = (ULONG_PTR)SECSOCK_STATUS_PENDING;
    p->state = PENDING_IN_FLIGHT;
    if (!p->sync) {
        /* The low-order bit keeps the completion off any I/O completion port the socket is bound to. */
        p->ov.hEvent = (HANDLE)((UINT_PTR)p->event | 1);
        ResetEvent(p->event);
    }
    switch (p->op) {
    case OP_QUERY:
        memset(p->buf, 0, p->buf_size);
        p->len = p->buf_size;
        /* sync: no OVERLAPPED, so the call completes before it returns, as for a non-overlapped socket (the
           WSAIoctl page, whose SIO_QUERY_SECURITY this call wraps: both NULL, the socket is treated as
           non-overlapped; Q9). */
        rc = WSAQuerySocketSecurity(p->sock, (const SOCKET_SECURITY_QUERY_TEMPLATE *)p->tmpl_ptr, p->tmpl_len,
                                    (SOCKET_SECURITY_QUERY_INFO *)p->buf, &p->len, p->sync ? NULL : &p->ov, NULL);
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
        if (!p->sync) {
            return;
        }
        /* No OVERLAPPED, yet pending: the WSAIoctl page says it cannot happen. If it did, the system could still
           write the buffer and the length: never free them (review of issue 11, finding 13). */
        abandon(p, op_names[p->op]);
        return;
    }
    if (rc == WSAEMSGSIZE && p->op == OP_QUERY) {
        renegotiate(p, p->len, 0);
        return;
    }
    finish_error(p, rc, op_names[p->op]);
}

/* A call made without an OVERLAPPED said WSA_IO_PENDING: the outcome is an error, and the pending is leaked on
   purpose (pending_destroy is never run on it) since nothing says when the system is done with it: its buffers
   stay allocated and its WSAStartup reference is never released (a WSACleanup could tear Winsock down under a
   call still completing). The messages say so. */
void abandon(secsock_pending *p, const char *call)
{
    p->abandoned = 1;
    secsock_error_set(&p->error, SECSOCK_ERR_OS, 0, WSA_IO_PENDING, call,
                      "%s returned WSA_IO_PENDING without an OVERLAPPED (error %ld): its buffers and WSAStartup "
                      "reference are leaked, not freed, while the system may still write them",
                      call, (long)WSA_IO_PENDING);
    mark_done(p);
}

/* A completion succeeded, with `transferred` bytes as the OVERLAPPED reports them (0: it says nothing). */
static void succeed(secsock_pending *p, DWORD transferred)
{
    if (p->op != OP_QUERY) {
        finish_call(p);
    } else {
        /* Q7 says the length is written back; the Winsock overlapped model reports the bytes through the
           OVERLAPPED. Take the latter, the former when it says nothing. */
        finish_success(p, transferred != 0 ? (ULONG)transferred : p->len);
    }
}

/*
 * The error of a WSAGetOverlappedResult call that may be about that call itself (the socket or the OVERLAPPED
 * argument) rather than the operation's outcome: the OVERLAPPED's own status then decides (findings 4 and 6).
 */
static int about_the_lookup(int e)
{
    return e == WSAENOTSOCK || e == WSA_INVALID_HANDLE || e == WSA_INVALID_PARAMETER || e == WSAEFAULT;
}

/* A completed WSAEMSGSIZE (the system holds nothing any more) as `how` says: re-issue, park, or end. */
static void settle_msgsize(secsock_pending *p, int how)
{
    if (how == SETTLE_REISSUE) {
        size_query(p); /* synchronous system calls: never on an event loop's thread (finding 1) */
    } else if (how == SETTLE_PARK) {
        p->state = PENDING_NEEDS_REISSUE;
    } else {
        finish_error(p, WSAEMSGSIZE, op_names[p->op]); /* cancel and close start no new I/O (finding 2) */
    }
}

/*
 * Called with the lock held: if the operation in flight has completed, record its outcome; a WSAEMSGSIZE one
 * as `how` says (SETTLE_*). Returns the state.
 */
static int settle(secsock_pending *p, int how)
{
    DWORD transferred = 0, flags = 0;
    int e;

    if (p->state == PENDING_NEEDS_REISSUE) {
        if (how != SETTLE_PARK) {
            settle_msgsize(p, how);
        }
        return p->state;
    }
    if (p->state != PENDING_IN_FLIGHT || WaitForSingleObject(p->event, 0) != WAIT_OBJECT_0) {
        return p->state;
    }
    /*
     * WSAGetOverlappedResult decides while the socket lives: the WSAOVERLAPPED page leaves Internal and
     * InternalHigh to the provider ("non-IFS providers are free to use this parameter as necessary").
     */
    if (sys_calls->wsa_get_overlapped_result(p->sock, &p->ov, &transferred, FALSE, &flags)) {
        succeed(p, transferred);
        return p->state;
    }
    e = WSAGetLastError();
    if (e == WSA_IO_INCOMPLETE || !HasOverlappedIoCompleted(&p->ov)) {
        /*
         * Signalled, but the OVERLAPPED says the system still owns it (issue() set Internal to STATUS_PENDING,
         * so an untouched one says so too): someone set the public event (issue 11, defect 3). Still in
         * flight, whatever error the lookup gave (its page also lists WSAENETDOWN and WSANOTINITIALISED, and
         * ending the operation here would free an OVERLAPPED the system may still write). Re-arm the event so waiters do not spin; the system writes the status before it signals, so
         * a completion that raced the reset shows in the next look.
         */
        ResetEvent(p->event);
        if (HasOverlappedIoCompleted(&p->ov)) {
            SetEvent(p->event); /* it did complete meanwhile: the next settle takes it */
        }
        return p->state;
    }
    if (about_the_lookup(e) && (LONG)p->ov.Internal >= 0) {
        /*
         * The lookup failed, not the call: the caller closed the socket after the completion (issue 11, defect
         * 4), or WSAGetOverlappedResult refused its own arguments (finding 6). The outcome is then only in the
         * OVERLAPPED (Internal: the request's final status). A success stands, and its token handles are ours
         * to hand over or close.
         */
        succeed(p, (DWORD)p->ov.InternalHigh);
        return p->state;
    }
    if (e == WSAEMSGSIZE && p->op == OP_QUERY) {
        settle_msgsize(p, how);
    } else {
        finish_error(p, e, op_names[p->op]);
    }
    return p->state;
}

static int settle_locked(secsock_pending *p, int how)
{
    int state;

    AcquireSRWLockExclusive(&p->lock);
    state = settle(p, how);
    ReleaseSRWLockExclusive(&p->lock);
    return state;
}

void pending_destroy(secsock_pending *p)
{
    release_held(p);
    if (p->winsock_ref) {
        WSACleanup(); /* last: the socket calls above are done */
    }
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
secsock_pending *pending_new(int op, secsock_fd sock, secsock_error *err)
{
    return pending_new_for(op, sock, 0, err);
}

/* A new pending; sync: for calls made without an OVERLAPPED, so without an event. NULL with err set. */
secsock_pending *pending_new_for(int op, secsock_fd sock, int sync, secsock_error *err)
{
    secsock_pending *p;

    if (check_fits(sock, "sock", err) != 0) {
        return NULL;
    }
    p = (secsock_pending *)calloc(1, sizeof(*p));
    if (p == NULL) {
        secsock_error_set(err, SECSOCK_ERR_NOMEM, 0, 0, op_names[op], "out of memory for a %s call", op_names[op]);
        return NULL;
    }
    InitializeSRWLock(&p->lock);
    p->op = op;
    p->sock = to_socket(sock);
    p->sync = sync;
    if (sync) {
        return p; /* runs within one call of the caller's, which holds Winsock up */
    }
    /*
     * A pending may outlive the module that made it (a PendingQuery freed after module_free's
     * secsock_backend_fini at shutdown, or one leaked because it could not be cancelled): it holds a Winsock
     * start-up of its own, so WSACleanup never runs under it (issue 11, defect 9).
     */
    {
        WSADATA data;
        if (WSAStartup(MAKEWORD(2, 2), &data) == 0) {
            p->winsock_ref = 1;
        }
    }
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
secsock_pending *pending_start(secsock_pending *p)
{
    /* No other thread can see p yet, but issue() and settle() expect the lock's discipline anyway. */
    AcquireSRWLockExclusive(&p->lock);
    issue(p);
    ReleaseSRWLockExclusive(&p->lock);
    return p;
}

int secsock_pending_done(secsock_pending *p)
{
    return settle_locked(p, SETTLE_REISSUE) == PENDING_DONE;
}

int secsock_pending_poll(secsock_pending *p)
{
    int state;

    /* Never blocks: a thread holding the lock may be re-issuing (a synchronous size query); that is in flight. */
    if (!TryAcquireSRWLockExclusive(&p->lock)) {
        return SECSOCK_POLL_IN_FLIGHT;
    }
    state = settle(p, SETTLE_PARK);
    ReleaseSRWLockExclusive(&p->lock);
    return state == PENDING_DONE ? SECSOCK_POLL_DONE
           : state == PENDING_NEEDS_REISSUE ? SECSOCK_POLL_NEEDS_REISSUE
                                            : SECSOCK_POLL_IN_FLIGHT;
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

        if (settle_locked(p, SETTLE_REISSUE) == PENDING_DONE) {
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
                return settle_locked(p, SETTLE_REISSUE) == PENDING_DONE;
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
    /* A WSAEMSGSIZE completion racing the cancel ends the query: a cancel starts no new I/O (finding 2). */
    if (settle(p, SETTLE_END) == PENDING_DONE) {
        rc = 0;
    } else if (!CancelIoEx((HANDLE)p->sock, &p->ov)) {
        DWORD e = GetLastError();
        /* ERROR_NOT_FOUND with the OVERLAPPED complete: nothing left to cancel, the completion is on its way.
           With it still pending, the cancel found the call and failed to end it: say so (finding 14). */
        if (e != ERROR_NOT_FOUND || !HasOverlappedIoCompleted(&p->ov)) {
            rc = error_os(err, (long)e, "CancelIoEx",
                          e == ERROR_NOT_FOUND ? "the call in flight could not be found to cancel"
                                               : "cannot cancel the query");
        } else {
            rc = 0;
        }
    }
    ReleaseSRWLockExclusive(&p->lock);
    return rc;
}

uint64_t secsock_pending_event(secsock_pending *p)
{
    return p == NULL ? 0 : (uint64_t)(UINT_PTR)p->event;
}

int secsock_pending_free_or_leak(secsock_pending *p, secsock_error *err)
{
    secsock_error_clear(err);
    if (p == NULL) {
        return 0;
    }
    /*
     * Like CPython's Overlapped_dealloc: cancel what is in flight, then wait until the system is done with the
     * OVERLAPPED and the buffer before freeing them (no re-issue on the way out). If the cancel fails (also
     * ERROR_NOT_FOUND while the OVERLAPPED still says pending), nothing says when the system will be done:
     * leak the pending and say so, as _overlapped warns, rather than wait forever (issue 11, defect 8).
     */
    if (p->abandoned) {
        return secsock_error_set(err, SECSOCK_ERR_OS, 0, WSA_IO_PENDING, op_names[p->op],
                                 "%s pended without an OVERLAPPED: its memory and its WSAStartup reference are "
                                 "leaked",
                                 op_names[p->op]);
    }
    if (settle_locked(p, SETTLE_END) == PENDING_IN_FLIGHT) {
        if (!CancelIoEx((HANDLE)p->sock, &p->ov)) {
            DWORD e = GetLastError();
            /* A completion racing the cancel has written its status and is about to signal: a short grace. */
            (void)WaitForSingleObject(p->event, 100);
            if (settle_locked(p, SETTLE_END) == PENDING_IN_FLIGHT) {
                return secsock_error_set(err, SECSOCK_ERR_OS, 0, (long)e, "CancelIoEx",
                                         "%s could not be cancelled (error %lu) and is still in flight: its "
                                         "memory is leaked rather than freed under the system",
                                         op_names[p->op], (unsigned long)e);
            }
        }
        /* Until the OVERLAPPED itself says complete: a signalled event alone proves nothing (defect 3). A
           successful CancelIoEx is only a request: the wait has no time limit, as in CPython's _overlapped
           (Overlapped_dealloc waits INFINITE after CancelIoEx too), since freeing earlier would let the system
           write into freed memory (finding 16). */
        while (settle_locked(p, SETTLE_END) == PENDING_IN_FLIGHT) {
            if (WaitForSingleObject(p->event, INFINITE) != WAIT_OBJECT_0) {
                /* Cannot know when the system is done: leaking beats letting it write into freed memory. */
                return error_os(err, (long)GetLastError(), "WaitForSingleObject",
                                "cannot wait for the cancelled call: its memory is leaked");
            }
        }
    }
    pending_destroy(p); /* closes the token handles never handed over */
    return 0;
}

void secsock_pending_free(secsock_pending *p)
{
    secsock_error ignored;

    (void)secsock_pending_free_or_leak(p, &ignored);
}
