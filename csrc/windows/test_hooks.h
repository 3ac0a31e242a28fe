/* The Windows backend's test hooks (test_hooks.c) for tests/windows: never linked into the extension. */
#ifndef SECSOCK_WINDOWS_TEST_HOOKS_H
#define SECSOCK_WINDOWS_TEST_HOOKS_H

#include "sys_calls.h"

/* The table of real system calls (sys_calls.c): a test copies it and replaces the calls it injects. */
const struct sys_call_table *ss_debug_real_sys_calls(void);
/* Make the backend call through `calls` (NULL: the real ones again). The caller keeps `calls` alive until it
   restores the real ones; not for use while another thread is inside the backend. */
void ss_debug_set_sys_calls(const struct sys_call_table *calls);

#endif /* SECSOCK_WINDOWS_TEST_HOOKS_H */
