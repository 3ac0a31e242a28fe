/* The table of sys_calls.h holding the real system calls; what the backend uses unless a test swapped it. */
#include "backend_windows.h"

/* Wrappers rather than the imported functions' addresses: MSVC accepts a dllimport function's address as a
   static initializer only with a level-4 warning (C4232: its identity is not guaranteed; /Za makes it an
   error), and a wrapper's body lets the compiler check each call against the SDK's own prototype. */
static BOOL WINAPI real_lookup_account_sid(LPCWSTR system, PSID sid, LPWSTR name, LPDWORD name_len, LPWSTR domain,
                                           LPDWORD domain_len, PSID_NAME_USE use)
{
    return LookupAccountSidW(system, sid, name, name_len, domain, domain_len, use);
}

static BOOL WINAPI real_lookup_account_name(LPCWSTR system, LPCWSTR account, PSID sid, LPDWORD sid_size,
                                            LPWSTR domain, LPDWORD domain_len, PSID_NAME_USE use)
{
    return LookupAccountNameW(system, account, sid, sid_size, domain, domain_len, use);
}

static BOOL WINAPI real_check_token_membership(HANDLE token, PSID sid, PBOOL is_member)
{
    return CheckTokenMembership(token, sid, is_member);
}

static BOOL WINAPI real_duplicate_token(HANDLE token, SECURITY_IMPERSONATION_LEVEL level, PHANDLE duplicate)
{
    return DuplicateToken(token, level, duplicate);
}

static BOOL WINAPI real_close_handle(HANDLE handle)
{
    return CloseHandle(handle);
}

static BOOL WSAAPI real_wsa_get_overlapped_result(SOCKET sock, LPWSAOVERLAPPED ov, LPDWORD transferred, BOOL wait,
                                                  LPDWORD flags)
{
    return WSAGetOverlappedResult(sock, ov, transferred, wait, flags);
}

const struct sys_call_table sys_calls_real = {
    .lookup_account_sid = real_lookup_account_sid,
    .lookup_account_name = real_lookup_account_name,
    .check_token_membership = real_check_token_membership,
    .duplicate_token = real_duplicate_token,
    .close_handle = real_close_handle,
    .wsa_get_overlapped_result = real_wsa_get_overlapped_result,
};

#ifdef SECSOCK_TEST_HOOKS
const struct sys_call_table *sys_calls = &sys_calls_real;
#endif
