/*
 * Decoding of a WSAQuerySocketSecurity answer, apart from the Windows backend so that it builds anywhere (no
 * windows.h): the fuzz target in hardening/fuzz/ drives it natively on Linux. The offsets are the ABI shared
 * with fwpuclnt.dll, the same on x86 and x64; csrc/windows/query.c asserts each against the real structures.
 */
#ifndef SECSOCK_DECODE_H
#define SECSOCK_DECODE_H

#include "secsock_backend.h"

/* SOCKET_SECURITY_QUERY_INFO */
#define SECSOCK_INFO_OFF_PROTOCOL 0u
#define SECSOCK_INFO_OFF_FLAGS 4u
#define SECSOCK_INFO_OFF_APP_TOKEN 8u
#define SECSOCK_INFO_OFF_MACHINE_TOKEN 16u
#define SECSOCK_INFO_SIZE 24u
/* SOCKET_SECURITY_QUERY_INFO_IPSEC2 */
#define SECSOCK_INFO2_OFF_MM_SA_ID 24u
#define SECSOCK_INFO2_OFF_QM_SA_ID 32u
#define SECSOCK_INFO2_OFF_WINERR 40u
#define SECSOCK_INFO2_OFF_CONTEXT 44u
#define SECSOCK_INFO2_SIZE 64u
/* Protocol + Flags: the part every answer must have. */
#define SECSOCK_INFO_HEADER 8u

/*
 * Decode n returned bytes from a buffer of buf_size bytes (R5: by the size and protocol actually returned):
 * each field only when the returned bytes cover it, the IPsec2 fields only for protocol IPSEC2 and a full
 * structure. Reads at most min(n, buf_size) bytes. 0, or -1 with err set when n is below the header.
 * Token handles land in out; ownership is the caller's business.
 */
int secsock_decode_info(const unsigned char *buf, size_t buf_size, size_t n, secsock_result *out,
                        secsock_error *err);

/*
 * The same, for a query that may not have asked for tokens: with tokens_asked 0 (a default query, Q2, or a
 * zero PeerTokenAccessMask, Q3) the token fields are never read, whatever bytes stand there, so nothing the
 * caller did not ask for becomes a handle it owns and closes (issue 11, defect 6). secsock_decode_info is
 * this with tokens_asked 1.
 */
int secsock_decode_info_asked(const unsigned char *buf, size_t buf_size, size_t n, int tokens_asked,
                              secsock_result *out, secsock_error *err);

#endif /* SECSOCK_DECODE_H */
