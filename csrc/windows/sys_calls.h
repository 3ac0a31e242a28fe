/*
 * The few system calls of the Windows backend that a test must be able to make fail in ways Wine's real ones
 * never do (issue 11, defects 9a and 9f): the backend makes them through the table `sys_calls` points to
 * (sys_calls.c: the real functions). Only csrc/windows/test_hooks.c, which is never linked into the extension
 * (setup.py; tools/check_layout.sh, tools/windows_python.py), points it elsewhere, and only in a build that
 * defines SECSOCK_TEST_HOOKS: elsewhere `sys_calls` is the constant &sys_calls_real (backend_windows.h). The
 * query's synchronous path does not use it.
 *
 * Each member has the parameters and calling convention of the SDK function it stands for, so a test's
 * replacement reads as that function; the compiler checks the fakes against these types.
 */
#ifndef SECSOCK_WINDOWS_SYS_CALLS_H
#define SECSOCK_WINDOWS_SYS_CALLS_H

#include <winsock2.h>
#include <windows.h>

struct sys_call_table {
    /* advapi32 (tokens.c) */
    BOOL(WINAPI *lookup_account_sid)(LPCWSTR system, PSID sid, LPWSTR name, LPDWORD name_len, LPWSTR domain,
                                     LPDWORD domain_len, PSID_NAME_USE use);
    BOOL(WINAPI *lookup_account_name)(LPCWSTR system, LPCWSTR account, PSID sid, LPDWORD sid_size, LPWSTR domain,
                                      LPDWORD domain_len, PSID_NAME_USE use);
    BOOL(WINAPI *check_token_membership)(HANDLE token, PSID sid, PBOOL is_member);
    BOOL(WINAPI *duplicate_token)(HANDLE token, SECURITY_IMPERSONATION_LEVEL level, PHANDLE duplicate);
    /* kernel32 (tokens.c: the duplicate token) */
    BOOL(WINAPI *close_handle)(HANDLE handle);
    /* ws2_32 (overlapped.c: settle, only for a call made with an OVERLAPPED) */
    BOOL(WSAAPI *wsa_get_overlapped_result)(SOCKET sock, LPWSAOVERLAPPED ov, LPDWORD transferred, BOOL wait,
                                            LPDWORD flags);
};

#endif /* SECSOCK_WINDOWS_SYS_CALLS_H */
