/* The Windows backend's test hooks (test_hooks.h) for tests/windows: never linked into the extension. */
#include "backend_windows.h"
#include "test_hooks.h"

const struct sys_calls *ss_debug_real_sys_calls(void)
{
    return &sys_calls_real;
}

void ss_debug_set_sys_calls(const struct sys_calls *calls)
{
    sys_calls = calls != NULL ? calls : &sys_calls_real;
}
