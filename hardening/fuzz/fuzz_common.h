/*
 * Shared by the libFuzzer targets over the Linux backend's pure netlink/XFRM parsers (csrc/backend_linux_xfrm.h).
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

#endif
