/*
 * libFuzzer target: the Windows result decoder (csrc/windows/secsock_decode.c) on any bytes and any claimed size.
 * Input: 2 bytes of claimed returned length (little-endian), 2 bytes of buffer size, then the buffer's
 * bytes. The buffer is exactly as large as the fuzzer's remaining bytes, so ASan sees a read past it; the
 * decoder must read only min(claimed, size) bytes, never fail for 8 bytes or more, and decode the IPsec2
 * fields only for protocol IPSEC2 and a full structure.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "windows/secsock_decode.h"

/* secsock_common.c links against it; the decoder must never close a handle, so reaching it is a bug. */
int secsock_token_close(uint64_t handle, secsock_error *err)
{
    (void)handle;
    (void)err;
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    secsock_result out;
    secsock_error err;
    size_t claimed, buf_size, n;
    unsigned char *buf;
    int rc;

    if (size < 4) {
        return 0;
    }
    claimed = (size_t)data[0] | ((size_t)data[1] << 8);
    buf_size = (size_t)data[2] | ((size_t)data[3] << 8);
    if (buf_size > size - 4) {
        buf_size = size - 4;
    }
    buf = malloc(buf_size ? buf_size : 1);
    if (buf == NULL) {
        return 0;
    }
    memcpy(buf, data + 4, buf_size);
    secsock_error_clear(&err);
    rc = secsock_decode_info(buf_size ? buf : NULL, buf_size, claimed, &out, &err);
    n = claimed < buf_size ? claimed : buf_size;
    if (n < SECSOCK_INFO_HEADER) {
        if (rc != -1 || err.kind != SECSOCK_ERR_OS || err.winerror != 10040L) {
            abort(); /* a short answer is a WSAEMSGSIZE error, never a result */
        }
        fuzz_check_why(err.message);
    } else {
        if (rc != 0) {
            abort();
        }
        if (out.has_ipsec2 != (out.protocol == SECSOCK_PROTOCOL_IPSEC2 && n >= SECSOCK_INFO2_SIZE)) {
            abort();
        }
        if (n < SECSOCK_INFO_OFF_APP_TOKEN + 8 && out.peer_application_token != 0) {
            abort(); /* a field the returned bytes do not cover is never read */
        }
        if (n < SECSOCK_INFO_OFF_MACHINE_TOKEN + 8 && out.peer_machine_token != 0) {
            abort();
        }
        (void)fuzz_touch(&out, sizeof(out));
        /* Tokens not asked for (Q2/Q3): the same bytes never yield a handle (issue 11, defect 6). */
        if (secsock_decode_info_asked(buf_size ? buf : NULL, buf_size, claimed, 0, &out, &err) != 0 ||
            out.peer_application_token != 0 || out.peer_machine_token != 0) {
            abort();
        }
    }
    free(buf);
    return 0;
}
