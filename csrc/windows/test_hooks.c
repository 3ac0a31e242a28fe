/* The Windows backend's test hooks (test_hooks.h) for tests/windows: never linked into the extension. */
#ifndef SECSOCK_TEST_HOOKS
#error "test_hooks.c is for the tests only: build it with -DSECSOCK_TEST_HOOKS (tests/windows/run.sh does)"
#endif

#include "backend_windows.h"
#include "test_hooks.h"

const struct sys_call_table *ss_debug_real_sys_calls(void)
{
    return &sys_calls_real;
}

void ss_debug_set_sys_calls(const struct sys_call_table *calls)
{
    sys_calls = calls != NULL ? calls : &sys_calls_real;
}
