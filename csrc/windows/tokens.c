/* Peer tokens: the account and groups of a token, membership, and closing a token handed over. */
#include "backend_windows.h"

#include <wchar.h>

/* Text of a wide string as UTF-8 into dst (always terminated): 0, or -1 with err set when it does not fit or
   does not convert; never an empty or cut name in its place (issue 11, defect 9). */
static int utf8_of(const WCHAR *text, char *dst, int room, secsock_error *err)
{
    DWORD e;

    if (WideCharToMultiByte(CP_UTF8, 0, text, -1, dst, room, NULL, NULL) <= 0) {
        e = GetLastError();
        dst[0] = '\0';
        if (e == ERROR_INSUFFICIENT_BUFFER) {
            return secsock_error_set(err, SECSOCK_ERR_OS, 0, (long)e, "WideCharToMultiByte",
                                     "the name is longer than the %d UTF-8 bytes secsock returns", room - 1);
        }
        return error_os(err, (long)e, "WideCharToMultiByte", "cannot convert a name to UTF-8");
    }
    return 0;
}

/* First room for an account or group name and for its domain, terminator included: UNLEN and GNLEN (lmcons.h,
   256) + 1, which SAM names fit; other names LSA resolves and domains have no such bound, so a call that says
   the buffer is too small is made once more with the sizes it wrote back. */
#define NAME_ROOM 257
/* The most UTF-16 units a name can have, terminator included: a UNICODE_STRING holds at most 32767. */
#define NAME_MAX_ROOM 32768

/* Room for a retry after ERROR_INSUFFICIENT_BUFFER: `asked` units (the size written back, terminator included),
   never less than `had`; 0 when asked is more than a name can be. */
static DWORD room_for_retry(DWORD asked, DWORD had)
{
    if (asked > NAME_MAX_ROOM) {
        return 0;
    }
    return asked > had ? asked : had;
}

/* Whether a buffer of `room` units that a call filled holds a terminated string (the pages promise one). */
static int terminated(const WCHAR *text, DWORD room)
{
    return wmemchr(text, L'\0', room) != NULL;
}

/* "DOMAIN\\name" (or "name" without a domain) of a SID as UTF-8 into out->account, "" when the SID maps to no
   name. LookupAccountSidW's page: on ERROR_INSUFFICIENT_BUFFER cchName and cchReferencedDomainName receive the
   size needed, terminator included: one retry with those (issue 11, review finding 1). 0 or -1 with err set. */
static int name_sid(PSID sid, secsock_account *out, secsock_error *err)
{
    DWORD name_room = NAME_ROOM, domain_room = NAME_ROOM, name_len, domain_len, e = 0;
    WCHAR *name = NULL, *domain = NULL, *both = NULL;
    SID_NAME_USE use;
    size_t at = 0, name_units;
    int attempt, rc = -1;

    for (attempt = 0; attempt < 2; attempt++) {
        free(name);
        free(domain);
        name = (WCHAR *)malloc(name_room * sizeof(WCHAR));
        domain = (WCHAR *)malloc(domain_room * sizeof(WCHAR));
        if (name == NULL || domain == NULL) {
            secsock_error_set(err, SECSOCK_ERR_NOMEM, 0, 0, "LookupAccountSid", "out of memory for a name");
            goto done;
        }
        name_len = name_room;
        domain_len = domain_room;
        if (sys_calls->lookup_account_sid(NULL, sid, name, &name_len, domain, &domain_len, &use)) {
            e = 0;
            break;
        }
        e = GetLastError();
        if (e != ERROR_INSUFFICIENT_BUFFER || attempt == 1) {
            break;
        }
        name_len = room_for_retry(name_len, name_room);
        domain_len = room_for_retry(domain_len, domain_room);
        if (name_len == 0 || domain_len == 0 || (name_len == name_room && domain_len == domain_room)) {
            break; /* more than a name can be, or no more than it had: a retry would fail the same way */
        }
        name_room = name_len;
        domain_room = domain_len;
    }
    if (e == ERROR_NONE_MAPPED) {
        rc = 0;
        goto done;
    }
    if (e != 0) {
        error_os(err, (long)e, "LookupAccountSid", "cannot name the SID");
        goto done;
    }
    /* The page says what the lengths hold only on failure: measure the terminated strings instead, and refuse
       a string that fills its buffer without one rather than cut it. */
    if (!terminated(name, name_room) || !terminated(domain, domain_room)) {
        secsock_error_set(err, SECSOCK_ERR_OS, 0, 0, "LookupAccountSid",
                          "LookupAccountSid returned a name without its terminator");
        goto done;
    }
    name_units = wcslen(name);
    both = (WCHAR *)malloc((wcslen(domain) + 1 + name_units + 1) * sizeof(WCHAR));
    if (both == NULL) {
        secsock_error_set(err, SECSOCK_ERR_NOMEM, 0, 0, "LookupAccountSid", "out of memory for a name");
        goto done;
    }
    if (domain[0] != 0) {
        at = wcslen(domain);
        memcpy(both, domain, at * sizeof(WCHAR));
        both[at++] = L'\\';
    }
    memcpy(both + at, name, (name_units + 1) * sizeof(WCHAR));
    rc = utf8_of(both, out->account, (int)sizeof(out->account), err);
done:
    free(both);
    free(name);
    free(domain);
    return rc;
}

/* "S-1-..." and "DOMAIN\\name" (or "" when the SID maps to no name) of a SID. 0 or -1 with err set. */
static int describe_sid(PSID sid, secsock_account *out, secsock_error *err)
{
    WCHAR *text = NULL;
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
    return name_sid(sid, out, err);
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

/* The SID of an account name, malloc'ed into *sid (freed by the caller). LookupAccountNameW's page: on
   ERROR_INSUFFICIENT_BUFFER cbSid and cchReferencedDomainName receive the sizes needed: one retry with those
   (review finding 4). 0 or -1 with err set. */
static int sid_of_account(const WCHAR *account, PSID *sid, secsock_error *err)
{
    const DWORD sid_room = SECURITY_MAX_SID_SIZE;
    DWORD domain_room = NAME_ROOM, sid_size, domain_len, e = 0;
    WCHAR *domain = NULL;
    SID_NAME_USE use;
    int attempt;

    *sid = NULL;
    for (attempt = 0; attempt < 2; attempt++) {
        free(*sid);
        free(domain);
        *sid = (PSID)malloc(sid_room);
        domain = (WCHAR *)malloc(domain_room * sizeof(WCHAR));
        if (*sid == NULL || domain == NULL) {
            free(*sid);
            free(domain);
            *sid = NULL;
            return secsock_error_set(err, SECSOCK_ERR_NOMEM, 0, 0, "LookupAccountName", "out of memory for a SID");
        }
        sid_size = sid_room;
        domain_len = domain_room;
        if (sys_calls->lookup_account_name(NULL, account, *sid, &sid_size, domain, &domain_len, &use)) {
            free(domain);
            return 0;
        }
        e = GetLastError();
        if (e != ERROR_INSUFFICIENT_BUFFER || attempt == 1) {
            break;
        }
        /* sid_room is SECURITY_MAX_SID_SIZE, the most a SID can be: only the domain may need more. */
        domain_len = room_for_retry(domain_len, domain_room);
        if (sid_size > sid_room || domain_len == 0 || domain_len == domain_room) {
            break; /* more than a SID or name can be, or no more than it had: a retry would fail the same way */
        }
        domain_room = domain_len;
    }
    free(*sid);
    free(domain);
    *sid = NULL;
    return error_os(err, (long)e, "LookupAccountName",
                    e == ERROR_NONE_MAPPED ? "no such account" : "cannot find the account's SID");
}

int secsock_token_is_member(uint64_t token, const char *sid_or_account, int *member, secsock_error *err)
{
    WCHAR wide[520];
    PSID sid = NULL;
    int sid_local = 0; /* sid is ConvertStringSidToSidW's (LocalFree), else sid_of_account's (free) */
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
        /* Read at once: the last error says whether the text was too long or not UTF-8. */
        if (sid_or_account != NULL && GetLastError() == ERROR_INSUFFICIENT_BUFFER) {
            return secsock_error_set(err, SECSOCK_ERR_ARGUMENT, 0, 0, "group",
                                     "group is too long: at most 519 UTF-16 units (DOMAIN\\name)");
        }
        return secsock_error_set(err, SECSOCK_ERR_ARGUMENT, 0, 0, "group",
                                 "group must be a SID (S-1-...) or an account name in valid UTF-8");
    }
    if ((wide[0] == L'S' || wide[0] == L's') && wide[1] == L'-') {
        if (!ConvertStringSidToSidW(wide, &sid)) {
            return secsock_error_set(err, SECSOCK_ERR_ARGUMENT, 0, 0, "group", "%s is not a valid SID",
                                     sid_or_account);
        }
        sid_local = 1;
    } else if (sid_of_account(wide, &sid, err) != 0) {
        return -1;
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
    if (sid_local) {
        LocalFree(sid);
    } else {
        free(sid);
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
