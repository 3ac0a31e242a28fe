/*
 * libFuzzer target: ss_parse_sa_notify() on any bytes, for every SA notification type (the first byte picks
 * NEWSA, UPDSA, DELSA, EXPIRE, FLUSHSA or any other type): the parser behind in-place SA updates.
 */
#include "linux/xfrm_records.h"
#include "fuzz_common.h"

#include <linux/xfrm.h>
#include <sys/socket.h>

volatile uint32_t fuzz_sink;

static const uint16_t types[] = {XFRM_MSG_NEWSA, XFRM_MSG_UPDSA, XFRM_MSG_DELSA, XFRM_MSG_EXPIRE,
                                 XFRM_MSG_FLUSHSA, XFRM_MSG_NEWPOLICY};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ss_sa a;
    const char *why = NULL;
    int action = 0, r;
    uint16_t type;
    uint8_t *copy = fuzz_notify_input(data, size, types, sizeof(types) / sizeof(types[0]), &type);

    if (copy == NULL) {
        return 0;
    }
    r = ss_parse_sa_notify(type, copy, size - 1, &a, &action, &why);
    fuzz_check_notify_result(r, why);
    if (action < SS_SA_UPSERT || action > SS_SA_NONE) {
        abort();
    }
    if (r == SS_PARSE_OK && (action == SS_SA_UPSERT || action == SS_SA_UPDATE)) {
        if (a.family != AF_INET && a.family != AF_INET6) {
            abort();
        }
        fuzz_check_name(a.encryption, sizeof(a.encryption));
        fuzz_check_name(a.integrity, sizeof(a.integrity));
        fuzz_check_name(a.aead, sizeof(a.aead));
    }
    if (r == SS_PARSE_OK) {
        fuzz_sink = fuzz_touch(&a, sizeof(a));
    }
    free(copy);
    return 0;
}
