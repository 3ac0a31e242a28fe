/*
 * The C-level cost of a Windows query under Wine against the fwpuclnt.dll double (tests/windows/): how much
 * the backend (secsock_query: template, buffer, OVERLAPPED and event, decoding, negotiation) adds over the bare
 * WSAQuerySocketSecurity call on the same socket. Built and run by benchmarks/windows/run.sh; prints one JSON
 * line. The double answers from memory, so these are the backend's own costs, not Windows' IPsec lookup.
 */
#include <winsock2.h>
#include <ws2tcpip.h>
#include <mstcpip.h>
#include <windows.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "secsock_backend.h"
#include "fwpuclnt_double.h"

#define N 20000

static double freq;

static double now_ns(void)
{
    LARGE_INTEGER t;
    QueryPerformanceCounter(&t);
    return (double)t.QuadPart * 1e9 / freq;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median over 20 batches of N/20 calls, per call in ns. */
#define MEASURE(out, stmt)                                                                                    \
    do {                                                                                                       \
        double batch[20];                                                                                      \
        int b_, i_;                                                                                            \
        for (b_ = 0; b_ < 20; b_++) {                                                                          \
            double t0_ = now_ns();                                                                             \
            for (i_ = 0; i_ < N / 20; i_++) {                                                                  \
                stmt;                                                                                          \
            }                                                                                                  \
            batch[b_] = (now_ns() - t0_) / (N / 20);                                                           \
        }                                                                                                      \
        qsort(batch, 20, sizeof(double), cmp);                                                                 \
        out = batch[10];                                                                                       \
    } while (0)

static int tcp_pair(DWORD flags, SOCKET *client, SOCKET *server)
{
    struct sockaddr_in a;
    int len = sizeof(a);
    SOCKET l = WSASocketW(AF_INET, SOCK_STREAM, IPPROTO_TCP, NULL, 0, WSA_FLAG_OVERLAPPED);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (l == INVALID_SOCKET || bind(l, (struct sockaddr *)&a, len) != 0 || listen(l, 1) != 0 ||
        getsockname(l, (struct sockaddr *)&a, &len) != 0) {
        return -1;
    }
    *client = WSASocketW(AF_INET, SOCK_STREAM, IPPROTO_TCP, NULL, 0, flags);
    if (*client == INVALID_SOCKET || connect(*client, (struct sockaddr *)&a, len) != 0) {
        return -1;
    }
    *server = accept(l, NULL, NULL);
    closesocket(l);
    return *server == INVALID_SOCKET ? -1 : 0;
}

int main(void)
{
    LARGE_INTEGER f;
    secsock_error err;
    secsock_result r;
    secsock_query_request req;
    SOCKET c_sync, s_sync, c_ov, s_ov;
    unsigned char buf[64];
    ULONG len;
    struct sockaddr_storage ss;
    int sl;
    double direct, peer, query_sync, query_ov, query_neg, query_tmpl, script_only, ev_create, ev_set, proto_info;
    HANDLE ev;
    WSAPROTOCOL_INFOW pinfo;
    int psize;
    dbl_script_fn dbl_script;
    dbl_reset_fn dbl_reset;
    dbl_step step;
    HMODULE m;

    QueryPerformanceFrequency(&f);
    freq = (double)f.QuadPart;
    if (secsock_backend_init(&err) != 0) {
        fprintf(stderr, "init: %s\n", err.message);
        return 1;
    }
    m = LoadLibraryA("fwpuclnt.dll");
    dbl_script = (dbl_script_fn)(void (*)(void))GetProcAddress(m, "dbl_script");
    dbl_reset = (dbl_reset_fn)(void (*)(void))GetProcAddress(m, "dbl_reset");
    if (dbl_script == NULL || dbl_reset == NULL) {
        fprintf(stderr, "bench: fwpuclnt.dll is not the double (no dbl_script)\n");
        return 1;
    }
    if (tcp_pair(0, &c_sync, &s_sync) != 0 || tcp_pair(WSA_FLAG_OVERLAPPED, &c_ov, &s_ov) != 0) {
        fprintf(stderr, "bench: no TCP pair (%d)\n", WSAGetLastError());
        return 1;
    }
    dbl_reset();
    memset(&req, 0, sizeof(req));

    MEASURE(peer, (sl = sizeof(ss), getpeername(c_sync, (struct sockaddr *)&ss, &sl)));
    MEASURE(direct, (len = sizeof(buf), WSAQuerySocketSecurity(c_sync, NULL, 0, (SOCKET_SECURITY_QUERY_INFO *)buf,
                                                               &len, NULL, NULL)));
    req.sock = (secsock_fd)c_sync;
    if (secsock_query(&req, &r, &err) != 0) {
        fprintf(stderr, "query: %s\n", err.message);
        return 1;
    }
    MEASURE(query_sync, secsock_query(&req, &r, &err));
    req.sock = (secsock_fd)c_ov;
    MEASURE(query_ov, secsock_query(&req, &r, &err));
    /* A template (token access asked): the non-default path. */
    req.sock = (secsock_fd)c_sync;
    req.token_access = 0x8;
    MEASURE(query_tmpl, secsock_query(&req, &r, &err));
    req.token_access = 0;
    /* Negotiation: the system asks for a bigger buffer once (WSAEMSGSIZE), then answers. */
    memset(&step, 0, sizeof(step));
    step.kind = DBL_MSGSIZE;
    step.needed = 4096;
    MEASURE(script_only, (dbl_script(&step), dbl_reset()));
    MEASURE(query_neg, (dbl_script(&step), secsock_query(&req, &r, &err)));
    if (secsock_query(&req, &r, &err) != 0) {
        fprintf(stderr, "query: %s\n", err.message);
        return 1;
    }
    /* What the backend does around the call: an event per query, Set/ResetEvent, SO_PROTOCOL_INFOW. */
    MEASURE(ev_create, (ev = CreateEventW(NULL, TRUE, FALSE, NULL), CloseHandle(ev)));
    ev = CreateEventW(NULL, TRUE, FALSE, NULL);
    MEASURE(ev_set, (SetEvent(ev), ResetEvent(ev)));
    CloseHandle(ev);
    MEASURE(proto_info, (psize = (int)sizeof(pinfo),
                         getsockopt(c_sync, SOL_SOCKET, SO_PROTOCOL_INFOW, (char *)&pinfo, &psize)));
    printf("{\"getpeername_ns\": %.0f, \"direct_call_ns\": %.0f, \"secsock_query_ns\": %.0f, "
           "\"secsock_query_overlapped_socket_ns\": %.0f, \"secsock_query_with_template_ns\": %.0f, "
           "\"secsock_query_negotiation_ns\": %.0f, \"script_step_ns\": %.0f, \"create_close_event_ns\": %.0f, "
           "\"set_reset_event_ns\": %.0f, \"getsockopt_protocol_info_ns\": %.0f}\n",
           peer, direct, query_sync, query_ov, query_tmpl, query_neg - script_only / 2, script_only / 2, ev_create,
           ev_set, proto_info);
    return 0;
}
