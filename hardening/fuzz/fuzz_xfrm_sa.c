/* libFuzzer target: ss_parse_sa() on any bytes (the payload of an XFRM_MSG_NEWSA message). */
#include "linux/xfrm_records.h"
#include "fuzz_common.h"

#include <sys/socket.h>

volatile uint32_t fuzz_sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ss_sa a;
    const char *why = NULL;
    int r = ss_parse_sa(data, size, &a, &why);
    fuzz_check_why(why);
    if (r != SS_PARSE_OK && r != SS_PARSE_BAD) {
        abort();
    }
    if (r == SS_PARSE_OK) {
        if (a.family != AF_INET && a.family != AF_INET6) {
            abort();
        }
        /* The module copies these into fixed fields and reads them as C strings. */
        fuzz_check_name(a.encryption, sizeof(a.encryption));
        fuzz_check_name(a.integrity, sizeof(a.integrity));
        fuzz_check_name(a.aead, sizeof(a.aead));
        fuzz_sink = fuzz_touch(&a, sizeof(a));
    }
    return 0;
}
