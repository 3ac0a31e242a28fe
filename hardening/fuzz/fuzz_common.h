/*
 * Shared by the libFuzzer targets over the Linux backend's pure netlink/XFRM parsers (csrc/linux/xfrm_records.h).
 * Every target gets exactly the fuzzer's bytes in a buffer of exactly that size, so ASan sees any read past
 * the claimed length.
 */
#ifndef SECSOCK_FUZZ_COMMON_H
#define SECSOCK_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Touch every byte of a record so that reads of uninitialized or out-of-bounds memory are observed. */
static inline uint32_t fuzz_touch(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint32_t h = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        h = h * 31u + b[i];
    }
    return h;
}

/* A why string is always a NUL-terminated, non-NULL C string. */
static inline void fuzz_check_why(const char *why)
{
    if (why == NULL || strlen(why) > 200) {
        abort();
    }
}

/* A name copied from a bounded field must be NUL-terminated within it. */
static inline void fuzz_check_name(const char *name, size_t field)
{
    if (memchr(name, '\0', field) == NULL) {
        abort();
    }
}

/*
 * A notification target's input: the first byte picks the message type, types[byte % ntypes] below 250 and an
 * unlisted type (byte << 4) from there; the rest is the payload, returned in a buffer of exactly its size so
 * ASan sees any read past it (the caller frees it). NULL for an empty input.
 */
static inline uint8_t *fuzz_notify_input(const uint8_t *data, size_t size, const uint16_t *types, size_t ntypes,
                                         uint16_t *type)
{
    uint8_t *copy;

    if (size < 1) {
        return NULL;
    }
    *type = data[0] < 250 ? types[data[0] % ntypes] : (uint16_t)(data[0] << 4);
    copy = malloc(size - 1 ? size - 1 : 1);
    if (copy == NULL) {
        abort();
    }
    memcpy(copy, data + 1, size - 1);
    return copy;
}

#ifdef SECSOCK_BACKEND_LINUX_XFRM_H /* the Linux targets, which include csrc/linux/xfrm_records.h first */
#include <linux/xfrm.h>
#include <sys/socket.h>

/* What a notification parser (ss_parse_sa_notify, ss_parse_policy_notify) returns: OK or BAD, with why set. */
static inline void fuzz_check_notify_result(int r, const char *why)
{
    fuzz_check_why(why);
    if (r != SS_PARSE_OK && r != SS_PARSE_BAD) {
        abort();
    }
}

/* What the snapshot relies on in a parsed policy: bounded template count, known families, valid prefix
 * lengths, a known action and type. */
static inline void fuzz_check_policy(const ss_policy *p)
{
    unsigned max = p->sel.family == AF_INET ? 32 : 128;
    int i;
    if (p->ntmpl > SS_XFRM_MAX_TMPL || (p->sel.family != AF_INET && p->sel.family != AF_INET6) ||
        p->sel.prefixlen_d > max || p->sel.prefixlen_s > max ||
        (p->action != XFRM_POLICY_ALLOW && p->action != XFRM_POLICY_BLOCK) || p->type >= XFRM_POLICY_TYPE_MAX) {
        abort();
    }
    for (i = 0; i < p->ntmpl; i++) {
        if (p->tmpl[i].family != AF_INET && p->tmpl[i].family != AF_INET6) {
            abort();
        }
    }
}
#endif

#endif
