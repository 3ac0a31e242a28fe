/*
 * libFuzzer target: ss_parse_policy_notify() on any bytes, for every policy notification type (the first byte
 * picks NEWPOLICY, UPDPOLICY, DELPOLICY, POLEXPIRE, FLUSHPOLICY or any other type): the parser behind in-place
 * policy updates (9227d04). DELPOLICY is the one that puts a message back together (the policy inside
 * XFRMA_POLICY, then the other attributes) before parsing it.
 */
#include "linux/xfrm_records.h"
#include "fuzz_common.h"

#include <linux/xfrm.h>
#include <sys/socket.h>

volatile uint32_t fuzz_sink;

static const uint16_t types[] = {XFRM_MSG_NEWPOLICY, XFRM_MSG_UPDPOLICY,   XFRM_MSG_DELPOLICY,
                                 XFRM_MSG_POLEXPIRE, XFRM_MSG_FLUSHPOLICY, XFRM_MSG_NEWSA};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ss_policy p;
    const char *why = NULL;
    int action = 0, r;
    uint16_t type;
    uint8_t *copy = fuzz_notify_input(data, size, types, sizeof(types) / sizeof(types[0]), &type);

    if (copy == NULL) {
        return 0;
    }
    r = ss_parse_policy_notify(type, copy, size - 1, &p, &action, &why);
    fuzz_check_notify_result(r, why);
    if (action < SS_POL_UPSERT || action > SS_POL_RESYNC || (r == SS_PARSE_BAD && action != SS_POL_RESYNC)) {
        abort(); /* a message it cannot read can only ask for a dump */
    }
    /* Only a new or updated policy is put, only a deletion removes; anything else dumps again. */
    if ((action == SS_POL_UPSERT && type != XFRM_MSG_NEWPOLICY && type != XFRM_MSG_UPDPOLICY) ||
        (action == SS_POL_DELETE && type != XFRM_MSG_DELPOLICY) ||
        (action == SS_POL_NONE && type != XFRM_MSG_NEWPOLICY && type != XFRM_MSG_UPDPOLICY &&
         type != XFRM_MSG_DELPOLICY)) {
        abort();
    }
    if (action == SS_POL_UPSERT || action == SS_POL_DELETE) {
        /* A whole inbound or outbound policy was parsed: what pol_apply and the index rely on. (NONE is a
         * policy no socket's flow meets: forward, per-socket, another family or type; it is skipped before
         * the rest is read, issue 14 item 2.) */
        fuzz_check_policy(&p);
        if (p.dir != XFRM_POLICY_IN && p.dir != XFRM_POLICY_OUT) {
            abort();
        }
        fuzz_sink = fuzz_touch(&p, sizeof(p));
    }
    free(copy);
    return 0;
}
