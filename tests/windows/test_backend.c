/*
 * Tests of the Windows backend (csrc/windows/) through the seam (secsock_backend.h), on real Wine sockets, against the
 * fwpuclnt.dll double (fwpuclnt_double.c). Each test names the contract statements it checks
 * (/work/shared/reference/CONTRACT.md) and prints `PASS name` or `FAIL name: why`; the last line is
 * `N passed, M failed`; the exit code is non-zero when M > 0 or N == 0.
 * Failures of advapi32, kernel32 and ws2_32 that Wine never gives are injected through the backend's system-call
 * table (csrc/windows/test_hooks.h); DOUBLE.md lists those fakes (K1-K6, K3b) beside the double's behaviours.
 */
#ifndef _WIN32_WINNT
#define _WIN32_WINNT 0x0601
#endif
#include <winsock2.h>
#include <ws2tcpip.h>
#include <mstcpip.h>
#include <windows.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "fwpuclnt_double.h"
#include "secsock_backend.h"
#include "windows/test_hooks.h"

/* ---- a tiny harness ---- */

static int passed, failed;
static const char *current;
static int current_failed;

static void begin_test(const char *name)
{
    current = name;
    current_failed = 0;
}

static void fail(const char *fmt, ...)
{
    va_list ap;

    if (current_failed) {
        return; /* the first reason is the one reported */
    }
    current_failed = 1;
    printf("FAIL %s: ", current);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

static void end_test(void)
{
    if (current_failed) {
        failed++;
    } else {
        passed++;
        printf("PASS %s\n", current);
    }
    fflush(stdout);
}

#define CHECK(cond, ...)                                                                                     \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fail(__VA_ARGS__);                                                                               \
        }                                                                                                    \
    } while (0)

/* ---- the double's control API ---- */

static dbl_reset_fn dbl_reset;
static dbl_script_fn dbl_script;
static dbl_calls_fn dbl_calls;
static dbl_release_fn dbl_release;
static dbl_set_port_fn dbl_set_port;
static dbl_in_flight_fn dbl_in_flight;
static dbl_tokens_fn dbl_tokens;
static dbl_variants_fn dbl_variants;
static dbl_last_query_buffer_fn dbl_last_query_buffer;

static int load_double(void)
{
    HMODULE m = GetModuleHandleA("fwpuclnt.dll");

    if (m == NULL) {
        return 0;
    }
    dbl_reset = (dbl_reset_fn)(void (*)(void))GetProcAddress(m, "dbl_reset");
    dbl_script = (dbl_script_fn)(void (*)(void))GetProcAddress(m, "dbl_script");
    dbl_calls = (dbl_calls_fn)(void (*)(void))GetProcAddress(m, "dbl_calls");
    dbl_release = (dbl_release_fn)(void (*)(void))GetProcAddress(m, "dbl_release");
    dbl_set_port = (dbl_set_port_fn)(void (*)(void))GetProcAddress(m, "dbl_set_port");
    dbl_in_flight = (dbl_in_flight_fn)(void (*)(void))GetProcAddress(m, "dbl_in_flight");
    dbl_tokens = (dbl_tokens_fn)(void (*)(void))GetProcAddress(m, "dbl_tokens");
    dbl_variants = (dbl_variants_fn)(void (*)(void))GetProcAddress(m, "dbl_variants");
    dbl_last_query_buffer = (dbl_last_query_buffer_fn)(void (*)(void))GetProcAddress(m, "dbl_last_query_buffer");
    return dbl_reset && dbl_script && dbl_calls && dbl_release && dbl_set_port && dbl_in_flight && dbl_tokens &&
           dbl_variants && dbl_last_query_buffer;
}

static dbl_step blank_step(int kind)
{
    dbl_step s;

    memset(&s, 0, sizeof(s));
    s.kind = kind;
    return s;
}

static dbl_step step_answer(ULONG protocol, ULONG flags)
{
    dbl_step s = blank_step(DBL_ANSWER);

    s.protocol = protocol;
    s.flags = flags;
    return s;
}

static dbl_step step_error(int code)
{
    dbl_step s = blank_step(DBL_ERROR);

    s.error = code;
    return s;
}

static dbl_step step_msgsize(ULONG needed)
{
    dbl_step s = blank_step(DBL_MSGSIZE);

    s.needed = needed;
    return s;
}

static void script(dbl_step s)
{
    dbl_script(&s);
}

static int calls(dbl_call *out)
{
    return dbl_calls(out, DBL_MAX_CALLS);
}

/* ---- sockets ---- */

static SOCKET new_socket(int family, int type, int protocol, DWORD flags)
{
    return WSASocketW(family, type, protocol, NULL, 0, flags);
}

static int loopback(int family, SOCKADDR_STORAGE *a, int *len)
{
    memset(a, 0, sizeof(*a));
    if (family == AF_INET6) {
        SOCKADDR_IN6 *s6 = (SOCKADDR_IN6 *)a;
        s6->sin6_family = AF_INET6;
        s6->sin6_addr.s6_addr[15] = 1;
        *len = (int)sizeof(*s6);
    } else {
        SOCKADDR_IN *s4 = (SOCKADDR_IN *)a;
        s4->sin_family = AF_INET;
        s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        *len = (int)sizeof(*s4);
    }
    return 0;
}

/* A connected loopback TCP pair; *client is created with `flags` (WSA_FLAG_OVERLAPPED or 0). */
static int tcp_pair(int family, DWORD flags, SOCKET *client, SOCKET *server)
{
    SOCKADDR_STORAGE a;
    int len;
    SOCKET listener = new_socket(family, SOCK_STREAM, IPPROTO_TCP, WSA_FLAG_OVERLAPPED);

    *client = *server = INVALID_SOCKET;
    if (listener == INVALID_SOCKET) {
        return -1;
    }
    loopback(family, &a, &len);
    if (bind(listener, (struct sockaddr *)&a, len) != 0 || listen(listener, 1) != 0 ||
        getsockname(listener, (struct sockaddr *)&a, &len) != 0) {
        closesocket(listener);
        return -1;
    }
    *client = new_socket(family, SOCK_STREAM, IPPROTO_TCP, flags);
    if (*client == INVALID_SOCKET || connect(*client, (struct sockaddr *)&a, len) != 0) {
        closesocket(listener);
        return -1;
    }
    *server = accept(listener, NULL, NULL);
    closesocket(listener);
    return *server == INVALID_SOCKET ? -1 : 0;
}

static SOCKET udp_socket(int family)
{
    SOCKADDR_STORAGE a;
    int len;
    SOCKET s = new_socket(family, SOCK_DGRAM, IPPROTO_UDP, WSA_FLAG_OVERLAPPED);

    if (s == INVALID_SOCKET) {
        return s;
    }
    loopback(family, &a, &len);
    if (bind(s, (struct sockaddr *)&a, len) != 0) {
        closesocket(s);
        return INVALID_SOCKET;
    }
    return s;
}

/* One row of NtQuerySystemInformation(SystemHandleInformation), as Wine lays it out. */
typedef struct {
    ULONG owner_pid;
    BYTE object_type;
    BYTE flags;
    USHORT value;
    PVOID object;
    ULONG access;
} handle_row;

/*
 * The number of handles this process holds. Wine's GetProcessHandleCount answers 0, so count our rows of the
 * system handle table instead (real Windows answers GetProcessHandleCount).
 */
static DWORD handle_count(void)
{
    typedef LONG(WINAPI * query_fn)(ULONG, void *, ULONG, ULONG *);
    query_fn query = (query_fn)(void (*)(void))GetProcAddress(GetModuleHandleA("ntdll.dll"), "NtQuerySystemInformation");
    DWORD n = 0;
    ULONG size = 1u << 16, got = 0, i, *table = NULL;
    LONG status = (LONG)0xC0000004; /* STATUS_INFO_LENGTH_MISMATCH */

    if (GetProcessHandleCount(GetCurrentProcess(), &n) && n != 0) {
        return n;
    }
    while (query != NULL && status == (LONG)0xC0000004 && size <= (1u << 26)) {
        HeapFree(GetProcessHeap(), 0, table);
        size *= 2;
        table = (ULONG *)HeapAlloc(GetProcessHeap(), 0, size);
        status = table != NULL ? query(16 /* SystemHandleInformation */, table, size, &got) : -1;
    }
    if (status == 0) {
        /* A ULONG count, then the rows (pointer-aligned). */
        const handle_row *rows = (const handle_row *)((const BYTE *)table + sizeof(void *));
        for (i = 0; i < table[0]; i++) {
            n += rows[i].owner_pid == GetCurrentProcessId();
        }
    }
    HeapFree(GetProcessHeap(), 0, table);
    return n;
}

/* R4: the process holds as many handles as it did before the test: none leaked, none closed twice. */
static void check_handle_count(DWORD before)
{
    DWORD after = handle_count();

    CHECK(after == before, "handle count %lu before, %lu after", (unsigned long)before, (unsigned long)after);
}

static int handle_open(uint64_t h)
{
    DWORD flags;

    return GetHandleInformation((HANDLE)(UINT_PTR)h, &flags) != 0;
}

static secsock_query_request request(SOCKET s)
{
    secsock_query_request r;

    memset(&r, 0, sizeof(r));
    r.sock = (secsock_fd)s;
    return r;
}

static void peer4(secsock_query_request *r, const char *dotted, uint16_t port)
{
    unsigned a, b, c, d;

    sscanf(dotted, "%u.%u.%u.%u", &a, &b, &c, &d);
    r->has_peer = 1;
    r->peer.is_ipv6 = 0;
    r->peer.addr[0] = (uint8_t)a;
    r->peer.addr[1] = (uint8_t)b;
    r->peer.addr[2] = (uint8_t)c;
    r->peer.addr[3] = (uint8_t)d;
    r->peer.port = port;
}

static void peer6_loopback(secsock_query_request *r, uint16_t port, uint32_t flowinfo, uint32_t scope)
{
    r->has_peer = 1;
    memset(&r->peer, 0, sizeof(r->peer));
    r->peer.is_ipv6 = 1;
    r->peer.addr[15] = 1;
    r->peer.port = port;
    r->peer.flowinfo = flowinfo;
    r->peer.scope_id = scope;
}

/* Run one query through begin/result/free: the overlapped path (secsock_query is the synchronous one). */
static int run_query(const secsock_query_request *r, secsock_result *out, secsock_error *err)
{
    secsock_pending *p;
    int rc;

    memset(out, 0, sizeof(*out));
    p = secsock_query_begin(r, err);
    if (p == NULL) {
        return -1;
    }
    rc = secsock_pending_result(p, out, err);
    secsock_pending_free(p);
    return rc;
}

static int is_os_error(const secsock_error *err, long winerror, const char *call)
{
    return err->kind == SECSOCK_ERR_OS && err->winerror == winerror && err->errnum == 0 &&
           strcmp(err->call, call) == 0 && err->message[0] != '\0';
}

/* Run the query and check it fails with SECSOCK_ERR_OS, the winerror and the call named; err is kept. */
static void expect_os_failure(secsock_query_request r, long winerror, const char *call, secsock_error *err)
{
    secsock_result res;

    if (run_query(&r, &res, err) != -1) {
        fail("the query succeeded");
        secsock_result_release(&res);
        return;
    }
    CHECK(is_os_error(err, winerror, call), "kind %d winerror %ld call '%s' (want %ld from %s)", err->kind,
          err->winerror, err->call, winerror, call);
}

/* ---- shared fixtures ---- */

static SOCKET tcp4, tcp4_server, tcp6, tcp6_server, tcp_sync, tcp_sync_server, udp4, udp6;

/* ======================================================================== */
/* The double itself: called directly, it keeps the contract the tests rely on. */

static void test_double_size_query(void)
{
    ULONG len = 0;
    int rc;

    begin_test("double Q6/E5 NULL info buffer is a size query: WSAEMSGSIZE and the size needed");
    dbl_reset();
    script(step_answer(1, 1));
    rc = WSAQuerySocketSecurity(tcp4, NULL, 0, NULL, &len, NULL, NULL);
    CHECK(rc == SOCKET_ERROR && WSAGetLastError() == WSAEMSGSIZE, "rc %d error %d", rc, WSAGetLastError());
    CHECK(len == sizeof(SOCKET_SECURITY_QUERY_INFO), "needed %lu, want 24", (unsigned long)len);
    end_test();
}

static void test_double_short_buffer(void)
{
    SOCKET_SECURITY_QUERY_INFO info;
    ULONG len = 8;
    int rc;

    begin_test("double Q7 short buffer: WSAEMSGSIZE and the size needed written back");
    dbl_reset();
    script(step_answer(1, 1));
    rc = WSAQuerySocketSecurity(tcp4, NULL, 0, &info, &len, NULL, NULL);
    CHECK(rc == SOCKET_ERROR && WSAGetLastError() == WSAEMSGSIZE, "rc %d error %d", rc, WSAGetLastError());
    CHECK(len == 24, "needed %lu", (unsigned long)len);
    end_test();
}

static void test_double_null_len(void)
{
    SOCKET_SECURITY_QUERY_INFO info;
    int rc;

    begin_test("double E3 NULL SecurityQueryInfoLen: WSAEFAULT");
    dbl_reset();
    rc = WSAQuerySocketSecurity(tcp4, NULL, 0, &info, NULL, NULL, NULL);
    CHECK(rc == SOCKET_ERROR && WSAGetLastError() == WSAEFAULT, "rc %d error %d", rc, WSAGetLastError());
    end_test();
}

static void test_double_udp_template(void)
{
    SOCKET_SECURITY_QUERY_TEMPLATE t;
    SOCKET_SECURITY_QUERY_INFO info;
    ULONG len = sizeof(info);
    int rc, e1, e2;

    begin_test("double E5/Q4 UDP: NULL template or a short template length is WSAEMSGSIZE");
    dbl_reset();
    memset(&t, 0, sizeof(t));
    t.PeerAddress.ss_family = AF_INET;
    rc = WSAQuerySocketSecurity(udp4, NULL, 0, &info, &len, NULL, NULL);
    e1 = WSAGetLastError();
    CHECK(rc == SOCKET_ERROR && e1 == WSAEMSGSIZE, "NULL template: rc %d error %d", rc, e1);
    rc = WSAQuerySocketSecurity(udp4, &t, sizeof(t) - 4, &info, &len, NULL, NULL);
    e2 = WSAGetLastError();
    CHECK(rc == SOCKET_ERROR && e2 == WSAEMSGSIZE, "short template: rc %d error %d", rc, e2);
    end_test();
}

static void test_double_not_socket(void)
{
    SOCKET_SECURITY_QUERY_INFO info;
    ULONG len = sizeof(info);
    HANDLE ev = CreateEventW(NULL, TRUE, FALSE, NULL);
    int rc;

    begin_test("double E6 a descriptor that is not a socket: WSAENOTSOCK");
    dbl_reset();
    rc = WSAQuerySocketSecurity((SOCKET)(UINT_PTR)ev, NULL, 0, &info, &len, NULL, NULL);
    CHECK(rc == SOCKET_ERROR && WSAGetLastError() == WSAENOTSOCK, "rc %d error %d", rc, WSAGetLastError());
    CloseHandle(ev);
    end_test();
}

static void test_double_zero_template(void)
{
    SOCKET_SECURITY_QUERY_TEMPLATE t;
    SOCKET_SECURITY_QUERY_INFO info;
    ULONG len = sizeof(info);
    int rc;

    begin_test("double Q2 all-zero template: only Flags is set");
    dbl_reset();
    memset(&t, 0, sizeof(t));
    memset(&info, 0xAA, sizeof(info));
    script(step_answer(SOCKET_SECURITY_PROTOCOL_IPSEC, 3));
    rc = WSAQuerySocketSecurity(tcp4, &t, sizeof(t), &info, &len, NULL, NULL);
    CHECK(rc == 0, "rc %d error %d", rc, WSAGetLastError());
    CHECK(info.Flags == 3 && info.SecurityProtocol == 0 && info.PeerApplicationAccessTokenHandle == 0 &&
              info.PeerMachineAccessTokenHandle == 0,
          "protocol %d flags %lu", (int)info.SecurityProtocol, (unsigned long)info.Flags);
    end_test();
}

static void test_double_no_mask_no_tokens(void)
{
    SOCKET_SECURITY_QUERY_TEMPLATE t;
    SOCKET_SECURITY_QUERY_INFO info;
    ULONG len = sizeof(info);
    int rc;

    begin_test("double Q3 PeerTokenAccessMask 0: no token handles");
    dbl_reset();
    memset(&t, 0, sizeof(t));
    t.SecurityProtocol = SOCKET_SECURITY_PROTOCOL_IPSEC;
    script(step_answer(SOCKET_SECURITY_PROTOCOL_IPSEC, 1));
    rc = WSAQuerySocketSecurity(tcp4, &t, sizeof(t), &info, &len, NULL, NULL);
    CHECK(rc == 0, "rc %d", rc);
    CHECK(info.PeerApplicationAccessTokenHandle == 0 && info.PeerMachineAccessTokenHandle == 0,
          "tokens were returned without a mask");
    CHECK(dbl_tokens(NULL, 0) == 0, "the double made tokens");
    end_test();
}

/* A connected TCP pair whose client is bound to a fresh I/O completion port the double is told about. */
typedef struct {
    SOCKET client, server;
    HANDLE port;
} iocp_fixture;

static int iocp_open(iocp_fixture *f, ULONG_PTR key)
{
    f->port = NULL;
    if (tcp_pair(AF_INET, WSA_FLAG_OVERLAPPED, &f->client, &f->server) != 0) {
        fail("no socket pair");
        return -1;
    }
    f->port = CreateIoCompletionPort((HANDLE)f->client, NULL, key, 0);
    dbl_set_port(f->port, key);
    return 0;
}

static void iocp_close(iocp_fixture *f)
{
    dbl_set_port(NULL, 0);
    closesocket(f->client);
    closesocket(f->server);
    if (f->port != NULL) {
        CloseHandle(f->port);
    }
}

/* The next packet on the port within ms, or NULL. */
static LPOVERLAPPED next_packet(HANDLE port, DWORD ms, ULONG_PTR *key)
{
    DWORD bytes;
    LPOVERLAPPED got = NULL;

    *key = 0;
    (void)GetQueuedCompletionStatus(port, &bytes, key, &got, ms); /* got stays NULL on time-out */
    return got;
}

static void test_double_posts_when_bit_clear(void)
{
    iocp_fixture f;
    HANDLE ev;
    WSAOVERLAPPED ov;
    SOCKET_SECURITY_QUERY_INFO info;
    ULONG len = sizeof(info);
    ULONG_PTR key;
    int rc;

    begin_test("double control for the IOCP test: with the low bit clear a completion packet does arrive");
    dbl_reset();
    if (iocp_open(&f, 77) == 0) {
        ev = CreateEventW(NULL, TRUE, FALSE, NULL);
        memset(&ov, 0, sizeof(ov));
        ov.hEvent = ev;
        script(step_answer(1, 1));
        rc = WSAQuerySocketSecurity(f.client, NULL, 0, &info, &len, &ov, NULL);
        CHECK(rc == 0, "rc %d error %d", rc, WSAGetLastError());
        CHECK(next_packet(f.port, 2000, &key) == &ov && key == 77,
              "no packet arrived although the event's low bit was clear");
        CloseHandle(ev);
    }
    iocp_close(&f);
    end_test();
}

/* ======================================================================== */
/* The backend. */

static void test_handle_count_sees_a_leak(void)
{
    DWORD before = handle_count();
    HANDLE ev = CreateEventW(NULL, TRUE, FALSE, NULL);

    begin_test("harness: the process handle count sees one more handle (so the leak checks can fail)");
    CHECK(before > 0 && handle_count() == before + 1, "count %lu then %lu", (unsigned long)before,
          (unsigned long)handle_count());
    CloseHandle(ev);
    check_handle_count(before);
    end_test();
}

static void test_kind_of(void)
{
    secsock_socket_kind k;
    secsock_error err;

    begin_test("socket_kind_of reads family, type and protocol (TCP/IPv4, UDP/IPv6)");
    CHECK(secsock_socket_kind_of((secsock_fd)tcp4, &k, &err) == 0, "tcp4: %s", err.message);
    CHECK(k.family == SECSOCK_FAMILY_INET && k.type == SECSOCK_TYPE_STREAM && k.protocol == IPPROTO_TCP,
          "tcp4 kind %d/%d/%d", k.family, k.type, k.protocol);
    CHECK(secsock_socket_kind_of((secsock_fd)udp6, &k, &err) == 0, "udp6: %s", err.message);
    CHECK(k.family == SECSOCK_FAMILY_INET6 && k.type == SECSOCK_TYPE_DGRAM && k.protocol == IPPROTO_UDP,
          "udp6 kind %d/%d/%d", k.family, k.type, k.protocol);
    end_test();
}

static void test_tcp_default_null_template(void)
{
    secsock_query_request r = request(tcp4);
    secsock_result res;
    secsock_error err;
    dbl_call c[DBL_MAX_CALLS];
    int n;

    begin_test("Q1/R1/R3 TCP default query: NULL template of length 0, flags decoded");
    dbl_reset();
    script(step_answer(SOCKET_SECURITY_PROTOCOL_IPSEC, SECSOCK_FLAG_SECURED | SECSOCK_FLAG_ENCRYPTED));
    CHECK(run_query(&r, &res, &err) == 0, "query failed: %s", err.message);
    n = calls(c);
    CHECK(n == 1, "%d calls", n);
    CHECK(c[0].template_null && c[0].template_len == 0, "template %s len %lu", c[0].template_null ? "NULL" : "set",
          (unsigned long)c[0].template_len);
    CHECK(!c[0].info_null && c[0].len_in == sizeof(SOCKET_SECURITY_QUERY_INFO), "info %d len_in %lu",
          c[0].info_null, (unsigned long)c[0].len_in);
    CHECK(!c[0].overlapped_null && c[0].routine_null, "overlapped/routine not as expected");
    CHECK(res.flags == 3 && res.protocol == 0 && !res.has_ipsec2, "flags %u protocol %u", res.flags, res.protocol);
    CHECK(res.peer_application_token == 0 && res.peer_machine_token == 0, "tokens without a mask");
    end_test();
}

static void test_tcp_tokens_template(void)
{
    secsock_query_request r = request(tcp4);
    secsock_result res;
    secsock_error err;
    dbl_call c[DBL_MAX_CALLS];
    UINT64 t[8];
    DWORD before;
    int nt;

    begin_test("Q5/R4 TCP with tokens: full template with the mask; handles handed over once, none leaked");
    dbl_reset();
    before = handle_count();
    r.token_access = TOKEN_QUERY;
    script(step_answer(SOCKET_SECURITY_PROTOCOL_IPSEC, 1));
    CHECK(run_query(&r, &res, &err) == 0, "query failed: %s", err.message);
    calls(c);
    CHECK(!c[0].template_null && c[0].template_len == sizeof(SOCKET_SECURITY_QUERY_TEMPLATE) &&
              c[0].token_mask == TOKEN_QUERY && c[0].protocol == SOCKET_SECURITY_PROTOCOL_DEFAULT,
          "template len %lu mask %lu protocol %lu", (unsigned long)c[0].template_len,
          (unsigned long)c[0].token_mask, (unsigned long)c[0].protocol);
    nt = dbl_tokens(t, 8);
    CHECK(nt == 2 && res.peer_application_token == t[0] && res.peer_machine_token == t[1],
          "tokens %d: %llx %llx", nt, (unsigned long long)res.peer_application_token,
          (unsigned long long)res.peer_machine_token);
    CHECK(res.protocol == SOCKET_SECURITY_PROTOCOL_IPSEC, "protocol %u", res.protocol);
    CHECK(handle_open(res.peer_application_token) && handle_open(res.peer_machine_token),
          "handed-over tokens are not open");
    CHECK(secsock_token_close(res.peer_application_token, &err) == 0, "close: %s", err.message);
    CHECK(secsock_token_close(res.peer_machine_token, &err) == 0, "close: %s", err.message);
    CHECK(secsock_token_close(res.peer_machine_token, &err) == -1 && err.kind == SECSOCK_ERR_OS &&
              strcmp(err.call, "CloseHandle") == 0,
          "closing twice did not fail: the backend closed a handle it had handed over");
    check_handle_count(before);
    end_test();
}

/* Start a TCP query asking for tokens, answered by `step`; records the handle count first. */
static secsock_pending *begin_token_query(dbl_step step, DWORD *before)
{
    secsock_query_request r = request(tcp4);
    secsock_error err;
    secsock_pending *p;

    dbl_reset();
    *before = handle_count();
    r.token_access = TOKEN_QUERY;
    script(step);
    p = secsock_query_begin(&r, &err);
    CHECK(p != NULL, "begin: %s", err.message);
    return p;
}

static void test_tokens_freed_without_result(void)
{
    secsock_error err;
    secsock_pending *p;
    UINT64 t[8];
    DWORD before;
    int nt;

    begin_test("R4 tokens of a completed query never taken are closed by pending_free");
    p = begin_token_query(step_answer(SOCKET_SECURITY_PROTOCOL_IPSEC, 1), &before);
    if (p != NULL) {
        CHECK(secsock_pending_wait(p, 5000, &err) == 1, "not done");
        nt = dbl_tokens(t, 8);
        CHECK(nt == 2 && handle_open(t[0]) && handle_open(t[1]), "the double returned %d tokens", nt);
        secsock_pending_free(p);
        CHECK(!handle_open(t[0]) && !handle_open(t[1]), "a token is still open after free");
    }
    check_handle_count(before);
    end_test();
}

static void test_result_twice(void)
{
    secsock_result res, res2;
    secsock_error err;
    secsock_pending *p;
    DWORD before;

    begin_test("R4 result taken twice: the second call fails and hands nothing over again");
    p = begin_token_query(step_answer(SOCKET_SECURITY_PROTOCOL_IPSEC, 1), &before);
    if (p != NULL) {
        CHECK(secsock_pending_result(p, &res, &err) == 0, "first: %s", err.message);
        CHECK(secsock_pending_result(p, &res2, &err) == -1 && err.kind == SECSOCK_ERR_ARGUMENT,
              "second result call did not fail with SECSOCK_ERR_ARGUMENT");
        CHECK(res2.peer_application_token == 0 && res2.peer_machine_token == 0, "second call handed tokens out");
        secsock_pending_free(p);
        CHECK(handle_open(res.peer_application_token) && handle_open(res.peer_machine_token),
              "free closed tokens it had handed over");
        secsock_result_release(&res);
    }
    check_handle_count(before);
    end_test();
}

static void test_larger_size_on_retry(void)
{
    secsock_query_request r = request(tcp4);
    secsock_result res;
    secsock_error err;
    dbl_call c[DBL_MAX_CALLS];
    int n;

    begin_test("Q7 WSAEMSGSIZE asking for a larger buffer: retried with the size written back");
    dbl_reset();
    script(step_msgsize(100));
    script(step_answer(SOCKET_SECURITY_PROTOCOL_IPSEC, 1));
    CHECK(run_query(&r, &res, &err) == 0, "query failed: %s", err.message);
    n = calls(c);
    CHECK(n == 2 && c[0].len_in == 24 && c[1].len_in == 100, "%d calls, lengths %lu then %lu", n,
          (unsigned long)c[0].len_in, (unsigned long)c[1].len_in);
    CHECK(res.flags == 1, "flags %u", res.flags);
    end_test();
}

static void expect_size_error(const char *name, ULONG needed)
{
    secsock_query_request r = request(tcp4);
    secsock_error err;
    dbl_call c[DBL_MAX_CALLS];
    char text[32];
    int n;

    begin_test(name);
    dbl_reset();
    script(step_msgsize(needed));
    script(step_answer(1, 1)); /* must not be reached */
    expect_os_failure(r, WSAEMSGSIZE, "WSAQuerySocketSecurity", &err);
    snprintf(text, sizeof(text), "%lu", (unsigned long)needed);
    CHECK(strstr(err.message, text) != NULL, "message does not say what was asked: %s", err.message);
    n = calls(c);
    CHECK(n == 1, "%d calls (no retry expected)", n);
    end_test();
}

static void test_retries_bounded(void)
{
    secsock_query_request r = request(tcp4);
    secsock_error err;
    dbl_call c[DBL_MAX_CALLS];
    int n, i;

    begin_test("Q7 negotiation is bounded: a system that keeps asking for more ends in WSAEMSGSIZE after 4 calls");
    dbl_reset();
    for (i = 0; i < 6; i++) {
        script(step_msgsize(100 + 100 * (ULONG)i));
    }
    expect_os_failure(r, WSAEMSGSIZE, "WSAQuerySocketSecurity", &err);
    n = calls(c);
    CHECK(n == 4, "%d calls", n);
    end_test();
}

static void test_success_below_header(void)
{
    secsock_query_request r = request(tcp4);
    secsock_error err;
    dbl_step s = step_answer(1, 1);

    begin_test("Q7 a success whose returned length is below the 8-byte header is an error");
    dbl_reset();
    s.short_len = 4;
    script(s);
    expect_os_failure(r, WSAEMSGSIZE, "WSAQuerySocketSecurity", &err);
    end_test();
}

static void test_success_short_structure(void)
{
    secsock_query_request r = request(tcp4);
    secsock_result res;
    secsock_error err;
    dbl_step s = step_answer(SOCKET_SECURITY_PROTOCOL_IPSEC, 1);

    begin_test("Q7/R5 a success with fewer bytes than the structure: only the fields returned are read");
    dbl_reset();
    r.token_access = TOKEN_QUERY;
    s.short_len = 8;
    script(s);
    CHECK(run_query(&r, &res, &err) == 0, "query failed: %s", err.message);
    CHECK(res.flags == 1 && res.protocol == SOCKET_SECURITY_PROTOCOL_IPSEC, "flags %u protocol %u", res.flags,
          res.protocol);
    CHECK(res.peer_application_token == 0 && res.peer_machine_token == 0, "tokens read past the bytes returned");
    end_test();
}

static void test_ipsec2_full(void)
{
    secsock_query_request r = request(tcp4);
    secsock_result res;
    secsock_error err;
    dbl_call c[DBL_MAX_CALLS];
    dbl_step s = step_answer(0, 3);
    static const GUID g = {0x01020304, 0x0506, 0x0708, {9, 10, 11, 12, 13, 14, 15, 16}};

    begin_test("R5 IPsec2: the _IPSEC2 template (MM|QM) and the full answer decoded");
    dbl_reset();
    r.ipsec2 = 1;
    s.ipsec2 = 1;
    s.mm_sa_id = 0x1122334455667788ULL;
    s.qm_sa_id = 0x99AABBCCDDEEFF00ULL;
    s.negotiation_winerr = 13801;
    s.sa_lookup_context = g;
    script(s);
    CHECK(run_query(&r, &res, &err) == 0, "query failed: %s", err.message);
    calls(c);
    CHECK(c[0].template_len == 152 && c[0].protocol == SOCKET_SECURITY_PROTOCOL_IPSEC2 && c[0].field_mask == 3 &&
              c[0].len_in == 64,
          "template len %lu protocol %lu fields %lu buffer %lu", (unsigned long)c[0].template_len,
          (unsigned long)c[0].protocol, (unsigned long)c[0].field_mask, (unsigned long)c[0].len_in);
    CHECK(res.has_ipsec2 && res.protocol == SOCKET_SECURITY_PROTOCOL_IPSEC2 && res.flags == 3, "has_ipsec2 %d",
          res.has_ipsec2);
    CHECK(res.mm_sa_id == s.mm_sa_id && res.qm_sa_id == s.qm_sa_id && res.negotiation_winerr == 13801,
          "SA ids or error differ");
    CHECK(memcmp(res.sa_lookup_context, &g, 16) == 0, "SaLookupContext differs");
    end_test();
}

static void test_ipsec2_plain_answer(void)
{
    secsock_query_request r = request(tcp4);
    secsock_result res;
    secsock_error err;

    begin_test("R5 IPsec2 asked, the plain structure answered: has_ipsec2 is 0");
    dbl_reset();
    r.ipsec2 = 1;
    script(step_answer(SOCKET_SECURITY_PROTOCOL_IPSEC, 1));
    CHECK(run_query(&r, &res, &err) == 0, "query failed: %s", err.message);
    CHECK(!res.has_ipsec2 && res.protocol == SOCKET_SECURITY_PROTOCOL_IPSEC && res.flags == 1,
          "has_ipsec2 %d protocol %u", res.has_ipsec2, res.protocol);
    end_test();
}

static void test_ipsec2_protocol_short_answer(void)
{
    secsock_query_request r = request(tcp4);
    secsock_result res;
    secsock_error err;
    dbl_step s = step_answer(0, 1);

    begin_test("R5 IPsec2 protocol but only the plain structure's 24 bytes returned: has_ipsec2 is 0");
    dbl_reset();
    r.ipsec2 = 1;
    s.ipsec2 = 1;
    s.short_len = sizeof(SOCKET_SECURITY_QUERY_INFO);
    s.mm_sa_id = 5;
    script(s);
    CHECK(run_query(&r, &res, &err) == 0, "query failed: %s", err.message);
    CHECK(res.protocol == SOCKET_SECURITY_PROTOCOL_IPSEC2 && !res.has_ipsec2 && res.mm_sa_id == 0,
          "protocol %u has_ipsec2 %d", res.protocol, res.has_ipsec2);
    end_test();
}

static void test_errors_surface(int pend)
{
    static const struct {
        int code;
        const char *id;
    } errors[] = {{WSAEAFNOSUPPORT, "E1"}, {WSAECONNRESET, "E2"}, {WSAEFAULT, "E3"},
                  {WSAEINVAL, "E4"},       {WSAEMSGSIZE, "E5"},   {WSAENOTSOCK, "E6"}};
    char name[160];
    size_t i;

    for (i = 0; i < sizeof(errors) / sizeof(errors[0]); i++) {
        secsock_query_request r = request(tcp4);
        secsock_error err;
        dbl_step s = step_error(errors[i].code);

        if (pend && errors[i].code == WSAEAFNOSUPPORT) {
            continue; /* no NTSTATUS maps back to it in Wine's WSAGetOverlappedResult: immediate only */
        }
        snprintf(name, sizeof(name), "%s error %d from the system surfaces as SECSOCK_ERR_OS with its winerror (%s)",
                 errors[i].id, errors[i].code, pend ? "completed later" : "immediate");
        begin_test(name);
        dbl_reset();
        s.when = pend ? DBL_PEND_AUTO : DBL_NOW;
        s.delay_ms = 20;
        script(s);
        if (pend && errors[i].code == WSAEMSGSIZE) {
            /* The size query that follows (Q6) fails too: had it named a size, the call would be re-issued. */
            script(step_error(WSAEMSGSIZE));
        }
        expect_os_failure(r, errors[i].code, "WSAQuerySocketSecurity", &err);
        end_test();
    }
}

static void test_not_a_socket(void)
{
    HANDLE ev = CreateEventW(NULL, TRUE, FALSE, NULL);
    secsock_query_request r = request((SOCKET)(UINT_PTR)ev);
    secsock_error err;
    dbl_call c[DBL_MAX_CALLS];

    begin_test("E6 a handle that is not a socket: SECSOCK_ERR_OS WSAENOTSOCK from getsockopt, no query");
    dbl_reset();
    expect_os_failure(r, WSAENOTSOCK, "getsockopt", &err);
    CHECK(calls(c) == 0, "the double was called");
    CloseHandle(ev);
    end_test();
}

static void test_wrong_kind_socket(void)
{
    SOCKET s = new_socket(AF_INET, SOCK_RAW, IPPROTO_ICMP, WSA_FLAG_OVERLAPPED);
    secsock_query_request r;
    secsock_error err;
    dbl_call c[DBL_MAX_CALLS];

    begin_test("Q8/E4 a SOCK_RAW socket is refused with WSAEINVAL before any query");
    dbl_reset();
    if (s == INVALID_SOCKET) {
        fail("cannot create a SOCK_RAW socket (error %d)", WSAGetLastError());
        end_test();
        return;
    }
    r = request(s);
    expect_os_failure(r, WSAEINVAL, "WSAQuerySocketSecurity", &err);
    CHECK(calls(c) == 0, "the double was called");
    closesocket(s);
    end_test();
}

/* A request the backend refused itself: an argument error naming peer, the system never called. */
static void check_refused_naming_peer(int rc, const secsock_error *err)
{
    dbl_call c[DBL_MAX_CALLS];

    CHECK(rc == -1, "the call succeeded");
    CHECK(err->kind == SECSOCK_ERR_ARGUMENT && strcmp(err->call, "peer") == 0 && strstr(err->message, "peer") != NULL,
          "kind %d call '%s': %s", err->kind, err->call, err->message);
    CHECK(calls(c) == 0, "the double was called");
}

/* I2/I6: the backend refuses a datagram impersonation without peer itself (the system would say WSAEFAULT). */
static void test_impersonate_udp_without_peer(void)
{
    secsock_error err;
    int rc;

    begin_test("I2/I6 impersonate on UDP without peer: SECSOCK_ERR_ARGUMENT naming peer, the system not called");
    dbl_reset();
    rc = secsock_impersonate_peer((secsock_fd)udp4, NULL, &err);
    check_refused_naming_peer(rc, &err);
    end_test();
}

static void test_udp_without_peer(void)
{
    secsock_query_request r = request(udp4);
    secsock_result res;
    secsock_error err;
    int rc;

    begin_test("Q4 UDP without peer: SECSOCK_ERR_ARGUMENT naming peer, the system not called");
    dbl_reset();
    rc = run_query(&r, &res, &err);
    check_refused_naming_peer(rc, &err);
    end_test();
}

static void test_udp_wrong_family_peer(void)
{
    secsock_query_request r = request(udp4);
    secsock_result res;
    secsock_error err;
    int rc;

    begin_test("Q4 UDP/IPv4 with an IPv6 peer: SECSOCK_ERR_ARGUMENT naming peer, the system not called");
    dbl_reset();
    peer6_loopback(&r, 53, 0, 0);
    rc = run_query(&r, &res, &err);
    check_refused_naming_peer(rc, &err);
    end_test();
}

static void test_udp4_peer(void)
{
    secsock_query_request r = request(udp4);
    secsock_result res;
    secsock_error err;
    dbl_call c[DBL_MAX_CALLS];
    static const BYTE want[4] = {192, 0, 2, 7};

    begin_test("Q4/Q5 UDP/IPv4 with peer: full template, AF_INET PeerAddress with address and port");
    dbl_reset();
    peer4(&r, "192.0.2.7", 4500);
    script(step_answer(SOCKET_SECURITY_PROTOCOL_IPSEC, 1));
    CHECK(run_query(&r, &res, &err) == 0, "query failed: %s", err.message);
    calls(c);
    CHECK(!c[0].template_null && c[0].template_len == sizeof(SOCKET_SECURITY_QUERY_TEMPLATE), "template len %lu",
          (unsigned long)c[0].template_len);
    CHECK(c[0].peer_family == AF_INET && c[0].peer_port == 4500 && memcmp(c[0].peer_addr, want, 4) == 0,
          "peer family %d port %u", c[0].peer_family, c[0].peer_port);
    CHECK(res.flags == 1, "flags %u", res.flags);
    end_test();
}

static void test_udp6_peer(void)
{
    secsock_query_request r = request(udp6);
    secsock_result res;
    secsock_error err;
    dbl_call c[DBL_MAX_CALLS];

    begin_test("Q4 UDP/IPv6 with peer: AF_INET6 PeerAddress with port, flowinfo and scope id");
    dbl_reset();
    peer6_loopback(&r, 500, 0x12345, 3);
    r.token_access = TOKEN_QUERY;
    script(step_answer(SOCKET_SECURITY_PROTOCOL_IPSEC, 1));
    CHECK(run_query(&r, &res, &err) == 0, "query failed: %s", err.message);
    calls(c);
    CHECK(c[0].peer_family == AF_INET6 && c[0].peer_port == 500 && c[0].peer_addr[15] == 1 &&
              c[0].peer_flowinfo == htonl(0x12345) && c[0].peer_scope_id == 3 && c[0].token_mask == TOKEN_QUERY,
          "peer family %d port %u flowinfo %lx scope %lu", c[0].peer_family, c[0].peer_port,
          (unsigned long)c[0].peer_flowinfo, (unsigned long)c[0].peer_scope_id);
    secsock_result_release(&res);
    end_test();
}

static void test_tcp6_optional_peer(void)
{
    secsock_query_request r = request(tcp6);
    secsock_result res;
    secsock_error err;
    dbl_call c[DBL_MAX_CALLS];

    begin_test("Q1/Q4 TCP/IPv6 with the optional peer: a template is sent and carries it");
    dbl_reset();
    peer6_loopback(&r, 443, 0, 0);
    script(step_answer(SOCKET_SECURITY_PROTOCOL_IPSEC, 1));
    CHECK(run_query(&r, &res, &err) == 0, "query failed: %s", err.message);
    calls(c);
    CHECK(!c[0].template_null && c[0].template_len == sizeof(SOCKET_SECURITY_QUERY_TEMPLATE) &&
              c[0].peer_family == AF_INET6 && c[0].peer_port == 443 && c[0].token_mask == 0,
          "template len %lu peer family %d port %u", (unsigned long)c[0].template_len, c[0].peer_family,
          c[0].peer_port);
    end_test();
}

static void test_init_balanced(void)
{
    secsock_error err;
    secsock_result res;
    secsock_query_request r = request(tcp4);

    begin_test("backend_init/fini are balanced: a second init and its fini leave Winsock usable");
    dbl_reset();
    CHECK(secsock_backend_init(&err) == 0, "second init: %s", err.message);
    secsock_backend_fini();
    script(step_answer(1, 1));
    CHECK(run_query(&r, &res, &err) == 0, "query after init/fini failed: %s", err.message);
    end_test();
}

static void test_pending_then_complete(void)
{
    secsock_query_request r = request(tcp4);
    secsock_result res;
    secsock_error err;
    secsock_pending *p;
    dbl_step s = step_answer(SOCKET_SECURITY_PROTOCOL_IPSEC, 3);
    dbl_call c[DBL_MAX_CALLS];

    begin_test("Q9 pending (WSA_IO_PENDING) then completed from another thread; event low bit set");
    dbl_reset();
    s.when = DBL_PEND;
    script(s);
    p = secsock_query_begin(&r, &err);
    CHECK(p != NULL, "begin: %s", err.message);
    if (p != NULL) {
        HANDLE ev = (HANDLE)(UINT_PTR)secsock_pending_event(p);
        CHECK(!secsock_pending_done(p), "done before the system completed");
        CHECK(secsock_pending_wait(p, 50, &err) == 0, "wait did not time out");
        CHECK(WaitForSingleObject(ev, 0) == WAIT_TIMEOUT, "event signalled while pending");
        CHECK(dbl_release() == 1, "nothing was pending in the double");
        CHECK(WaitForSingleObject(ev, 5000) == WAIT_OBJECT_0, "event not signalled on completion");
        CHECK(secsock_pending_wait(p, 5000, &err) == 1, "not done after completion");
        CHECK(secsock_pending_result(p, &res, &err) == 0, "result: %s", err.message);
        CHECK(res.flags == 3, "flags %u", res.flags);
        secsock_pending_free(p);
    }
    calls(c);
    CHECK(c[0].result == WSA_IO_PENDING && c[0].event_low_bit, "call result %d low bit %d", c[0].result,
          c[0].event_low_bit);
    end_test();
}

static void test_pending_msgsize_reissued(void)
{
    secsock_query_request r = request(tcp4);
    secsock_result res;
    secsock_error err;
    dbl_step s1 = step_msgsize(200), s2 = step_answer(SOCKET_SECURITY_PROTOCOL_IPSEC, 1);
    dbl_call c[DBL_MAX_CALLS];
    int n;

    begin_test("Q6/Q7/Q9 WSAEMSGSIZE completed later: the size query learns the size, re-issued, completed later");
    dbl_reset();
    s1.when = s2.when = DBL_PEND_AUTO;
    s1.delay_ms = s2.delay_ms = 20;
    script(s1);
    script(step_msgsize(200)); /* the size query (Q6): synchronous, no OVERLAPPED */
    script(s2);
    CHECK(run_query(&r, &res, &err) == 0, "query failed: %s", err.message);
    n = calls(c);
    CHECK(n == 3 && c[0].result == WSA_IO_PENDING && c[1].info_null && c[1].overlapped_null &&
              c[1].result == WSAEMSGSIZE && c[2].len_in == 200 && c[2].result == WSA_IO_PENDING,
          "%d calls, size query info_null %d overlapped_null %d, third length %lu", n, c[1].info_null,
          c[1].overlapped_null, (unsigned long)c[2].len_in);
    end_test();
}

static void test_cancel_while_pending(void)
{
    secsock_query_request r = request(tcp4);
    secsock_result res;
    secsock_error err;
    secsock_pending *p;
    dbl_step s = step_answer(SOCKET_SECURITY_PROTOCOL_IPSEC, 1);

    begin_test("Q9 cancel while pending: CancelIoEx ends it with WSA_OPERATION_ABORTED");
    dbl_reset();
    s.when = DBL_PEND;
    script(s);
    p = secsock_query_begin(&r, &err);
    CHECK(p != NULL, "begin: %s", err.message);
    if (p != NULL) {
        CHECK(secsock_pending_cancel(p, &err) == 1, "cancel returned no request: %s", err.message);
        CHECK(secsock_pending_wait(p, 5000, &err) == 1, "not done after cancel");
        CHECK(secsock_pending_result(p, &res, &err) == -1 && is_os_error(&err, WSA_OPERATION_ABORTED,
                                                                         "WSAQuerySocketSecurity"),
              "kind %d winerror %ld call '%s'", err.kind, err.winerror, err.call);
        CHECK(secsock_pending_cancel(p, &err) == 0, "cancel of a finished query did not return 0");
        secsock_pending_free(p);
    }
    CHECK(dbl_in_flight() == 0, "the double still holds the query");
    end_test();
}

static void test_free_while_pending(void)
{
    secsock_pending *p;
    dbl_step s = step_answer(SOCKET_SECURITY_PROTOCOL_IPSEC, 1);
    DWORD before;

    begin_test("free while pending: cancels, waits for the system, leaks no handle");
    s.when = DBL_PEND;
    p = begin_token_query(s, &before);
    if (p != NULL) {
        CHECK(dbl_in_flight() == 1, "not pending in the double");
        secsock_pending_free(p);
        CHECK(dbl_in_flight() == 0, "free returned while the system still held the OVERLAPPED");
    }
    check_handle_count(before);
    end_test();
}

static void test_free_pending_completed_with_tokens(void)
{
    secsock_pending *p;
    dbl_step s = step_answer(SOCKET_SECURITY_PROTOCOL_IPSEC, 1);
    DWORD before;
    UINT64 t[8];
    int nt;

    begin_test("R4 a pending that completed with tokens and is freed without result: tokens closed");
    s.when = DBL_PEND_AUTO;
    s.delay_ms = 10;
    p = begin_token_query(s, &before);
    if (p != NULL) {
        WaitForSingleObject((HANDLE)(UINT_PTR)secsock_pending_event(p), 5000); /* completed, not yet settled */
        secsock_pending_free(p);
    }
    nt = dbl_tokens(t, 8);
    CHECK(nt == 2 && !handle_open(t[0]) && !handle_open(t[1]), "%d tokens, still open after free", nt);
    check_handle_count(before);
    end_test();
}

static void test_error_paths_leak_nothing(void)
{
    secsock_query_request r = request(tcp4);
    secsock_result res;
    secsock_error err;
    DWORD before;
    int i;

    begin_test("no handle leaks on error paths (errors, size errors, argument errors, cancel)");
    dbl_reset();
    r.token_access = TOKEN_QUERY;
    before = handle_count();
    for (i = 0; i < 3; i++) {
        dbl_step s = step_answer(1, 1);
        script(step_error(WSAECONNRESET));
        (void)run_query(&r, &res, &err);
        script(step_msgsize(1u << 30));
        (void)run_query(&r, &res, &err);
        s.short_len = 4;
        script(s);
        (void)run_query(&r, &res, &err);
        {
            secsock_query_request u = request(udp4);
            (void)run_query(&u, &res, &err);
        }
    }
    check_handle_count(before);
    end_test();
}

static void test_iocp_no_stray_packet(void)
{
    iocp_fixture f;
    secsock_query_request r;
    secsock_result res;
    secsock_error err;
    dbl_step st = step_answer(SOCKET_SECURITY_PROTOCOL_IPSEC, 1), st2 = step_answer(1, 1);
    ULONG_PTR key;

    begin_test("socket bound to an I/O completion port: the low bit of hEvent means no stray packet (Q10: two queries)");
    dbl_reset();
    if (iocp_open(&f, 99) == 0) {
        r = request(f.client);
        st.when = DBL_PEND_AUTO;
        st.delay_ms = 20;
        script(st);
        CHECK(run_query(&r, &res, &err) == 0, "pending query failed: %s", err.message);
        script(st2);
        CHECK(run_query(&r, &res, &err) == 0, "immediate query failed: %s", err.message);
        CHECK(next_packet(f.port, 300, &key) == NULL, "a completion packet arrived (key %lu)", (unsigned long)key);
    }
    iocp_close(&f);
    end_test();
}

static void test_non_overlapped_socket(void)
{
    secsock_query_request r = request(tcp_sync);
    secsock_result res;
    secsock_error err;
    secsock_pending *p;
    dbl_step s = step_answer(SOCKET_SECURITY_PROTOCOL_IPSEC, 1);
    dbl_call c[DBL_MAX_CALLS];

    begin_test("Q9 non-overlapped socket (no WSA_FLAG_OVERLAPPED): completes synchronously, event set");
    dbl_reset();
    s.when = DBL_PEND; /* the double must ignore the OVERLAPPED for this socket */
    script(s);
    p = secsock_query_begin(&r, &err);
    CHECK(p != NULL, "begin: %s", err.message);
    if (p != NULL) {
        CHECK(secsock_pending_done(p), "not done at once");
        CHECK(WaitForSingleObject((HANDLE)(UINT_PTR)secsock_pending_event(p), 0) == WAIT_OBJECT_0,
              "event not signalled");
        CHECK(secsock_pending_result(p, &res, &err) == 0 && res.flags == 1, "result: %s", err.message);
        secsock_pending_free(p);
    }
    calls(c);
    CHECK(c[0].result == 0, "the call returned %d", c[0].result);
    end_test();
}

static DWORD WINAPI waiter(LPVOID arg)
{
    secsock_error err;

    return (DWORD)secsock_pending_wait((secsock_pending *)arg, 5000, &err);
}

static void test_wait_in_several_threads(void)
{
    secsock_query_request r = request(tcp4);
    secsock_result res;
    secsock_error err;
    secsock_pending *p;
    dbl_step s1 = step_msgsize(100), s2 = step_answer(1, 1);
    HANDLE th[3];
    DWORD code;
    int i;

    begin_test("wait runs in several threads at once, across a re-issue");
    dbl_reset();
    s1.when = DBL_PEND;
    s2.when = DBL_PEND_AUTO;
    s2.delay_ms = 30;
    script(s1);
    script(step_msgsize(100)); /* the size query (Q6) */
    script(s2);
    p = secsock_query_begin(&r, &err);
    CHECK(p != NULL, "begin: %s", err.message);
    if (p != NULL) {
        for (i = 0; i < 3; i++) {
            th[i] = CreateThread(NULL, 0, waiter, p, 0, NULL);
        }
        Sleep(30);
        dbl_release();
        for (i = 0; i < 3; i++) {
            WaitForSingleObject(th[i], 10000);
            GetExitCodeThread(th[i], &code);
            CHECK(code == 1, "waiter %d returned %lu", i, (unsigned long)code);
            CloseHandle(th[i]);
        }
        CHECK(secsock_pending_result(p, &res, &err) == 0, "result: %s", err.message);
        secsock_pending_free(p);
    }
    end_test();
}

/* ======================================================================== */
/*
 * The rest of the family, as the Windows SDK pages state it (MicrosoftDocs/sdk-api,
 * sdk-api-src/content/ws2tcpip/nf-ws2tcpip-<name>.md = learn.microsoft.com/windows/win32/api/ws2tcpip/nf-ws2tcpip-<name>).
 * Each page returns 0 on success, else SOCKET_ERROR with the code from WSAGetLastError; "some possible error
 * codes" are:
 *
 * WSASetSocketSecurity (nf-ws2tcpip-wsasetsocketsecurity):
 *   S0  success: 0. SecuritySettings NULL means default settings; Overlapped/CompletionRoutine are ignored for
 *       non-overlapped sockets (an overlapped call may pend and complete later).
 *   S1  WSAEAFNOSUPPORT: the specified address family is not supported.
 *   S2  WSAEINVAL: the socket is not AF_INET/AF_INET6 with SOCK_DGRAM/SOCK_STREAM, or SOCKET_SECURITY_SETTINGS
 *       "has an incorrect value".
 *   S3  WSAEISCONN: the socket is connected (connection-oriented or connectionless).
 *   S4  WSAEMSGSIZE: a buffer passed was too small.
 *   S5  WSAENOTSOCK: the descriptor is not a valid socket.
 * WSASetSocketPeerTargetName (nf-ws2tcpip-wsasetsocketpeertargetname):
 *   T0  success: 0; overlapped as S0.
 *   T1  WSAEAFNOSUPPORT: the specified address family is not supported.
 *   T2  WSAEFAULT: PeerTargetName is NULL.
 *   T3  WSAEINVAL: the socket is not AF_INET/AF_INET6 with SOCK_DGRAM/SOCK_STREAM; or, for a connectionless
 *       socket, the IP address and port in PeerAddress are zero.
 *   T4  WSAEISCONN: the socket is connected (connection-oriented or connectionless).
 *   T5  WSAEMSGSIZE: a buffer passed was too small.
 *   T6  WSAENOTSOCK: the descriptor is not a valid socket.
 * WSADeleteSocketPeerTargetName (nf-ws2tcpip-wsadeletesocketpeertargetname):
 *   D0  success: 0; overlapped as S0.
 *   D1  WSAEAFNOSUPPORT: the specified address family is not supported.
 *   D2  WSAEFAULT: PeerAddr is NULL.
 *   D3  WSAEINVAL: the socket is not AF_INET/AF_INET6 with SOCK_DGRAM/SOCK_STREAM.
 *   D4  WSAEMSGSIZE: a buffer passed was too small.
 *   D5  WSAENOTSOCK: the descriptor is not a valid socket.
 * WSAImpersonateSocketPeer (nf-ws2tcpip-wsaimpersonatesocketpeer; no OVERLAPPED):
 *   I0  success: 0.
 *   I1  WSAEAFNOSUPPORT: the specified address family is not supported.
 *   I2  WSAEFAULT: PeerAddr is NULL.
 *   I3  WSAEMSGSIZE: a buffer passed was too small.
 *   I4  WSAENOTSOCK: the descriptor is not a valid socket.
 *   I5  the remarks: "an error will be returned" unless AF_INET/AF_INET6 with SOCK_STREAM/SOCK_DGRAM; the page
 *       names no code (the double answers WSAEINVAL, as the sibling pages do).
 *   I6  PeerAddress: "For connection-oriented sockets ... this parameter is ignored" (so the double returns I2
 *       only for a connectionless socket; the page does not reconcile this with I2).
 * WSARevertImpersonation (nf-ws2tcpip-wsarevertimpersonation; no arguments, no OVERLAPPED):
 *   R0  success: 0 (also when the thread is not impersonating: "no action is taken").
 *   R1  WSASYSCALLFAILURE: a system call that should never fail has failed.
 *
 * The double decides what its arguments decide (S2-S5, T1-T6, D1-D5, I1-I5; fwpuclnt_double.c) and takes the
 * rest from the script. Either way the backend must surface SECSOCK_ERR_OS with that winerror and `call`
 * naming the function, and leak no handle.
 */

/* Take the outcome of a set/delete call (no result to decode) and free it: 0 or -1 with err. */
static int finish_call(secsock_pending *p, secsock_error *err)
{
    int rc;

    if (p == NULL) {
        return -1;
    }
    rc = secsock_pending_result(p, NULL, err);
    secsock_pending_free(p);
    return rc;
}

static void test_set_security_default(void)
{
    secsock_error err;
    dbl_call c[DBL_MAX_CALLS];
    int n;

    begin_test("S0 WSASetSocketSecurity with the system's defaults: NULL settings of length 0, success");
    dbl_reset();
    script(step_answer(0, 0));
    CHECK(finish_call(secsock_set_security_begin((secsock_fd)udp4, NULL, &err), &err) == 0, "failed: %s",
          err.message);
    n = calls(c);
    CHECK(n == 1 && c[0].function == DBL_FN_SET_SECURITY && c[0].input_null && c[0].input_len == 0 &&
              !c[0].overlapped_null && c[0].event_low_bit,
          "%d calls, function %d null %d len %lu", n, c[0].function, c[0].input_null, (unsigned long)c[0].input_len);
    end_test();
}

static void test_set_security_plain(void)
{
    secsock_settings st;
    secsock_error err;
    dbl_call c[DBL_MAX_CALLS];

    begin_test("S0 WSASetSocketSecurity plain settings: SOCKET_SECURITY_SETTINGS with protocol and flags");
    dbl_reset();
    memset(&st, 0, sizeof(st));
    st.protocol = SECSOCK_PROTOCOL_IPSEC;
    st.security_flags = SECSOCK_SETTINGS_GUARANTEE_ENCRYPTION;
    script(step_answer(0, 0));
    CHECK(finish_call(secsock_set_security_begin((secsock_fd)udp4, &st, &err), &err) == 0, "failed: %s",
          err.message);
    calls(c);
    CHECK(c[0].input_len == sizeof(SOCKET_SECURITY_SETTINGS) && c[0].protocol == SECSOCK_PROTOCOL_IPSEC &&
              c[0].security_flags == SECSOCK_SETTINGS_GUARANTEE_ENCRYPTION,
          "len %lu protocol %lu flags %lu", (unsigned long)c[0].input_len, (unsigned long)c[0].protocol,
          (unsigned long)c[0].security_flags);
    end_test();
}

static void test_set_security_ipsec_strings(void)
{
    secsock_settings st;
    secsock_error err;
    dbl_call c[DBL_MAX_CALLS];
    static const WCHAR want[] = L"aliceCORPp\u00e4ss";

    begin_test("S0 WSASetSocketSecurity IPsec settings: user, domain, password packed as UTF-16 with byte lengths");
    dbl_reset();
    memset(&st, 0, sizeof(st));
    st.is_ipsec = 1;
    st.security_flags = SECSOCK_SETTINGS_ALLOW_INSECURE;
    st.ipsec_flags = SECSOCK_SETTINGS_IPSEC_SKIP_FILTER_INSTANTIATION;
    st.user = "alice";
    st.domain = "CORP";
    st.password = "p\xc3\xa4ss"; /* UTF-8 for p-a-umlaut-s-s */
    script(step_answer(0, 0));
    CHECK(finish_call(secsock_set_security_begin((secsock_fd)udp4, &st, &err), &err) == 0, "failed: %s",
          err.message);
    calls(c);
    CHECK(c[0].protocol == SECSOCK_PROTOCOL_IPSEC && c[0].ipsec_flags == 1 && c[0].security_flags == 2,
          "protocol %lu flags %lu/%lu", (unsigned long)c[0].protocol, (unsigned long)c[0].security_flags,
          (unsigned long)c[0].ipsec_flags);
    CHECK(c[0].string_lens[0] == 10 && c[0].string_lens[1] == 8 && c[0].string_lens[2] == 8 &&
              c[0].input_len == sizeof(SOCKET_SECURITY_SETTINGS_IPSEC) + 26,
          "lengths %lu %lu %lu total %lu", (unsigned long)c[0].string_lens[0], (unsigned long)c[0].string_lens[1],
          (unsigned long)c[0].string_lens[2], (unsigned long)c[0].input_len);
    CHECK(memcmp(c[0].strings, want, 26) == 0, "AllStrings differ");
    end_test();
}

static void test_set_security_bad_utf8(void)
{
    secsock_settings st;
    secsock_error err;
    dbl_call c[DBL_MAX_CALLS];

    begin_test("WSASetSocketSecurity with a password that is not UTF-8: SECSOCK_ERR_ARGUMENT naming it, no call");
    dbl_reset();
    memset(&st, 0, sizeof(st));
    st.is_ipsec = 1;
    st.password = "\xff\xfe";
    CHECK(secsock_set_security_begin((secsock_fd)udp4, &st, &err) == NULL && err.kind == SECSOCK_ERR_ARGUMENT &&
              strcmp(err.call, "password") == 0,
          "kind %d call '%s'", err.kind, err.call);
    CHECK(calls(c) == 0, "the double was called");
    end_test();
}

static void test_set_security_errors(void)
{
    secsock_error err;
    dbl_step later = step_error(WSAECONNRESET);

    begin_test("S2 WSASetSocketSecurity errors surface with their winerror and call, at once and completed later");
    dbl_reset();
    script(step_error(WSAEINVAL));
    CHECK(finish_call(secsock_set_security_begin((secsock_fd)udp4, NULL, &err), &err) == -1 &&
              is_os_error(&err, WSAEINVAL, "WSASetSocketSecurity"),
          "immediate: kind %d winerror %ld call '%s'", err.kind, err.winerror, err.call);
    later.when = DBL_PEND_AUTO;
    later.delay_ms = 20;
    script(later);
    CHECK(finish_call(secsock_set_security_begin((secsock_fd)udp4, NULL, &err), &err) == -1 &&
              is_os_error(&err, WSAECONNRESET, "WSASetSocketSecurity"),
          "later: kind %d winerror %ld call '%s'", err.kind, err.winerror, err.call);
    end_test();
}

static void test_set_security_cancel(void)
{
    secsock_error err;
    secsock_pending *p;
    dbl_step s = step_answer(0, 0);

    begin_test("S0 WSASetSocketSecurity pending, then cancelled: WSA_OPERATION_ABORTED");
    dbl_reset();
    s.when = DBL_PEND;
    script(s);
    p = secsock_set_security_begin((secsock_fd)udp4, NULL, &err);
    CHECK(p != NULL && !secsock_pending_done(p), "not pending: %s", err.message);
    if (p != NULL) {
        CHECK(secsock_pending_cancel(p, &err) == 1, "cancel: %s", err.message);
        CHECK(finish_call(p, &err) == -1 && is_os_error(&err, WSA_OPERATION_ABORTED, "WSASetSocketSecurity"),
              "kind %d winerror %ld", err.kind, err.winerror);
    }
    end_test();
}

static void test_set_peer_target_name(void)
{
    secsock_query_request r = request(udp4);
    secsock_error err;
    dbl_call c[DBL_MAX_CALLS];
    static const WCHAR want[] = L"host/server.example";
    static const BYTE addr[4] = {192, 0, 2, 9};

    begin_test("T0 WSASetSocketPeerTargetName: protocol, peer address and the UTF-16 name with its byte length");
    dbl_reset();
    peer4(&r, "192.0.2.9", 500);
    script(step_answer(0, 0));
    CHECK(finish_call(secsock_set_peer_target_name_begin((secsock_fd)udp4, SECSOCK_PROTOCOL_IPSEC, &r.peer,
                                                         "host/server.example", &err),
                      &err) == 0,
          "failed: %s", err.message);
    calls(c);
    CHECK(c[0].function == DBL_FN_SET_TARGET_NAME && c[0].protocol == SECSOCK_PROTOCOL_IPSEC &&
              c[0].peer_family == AF_INET && c[0].peer_port == 500 && memcmp(c[0].peer_addr, addr, 4) == 0,
          "function %d protocol %lu peer %d:%u", c[0].function, (unsigned long)c[0].protocol, c[0].peer_family,
          c[0].peer_port);
    CHECK(c[0].string_lens[0] == 38 && c[0].input_len == sizeof(SOCKET_PEER_TARGET_NAME) + 38 &&
              memcmp(c[0].strings, want, 38) == 0,
          "name length %lu total %lu", (unsigned long)c[0].string_lens[0], (unsigned long)c[0].input_len);
    end_test();
}

static void test_delete_peer_target_name(void)
{
    secsock_query_request r = request(udp6);
    secsock_error err;
    dbl_call c[DBL_MAX_CALLS];

    begin_test("D0 WSADeleteSocketPeerTargetName: the peer as a SOCKADDR_IN6 of its length; no peer is an argument error");
    dbl_reset();
    peer6_loopback(&r, 4500, 0, 0);
    script(step_answer(0, 0));
    CHECK(finish_call(secsock_delete_peer_target_name_begin((secsock_fd)udp6, &r.peer, &err), &err) == 0,
          "failed: %s", err.message);
    calls(c);
    CHECK(c[0].function == DBL_FN_DELETE_TARGET_NAME && c[0].input_len == sizeof(SOCKADDR_IN6) &&
              c[0].peer_family == AF_INET6 && c[0].peer_port == 4500,
          "function %d len %lu family %d", c[0].function, (unsigned long)c[0].input_len, c[0].peer_family);
    CHECK(secsock_delete_peer_target_name_begin((secsock_fd)udp6, NULL, &err) == NULL &&
              err.kind == SECSOCK_ERR_ARGUMENT && strcmp(err.call, "peer") == 0,
          "no peer: kind %d", err.kind);
    end_test();
}

static void test_impersonation(void)
{
    secsock_query_request r = request(udp4);
    secsock_error err;
    dbl_call c[DBL_MAX_CALLS];
    int n;

    begin_test("I0/I6/R0 WSAImpersonateSocketPeer with the peer, WSARevertImpersonation; errors surface with their call");
    dbl_reset();
    peer4(&r, "192.0.2.1", 53);
    CHECK(secsock_impersonate_peer((secsock_fd)udp4, &r.peer, &err) == 0, "impersonate: %s", err.message);
    CHECK(secsock_revert_impersonation(&err) == 0, "revert: %s", err.message);
    CHECK(secsock_impersonate_peer((secsock_fd)tcp4, NULL, &err) == 0, "impersonate without peer: %s", err.message);
    script(step_error(WSAEINVAL));
    CHECK(secsock_revert_impersonation(&err) == -1 && is_os_error(&err, WSAEINVAL, "WSARevertImpersonation"),
          "revert error: winerror %ld call '%s'", err.winerror, err.call);
    script(step_error(WSAENOTCONN));
    CHECK(secsock_impersonate_peer((secsock_fd)tcp4, NULL, &err) == -1 &&
              is_os_error(&err, WSAENOTCONN, "WSAImpersonateSocketPeer"),
          "impersonate error: winerror %ld call '%s'", err.winerror, err.call);
    n = calls(c);
    CHECK(n == 5 && c[0].function == DBL_FN_IMPERSONATE && c[0].input_len == sizeof(SOCKADDR_IN) &&
              c[0].peer_port == 53 && c[1].function == DBL_FN_REVERT && c[2].input_null && c[2].input_len == 0,
          "%d calls", n);
    end_test();
}

/* mingw-w64's ws2tcpip.h lacks this one (the SDK's declares it); the test calls the double's export directly. */
WINSOCK_API_LINKAGE INT WSAAPI WSADeleteSocketPeerTargetName(SOCKET Socket, const struct sockaddr *PeerAddr,
                                                             ULONG PeerAddrLen, LPWSAOVERLAPPED Overlapped,
                                                             LPWSAOVERLAPPED_COMPLETION_ROUTINE CompletionRoutine);

/* The backend function that makes the call fn (DBL_FN_*). */
static const char *family_name(int fn)
{
    switch (fn) {
    case DBL_FN_SET_SECURITY: return "WSASetSocketSecurity";
    case DBL_FN_SET_TARGET_NAME: return "WSASetSocketPeerTargetName";
    case DBL_FN_DELETE_TARGET_NAME: return "WSADeleteSocketPeerTargetName";
    case DBL_FN_IMPERSONATE: return "WSAImpersonateSocketPeer";
    default: return "WSARevertImpersonation";
    }
}

/* Make the call fn through the backend and take its outcome: 0 or -1 with err. peer and st may be NULL. */
static int family_call(int fn, SOCKET sock, const secsock_peer *peer, const secsock_settings *st, secsock_error *err)
{
    switch (fn) {
    case DBL_FN_SET_SECURITY:
        return finish_call(secsock_set_security_begin((secsock_fd)sock, st, err), err);
    case DBL_FN_SET_TARGET_NAME:
        return finish_call(secsock_set_peer_target_name_begin((secsock_fd)sock, SECSOCK_PROTOCOL_IPSEC, peer,
                                                              "host/server.example", err),
                           err);
    case DBL_FN_DELETE_TARGET_NAME:
        return finish_call(secsock_delete_peer_target_name_begin((secsock_fd)sock, peer, err), err);
    case DBL_FN_IMPERSONATE:
        return secsock_impersonate_peer((secsock_fd)sock, peer, err);
    default:
        return secsock_revert_impersonation(err);
    }
}

/*
 * One documented error of one call: the backend fails with SECSOCK_ERR_OS, that winerror and the function
 * named; the double returned it, deciding it from the arguments (scripted 0: a success step stays queued and
 * must not be taken) or from the script (scripted 1); no handle is leaked.
 */
static void expect_family_error(const char *name, int fn, SOCKET sock, const secsock_peer *peer,
                                const secsock_settings *st, long winerror, int scripted)
{
    secsock_error err;
    dbl_call c[DBL_MAX_CALLS];
    DWORD before;
    int n;

    begin_test(name);
    dbl_reset();
    script(scripted ? step_error((int)winerror) : step_answer(0, 0));
    before = handle_count();
    CHECK(family_call(fn, sock, peer, st, &err) == -1, "the call succeeded");
    CHECK(is_os_error(&err, winerror, family_name(fn)), "kind %d winerror %ld call '%s' (want %ld from %s)",
          err.kind, err.winerror, err.call, winerror, family_name(fn));
    n = calls(c);
    CHECK(n == 1 && c[0].function == fn && c[0].result == winerror && c[0].scripted == scripted,
          "%d calls, function %d result %d scripted %d", n, c[0].function, c[0].result, c[0].scripted);
    check_handle_count(before);
    end_test();
}

static secsock_peer v4_peer(void)
{
    secsock_query_request r = request(udp4);

    peer4(&r, "192.0.2.9", 500);
    return r.peer;
}

static secsock_peer v6_peer(void)
{
    secsock_query_request r = request(udp6);

    peer6_loopback(&r, 4500, 0, 0);
    return r.peer;
}

/* Every documented error of every call, through the backend. */
static void test_family_documented_errors(void)
{
    HANDLE ev = CreateEventW(NULL, TRUE, FALSE, NULL);
    SOCKET raw = new_socket(AF_INET, SOCK_RAW, IPPROTO_ICMP, WSA_FLAG_OVERLAPPED);
    SOCKET not_sock = (SOCKET)(UINT_PTR)ev;
    secsock_peer p4 = v4_peer(), p6 = v6_peer();
    secsock_settings bad;

    if (raw == INVALID_SOCKET) {
        begin_test("family errors: a SOCK_RAW socket");
        fail("cannot create a SOCK_RAW socket (error %d)", WSAGetLastError());
        end_test();
    }
    memset(&bad, 0, sizeof(bad));
    bad.protocol = 99;

    expect_family_error("S5 WSASetSocketSecurity on a handle that is not a socket: WSAENOTSOCK (decided)",
                        DBL_FN_SET_SECURITY, not_sock, NULL, NULL, WSAENOTSOCK, 0);
    expect_family_error("S2 WSASetSocketSecurity on a SOCK_RAW socket: WSAEINVAL (decided)", DBL_FN_SET_SECURITY,
                        raw, NULL, NULL, WSAEINVAL, 0);
    expect_family_error("S2 WSASetSocketSecurity with protocol 99, an incorrect value: WSAEINVAL (decided)",
                        DBL_FN_SET_SECURITY, udp4, NULL, &bad, WSAEINVAL, 0);
    expect_family_error("S3 WSASetSocketSecurity on a connected TCP socket: WSAEISCONN (decided)",
                        DBL_FN_SET_SECURITY, tcp4, NULL, NULL, WSAEISCONN, 0);
    expect_family_error("S4 WSASetSocketSecurity WSAEMSGSIZE (scripted)", DBL_FN_SET_SECURITY, udp4, NULL, NULL,
                        WSAEMSGSIZE, 1);
    expect_family_error("S1 WSASetSocketSecurity WSAEAFNOSUPPORT (scripted)", DBL_FN_SET_SECURITY, udp4, NULL, NULL,
                        WSAEAFNOSUPPORT, 1);

    expect_family_error("T6 WSASetSocketPeerTargetName on a handle that is not a socket: WSAENOTSOCK (decided)",
                        DBL_FN_SET_TARGET_NAME, not_sock, &p4, NULL, WSAENOTSOCK, 0);
    expect_family_error("T3 WSASetSocketPeerTargetName on a SOCK_RAW socket: WSAEINVAL (decided)",
                        DBL_FN_SET_TARGET_NAME, raw, &p4, NULL, WSAEINVAL, 0);
    expect_family_error("T3 WSASetSocketPeerTargetName on UDP without a peer (zero address and port): WSAEINVAL "
                        "(decided)",
                        DBL_FN_SET_TARGET_NAME, udp4, NULL, NULL, WSAEINVAL, 0);
    expect_family_error("T4 WSASetSocketPeerTargetName on a connected TCP socket: WSAEISCONN (decided)",
                        DBL_FN_SET_TARGET_NAME, tcp4, NULL, NULL, WSAEISCONN, 0);
    expect_family_error("T2 WSASetSocketPeerTargetName WSAEFAULT (scripted)", DBL_FN_SET_TARGET_NAME, udp4, &p4,
                        NULL, WSAEFAULT, 1);
    expect_family_error("T5 WSASetSocketPeerTargetName WSAEMSGSIZE (scripted)", DBL_FN_SET_TARGET_NAME, udp4, &p4,
                        NULL, WSAEMSGSIZE, 1);
    expect_family_error("T1 WSASetSocketPeerTargetName WSAEAFNOSUPPORT (scripted)", DBL_FN_SET_TARGET_NAME, udp4,
                        &p4, NULL, WSAEAFNOSUPPORT, 1);

    expect_family_error("D5 WSADeleteSocketPeerTargetName on a handle that is not a socket: WSAENOTSOCK (decided)",
                        DBL_FN_DELETE_TARGET_NAME, not_sock, &p6, NULL, WSAENOTSOCK, 0);
    expect_family_error("D3 WSADeleteSocketPeerTargetName on a SOCK_RAW socket: WSAEINVAL (decided)",
                        DBL_FN_DELETE_TARGET_NAME, raw, &p4, NULL, WSAEINVAL, 0);
    expect_family_error("D2 WSADeleteSocketPeerTargetName WSAEFAULT (scripted)", DBL_FN_DELETE_TARGET_NAME, udp6,
                        &p6, NULL, WSAEFAULT, 1);
    expect_family_error("D4 WSADeleteSocketPeerTargetName WSAEMSGSIZE (scripted)", DBL_FN_DELETE_TARGET_NAME, udp6,
                        &p6, NULL, WSAEMSGSIZE, 1);
    expect_family_error("D1 WSADeleteSocketPeerTargetName WSAEAFNOSUPPORT (scripted)", DBL_FN_DELETE_TARGET_NAME,
                        udp6, &p6, NULL, WSAEAFNOSUPPORT, 1);

    expect_family_error("I4 WSAImpersonateSocketPeer on a handle that is not a socket: WSAENOTSOCK (decided)",
                        DBL_FN_IMPERSONATE, not_sock, &p4, NULL, WSAENOTSOCK, 0);
    expect_family_error("I5 WSAImpersonateSocketPeer on a SOCK_RAW socket: WSAEINVAL (decided)", DBL_FN_IMPERSONATE,
                        raw, &p4, NULL, WSAEINVAL, 0);
    expect_family_error("I3 WSAImpersonateSocketPeer WSAEMSGSIZE (scripted)", DBL_FN_IMPERSONATE, udp4, &p4, NULL,
                        WSAEMSGSIZE, 1);
    expect_family_error("I1 WSAImpersonateSocketPeer WSAEAFNOSUPPORT (scripted)", DBL_FN_IMPERSONATE, udp4, &p4, NULL,
                        WSAEAFNOSUPPORT, 1);

    expect_family_error("R1 WSARevertImpersonation WSASYSCALLFAILURE (scripted)", DBL_FN_REVERT, INVALID_SOCKET, NULL,
                        NULL, WSASYSCALLFAILURE, 1);

    if (raw != INVALID_SOCKET) {
        closesocket(raw);
    }
    CloseHandle(ev);
}

/* Expect `rc` from one direct call of the double, and WSAGetLastError() == want when it failed. */
static void expect_wsa(const char *what, int rc, int want)
{
    int e = rc == 0 ? 0 : WSAGetLastError();

    CHECK((want == 0 ? rc == 0 : rc == SOCKET_ERROR) && e == want, "%s: rc %d error %d (want %d)", what, rc, e, want);
}

/* The double itself, called directly with what the backend never sends: it keeps the pages' argument checks. */
static void test_double_family_checks(void)
{
    union {
        SOCKET_PEER_TARGET_NAME t;
        SOCKET_SECURITY_SETTINGS_IPSEC si;
        BYTE room[512];
    } u;
    const ULONG name_header = (ULONG)offsetof(SOCKET_PEER_TARGET_NAME, AllStrings);
    const ULONG ipsec_header = (ULONG)offsetof(SOCKET_SECURITY_SETTINGS_IPSEC, AllStrings);
    SOCKET_SECURITY_SETTINGS ss;
    SOCKADDR_IN sin;
    SOCKADDR_STORAGE other;
    dbl_call c[DBL_MAX_CALLS];
    int n, i, taken = 0;

    begin_test("the double decides S2 S4 T1 T2 T3 T5 D1 D2 D4 I1 I2 I3 from the arguments, taking no step; I6");
    dbl_reset();
    script(step_error(WSAECONNRESET)); /* no call below may take it */
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(500);
    sin.sin_addr.s_addr = htonl(0xC0000209);
    memset(&other, 0, sizeof(other));
    other.ss_family = AF_UNIX;
    other.__ss_pad1[0] = 'x';

    memset(&u, 0, sizeof(u));
    expect_wsa("T2 NULL", WSASetSocketPeerTargetName(udp4, NULL, name_header, NULL, NULL), WSAEFAULT);
    u.t.SecurityProtocol = SOCKET_SECURITY_PROTOCOL_IPSEC;
    memcpy(&u.t.PeerAddress, &sin, sizeof(sin));
    expect_wsa("T5 shorter than the structure", WSASetSocketPeerTargetName(udp4, &u.t, name_header - 1, NULL, NULL),
               WSAEMSGSIZE);
    u.t.PeerTargetNameStringLen = 4;
    expect_wsa("T5 shorter than the name", WSASetSocketPeerTargetName(udp4, &u.t, name_header + 2, NULL, NULL),
               WSAEMSGSIZE);
    u.t.PeerTargetNameStringLen = 0;
    memset(&u.t.PeerAddress, 0, sizeof(u.t.PeerAddress));
    expect_wsa("T3 zero peer", WSASetSocketPeerTargetName(udp4, &u.t, name_header, NULL, NULL), WSAEINVAL);
    ((SOCKADDR_IN *)&u.t.PeerAddress)->sin_family = AF_INET;
    expect_wsa("T3 AF_INET 0.0.0.0:0", WSASetSocketPeerTargetName(udp4, &u.t, name_header, NULL, NULL), WSAEINVAL);
    memcpy(&u.t.PeerAddress, &other, sizeof(other));
    expect_wsa("T1 AF_UNIX peer", WSASetSocketPeerTargetName(udp4, &u.t, name_header, NULL, NULL), WSAEAFNOSUPPORT);

    expect_wsa("D2 NULL", WSADeleteSocketPeerTargetName(udp4, NULL, 0, NULL, NULL), WSAEFAULT);
    expect_wsa("D4 short", WSADeleteSocketPeerTargetName(udp4, (struct sockaddr *)&sin, 8, NULL, NULL), WSAEMSGSIZE);
    expect_wsa("D1 AF_UNIX",
               WSADeleteSocketPeerTargetName(udp4, (struct sockaddr *)&other, sizeof(other), NULL, NULL),
               WSAEAFNOSUPPORT);

    expect_wsa("I2 NULL on UDP", WSAImpersonateSocketPeer(udp4, NULL, 0), WSAEFAULT);
    expect_wsa("I3 short", WSAImpersonateSocketPeer(udp4, (struct sockaddr *)&sin, 8), WSAEMSGSIZE);
    expect_wsa("I1 AF_UNIX", WSAImpersonateSocketPeer(udp4, (struct sockaddr *)&other, sizeof(other)),
               WSAEAFNOSUPPORT);

    memset(&ss, 0, sizeof(ss));
    expect_wsa("S4 shorter than SOCKET_SECURITY_SETTINGS", WSASetSocketSecurity(udp4, &ss, 4, NULL, NULL),
               WSAEMSGSIZE);
    memset(&u, 0, sizeof(u));
    u.si.SecurityProtocol = SOCKET_SECURITY_PROTOCOL_IPSEC;
    u.si.UserNameStringLen = 10;
    expect_wsa("S4 strings longer than the buffer", WSASetSocketSecurity(udp4, (SOCKET_SECURITY_SETTINGS *)&u.si,
                                                                         ipsec_header + 2, NULL, NULL),
               WSAEMSGSIZE);
    ss.SecurityProtocol = (SOCKET_SECURITY_PROTOCOL)99;
    expect_wsa("S2 protocol 99", WSASetSocketSecurity(udp4, &ss, sizeof(ss), NULL, NULL), WSAEINVAL);

    n = calls(c);
    for (i = 0; i < n && i < DBL_MAX_CALLS; i++) {
        taken += c[i].scripted;
    }
    CHECK(n == 15 && taken == 0, "%d calls, %d took a step", n, taken);
    dbl_reset();
    expect_wsa("I6 NULL on a connected TCP socket is ignored", WSAImpersonateSocketPeer(tcp4, NULL, 0), 0);
    end_test();
}

/*
 * S0/T0/D0 with an OVERLAPPED: the call pends (WSA_IO_PENDING, event low bit set), the backend's pending is not
 * done until the double completes it, then reports the outcome (success, or the error with its call named);
 * no handle is leaked.
 */
static void test_family_pending(const char *name, int fn, int error)
{
    secsock_peer peer = fn == DBL_FN_DELETE_TARGET_NAME ? v6_peer() : v4_peer();
    SOCKET sock = fn == DBL_FN_DELETE_TARGET_NAME ? udp6 : udp4;
    secsock_error err;
    secsock_pending *p = NULL;
    dbl_step s = error != 0 ? step_error(error) : step_answer(0, 0);
    dbl_call c[DBL_MAX_CALLS];
    DWORD before;
    int n, rc;

    begin_test(name);
    dbl_reset();
    s.when = DBL_PEND;
    script(s);
    before = handle_count();
    switch (fn) {
    case DBL_FN_SET_SECURITY:
        p = secsock_set_security_begin((secsock_fd)sock, NULL, &err);
        break;
    case DBL_FN_SET_TARGET_NAME:
        p = secsock_set_peer_target_name_begin((secsock_fd)sock, SECSOCK_PROTOCOL_IPSEC, &peer, "host/server.example",
                                               &err);
        break;
    default:
        p = secsock_delete_peer_target_name_begin((secsock_fd)sock, &peer, &err);
        break;
    }
    CHECK(p != NULL, "begin: %s", err.message);
    if (p != NULL) {
        HANDLE ev = (HANDLE)(UINT_PTR)secsock_pending_event(p);
        CHECK(!secsock_pending_done(p), "done before the system completed");
        CHECK(secsock_pending_wait(p, 50, &err) == 0, "wait did not time out");
        CHECK(WaitForSingleObject(ev, 0) == WAIT_TIMEOUT, "event signalled while pending");
        CHECK(dbl_release() == 1, "nothing was pending in the double");
        CHECK(secsock_pending_wait(p, 5000, &err) == 1, "not done after completion");
        rc = secsock_pending_result(p, NULL, &err);
        if (error != 0) {
            CHECK(rc == -1 && is_os_error(&err, error, family_name(fn)), "rc %d kind %d winerror %ld call '%s'", rc,
                  err.kind, err.winerror, err.call);
        } else {
            CHECK(rc == 0, "result: %s", err.message);
        }
        secsock_pending_free(p);
    }
    n = calls(c);
    CHECK(n == 1 && c[0].function == fn && c[0].result == WSA_IO_PENDING && c[0].event_low_bit && c[0].scripted,
          "%d calls, function %d result %d low bit %d", n, c[0].function, c[0].result, c[0].event_low_bit);
    check_handle_count(before);
    end_test();
}

static HANDLE own_token(void)
{
    HANDLE t = NULL;

    OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY | TOKEN_DUPLICATE, &t);
    return t;
}

static void test_token_user_and_groups(void)
{
    HANDLE t = own_token();
    secsock_account user;
    secsock_account *groups = NULL;
    size_t count = 0, i;
    secsock_error err;

    begin_test("token_user and token_groups read a real token: SID strings and account names");
    CHECK(t != NULL, "no process token");
    CHECK(secsock_token_user((uint64_t)(UINT_PTR)t, &user, &err) == 0, "token_user: %s", err.message);
    CHECK(strncmp(user.sid, "S-1-", 4) == 0 && user.account[0] != '\0', "user sid '%s' account '%s'", user.sid,
          user.account);
    CHECK(secsock_token_groups((uint64_t)(UINT_PTR)t, &groups, &count, &err) == 0, "token_groups: %s", err.message);
    CHECK(count > 0 && groups != NULL, "no groups");
    for (i = 0; i < count; i++) {
        CHECK(strncmp(groups[i].sid, "S-1-", 4) == 0, "group %u sid '%s'", (unsigned)i, groups[i].sid);
    }
    secsock_free(groups);
    CHECK(secsock_token_user(0, &user, &err) == -1 && err.kind == SECSOCK_ERR_OS &&
              strcmp(err.call, "GetTokenInformation") == 0,
          "a null token did not fail");
    CloseHandle(t);
    end_test();
}

static void test_token_is_member(void)
{
    HANDLE t = own_token();
    secsock_account *groups = NULL;
    size_t count = 0;
    secsock_error err;
    int member = -1;

    begin_test("token_is_member: a group of the token by SID is 1, an unknown SID 0, a bad SID an argument error");
    CHECK(secsock_token_groups((uint64_t)(UINT_PTR)t, &groups, &count, &err) == 0 && count > 0, "no groups");
    if (count > 0) {
        CHECK(secsock_token_is_member((uint64_t)(UINT_PTR)t, groups[0].sid, &member, &err) == 0 && member == 1,
              "member of %s: %d (%s)", groups[0].sid, member, err.message);
    }
    secsock_free(groups);
    CHECK(secsock_token_is_member((uint64_t)(UINT_PTR)t, "S-1-5-21-1-2-3-4242", &member, &err) == 0 && member == 0,
          "member of an unknown SID: %d (%s)", member, err.message);
    CHECK(secsock_token_is_member((uint64_t)(UINT_PTR)t, "S-x", &member, &err) == -1 &&
              err.kind == SECSOCK_ERR_ARGUMENT,
          "a bad SID did not fail as an argument error");
    {
        /* 600 ASCII units do not fit the 520-unit conversion: an argument error that says "too long", not that
         * the text is not UTF-8 (what it said before). */
        char long_name[601];
        memset(long_name, 'a', 600);
        long_name[600] = '\0';
        CHECK(secsock_token_is_member((uint64_t)(UINT_PTR)t, long_name, &member, &err) == -1 &&
                  err.kind == SECSOCK_ERR_ARGUMENT && strstr(err.message, "too long") != NULL,
              "a 600-unit group: kind %d '%s'", err.kind, err.message);
    }
    CloseHandle(t);
    end_test();
}

static DWORD WINAPI watchdog(LPVOID arg)
{
    (void)arg;
    Sleep(60000);
    printf("FAIL watchdog: the tests did not finish within 60 s\n%d passed, %d failed\n", passed, failed + 1);
    fflush(stdout);
    ExitProcess(3);
    return 0;
}

/* ======================================================================== */
/* Issue 11: defects the double once shared with the code. */

/* Take the result, check it carries both tokens, and close them. */
static void take_tokens(secsock_pending *p)
{
    secsock_result res;
    secsock_error err;

    CHECK(secsock_pending_result(p, &res, &err) == 0, "result: kind %d winerror %ld %s", err.kind, err.winerror,
          err.message);
    CHECK(res.peer_application_token != 0 && res.peer_machine_token != 0, "tokens not handed over");
    secsock_result_release(&res);
}

static void test_spurious_event_keeps_pending(void)
{
    secsock_pending *p;
    secsock_error err;
    dbl_step s = step_answer(SOCKET_SECURITY_PROTOCOL_IPSEC, 1);
    DWORD before;

    begin_test("defect 3: a SetEvent on the public event while the OVERLAPPED says pending is not a completion");
    s.when = DBL_PEND;
    p = begin_token_query(s, &before);
    if (p != NULL) {
        SetEvent((HANDLE)(UINT_PTR)secsock_pending_event(p));
        CHECK(!secsock_pending_done(p), "done() while the system still holds the OVERLAPPED");
        CHECK(secsock_pending_wait(p, 50, &err) == 0, "wait() did not time out while in flight");
        CHECK(dbl_in_flight() == 1, "the double no longer holds the query");
        CHECK(dbl_release() == 1, "nothing was pending in the double");
        CHECK(secsock_pending_wait(p, 5000, &err) == 1, "not done after the completion");
        take_tokens(p);
        secsock_pending_free(p);
    }
    check_handle_count(before);
    end_test();
}

static void test_spurious_event_then_free(void)
{
    secsock_pending *p;
    dbl_step s = step_answer(SOCKET_SECURITY_PROTOCOL_IPSEC, 1);
    DWORD before;

    begin_test("defect 3: free after a spurious SetEvent still cancels and waits for the system");
    s.when = DBL_PEND;
    p = begin_token_query(s, &before);
    if (p != NULL) {
        SetEvent((HANDLE)(UINT_PTR)secsock_pending_event(p));
        secsock_pending_free(p);
        CHECK(dbl_in_flight() == 0, "free returned while the system still held the OVERLAPPED");
    }
    check_handle_count(before);
    end_test();
}

/* A query asking for tokens on sock, answered by step; NULL with the test failed. */
static secsock_pending *begin_token_query_on(SOCKET sock, dbl_step step)
{
    secsock_query_request r = request(sock);
    secsock_error err;
    secsock_pending *p;

    r.token_access = TOKEN_QUERY;
    script(step);
    p = secsock_query_begin(&r, &err);
    CHECK(p != NULL, "begin: %s", err.message);
    return p;
}

static void test_socket_closed_after_completion(void)
{
    SOCKET client, server;
    secsock_pending *p;
    dbl_step s = step_answer(SOCKET_SECURITY_PROTOCOL_IPSEC, 1);
    DWORD before;
    UINT64 t[8];
    int nt;

    begin_test("defect 4: socket closed between completion and result: the answer and its tokens stand");
    dbl_reset();
    before = handle_count();
    if (tcp_pair(AF_INET, WSA_FLAG_OVERLAPPED, &client, &server) != 0) {
        fail("no socket pair");
    } else {
        s.when = DBL_PEND;
        p = begin_token_query_on(client, s);
        if (p != NULL) {
            CHECK(dbl_release() == 1, "nothing was pending in the double");
            CHECK(WaitForSingleObject((HANDLE)(UINT_PTR)secsock_pending_event(p), 5000) == WAIT_OBJECT_0,
                  "no completion");
            closesocket(client);
            take_tokens(p);
            secsock_pending_free(p);
        } else {
            closesocket(client);
        }
        closesocket(server);
    }
    nt = dbl_tokens(t, 8);
    CHECK(nt == 2 && !handle_open(t[0]) && !handle_open(t[1]), "%d tokens, a token still open", nt);
    check_handle_count(before);
    end_test();
}

static void test_socket_closed_tokens_freed(void)
{
    SOCKET client, server;
    secsock_pending *p;
    dbl_step s = step_answer(SOCKET_SECURITY_PROTOCOL_IPSEC, 1);
    DWORD before;
    UINT64 t[8];
    int nt;

    begin_test("defect 4: socket closed after completion, freed without result: the tokens are closed");
    dbl_reset();
    before = handle_count();
    if (tcp_pair(AF_INET, WSA_FLAG_OVERLAPPED, &client, &server) != 0) {
        fail("no socket pair");
    } else {
        s.when = DBL_PEND;
        p = begin_token_query_on(client, s);
        if (p != NULL) {
            CHECK(dbl_release() == 1, "nothing was pending in the double");
            CHECK(WaitForSingleObject((HANDLE)(UINT_PTR)secsock_pending_event(p), 5000) == WAIT_OBJECT_0,
                  "no completion");
        }
        closesocket(client);
        secsock_pending_free(p);
        closesocket(server);
    }
    nt = dbl_tokens(t, 8);
    CHECK(nt == 2 && !handle_open(t[0]) && !handle_open(t[1]), "%d tokens, a token still open", nt);
    check_handle_count(before);
    end_test();
}

static void unasked_handles_case(const char *what, secsock_query_request r, int pend)
{
    HANDLE bystander = CreateEventW(NULL, TRUE, FALSE, NULL);
    secsock_result res;
    secsock_error err;
    secsock_pending *p;
    dbl_step s = step_answer(SOCKET_SECURITY_PROTOCOL_IPSEC, 1);

    dbl_reset();
    dbl_variants(DBL_VAR_UNASKED_HANDLES, (UINT64)(UINT_PTR)bystander);
    s.when = pend ? DBL_PEND_AUTO : DBL_NOW;
    s.delay_ms = 10;
    script(s);
    if (run_query(&r, &res, &err) != 0) {
        fail("%s: query failed: %s", what, err.message);
    } else {
        CHECK(res.peer_application_token == 0 && res.peer_machine_token == 0, "%s: tokens %llx %llx handed over",
              what, (unsigned long long)res.peer_application_token, (unsigned long long)res.peer_machine_token);
        secsock_result_release(&res);
    }
    CHECK(handle_open((uint64_t)(UINT_PTR)bystander), "%s: a handle of the process was closed", what);
    /* The same answer left to pending_free, which closes the tokens it owns. */
    s.when = DBL_NOW;
    script(s);
    p = secsock_query_begin(&r, &err);
    if (p != NULL) {
        CHECK(secsock_pending_wait(p, 5000, &err) == 1, "%s: not done", what);
        secsock_pending_free(p);
    }
    CHECK(handle_open((uint64_t)(UINT_PTR)bystander), "%s: pending_free closed a handle of the process", what);
    CloseHandle(bystander);
    dbl_reset();
}

static void test_unasked_handles_ignored(void)
{
    secsock_query_request r = request(tcp4);

    begin_test("defect 6 Q2/Q3: token fields are read only when tokens were asked for (variant: bytes there)");
    unasked_handles_case("TCP default query", r, 0);
    unasked_handles_case("TCP default query, pending", r, 1);
    r = request(tcp6);
    peer6_loopback(&r, 7, 0, 0); /* a template, but a zero access mask */
    unasked_handles_case("TCP template with a zero mask", r, 0);
    r = request(udp4);
    peer4(&r, "127.0.0.1", 9);
    unasked_handles_case("UDP template with a zero mask", r, 0);
    end_test();
}

/* An async WSAEMSGSIZE, then the answer, with the double's variants `flags`; the size query is scripted. */
static void async_msgsize_case(const char *what, unsigned int flags, int ipsec2)
{
    secsock_query_request r = request(tcp4);
    secsock_result res;
    secsock_error err;
    dbl_step s1 = step_msgsize(100), s2 = step_answer(SOCKET_SECURITY_PROTOCOL_IPSEC, 3);
    DWORD before;

    dbl_reset();
    dbl_variants(flags, 0);
    before = handle_count();
    r.token_access = TOKEN_QUERY;
    r.ipsec2 = ipsec2;
    s1.when = s2.when = DBL_PEND_AUTO;
    s1.delay_ms = s2.delay_ms = 10;
    s2.ipsec2 = ipsec2;
    s2.mm_sa_id = 77;
    script(s1);
    script(step_msgsize(100));
    script(s2);
    if (run_query(&r, &res, &err) != 0) {
        fail("%s: query failed: %s", what, err.message);
    } else {
        CHECK(res.flags == 3 && res.peer_application_token != 0 && res.peer_machine_token != 0,
              "%s: flags %u, tokens %llx %llx", what, res.flags, (unsigned long long)res.peer_application_token,
              (unsigned long long)res.peer_machine_token);
        CHECK(!ipsec2 || (res.has_ipsec2 && res.mm_sa_id == 77), "%s: IPsec2 fields lost", what);
        secsock_result_release(&res);
    }
    check_handle_count(before);
    dbl_reset();
}

static void test_async_msgsize_variants(void)
{
    begin_test("defect 5 Q6/Q7/Q9 async WSAEMSGSIZE: right with and without a late length, bytes by either way");
    async_msgsize_case("default: no late length", 0, 0);
    async_msgsize_case("late length and InternalHigh", DBL_VAR_LATE_LENGTH, 0);
    async_msgsize_case("bytes copied by the length only", DBL_VAR_BYTES_LEN_ONLY, 0);
    async_msgsize_case("bytes copied by InternalHigh only", DBL_VAR_BYTES_OVERLAPPED_ONLY, 0);
    async_msgsize_case("IPsec2, bytes by InternalHigh only", DBL_VAR_BYTES_OVERLAPPED_ONLY, 1);
    async_msgsize_case("IPsec2, bytes by the length only", DBL_VAR_BYTES_LEN_ONLY | DBL_VAR_LATE_LENGTH, 1);
    /* Finding 17: the bytes copied through neither the length nor InternalHigh. */
    async_msgsize_case("bytes copied reported by neither way", DBL_VAR_BYTES_LEN_ONLY | DBL_VAR_BYTES_OVERLAPPED_ONLY, 0);
    async_msgsize_case("IPsec2, bytes reported by neither way",
                       DBL_VAR_BYTES_LEN_ONLY | DBL_VAR_BYTES_OVERLAPPED_ONLY, 1);
    end_test();
}

static DWORD WINAPI free_in_thread(LPVOID arg)
{
    secsock_pending_free((secsock_pending *)arg);
    return 0;
}

static void test_uncancellable_free_does_not_hang(void)
{
    secsock_pending *p;
    secsock_error err;
    dbl_step s = step_answer(SOCKET_SECURITY_PROTOCOL_IPSEC, 1);
    HANDLE th;
    DWORD rc;

    begin_test("defect 8: free of a query CancelIoEx cannot cancel leaks it instead of waiting forever");
    dbl_reset();
    dbl_variants(DBL_VAR_UNCANCELLABLE, 0);
    s.when = DBL_PEND;
    script(s);
    {
        secsock_query_request r = request(tcp4);
        p = secsock_query_begin(&r, &err);
    }
    if (p == NULL) {
        fail("begin: %s", err.message);
    } else {
        th = CreateThread(NULL, 0, free_in_thread, p, 0, NULL);
        rc = WaitForSingleObject(th, 3000);
        CHECK(rc == WAIT_OBJECT_0, "free still waiting 3 s after a cancel that found nothing");
        dbl_release(); /* the system completes into memory that was leaked, never freed */
        WaitForSingleObject(th, 10000);
        CloseHandle(th);
    }
    dbl_reset();
    end_test();
}

/* A TCP query pending in the double, which CancelIoEx cannot find (DBL_VAR_UNCANCELLABLE); NULL: failed. */
static secsock_pending *begin_uncancellable(void)
{
    secsock_query_request r = request(tcp4);
    secsock_error err;
    secsock_pending *p;
    dbl_step s = step_answer(SOCKET_SECURITY_PROTOCOL_IPSEC, 1);

    dbl_reset();
    dbl_variants(DBL_VAR_UNCANCELLABLE, 0);
    s.when = DBL_PEND;
    script(s);
    p = secsock_query_begin(&r, &err);
    if (p == NULL) {
        fail("begin: %s", err.message);
    }
    return p;
}

static void test_uncancellable_free_reports(void)
{
    secsock_pending *p;
    secsock_error err;
    secsock_query_request r = request(tcp4);

    begin_test("defect 8: secsock_pending_free_or_leak says when it leaks, and frees what completed");
    p = begin_uncancellable();
    if (p != NULL) {
        CHECK(secsock_pending_free_or_leak(p, &err) == -1 && err.kind == SECSOCK_ERR_OS &&
                  strcmp(err.call, "CancelIoEx") == 0,
              "not reported as leaked: kind %d call '%s'", err.kind, err.call);
        dbl_release();
        Sleep(50);
    }
    script(step_answer(1, 1));
    p = secsock_query_begin(&r, &err);
    CHECK(p != NULL && secsock_pending_free_or_leak(p, &err) == 0, "a completed query was not freed");
    dbl_reset();
    end_test();
}

/* ---- issue 9: secsock_query calls synchronously ---- */

/* Every query call logged since dbl_reset was made without an OVERLAPPED or completion routine. */
static void check_all_sync(const char *what, int want_calls)
{
    dbl_call c[DBL_MAX_CALLS];
    int n = calls(c), i;

    CHECK(n == want_calls, "%s: %d calls, want %d", what, n, want_calls);
    for (i = 0; i < n; i++) {
        CHECK(c[i].overlapped_null && c[i].routine_null, "%s: call %d had an OVERLAPPED", what, i);
    }
}

static void test_sync_query(void)
{
    secsock_query_request r = request(tcp4);
    secsock_result res;
    secsock_error err;
    DWORD before;
    dbl_step s = step_answer(SOCKET_SECURITY_PROTOCOL_IPSEC, 3);

    begin_test("issue 9 Q9: secsock_query calls with a NULL OVERLAPPED (synchronous), even on an overlapped socket");
    dbl_reset();
    before = handle_count();
    s.when = DBL_PEND; /* a pend the double can only honour with an OVERLAPPED */
    script(s);
    CHECK(secsock_query(&r, &res, &err) == 0 && res.flags == 3, "query: %s", err.message);
    check_all_sync("default", 1);
    r.token_access = TOKEN_QUERY;
    dbl_reset();
    script(step_msgsize(100));
    script(step_answer(SOCKET_SECURITY_PROTOCOL_IPSEC, 1));
    if (secsock_query(&r, &res, &err) != 0) {
        fail("tokens: %s", err.message);
    } else {
        CHECK(res.peer_application_token != 0 && res.peer_machine_token != 0, "tokens not handed over");
        secsock_result_release(&res);
    }
    check_all_sync("Q7 negotiation", 2);
    dbl_reset();
    script(step_error(WSAECONNRESET));
    CHECK(secsock_query(&r, &res, &err) == -1 && is_os_error(&err, WSAECONNRESET, "WSAQuerySocketSecurity"),
          "error: kind %d winerror %ld", err.kind, err.winerror);
    dbl_reset();
    {
        int i;
        for (i = 0; i < 6; i++) {
            script(step_msgsize(100 + 100 * (ULONG)i));
        }
    }
    CHECK(secsock_query(&r, &res, &err) == -1 && is_os_error(&err, WSAEMSGSIZE, "WSAQuerySocketSecurity"),
          "bounded: kind %d winerror %ld", err.kind, err.winerror);
    check_all_sync("bounded", 4);
    check_handle_count(before);
    end_test();
}

/*
 * issue 9 review, finding 2: secsock_query for sock alone asks with a NULL template first and reads the socket's
 * kind only when the system refuses; bad input still gets what secsock_query_begin's checks give.
 */
static void test_sync_query_sock_alone(void)
{
    HANDLE ev = CreateEventW(NULL, TRUE, FALSE, NULL);
    SOCKET raw = new_socket(AF_INET, SOCK_RAW, IPPROTO_ICMP, WSA_FLAG_OVERLAPPED);
    secsock_query_request r = request(tcp4);
    secsock_result res;
    secsock_error err;
    dbl_call c[DBL_MAX_CALLS];
    static const int decided[] = {WSAEINVAL, WSAENOTSOCK, WSAEAFNOSUPPORT};
    size_t i;

    begin_test("issue 9 Q1: secsock_query(sock alone) calls once with a NULL template; a TCP socket's refusal stands");
    dbl_reset();
    script(step_answer(SOCKET_SECURITY_PROTOCOL_IPSEC, 3));
    CHECK(secsock_query(&r, &res, &err) == 0 && res.flags == 3, "query: %s", err.message);
    CHECK(calls(c) == 1 && c[0].template_null && c[0].template_len == 0, "not one call with a NULL template");
    for (i = 0; i < sizeof(decided) / sizeof(decided[0]); i++) {
        dbl_reset();
        script(step_error(decided[i]));
        CHECK(secsock_query(&r, &res, &err) == -1 && is_os_error(&err, decided[i], "WSAQuerySocketSecurity"),
              "error %d: kind %d winerror %ld call '%s'", decided[i], err.kind, err.winerror, err.call);
        CHECK(calls(c) == 1, "error %d: %d calls, want 1", decided[i], calls(c));
    }
    end_test();

    begin_test("issue 9 E5/Q4: secsock_query(UDP alone): the double refuses the NULL template, peer is named");
    dbl_reset();
    r = request(udp4);
    CHECK(secsock_query(&r, &res, &err) == -1 && err.kind == SECSOCK_ERR_ARGUMENT && strcmp(err.call, "peer") == 0,
          "kind %d call '%s': %s", err.kind, err.call, err.message);
    CHECK(calls(c) == 1 && c[0].template_null && c[0].result == WSAEMSGSIZE, "not one NULL-template call refused E5");
    end_test();

    begin_test("issue 9 E6/E4: secsock_query(a non-socket, a SOCK_RAW socket) alone: as secsock_query_begin says");
    dbl_reset();
    r = request((SOCKET)(UINT_PTR)ev);
    CHECK(secsock_query(&r, &res, &err) == -1 && is_os_error(&err, WSAENOTSOCK, "getsockopt"),
          "not a socket: kind %d winerror %ld call '%s'", err.kind, err.winerror, err.call);
    if (raw == INVALID_SOCKET) {
        fail("cannot create a SOCK_RAW socket (error %d)", WSAGetLastError());
    } else {
        r = request(raw);
        CHECK(secsock_query(&r, &res, &err) == -1 && is_os_error(&err, WSAEINVAL, "WSAQuerySocketSecurity") &&
                  strstr(err.message, "SOCK_STREAM") != NULL,
              "SOCK_RAW: kind %d winerror %ld: %s", err.kind, err.winerror, err.message);
        closesocket(raw);
    }
    CloseHandle(ev);
    end_test();
}

static void test_wide_values_not_truncated(void)
{
    secsock_query_request r = request(tcp4);
    secsock_result res;
    secsock_error err;
    HANDLE h = CreateEventW(NULL, TRUE, FALSE, NULL);
    uint64_t wide_sock = ((uint64_t)1 << 32) | (uint64_t)tcp4, wide_handle = ((uint64_t)1 << 32) | (UINT_PTR)h;
    int narrow = 1, member = 0; /* x86 truncates; x64 Windows (and Wine) read only the low 32 bits */
    secsock_account user;

    begin_test("defect 9: a socket or handle value above the platform's width is refused, never truncated");
    dbl_reset();
    script(step_answer(1, 1));
    r.sock = wide_sock;
    CHECK(secsock_query(&r, &res, &err) == -1, "the query ran on a truncated socket");
    CHECK(!narrow || (err.kind == SECSOCK_ERR_ARGUMENT && strcmp(err.call, "sock") == 0), "query: kind %d '%s'",
          err.kind, err.call);
    CHECK(secsock_query_begin(&r, &err) == NULL, "begin ran on a truncated socket");
    CHECK(secsock_set_security_begin(wide_sock, NULL, &err) == NULL, "set_security ran on a truncated socket");
    CHECK(secsock_impersonate_peer(wide_sock, NULL, &err) == -1, "impersonation ran on a truncated socket");
    CHECK(secsock_token_user(wide_handle, &user, &err) == -1, "token_user read a truncated handle");
    CHECK(secsock_token_is_member(wide_handle, "S-1-1-0", &member, &err) == -1, "is_member read a truncated handle");
    CHECK(secsock_token_close(wide_handle, &err) == -1, "close took a truncated handle");
    CHECK(!narrow || (err.kind == SECSOCK_ERR_ARGUMENT && strcmp(err.call, "handle") == 0), "close: kind %d '%s'",
          err.kind, err.call);
    CHECK(handle_open((uint64_t)(UINT_PTR)h), "a handle of the process was closed through a truncated value");
    CloseHandle(h);
    dbl_reset();
    end_test();
}

/* 127.0.0.1:80 as the seam carries a peer. */
static secsock_peer loopback_peer80(void)
{
    secsock_peer peer;

    memset(&peer, 0, sizeof(peer));
    peer.addr[0] = 127;
    peer.addr[3] = 1;
    peer.port = 80;
    return peer;
}

static void test_lengths_as_the_sample(void)
{
    secsock_settings settings;
    secsock_peer peer;
    secsock_error err;
    secsock_pending *p;
    dbl_call c[DBL_MAX_CALLS];
    SOCKET udp = udp_socket(AF_INET);
    int n;

    begin_test("defect 9 S4/T5: lengths are sizeof(structure) + strings, as Microsoft's sample passes them");
    dbl_reset();
    dbl_variants(DBL_VAR_WHOLE_STRUCT, 0);
    memset(&settings, 0, sizeof(settings));
    settings.is_ipsec = 1;
    settings.user = "u";
    settings.password = "p";
    p = secsock_set_security_begin(udp, &settings, &err);
    CHECK(p != NULL && secsock_pending_result(p, NULL, &err) == 0, "set_security: %s", err.message);
    secsock_pending_free(p);
    peer = loopback_peer80();
    p = secsock_set_peer_target_name_begin(udp, SECSOCK_PROTOCOL_IPSEC, &peer, "h", &err);
    CHECK(p != NULL && secsock_pending_result(p, NULL, &err) == 0, "set_peer_target_name: %s", err.message);
    secsock_pending_free(p);
    n = calls(c);
    CHECK(n == 2 && c[0].input_len == sizeof(SOCKET_SECURITY_SETTINGS_IPSEC) + 4 &&
              c[1].input_len == sizeof(SOCKET_PEER_TARGET_NAME) + 2,
          "%d calls, lengths %lu and %lu", n, (unsigned long)c[0].input_len, (unsigned long)c[1].input_len);
    closesocket(udp);
    dbl_reset();
    end_test();
}

/* ---- review of issue 11 (findings 2, 5, 7, 12, 14, 17) ---- */

static void test_untouched_internal_is_in_flight(void)
{
    secsock_pending *p;
    secsock_result res;
    secsock_error err;
    dbl_step s = step_answer(SOCKET_SECURITY_PROTOCOL_IPSEC, 3);
    DWORD before;

    begin_test("finding 5: a provider that leaves Internal untouched while pending: a stray SetEvent is no completion");
    s.when = DBL_PEND;
    dbl_reset();
    dbl_variants(DBL_VAR_INTERNAL_UNTOUCHED, 0);
    before = handle_count();
    script(s);
    {
        secsock_query_request r = request(tcp4);
        r.token_access = TOKEN_QUERY;
        p = secsock_query_begin(&r, &err);
    }
    if (p == NULL) {
        fail("begin: %s", err.message);
    } else {
        SetEvent((HANDLE)(UINT_PTR)secsock_pending_event(p));
        CHECK(!secsock_pending_done(p), "an untouched Internal (0) was read as a completed success");
        CHECK(secsock_pending_poll(p) == SECSOCK_POLL_IN_FLIGHT, "poll() says it is not in flight");
        CHECK(dbl_in_flight() == 1, "the double no longer holds the query");
        CHECK(dbl_release() == 1, "nothing was pending in the double");
        CHECK(secsock_pending_result(p, &res, &err) == 0, "result: %s", err.message);
        CHECK(res.flags == 3 && res.peer_application_token != 0, "flags %u, token %llx: not the system's answer",
              res.flags, (unsigned long long)res.peer_application_token);
        secsock_result_release(&res);
        secsock_pending_free(p);
    }
    check_handle_count(before);
    dbl_reset();
    end_test();
}

/* An overlapped query whose first call completes later with WSAEMSGSIZE; returns once the event fired. */
static secsock_pending *begin_async_msgsize(void)
{
    secsock_query_request r = request(tcp4);
    secsock_error err;
    secsock_pending *p;
    dbl_step s = step_msgsize(100);

    s.when = DBL_PEND;
    script(s);
    p = secsock_query_begin(&r, &err);
    if (p == NULL) {
        fail("begin: %s", err.message);
        return NULL;
    }
    CHECK(dbl_release() == 1, "nothing was pending in the double");
    CHECK(WaitForSingleObject((HANDLE)(UINT_PTR)secsock_pending_event(p), 5000) == WAIT_OBJECT_0, "no completion");
    return p;
}

static void test_poll_parks_a_msgsize_completion(void)
{
    secsock_pending *p;
    secsock_result res;
    secsock_error err;
    int n;

    begin_test("finding 1: poll() makes no call for a WSAEMSGSIZE completion; wait() then re-issues it");
    dbl_reset();
    p = begin_async_msgsize();
    if (p != NULL) {
        CHECK(secsock_pending_poll(p) == SECSOCK_POLL_NEEDS_REISSUE, "poll() did not report the re-issue");
        CHECK(secsock_pending_poll(p) == SECSOCK_POLL_NEEDS_REISSUE, "a second poll() changed the state");
        n = dbl_calls(NULL, 0);
        CHECK(n == 1, "poll() made %d more calls", n - 1);
        script(step_msgsize(200)); /* the size query */
        script(step_answer(SOCKET_SECURITY_PROTOCOL_IPSEC, 1));
        CHECK(secsock_pending_wait(p, 5000, &err) == 1, "wait() did not finish the query");
        CHECK(secsock_pending_result(p, &res, &err) == 0 && res.flags == 1, "result: %s", err.message);
        n = dbl_calls(NULL, 0);
        CHECK(n == 3, "%d calls, want the first, the size query and the call again", n);
        secsock_pending_free(p);
    }
    dbl_reset();
    end_test();
}

static void test_cancel_never_reissues(void)
{
    secsock_pending *p;
    secsock_error err;
    secsock_result res;

    begin_test("finding 2: cancel() after a WSAEMSGSIZE completion ends the query, no size query, no new call");
    dbl_reset();
    p = begin_async_msgsize();
    if (p != NULL) {
        script(step_msgsize(200)); /* would be the size query */
        script(step_answer(SOCKET_SECURITY_PROTOCOL_IPSEC, 1));
        CHECK(secsock_pending_cancel(p, &err) == 0, "cancel: not reported as already done");
        CHECK(dbl_calls(NULL, 0) == 1, "cancel made %d more calls", dbl_calls(NULL, 0) - 1);
        CHECK(dbl_in_flight() == 0, "a new call is in flight after the cancel");
        CHECK(secsock_pending_result(p, &res, &err) == -1 && is_os_error(&err, WSAEMSGSIZE, "WSAQuerySocketSecurity"),
              "result: kind %d winerror %ld", err.kind, err.winerror);
        secsock_pending_free(p);
        CHECK(dbl_calls(NULL, 0) == 1, "free made more calls");
    }
    dbl_reset();
    p = begin_async_msgsize();
    if (p != NULL) {
        secsock_pending_free(p);
        CHECK(dbl_calls(NULL, 0) == 1, "free of a WSAEMSGSIZE completion made %d more calls", dbl_calls(NULL, 0) - 1);
    }
    dbl_reset();
    end_test();
}

static void test_size_query_answer_shrank(void)
{
    secsock_query_request r = request(tcp4);
    secsock_result res;
    secsock_error err;
    dbl_step s1 = step_msgsize(100);

    begin_test("finding 12 R5: after an async WSAEMSGSIZE the size query may ask for no more: re-issued, answered");
    dbl_reset();
    s1.when = DBL_PEND_AUTO;
    s1.delay_ms = 10;
    script(s1);
    script(step_answer(0, 0)); /* the size query: the plain structure's size, which the buffer already has */
    script(step_answer(SOCKET_SECURITY_PROTOCOL_IPSEC, 1));
    CHECK(run_query(&r, &res, &err) == 0, "query failed: %s", err.message);
    CHECK(res.flags == 1, "flags %u", res.flags);
    CHECK(dbl_calls(NULL, 0) == 3, "%d calls", dbl_calls(NULL, 0));
    dbl_reset();
    end_test();
}

static void test_cancel_that_finds_nothing_in_flight(void)
{
    secsock_pending *p;
    secsock_error err;

    begin_test("finding 14: cancel() that CancelIoEx cannot find while the OVERLAPPED is pending is an error");
    p = begin_uncancellable();
    if (p != NULL) {
        CHECK(secsock_pending_cancel(p, &err) == -1 && err.winerror == ERROR_NOT_FOUND &&
                  strcmp(err.call, "CancelIoEx") == 0,
              "cancel said 'already done' (kind %d winerror %ld) while the call is in flight", err.kind,
              err.winerror);
        dbl_release();
        CHECK(secsock_pending_wait(p, 5000, &err) == 1, "not done after the completion");
        secsock_pending_free(p);
    }
    dbl_reset();
    end_test();
}

static void test_target_name_read_as_characters(void)
{
    secsock_peer peer;
    secsock_error err;
    secsock_pending *p;
    SOCKET udp = udp_socket(AF_INET);

    begin_test("finding 7 T5: a system reading PeerTargetNameStringLen as characters refuses loudly (WSAEMSGSIZE)");
    dbl_reset();
    dbl_variants(DBL_VAR_TARGET_NAME_CHARS, 0);
    peer = loopback_peer80();
    p = secsock_set_peer_target_name_begin(udp, SECSOCK_PROTOCOL_IPSEC, &peer, "host/server.example", &err);
    if (p == NULL) {
        CHECK(is_os_error(&err, WSAEMSGSIZE, "WSASetSocketPeerTargetName"), "kind %d winerror %ld", err.kind,
              err.winerror);
    } else {
        CHECK(secsock_pending_result(p, NULL, &err) == -1 &&
                  is_os_error(&err, WSAEMSGSIZE, "WSASetSocketPeerTargetName"),
              "the name was taken, or another error (winerror %ld)", err.winerror);
        secsock_pending_free(p);
    }
    closesocket(udp);
    dbl_reset();
    end_test();
}

static void test_pending_outlives_backend_fini(void)
{
    secsock_query_request r = request(tcp4);
    secsock_socket_kind kind;
    secsock_result res;
    secsock_error err;
    secsock_pending *p;
    dbl_step s = step_answer(SOCKET_SECURITY_PROTOCOL_IPSEC, 3);

    begin_test("defect 9d: Winsock stays started while a pending query exists, even after backend_fini");
    dbl_reset();
    s.when = DBL_PEND;
    script(s);
    p = secsock_query_begin(&r, &err);
    if (p == NULL) {
        fail("begin: %s", err.message);
    } else {
        secsock_backend_fini(); /* the module is freed (interpreter shutdown) before the last pending */
        CHECK(secsock_socket_kind_of(tcp4, &kind, &err) == 0, "Winsock was cleaned up under the pending: %s",
              err.message);
        dbl_release();
        CHECK(secsock_pending_result(p, &res, &err) == 0 && res.flags == 3, "result: %s", err.message);
        secsock_pending_free(p);
        CHECK(secsock_backend_init(&err) == 0, "init again: %s", err.message); /* for the tests after this */
    }
    end_test();
}

/* ======================================================================== */
/*
 * Fault injections through the backend's system-call table (csrc/windows/sys_calls.h, test_hooks.h): what the
 * real advapi32, kernel32 and ws2_32 under Wine never do. Each fake stands for one SDK function; a test copies
 * the real table, replaces what it injects, and always puts the real table back.
 */

static struct sys_call_table fake_calls;

static void inject_start(void)
{
    fake_calls = *ss_debug_real_sys_calls();
}

static void inject_stop(void)
{
    ss_debug_set_sys_calls(NULL);
}

/* ---- defect 9a: the error of the failing call, not CloseHandle's ---- */

#define PEER_TOKEN ((HANDLE)(UINT_PTR)0x7700) /* never given to a real call: the fakes below take it */
#define DUP_TOKEN ((HANDLE)(UINT_PTR)0x7704)

static struct {
    DWORD first_error;      /* CheckTokenMembership on PEER_TOKEN: 0 succeeds, else fails with it */
    DWORD duplicate_error;  /* DuplicateToken: 0 gives DUP_TOKEN, else fails with it */
    DWORD dup_check_error;  /* CheckTokenMembership on DUP_TOKEN */
    DWORD close_error;      /* the last error CloseHandle leaves */
    BOOL close_result;      /* and what it returns */
    int checks, duplicates, closes, bad_arguments;
} membership;

static BOOL WINAPI fake_check_token_membership(HANDLE token, PSID sid, PBOOL is_member)
{
    DWORD e = token == DUP_TOKEN ? membership.dup_check_error : membership.first_error;

    membership.checks++;
    membership.bad_arguments += (token != PEER_TOKEN && token != DUP_TOKEN) || sid == NULL || is_member == NULL;
    if (e != 0) {
        SetLastError(e);
        return FALSE;
    }
    *is_member = TRUE;
    return TRUE;
}

static BOOL WINAPI fake_duplicate_token(HANDLE token, SECURITY_IMPERSONATION_LEVEL level, PHANDLE duplicate)
{
    membership.bad_arguments += token != PEER_TOKEN || level != SecurityIdentification;
    if (membership.duplicate_error != 0) {
        SetLastError(membership.duplicate_error);
        return FALSE;
    }
    membership.duplicates++;
    *duplicate = DUP_TOKEN;
    return TRUE;
}

static BOOL WINAPI fake_close_handle(HANDLE handle)
{
    membership.bad_arguments += handle != DUP_TOKEN;
    membership.closes++;
    SetLastError(membership.close_error); /* a CloseHandle that sets an error of its own, failing or not */
    return membership.close_result;
}

/* secsock_token_is_member on PEER_TOKEN with the faults set in `membership`; returns its rc. */
static int is_member_injected(int *member, secsock_error *err)
{
    int rc;

    membership.checks = membership.duplicates = membership.closes = membership.bad_arguments = 0;
    inject_start();
    fake_calls.check_token_membership = fake_check_token_membership;
    fake_calls.duplicate_token = fake_duplicate_token;
    fake_calls.close_handle = fake_close_handle;
    ss_debug_set_sys_calls(&fake_calls);
    rc = secsock_token_is_member((uint64_t)(UINT_PTR)PEER_TOKEN, "S-1-5-32-544", member, err);
    inject_stop();
    CHECK(membership.bad_arguments == 0, "a call got an argument it should not have");
    return rc;
}

static void test_membership_error_not_close_handles(void)
{
    secsock_error err;
    int member = -1, close_fails;

    begin_test("defect 9a (fault injection): a failed CheckTokenMembership on the duplicate is reported with its "
               "own error, not the one CloseHandle leaves; the duplicate is closed once");
    for (close_fails = 0; close_fails <= 1; close_fails++) {
        membership.first_error = ERROR_NO_IMPERSONATION_TOKEN;
        membership.duplicate_error = 0;
        membership.dup_check_error = ERROR_ACCESS_DENIED;
        membership.close_error = ERROR_INVALID_HANDLE;
        membership.close_result = close_fails ? FALSE : TRUE;
        CHECK(is_member_injected(&member, &err) == -1 && is_os_error(&err, ERROR_ACCESS_DENIED, "CheckTokenMembership"),
              "CloseHandle %s: kind %d winerror %ld call '%s' (want %d from CheckTokenMembership)",
              close_fails ? "failing" : "succeeding", err.kind, err.winerror, err.call, ERROR_ACCESS_DENIED);
        CHECK(membership.checks == 2 && membership.duplicates == 1 && membership.closes == 1,
              "%d checks, %d duplicates, %d closes", membership.checks, membership.duplicates, membership.closes);
    }
    membership.dup_check_error = 0;
    membership.close_result = TRUE;
    CHECK(is_member_injected(&member, &err) == 0 && member == 1, "the duplicate's answer was lost: %s",
          err.message);
    CHECK(membership.closes == 1, "the duplicate closed %d times", membership.closes);
    end_test();
}

static void test_membership_error_of_each_call(void)
{
    secsock_error err;
    int member = -1;

    begin_test("defect 9a (fault injection): a failed DuplicateToken or first CheckTokenMembership is reported "
               "with its own error and name");
    membership.first_error = ERROR_NO_IMPERSONATION_TOKEN;
    membership.duplicate_error = ERROR_NOT_ENOUGH_MEMORY;
    membership.dup_check_error = 0;
    membership.close_error = ERROR_INVALID_HANDLE;
    membership.close_result = TRUE;
    CHECK(is_member_injected(&member, &err) == -1 && is_os_error(&err, ERROR_NOT_ENOUGH_MEMORY, "DuplicateToken"),
          "DuplicateToken failing: kind %d winerror %ld call '%s'", err.kind, err.winerror, err.call);
    CHECK(membership.closes == 0, "closed a duplicate that was never made");
    membership.first_error = ERROR_ACCESS_DENIED;
    membership.duplicate_error = 0;
    CHECK(is_member_injected(&member, &err) == -1 && is_os_error(&err, ERROR_ACCESS_DENIED, "CheckTokenMembership"),
          "CheckTokenMembership failing: kind %d winerror %ld call '%s'", err.kind, err.winerror, err.call);
    CHECK(membership.checks == 1 && membership.duplicates == 0, "duplicated after an error other than "
          "ERROR_NO_IMPERSONATION_TOKEN");
    end_test();
}

/* ---- defect 9f: long account names come back whole ---- */

/* A name as LookupAccountSidW gives it (UTF-16) and as the backend must give it back (UTF-8). */
typedef struct {
    WCHAR wide[1100];
    char utf8[3300];
    size_t units, bytes;
} name_text;

/* Append `times` copies of one character, given as UTF-8 and as UTF-16. */
static void name_add(name_text *t, const char *utf8, const WCHAR *wide, int times)
{
    int i;

    for (i = 0; i < times; i++) {
        size_t nu = strlen(utf8), nw = wcslen(wide);
        if (t->bytes + nu >= sizeof(t->utf8) || t->units + nw >= sizeof(t->wide) / sizeof(WCHAR)) {
            fail("name_add: a test name too long for its buffer");
            return;
        }
        memcpy(t->utf8 + t->bytes, utf8, nu + 1);
        memcpy(t->wide + t->units, wide, (nw + 1) * sizeof(WCHAR));
        t->bytes += nu;
        t->units += nw;
    }
}

#define ASCII_A "a", L"a"
#define EURO "\xE2\x82\xAC", L"\x20AC"            /* U+20AC: 3 UTF-8 bytes, 1 UTF-16 unit */
#define GRIN "\xF0\x9F\x98\x80", L"\xD83D\xDE00"  /* U+1F600: 4 UTF-8 bytes, 2 UTF-16 units */

static struct {
    const name_text *domain, *name;
    int lengths_untouched; /* on success, leave the lengths as given (the page says nothing of them then) */
    DWORD claim;           /* nonzero: every call fails, saying it needs this many units for the name */
    int no_terminator;     /* fault injection: a success that fills the name's buffer without a terminator */
    int calls;
} lookup;

/* LookupAccountSidW as its page says: a buffer too small fails with ERROR_INSUFFICIENT_BUFFER and the sizes
   needed, terminator included; on success by default the lengths without terminator (as Wine writes them). */
static BOOL WINAPI fake_lookup_account_sid(LPCWSTR system, PSID sid, LPWSTR name, LPDWORD name_len, LPWSTR domain,
                                           LPDWORD domain_len, PSID_NAME_USE use)
{
    DWORD n = (DWORD)lookup.name->units, d = (DWORD)lookup.domain->units;

    (void)system;
    (void)sid;
    lookup.calls++;
    if (lookup.claim != 0) {
        *name_len = lookup.claim;
        *domain_len = d + 1;
        SetLastError(ERROR_INSUFFICIENT_BUFFER);
        return FALSE;
    }
    if (*name_len <= n || *domain_len <= d) {
        *name_len = n + 1;
        *domain_len = d + 1;
        SetLastError(ERROR_INSUFFICIENT_BUFFER);
        return FALSE;
    }
    memcpy(name, lookup.name->wide, (n + 1) * sizeof(WCHAR));
    memcpy(domain, lookup.domain->wide, (d + 1) * sizeof(WCHAR));
    if (lookup.no_terminator) {
        DWORD i;
        for (i = 0; i < *name_len; i++) {
            name[i] = L'x';
        }
    }
    if (!lookup.lengths_untouched) {
        *name_len = n;
        *domain_len = d;
    }
    *use = SidTypeUser;
    return TRUE;
}

/* secsock_token_user on the process token, LookupAccountSidW answering domain and name: rc. */
static int token_user_named(const name_text *domain, const name_text *name, int lengths_untouched,
                            secsock_account *user, secsock_error *err)
{
    HANDLE t = own_token();
    int rc;

    lookup.domain = domain;
    lookup.name = name;
    lookup.lengths_untouched = lengths_untouched;
    lookup.calls = 0;
    lookup.claim = 0;
    inject_start();
    fake_calls.lookup_account_sid = fake_lookup_account_sid;
    ss_debug_set_sys_calls(&fake_calls);
    rc = secsock_token_user((uint64_t)(UINT_PTR)t, user, err);
    inject_stop();
    CloseHandle(t);
    CHECK(lookup.calls >= 1, "LookupAccountSidW was not called through the table");
    return rc;
}

/* The account must be exactly "DOMAIN\name" (or "name" without a domain) in UTF-8. */
static void expect_account(const char *what, const name_text *domain, const name_text *name, int lengths_untouched)
{
    static char want[sizeof(((name_text *)0)->utf8) * 2 + 2];
    secsock_account user;
    secsock_error err;
    int rc;

    snprintf(want, sizeof(want), "%s%s%s", domain->utf8, domain->bytes != 0 ? "\\" : "", name->utf8);
    memset(&user, 0x5A, sizeof(user));
    rc = token_user_named(domain, name, lengths_untouched, &user, &err);
    CHECK(rc == 0, "%s (%u bytes): %s", what, (unsigned)strlen(want), err.message);
    if (rc == 0) {
        CHECK(strcmp(user.account, want) == 0, "%s: %u bytes came back for %u (first byte %02x)", what,
              (unsigned)strnlen(user.account, sizeof(user.account)), (unsigned)strlen(want),
              (unsigned)(unsigned char)user.account[0]);
        CHECK(strncmp(user.sid, "S-1-", 4) == 0, "%s: sid '%s'", what, user.sid);
    }
}

static void test_account_names_whole(void)
{
    static name_text wine, builtin, none, n519, n520, n521, grin256, euro256, euro256b, plain, app, n257, n600,
        euro300, pad;
    char what[96];
    int untouched;

    begin_test("defect 9f, review finding 1 (fault injection): account names come back whole: over the old "
               "520-byte field, ASCII, 3- and 4-byte UTF-8, 256 + 1 + 256 units (the field exactly), and names and "
               "domains over 256 units, looked up once more with the sizes written back");
    name_add(&wine, "WINE", L"WINE", 1);
    name_add(&builtin, "BUILTIN", L"BUILTIN", 1);
    /* "WINE\" + 171 euro signs (513 bytes) + ASCII: 519, 520 and 521 bytes around the old field's 519 + NUL. */
    name_add(&n519, EURO, 171);
    name_add(&n519, ASCII_A, 1);
    name_add(&n520, EURO, 171);
    name_add(&n520, ASCII_A, 2);
    name_add(&n521, EURO, 171);
    name_add(&n521, ASCII_A, 3);
    name_add(&grin256, GRIN, 128); /* 256 units (UNLEN), 512 bytes: "BUILTIN\" + it is 520 */
    name_add(&euro256, EURO, 256); /* 256 units, 768 bytes */
    name_add(&euro256b, EURO, 256);
    name_add(&plain, "nobody", L"nobody", 1);
    /* Over UNLEN: LookupAccountSidW says the buffer is too small and the sizes needed (review finding 1). */
    name_add(&app, "APPLICATION PACKAGE AUTHORITY", L"APPLICATION PACKAGE AUTHORITY", 1);
    name_add(&n257, ASCII_A, 257);
    name_add(&n600, ASCII_A, 600);
    name_add(&euro300, EURO, 300);
    name_add(&pad, ASCII_A, 500);
    for (untouched = 0; untouched <= 1; untouched++) {
        const char *how = untouched ? "lengths left as given" : "lengths written";
        snprintf(what, sizeof(what), "519 bytes, %s", how);
        expect_account(what, &wine, &n519, untouched);
        snprintf(what, sizeof(what), "520 bytes, %s", how);
        expect_account(what, &wine, &n520, untouched);
        snprintf(what, sizeof(what), "521 bytes, %s", how);
        expect_account(what, &wine, &n521, untouched);
        snprintf(what, sizeof(what), "a 256-unit name of 4-byte characters, %s", how);
        expect_account(what, &builtin, &grin256, untouched);
        snprintf(what, sizeof(what), "256 + 1 + 256 units, 1539 bytes, %s", how);
        expect_account(what, &euro256, &euro256b, untouched);
        snprintf(what, sizeof(what), "no domain, %s", how);
        expect_account(what, &none, &plain, untouched);
        snprintf(what, sizeof(what), "a 257-unit name, %s", how);
        expect_account(what, &wine, &n257, untouched);
        CHECK(lookup.calls == 2, "%s: %d calls to LookupAccountSidW (want the retry)", what, lookup.calls);
        snprintf(what, sizeof(what), "a 600-unit name, %s", how);
        expect_account(what, &app, &n600, untouched);
        snprintf(what, sizeof(what), "a 500-unit domain, %s", how);
        expect_account(what, &pad, &n257, untouched);
        snprintf(what, sizeof(what), "a 300-unit name of 3-byte characters, %s", how);
        expect_account(what, &app, &euro300, untouched);
    }
    end_test();
}

static void test_account_name_over_the_field_fails(void)
{
    static name_text wine, euro1000;
    secsock_account user;
    secsock_error err;

    begin_test("review finding 1 (fault injection): a name over the account field's 1539 UTF-8 bytes is an error "
               "naming WideCharToMultiByte, never a cut name");
    name_add(&wine, "WINE", L"WINE", 1);
    /* 1000 euro signs: 3000 bytes, more than the 1539 of the account field: an error, never a cut name. */
    name_add(&euro1000, EURO, 1000);
    memset(&user, 0x5A, sizeof(user));
    CHECK(token_user_named(&wine, &euro1000, 0, &user, &err) == -1 &&
              is_os_error(&err, ERROR_INSUFFICIENT_BUFFER, "WideCharToMultiByte") &&
              strstr(err.message, "longer than") != NULL,
          "a name too long for the field: kind %d winerror %ld call '%s': %s", err.kind, err.winerror, err.call,
          err.message);
    end_test();
}

static void test_account_name_without_terminator_fails(void)
{
    static name_text wine, plain;
    secsock_account user;
    secsock_error err;
    int rc;

    begin_test("review finding 3 (fault injection): LookupAccountSidW succeeding with a name that fills its buffer "
               "without a terminator is an error naming LookupAccountSid, never a cut name");
    name_add(&wine, "WINE", L"WINE", 1);
    name_add(&plain, "nobody", L"nobody", 1);
    lookup.no_terminator = 1;
    memset(&user, 0x5A, sizeof(user));
    rc = token_user_named(&wine, &plain, 0, &user, &err);
    lookup.no_terminator = 0;
    CHECK(rc == -1 && err.kind == SECSOCK_ERR_OS && strcmp(err.call, "LookupAccountSid") == 0 &&
              strstr(err.message, "terminator") != NULL,
          "rc %d, kind %d call '%s': %s", rc, err.kind, err.call, rc == 0 ? user.account : err.message);
    end_test();
}

static void test_account_name_beyond_unicode_string_fails(void)
{
    static name_text wine, plain;
    secsock_account user;
    secsock_error err;
    HANDLE t = own_token();

    begin_test("review finding 1 (fault injection): LookupAccountSidW asking for more than a UNICODE_STRING holds "
               "(32767 units) is an error naming LookupAccountSid, with no second call");
    name_add(&wine, "WINE", L"WINE", 1);
    name_add(&plain, "nobody", L"nobody", 1);
    lookup.domain = &wine;
    lookup.name = &plain;
    lookup.lengths_untouched = 0;
    lookup.calls = 0;
    lookup.claim = 40000;
    inject_start();
    fake_calls.lookup_account_sid = fake_lookup_account_sid;
    ss_debug_set_sys_calls(&fake_calls);
    CHECK(secsock_token_user((uint64_t)(UINT_PTR)t, &user, &err) == -1 &&
              is_os_error(&err, ERROR_INSUFFICIENT_BUFFER, "LookupAccountSid"),
          "kind %d winerror %ld call '%s'", err.kind, err.winerror, err.call);
    inject_stop();
    lookup.claim = 0;
    CHECK(lookup.calls == 1, "%d calls to LookupAccountSidW", lookup.calls);
    CloseHandle(t);
    end_test();
}

/* LookupAccountNameW as its page says: a buffer too small fails with ERROR_INSUFFICIENT_BUFFER, cbSid and
   cchReferencedDomainName receiving the sizes needed (the domain's terminator included). The account is
   Everyone (S-1-1-0), its domain a 300-unit name. */
#define LONG_DOMAIN_UNITS 300
static struct {
    int calls;
    DWORD last_domain_room;
} name_lookup;

static BOOL WINAPI fake_lookup_account_name(LPCWSTR system, LPCWSTR account, PSID sid, LPDWORD sid_size,
                                            LPWSTR domain, LPDWORD domain_len, PSID_NAME_USE use)
{
    BYTE everyone[SECURITY_MAX_SID_SIZE];
    DWORD need = sizeof(everyone), i;

    (void)system;
    (void)account;
    name_lookup.calls++;
    name_lookup.last_domain_room = *domain_len;
    if (!CreateWellKnownSid(WinWorldSid, NULL, everyone, &need)) {
        return FALSE;
    }
    if (*sid_size < need || *domain_len <= LONG_DOMAIN_UNITS) {
        *sid_size = need;
        *domain_len = LONG_DOMAIN_UNITS + 1;
        SetLastError(ERROR_INSUFFICIENT_BUFFER);
        return FALSE;
    }
    memcpy(sid, everyone, need);
    *sid_size = need;
    for (i = 0; i < LONG_DOMAIN_UNITS; i++) {
        domain[i] = L'D';
    }
    domain[LONG_DOMAIN_UNITS] = 0;
    *domain_len = LONG_DOMAIN_UNITS;
    *use = SidTypeWellKnownGroup;
    return TRUE;
}

static void test_member_by_name_long_domain(void)
{
    secsock_error err;
    HANDLE t = own_token();
    int by_sid = -1, by_name = -1, rc;

    begin_test("review finding 4 (fault injection): an account whose domain is over 256 units (LookupAccountNameW: "
               "the buffer is too small, with the sizes needed) is looked up once more with those sizes");
    CHECK(secsock_token_is_member((uint64_t)(UINT_PTR)t, "S-1-1-0", &by_sid, &err) == 0, "by SID: %s",
          err.message);
    name_lookup.calls = 0;
    inject_start();
    fake_calls.lookup_account_name = fake_lookup_account_name;
    ss_debug_set_sys_calls(&fake_calls);
    rc = secsock_token_is_member((uint64_t)(UINT_PTR)t, "Everyone", &by_name, &err);
    inject_stop();
    CHECK(rc == 0, "by name: kind %d winerror %ld call '%s': %s", err.kind, err.winerror, err.call, err.message);
    CHECK(name_lookup.calls == 2 && name_lookup.last_domain_room >= LONG_DOMAIN_UNITS + 1,
          "%d calls to LookupAccountNameW, the last with room for %lu units", name_lookup.calls,
          (unsigned long)name_lookup.last_domain_room);
    CHECK(rc != 0 || by_name == by_sid, "by name %d, by SID %d", by_name, by_sid);
    CloseHandle(t);
    end_test();
}

/* ---- WSAGetOverlappedResult's own errors (ws2_32) ---- */

static int overlapped_result_error; /* what the fake WSAGetOverlappedResult fails with */
static int overlapped_result_calls;

static BOOL WSAAPI fake_wsa_get_overlapped_result(SOCKET sock, LPWSAOVERLAPPED ov, LPDWORD transferred, BOOL wait,
                                                  LPDWORD flags)
{
    (void)sock;
    (void)ov;
    (void)transferred;
    (void)wait;
    (void)flags;
    overlapped_result_calls++;
    WSASetLastError(overlapped_result_error);
    return FALSE;
}

static void inject_overlapped_result_error(int code)
{
    overlapped_result_error = code;
    overlapped_result_calls = 0;
    inject_start();
    fake_calls.wsa_get_overlapped_result = fake_wsa_get_overlapped_result;
    ss_debug_set_sys_calls(&fake_calls);
}

/* The errors WSAGetOverlappedResult may give about its own arguments rather than the operation (overlapped.c's
   about_the_lookup); the page of WSAGetOverlappedResult names WSAENOTSOCK, WSA_INVALID_HANDLE,
   WSA_INVALID_PARAMETER and WSAEFAULT among its errors. */
static const int lookup_errors[] = {WSAENOTSOCK, WSA_INVALID_HANDLE, WSA_INVALID_PARAMETER, WSAEFAULT};
/* Every error the page lists, and one it does not: while the OVERLAPPED still says STATUS_PENDING the system
   owns it, whatever WSAGetOverlappedResult says (WSAENETDOWN and WSANOTINITIALISED are on the page too). */
static const int in_flight_errors[] = {WSAENOTSOCK, WSA_INVALID_HANDLE, WSA_INVALID_PARAMETER, WSAEFAULT,
                                       WSAENETDOWN, WSANOTINITIALISED, WSAECONNRESET};

/* The variants in which a completed success may come back (DOUBLE.md): its length through the caller's length,
   InternalHigh, both or neither, with the caller's Internal written by the provider or left until completion. */
static const unsigned int completion_variants[] = {
    0,
    DBL_VAR_BYTES_LEN_ONLY,
    DBL_VAR_BYTES_OVERLAPPED_ONLY,
    DBL_VAR_BYTES_LEN_ONLY | DBL_VAR_BYTES_OVERLAPPED_ONLY,
    DBL_VAR_INTERNAL_UNTOUCHED,
    DBL_VAR_INTERNAL_UNTOUCHED | DBL_VAR_BYTES_LEN_ONLY,
    DBL_VAR_INTERNAL_UNTOUCHED | DBL_VAR_BYTES_OVERLAPPED_ONLY,
    DBL_VAR_INTERNAL_UNTOUCHED | DBL_VAR_BYTES_LEN_ONLY | DBL_VAR_BYTES_OVERLAPPED_ONLY,
};

static void test_overlapped_result_refuses_after_completion(void)
{
    secsock_query_request r = request(tcp4);
    secsock_result res;
    secsock_error err;
    secsock_pending *p;
    dbl_step s = step_answer(SOCKET_SECURITY_PROTOCOL_IPSEC, 1);
    DWORD before;
    UINT64 t[8];
    int nt;
    size_t i, v;

    begin_test("findings 4/6 (fault injection): WSAGetOverlappedResult failing about itself after a completion: "
               "the OVERLAPPED's success and its tokens stand, in every variant of how the completion reports");
    r.token_access = TOKEN_QUERY;
    s.when = DBL_PEND;
    for (v = 0; v < sizeof(completion_variants) / sizeof(completion_variants[0]) && !current_failed; v++) {
        for (i = 0; i < sizeof(lookup_errors) / sizeof(lookup_errors[0]) && !current_failed; i++) {
            unsigned int var = completion_variants[v];
            dbl_reset();
            dbl_variants(var, 0);
            before = handle_count();
            script(s);
            p = secsock_query_begin(&r, &err);
            if (p == NULL) {
                fail("variants %#x: begin: %s", var, err.message);
                break;
            }
            CHECK(dbl_release() == 1, "variants %#x: nothing was pending in the double", var);
            CHECK(WaitForSingleObject((HANDLE)(UINT_PTR)secsock_pending_event(p), 5000) == WAIT_OBJECT_0,
                  "variants %#x: no completion", var);
            inject_overlapped_result_error(lookup_errors[i]);
            CHECK(secsock_pending_result(p, &res, &err) == 0, "variants %#x, error %d: result: kind %d winerror "
                  "%ld %s", var, lookup_errors[i], err.kind, err.winerror, err.message);
            inject_stop();
            CHECK(overlapped_result_calls >= 1, "variants %#x, error %d: WSAGetOverlappedResult was not asked", var,
                  lookup_errors[i]);
            CHECK(res.flags == 1 && res.peer_application_token != 0 && res.peer_machine_token != 0,
                  "variants %#x, error %d: flags %u, tokens not handed over", var, lookup_errors[i], res.flags);
            secsock_result_release(&res);
            secsock_pending_free(p);
            nt = dbl_tokens(t, 8);
            CHECK(nt == 2 && !handle_open(t[0]) && !handle_open(t[1]), "variants %#x, error %d: %d tokens, one "
                  "still open", var, lookup_errors[i], nt);
            check_handle_count(before);
        }
    }
    dbl_reset();
    end_test();
}

static void test_overlapped_result_refuses_in_flight(void)
{
    secsock_pending *p;
    secsock_error err;
    dbl_step s = step_answer(SOCKET_SECURITY_PROTOCOL_IPSEC, 1);
    DWORD before;
    size_t i;

    begin_test("defect 3 (fault injection): WSAGetOverlappedResult failing with any error while the OVERLAPPED is "
               "still pending (event set by someone else): still in flight, then the real completion");
    for (i = 0; i < sizeof(in_flight_errors) / sizeof(in_flight_errors[0]); i++) {
        s.when = DBL_PEND;
        p = begin_token_query(s, &before);
        if (p == NULL) {
            break;
        }
        SetEvent((HANDLE)(UINT_PTR)secsock_pending_event(p));
        inject_overlapped_result_error(in_flight_errors[i]);
        CHECK(secsock_pending_poll(p) == SECSOCK_POLL_IN_FLIGHT, "error %d: not in flight", in_flight_errors[i]);
        CHECK(!secsock_pending_done(p), "error %d: done while the system holds the OVERLAPPED", in_flight_errors[i]);
        inject_stop();
        CHECK(overlapped_result_calls >= 1, "error %d: WSAGetOverlappedResult was not asked", in_flight_errors[i]);
        CHECK(dbl_in_flight() == 1, "error %d: the double no longer holds the query", in_flight_errors[i]);
        CHECK(dbl_release() == 1, "error %d: nothing was pending in the double", in_flight_errors[i]);
        while (dbl_in_flight() != 0) {
            Sleep(1); /* the double completes on its own thread: let it be done with the OVERLAPPED first, so a
                         wrong "done" above cannot make the free below race it (the watchdog bounds this) */
        }
        CHECK(secsock_pending_wait(p, 5000, &err) == 1, "error %d: not done after the completion",
              in_flight_errors[i]);
        take_tokens(p);
        secsock_pending_free(p);
        check_handle_count(before);
        if (current_failed) {
            break; /* the first code's failure says it; the others would repeat it */
        }
    }
    end_test();
}

/* ---- a call made without an OVERLAPPED that says WSA_IO_PENDING ---- */

/* Whether ptr lies in a block some heap of the process holds allocated (HeapWalk over GetProcessHeaps). A block
   freed and then reallocated (to anyone) before the walk reads as allocated too: a caller asking "still
   allocated?" can be answered yes wrongly, so it allocates nothing between the call and the walk. */
static int heap_block_busy(const void *ptr)
{
    HANDLE heaps[64];
    DWORD n = GetProcessHeaps(64, heaps), i;
    int busy = 0;

    for (i = 0; i < n && i < 64 && !busy; i++) {
        PROCESS_HEAP_ENTRY e;
        if (!HeapLock(heaps[i])) {
            continue;
        }
        memset(&e, 0, sizeof(e));
        while (HeapWalk(heaps[i], &e)) {
            if ((e.wFlags & PROCESS_HEAP_ENTRY_BUSY) != 0 && (const BYTE *)ptr >= (const BYTE *)e.lpData &&
                (const BYTE *)ptr < (const BYTE *)e.lpData + e.cbData) {
                busy = 1;
                break;
            }
        }
        HeapUnlock(heaps[i]);
    }
    return busy;
}

static void test_sync_call_pending_leaks(void)
{
    secsock_query_request r = request(tcp4);
    secsock_result res;
    secsock_error err;
    void *buffer;

    begin_test("finding 13 (fault injection): a synchronous WSAQuerySocketSecurity answering WSA_IO_PENDING fails "
               "with that code and leaves its buffer allocated (the system may still write it)");
    dbl_reset();
    CHECK(secsock_query(&r, &res, &err) == 0, "query: %s", err.message);
    buffer = dbl_last_query_buffer();
    CHECK(buffer != NULL && !heap_block_busy(buffer), "harness: the buffer of a finished query still reads as "
          "allocated, so the check below could not fail");
    dbl_reset();
    script(step_error(WSA_IO_PENDING));
    CHECK(secsock_query(&r, &res, &err) == -1 && is_os_error(&err, WSA_IO_PENDING, "WSAQuerySocketSecurity") &&
              strstr(err.message, "leaked") != NULL,
          "kind %d winerror %ld call '%s': %s", err.kind, err.winerror, err.call, err.message);
    CHECK(res.peer_application_token == 0 && res.peer_machine_token == 0 && res.flags == 0, "a result was given");
    /* Nothing allocates between the query and the walk (the CHECK above prints only when it fails), though
       another thread (the watchdog, Wine's own) could still reuse a block freed by mistake: this can pass
       wrongly in that case, never fail wrongly. */
    buffer = dbl_last_query_buffer();
    CHECK(buffer != NULL && heap_block_busy(buffer), "the buffer the system may still write was freed");
    end_test();
}

static void test_async_size_query_pending_leaks(void)
{
    secsock_pending *p;
    secsock_result res;
    secsock_error err;
    dbl_call c[DBL_MAX_CALLS];
    int n;

    begin_test("finding 13 (fault injection): the synchronous size query of an overlapped query's re-negotiation "
               "(after a WSAEMSGSIZE completed later) answering WSA_IO_PENDING ends the query with that code; "
               "freeing it leaks it with its WSAStartup reference, and says so");
    dbl_reset();
    p = begin_async_msgsize();
    if (p == NULL) {
        end_test();
        return;
    }
    script(step_error(WSA_IO_PENDING));
    CHECK(secsock_pending_result(p, &res, &err) == -1 && is_os_error(&err, WSA_IO_PENDING, "WSAQuerySocketSecurity") &&
              strstr(err.message, "leaked") != NULL && strstr(err.message, "WSAStartup") != NULL,
          "result: kind %d winerror %ld call '%s': %s", err.kind, err.winerror, err.call, err.message);
    n = calls(c);
    CHECK(n == 2 && c[1].info_null && c[1].overlapped_null, "%d calls; the second %s a buffer, %s an OVERLAPPED", n,
          n == 2 && c[1].info_null ? "without" : "with", n == 2 && c[1].overlapped_null ? "without" : "with");
    CHECK(res.peer_application_token == 0 && res.peer_machine_token == 0 && res.flags == 0, "a result was given");
    CHECK(secsock_pending_free_or_leak(p, &err) == -1 && is_os_error(&err, WSA_IO_PENDING, "WSAQuerySocketSecurity") &&
              strstr(err.message, "WSAStartup") != NULL,
          "free: kind %d winerror %ld call '%s': %s", err.kind, err.winerror, err.call, err.message);
    dbl_reset();
    end_test();
}

/* ISSUE11_TESTS_END */

int main(void)
{
    secsock_error err;
    HANDLE dog;

    setvbuf(stdout, NULL, _IONBF, 0);
    dog = CreateThread(NULL, 0, watchdog, NULL, 0, NULL);
    if (dog != NULL) {
        CloseHandle(dog);
    }
    if (secsock_backend_init(&err) != 0) {
        printf("FAIL setup: secsock_backend_init: %s\n0 passed, 1 failed\n", err.message);
        return 1;
    }
    if (!load_double()) {
        printf("FAIL setup: fwpuclnt.dll is not the test double (WINEDLLOVERRIDES=fwpuclnt=n?)\n0 passed, 1 failed\n");
        return 1;
    }
    if (strcmp(secsock_backend_name(), "windows") != 0 || tcp_pair(AF_INET, WSA_FLAG_OVERLAPPED, &tcp4, &tcp4_server) != 0 ||
        tcp_pair(AF_INET6, WSA_FLAG_OVERLAPPED, &tcp6, &tcp6_server) != 0 ||
        tcp_pair(AF_INET, 0, &tcp_sync, &tcp_sync_server) != 0 || (udp4 = udp_socket(AF_INET)) == INVALID_SOCKET ||
        (udp6 = udp_socket(AF_INET6)) == INVALID_SOCKET) {
        printf("FAIL setup: cannot create the loopback sockets (error %d)\n0 passed, 1 failed\n", WSAGetLastError());
        return 1;
    }

    test_double_size_query();
    test_double_short_buffer();
    test_double_null_len();
    test_double_udp_template();
    test_double_not_socket();
    test_double_zero_template();
    test_double_no_mask_no_tokens();
    test_double_posts_when_bit_clear();

    test_handle_count_sees_a_leak();
    test_kind_of();
    test_tcp_default_null_template();
    test_tcp_tokens_template();
    test_tokens_freed_without_result();
    test_result_twice();
    test_larger_size_on_retry();
    expect_size_error("Q7 WSAEMSGSIZE asking for an absurd size (1 GiB): a clear error, no allocation, no retry",
                      1u << 30);
    expect_size_error("Q7 WSAEMSGSIZE asking for less than the 8-byte header: a clear error, no retry", 4);
    test_retries_bounded();
    test_success_below_header();
    test_success_short_structure();
    test_ipsec2_full();
    test_ipsec2_plain_answer();
    test_ipsec2_protocol_short_answer();
    test_errors_surface(0);
    test_errors_surface(1);
    test_not_a_socket();
    test_wrong_kind_socket();
    test_udp_without_peer();
    test_impersonate_udp_without_peer();
    test_udp_wrong_family_peer();
    test_udp4_peer();
    test_udp6_peer();
    test_tcp6_optional_peer();
    test_init_balanced();
    test_pending_then_complete();
    test_pending_msgsize_reissued();
    test_cancel_while_pending();
    test_free_while_pending();
    test_free_pending_completed_with_tokens();
    test_error_paths_leak_nothing();
    test_iocp_no_stray_packet();
    test_non_overlapped_socket();
    test_wait_in_several_threads();

    test_set_security_default();
    test_set_security_plain();
    test_set_security_ipsec_strings();
    test_set_security_bad_utf8();
    test_set_security_errors();
    test_set_security_cancel();
    test_set_peer_target_name();
    test_delete_peer_target_name();
    test_impersonation();
    test_double_family_checks();
    test_family_documented_errors();
    test_family_pending("S0 WSASetSocketSecurity pending, then completed: success", DBL_FN_SET_SECURITY, 0);
    test_family_pending("S2 WSASetSocketSecurity pending, then completed with WSAEINVAL", DBL_FN_SET_SECURITY,
                        WSAEINVAL);
    test_family_pending("T0 WSASetSocketPeerTargetName pending, then completed: success", DBL_FN_SET_TARGET_NAME, 0);
    test_family_pending("T3 WSASetSocketPeerTargetName pending, then completed with WSAEINVAL",
                        DBL_FN_SET_TARGET_NAME, WSAEINVAL);
    test_family_pending("D0 WSADeleteSocketPeerTargetName pending, then completed: success", DBL_FN_DELETE_TARGET_NAME,
                        0);
    test_family_pending("D5 WSADeleteSocketPeerTargetName pending, then completed with WSAENOTSOCK",
                        DBL_FN_DELETE_TARGET_NAME, WSAENOTSOCK);
    test_token_user_and_groups();
    test_token_is_member();
    test_spurious_event_keeps_pending();
    test_spurious_event_then_free();
    test_socket_closed_after_completion();
    test_socket_closed_tokens_freed();
    test_unasked_handles_ignored();
    test_async_msgsize_variants();
    test_uncancellable_free_does_not_hang();
    test_uncancellable_free_reports();
    test_sync_query();
    test_sync_query_sock_alone();
    test_wide_values_not_truncated();
    test_lengths_as_the_sample();
    test_pending_outlives_backend_fini();
    test_untouched_internal_is_in_flight();
    test_poll_parks_a_msgsize_completion();
    test_cancel_never_reissues();
    test_size_query_answer_shrank();
    test_cancel_that_finds_nothing_in_flight();
    test_target_name_read_as_characters();
    test_membership_error_not_close_handles();
    test_membership_error_of_each_call();
    test_account_names_whole();
    test_account_name_over_the_field_fails();
    test_account_name_without_terminator_fails();
    test_account_name_beyond_unicode_string_fails();
    test_member_by_name_long_domain();
    test_overlapped_result_refuses_after_completion();
    test_overlapped_result_refuses_in_flight();
    test_sync_call_pending_leaks();
    test_async_size_query_pending_leaks();

    closesocket(tcp4);
    closesocket(tcp4_server);
    closesocket(tcp6);
    closesocket(tcp6_server);
    closesocket(tcp_sync);
    closesocket(tcp_sync_server);
    closesocket(udp4);
    closesocket(udp6);
    secsock_backend_fini();
    printf("%d passed, %d failed\n", passed, failed);
    return failed > 0 || passed == 0 ? 1 : 0;
}
