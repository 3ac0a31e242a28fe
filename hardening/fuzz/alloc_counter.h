/*
 * Allocation-failure injection for fuzz_xfrm_alloc_fail.c (issue 14 item 9). fuzz.sh force-includes this file
 * (clang -include) into the units that allocate the snapshot, csrc/linux/snapshot_index.c and snapshot.c, so
 * their malloc/calloc/realloc calls go through the target's counter, which fails the Nth one. <stdlib.h> is
 * included first (with the units' _GNU_SOURCE) so the libc declarations are untouched; the function-like
 * macros then rename only the units' calls. The target defines SECSOCK_ALLOC_COUNTER_IMPL and the counters.
 */
#ifndef SECSOCK_FUZZ_ALLOC_COUNTER_H
#define SECSOCK_FUZZ_ALLOC_COUNTER_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* as csrc/linux/backend_linux.h, which the units include after this file */
#endif
#include <stdlib.h>

void *counted_malloc(size_t n);
void *counted_calloc(size_t k, size_t n);
void *counted_realloc(void *p, size_t n);

#ifndef SECSOCK_ALLOC_COUNTER_IMPL
#define malloc(n) counted_malloc(n)
#define calloc(k, n) counted_calloc(k, n)
#define realloc(p, n) counted_realloc(p, n)
#endif

#endif /* SECSOCK_FUZZ_ALLOC_COUNTER_H */
