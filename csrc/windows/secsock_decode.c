/* The decoder of WSAQuerySocketSecurity answers (see secsock_decode.h). No platform code, no Python.h. */
#include "secsock_decode.h"

#include <string.h>

int secsock_decode_info(const unsigned char *buf, size_t buf_size, size_t n, secsock_result *out,
                        secsock_error *err)
{
    return secsock_decode_info_asked(buf, buf_size, n, 1, out, err);
}

int secsock_decode_info_asked(const unsigned char *buf, size_t buf_size, size_t n, int tokens_asked,
                              secsock_result *out, secsock_error *err)
{
    memset(out, 0, sizeof(*out));
    if (n > buf_size) {
        n = buf_size; /* the system cannot have written past the buffer it was given */
    }
    if (buf == NULL || n < SECSOCK_INFO_HEADER) {
        return secsock_error_set(err, SECSOCK_ERR_OS, 0, 10040L /* WSAEMSGSIZE */, "WSAQuerySocketSecurity",
                                 "WSAQuerySocketSecurity succeeded but returned %lu bytes, fewer than the %u-byte "
                                 "header (protocol and flags)",
                                 (unsigned long)n, SECSOCK_INFO_HEADER);
    }
    /* memcpy: the buffer has no alignment promise, and the fields are in the machine's own byte order. */
    memcpy(&out->protocol, buf + SECSOCK_INFO_OFF_PROTOCOL, 4);
    memcpy(&out->flags, buf + SECSOCK_INFO_OFF_FLAGS, 4);
    if (tokens_asked && n >= SECSOCK_INFO_OFF_APP_TOKEN + 8) {
        memcpy(&out->peer_application_token, buf + SECSOCK_INFO_OFF_APP_TOKEN, 8);
    }
    if (tokens_asked && n >= SECSOCK_INFO_OFF_MACHINE_TOKEN + 8) {
        memcpy(&out->peer_machine_token, buf + SECSOCK_INFO_OFF_MACHINE_TOKEN, 8);
    }
    if (out->protocol == (uint32_t)SECSOCK_PROTOCOL_IPSEC2 && n >= SECSOCK_INFO2_SIZE) {
        out->has_ipsec2 = 1;
        memcpy(&out->mm_sa_id, buf + SECSOCK_INFO2_OFF_MM_SA_ID, 8);
        memcpy(&out->qm_sa_id, buf + SECSOCK_INFO2_OFF_QM_SA_ID, 8);
        memcpy(&out->negotiation_winerr, buf + SECSOCK_INFO2_OFF_WINERR, 4);
        memcpy(out->sa_lookup_context, buf + SECSOCK_INFO2_OFF_CONTEXT, 16);
    }
    return 0;
}
