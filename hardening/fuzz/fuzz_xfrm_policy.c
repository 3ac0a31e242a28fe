/* libFuzzer target: ss_parse_policy() on any bytes (the payload of an XFRM_MSG_NEWPOLICY message). */
#include "linux/xfrm_records.h"
#include "fuzz_common.h"

#include <linux/xfrm.h>
#include <sys/socket.h>

volatile uint32_t fuzz_sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ss_policy p;
    const char *why = NULL;
    int r = ss_parse_policy(data, size, &p, &why);
    fuzz_check_why(why);
    if (r != SS_PARSE_OK && r != SS_PARSE_SKIP && r != SS_PARSE_BAD) {
        abort();
    }
    if (r == SS_PARSE_OK) {
        fuzz_check_policy(&p);
        fuzz_sink = fuzz_touch(&p, sizeof(p));
    }
    return 0;
}
