/* Peer tokens: the account and groups of a token, membership, and closing a token handed over. */
#include "backend_windows.h"

/* Text of a wide string as UTF-8 into dst (always terminated): 0, or -1 with err set when it does not fit or
   does not convert; never an empty or cut name in its place (issue 11, defect 9). */
static int utf8_of(const WCHAR *text, char *dst, int room, secsock_error *err)
{
    if (WideCharToMultiByte(CP_UTF8, 0, text, -1, dst, room, NULL, NULL) <= 0) {
        dst[0] = '\0';
        return error_os(err, (long)GetLastError(), "WideCharToMultiByte", "cannot convert a name to UTF-8");
    }
    dst[room - 1] = '\0';
    return 0;
}

/* Room for an account or group name (UNLEN and GNLEN of lmcons.h: 256) or a domain name, with the terminator. */
#define NAME_ROOM 257
/* describe_sid: "DOMAIN\\name" is at most 256 + 1 + 256 UTF-16 units, 3 UTF-8 bytes each (a pair: 4 for 2). */
SECSOCK_STATIC_ASSERT(account_fits,
                      sizeof(((secsock_account *)0)->account) >= (2 * (NAME_ROOM - 1) + 1) * 3 + 1);

/* "S-1-..." and "DOMAIN\\name" (or "" when the SID maps to no name) of a SID. 0 or -1 with err set. */
static int describe_sid(PSID sid, secsock_account *out, secsock_error *err)
{
    WCHAR *text = NULL, name[NAME_ROOM], domain[NAME_ROOM], both[2 * NAME_ROOM];
    DWORD name_len = NAME_ROOM, domain_len = NAME_ROOM;
    size_t at = 0;
    SID_NAME_USE use;
    int rc;

    memset(out, 0, sizeof(*out));
    if (!ConvertSidToStringSidW(sid, &text)) {
        return error_os(err, (long)GetLastError(), "ConvertSidToStringSid", "cannot print the SID");
    }
    rc = utf8_of(text, out->sid, (int)sizeof(out->sid), err);
    LocalFree(text);
    if (rc != 0) {
        return -1;
    }
    if (sys_calls->lookup_account_sid(NULL, sid, name, &name_len, domain, &domain_len, &use)) {
        /* The page says what the lengths hold only on failure: measure the terminated strings instead. */
        name[NAME_ROOM - 1] = 0;
        domain[NAME_ROOM - 1] = 0;
        if (domain[0] != 0) {
            at = wcslen(domain);
            memcpy(both, domain, at * sizeof(WCHAR));
            both[at++] = L'\\';
        }
        memcpy(both + at, name, (wcslen(name) + 1) * sizeof(WCHAR));
        if (utf8_of(both, out->account, (int)sizeof(out->account), err) != 0) {
            return -1;
        }
    } else if (GetLastError() != ERROR_NONE_MAPPED) {
        return error_os(err, (long)GetLastError(), "LookupAccountSid", "cannot name the SID");
    }
    return 0;
}

/* GetTokenInformation into a malloc'ed buffer (*out, freed by the caller). 0 or -1 with err set. */
static int token_info(uint64_t token, TOKEN_INFORMATION_CLASS what, void **out, secsock_error *err)
{
    DWORD size = 0;
    void *buf;

    *out = NULL;
    if (check_fits(token, "handle", err) != 0) {
        return -1;
    }
    if (!GetTokenInformation(to_handle(token), what, NULL, 0, &size) && GetLastError() != ERROR_INSUFFICIENT_BUFFER) {
        return error_os(err, (long)GetLastError(), "GetTokenInformation", "cannot read the token");
    }
    buf = malloc(size != 0 ? size : 1);
    if (buf == NULL) {
        return secsock_error_set(err, SECSOCK_ERR_NOMEM, 0, 0, "GetTokenInformation", "out of memory for a token");
    }
    if (!GetTokenInformation(to_handle(token), what, buf, size, &size)) {
        free(buf);
        return error_os(err, (long)GetLastError(), "GetTokenInformation", "cannot read the token");
    }
    *out = buf;
    return 0;
}

int secsock_token_user(uint64_t token, secsock_account *user, secsock_error *err)
{
    void *info;
    int rc;

    secsock_error_clear(err);
    if (token_info(token, TokenUser, &info, err) != 0) {
        return -1;
    }
    rc = describe_sid(((TOKEN_USER *)info)->User.Sid, user, err);
    free(info);
    return rc;
}

int secsock_token_groups(uint64_t token, secsock_account **groups, size_t *count, secsock_error *err)
{
    void *info;
    TOKEN_GROUPS *tg;
    secsock_account *list;
    DWORD i;

    secsock_error_clear(err);
    *groups = NULL;
    *count = 0;
    if (token_info(token, TokenGroups, &info, err) != 0) {
        return -1;
    }
    tg = (TOKEN_GROUPS *)info;
    list = (secsock_account *)calloc(tg->GroupCount != 0 ? tg->GroupCount : 1, sizeof(*list));
    if (list == NULL) {
        free(info);
        return secsock_error_set(err, SECSOCK_ERR_NOMEM, 0, 0, "GetTokenInformation", "out of memory for groups");
    }
    for (i = 0; i < tg->GroupCount; i++) {
        if (describe_sid(tg->Groups[i].Sid, &list[i], err) != 0) {
            free(list);
            free(info);
            return -1;
        }
    }
    *groups = list;
    *count = tg->GroupCount;
    free(info);
    return 0;
}

int secsock_token_is_member(uint64_t token, const char *sid_or_account, int *member, secsock_error *err)
{
    WCHAR wide[520];
    PSID sid = NULL;
    BYTE account_sid[SECURITY_MAX_SID_SIZE];
    WCHAR domain[256];
    DWORD sid_size = sizeof(account_sid), domain_len = 256;
    SID_NAME_USE use;
    HANDLE imp = NULL;
    BOOL is = FALSE, ok;
    DWORD e;
    const char *failed = "CheckTokenMembership";
    int rc = 0;

    secsock_error_clear(err);
    *member = 0;
    if (check_fits(token, "handle", err) != 0) {
        return -1;
    }
    if (sid_or_account == NULL ||
        MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, sid_or_account, -1, wide, 520) <= 1) {
        return secsock_error_set(err, SECSOCK_ERR_ARGUMENT, 0, 0, "group",
                                 "group must be a SID (S-1-...) or an account name in valid UTF-8");
    }
    if ((wide[0] == L'S' || wide[0] == L's') && wide[1] == L'-') {
        if (!ConvertStringSidToSidW(wide, &sid)) {
            return secsock_error_set(err, SECSOCK_ERR_ARGUMENT, 0, 0, "group", "%s is not a valid SID",
                                     sid_or_account);
        }
    } else if (LookupAccountNameW(NULL, wide, account_sid, &sid_size, domain, &domain_len, &use)) {
        sid = (PSID)account_sid;
    } else {
        return error_os(err, (long)GetLastError(), "LookupAccountName", "no such account");
    }
    ok = sys_calls->check_token_membership(to_handle(token), sid, &is);
    e = ok ? 0 : GetLastError();
    if (!ok && e == ERROR_NO_IMPERSONATION_TOKEN) {
        /* CheckTokenMembership wants an impersonation token: check a duplicate at identification level. */
        if (sys_calls->duplicate_token(to_handle(token), SecurityIdentification, &imp)) {
            ok = sys_calls->check_token_membership(imp, sid, &is);
            e = ok ? 0 : GetLastError(); /* read before CloseHandle, which may set its own (issue 11, 9) */
            sys_calls->close_handle(imp);
        } else {
            e = GetLastError();
            failed = "DuplicateToken";
        }
    }
    if (!ok) {
        rc = error_os(err, (long)e, failed, "cannot check the membership");
    } else {
        *member = is ? 1 : 0;
    }
    if (sid != (PSID)account_sid) {
        LocalFree(sid);
    }
    return rc;
}

int secsock_token_close(uint64_t handle, secsock_error *err)
{
    secsock_error_clear(err);
    if (handle == 0) {
        return secsock_error_set(err, SECSOCK_ERR_ARGUMENT, 0, 0, "handle", "no token handle to close");
    }
    if (check_fits(handle, "handle", err) != 0) {
        return -1;
    }
    if (!CloseHandle(to_handle(handle))) {
        return error_os(err, (long)GetLastError(), "CloseHandle", "cannot close the token handle");
    }
    return 0;
}
