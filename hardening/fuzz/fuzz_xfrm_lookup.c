/*
 * libFuzzer target: the snapshot built from fuzzed dumps, then a policy and SA lookup for a fuzzed flow.
 * Drives the internals of the Linux backend (indexing by bucket and prefix length, the hash chains, eval_dir)
 * through its internal header, linked with its units (csrc/linux/), so it follows the backend's current code.
 *
 * Input: 44 bytes of flow (family bit, proto, local[16], peer[16], lport, pport, mark, oif, the
 * disable_xfrm/disable_policy bits of `all` and of loopback and whether the peer is reached over lo), then one netlink datagram of policy messages and SA messages
 * (notification style: every message accepted). No single record may fail the dump (only out of memory may).
 */
#include "linux/backend_linux.h"

#include "fuzz_common.h"

volatile uint32_t fuzz_sink;

#define FLOW_BYTES 44

/* As a dump feeds them. One record, however odd, never fails the dump (issue 14 item 2): only running out
 * of memory may; a record the backend cannot read is skipped or kept as unreadable. */
static int collect(void *vctx, uint16_t type, uint16_t flags, const void *payload, size_t len)
{
    dump_ctx *c = vctx;
    int r = 0;
    if (type == XFRM_MSG_NEWPOLICY) {
        r = on_policy(c, type, flags, payload, len);
    }
    if (type == XFRM_MSG_NEWSA) {
        r = on_sa(c, type, flags, payload, len);
    }
    if (r != 0 && c->err->kind != SECSOCK_ERR_NOMEM) {
        fprintf(stderr, "one record failed the whole dump: %s\n", c->err->message);
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ss_snap s;
    secsock_error err;
    dump_ctx c;
    ss_flow f;
    const char *why;
    size_t i;
    int dir;

    if (size < FLOW_BYTES) {
        return 0;
    }
    memset(&s, 0, sizeof(s));
    secsock_error_clear(&err);
    c.s = &s;
    c.err = &err;
    (void)ss_nl_walk(data + FLOW_BYTES, size - FLOW_BYTES, 0, 0, collect, &c, &why);
    if (snap_index_policies(&s) != 0 || snap_index_sas(&s) != 0) {
        abort(); /* only out of memory may fail, and these inputs are small */
    }

    memset(&f, 0, sizeof(f));
    f.sock = -1;
    f.family = (data[0] & 1) ? AF_INET6 : AF_INET;
    f.proto = data[1];
    memcpy(f.local, data + 2, 16);
    memcpy(f.peer, data + 18, 16);
    if (f.family == AF_INET) {
        memset(f.local + 4, 0, 12);
        memset(f.peer + 4, 0, 12);
    }
    memcpy(&f.lport, data + 34, 2);
    memcpy(&f.pport, data + 36, 2);
    memcpy(&f.mark, data + 38, 4);
    /* A known interface and loopback settings: the lookup must never ask the kernel from inside the fuzzer. */
    f.oif = f.sel_dev[0] = f.sel_dev[1] = data[42];
    f.bif_read = 1; /* not bound to a device: no getsockopt on the absent socket */
    /* `all`'s settings (bits 1-2), loopback's own (bits 3-4), and whether the peer is reached over lo (5). */
    f.lo_conf = SS_CONF_OUT_READ | SS_CONF_IN_READ | SS_CONF_LO_READ;
    f.lo_conf |= data[43] & (SS_LO_NOXFRM | SS_LO_NOPOLICY);
    f.lo_lo_conf = (data[43] >> 2) & (SS_LO_NOXFRM | SS_LO_NOPOLICY);
    f.local_dev = (data[43] & 32) ? 1 : -1;
    for (dir = XFRM_POLICY_IN; dir <= XFRM_POLICY_OUT; dir++) {
        secsock_direction out;
        dir_verdict v;
        secsock_error_clear(&err);
        if (eval_dir(&s, &f, dir, &out, &v, &err) == 0) {
            if (out.count > SECSOCK_MAX_SAS || (v.encrypted && !v.protected_)) {
                abort();
            }
            for (i = 0; i < out.count; i++) {
                fuzz_check_name(out.sas[i].encryption, SECSOCK_ALG_NAME_MAX);
                fuzz_check_name(out.sas[i].integrity, SECSOCK_ALG_NAME_MAX);
                fuzz_check_name(out.sas[i].aead, SECSOCK_ALG_NAME_MAX);
            }
            fuzz_sink ^= fuzz_touch(&out, sizeof(out));
        } else if (err.kind == SECSOCK_ERR_NONE || err.message[0] == '\0') {
            abort(); /* a failure always says why */
        }
    }
    snap_free_policies(&s);
    snap_free_sas(&s);
    return 0;
}
