/*
 * libFuzzer target: one netlink datagram as a dump reply or a notification. ss_nl_walk() splits it into
 * messages and each policy/SA message goes to its parser, as the backend's dump and notification paths do.
 * The first byte picks the mode: a reply to a request (sequence and port id taken from the first message, so
 * the matching path is reached) or a notification (port id 0: every message accepted).
 */
#include "linux/xfrm_records.h"
#include "fuzz_common.h"

#include <linux/netlink.h>
#include <linux/xfrm.h>

volatile uint32_t fuzz_sink;

typedef struct {
    unsigned calls;
} walk_ctx;

static int on_message(void *vctx, uint16_t type, uint16_t flags, const void *payload, size_t len)
{
    walk_ctx *c = vctx;
    const char *why = NULL;
    (void)flags;
    c->calls++;
    if (type == XFRM_MSG_NEWPOLICY || type == XFRM_MSG_UPDPOLICY) {
        ss_policy p;
        if (ss_parse_policy(payload, len, &p, &why) == SS_PARSE_OK) {
            fuzz_sink ^= fuzz_touch(&p, sizeof(p));
        }
        fuzz_check_why(why);
    } else if (type == XFRM_MSG_NEWSA || type == XFRM_MSG_UPDSA) {
        ss_sa a;
        if (ss_parse_sa(payload, len, &a, &why) == SS_PARSE_OK) {
            fuzz_sink ^= fuzz_touch(&a, sizeof(a));
        }
        fuzz_check_why(why);
    } else {
        fuzz_sink ^= fuzz_touch(payload, len); /* the payload must lie within the datagram */
    }
    /* Stop early now and then, as a callback that records an error does. */
    return (c->calls % 97 == 96) ? -1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    walk_ctx c = {0};
    const char *why = NULL;
    uint32_t seq = 0, portid = 0;
    int r;

    if (size < 1) {
        return 0;
    }
    if ((data[0] & 1) && size >= 1 + sizeof(struct nlmsghdr)) {
        struct nlmsghdr h;
        memcpy(&h, data + 1, sizeof(h));
        seq = h.nlmsg_seq;
        portid = h.nlmsg_pid;
    }
    r = ss_nl_walk(data + 1, size - 1, seq, portid, on_message, &c, &why);
    fuzz_check_why(why);
    if (!(r == 1 || r == 0 || r == -1 || r == -2 || r == -3 || r <= -1000)) {
        abort();
    }
    return 0;
}
