/* The rest of the family: WSASetSocketSecurity, the peer target name calls, impersonation and revert. */
#include "backend_windows.h"

/*
 * UTF-8 text as UTF-16 without terminator into dst (NULL: only measure). Returns the length in bytes, or -1
 * with an argument error naming `what` when the text is not valid UTF-8.
 */
static int utf16_of(const char *text, WCHAR *dst, int room, const char *what, secsock_error *err)
{
    int n;

    if (text == NULL || text[0] == '\0') {
        return 0;
    }
    n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, text, -1, dst, dst != NULL ? room + 1 : 0);
    if (n <= 0) {
        return secsock_error_set(err, SECSOCK_ERR_ARGUMENT, 0, 0, what, "%s is not valid UTF-8", what);
    }
    return (n - 1) * (int)sizeof(WCHAR); /* without the terminator */
}

/*
 * Pack the strings (user, domain, password, or a name) as UTF-16 at offset `header` (AllStrings) of a
 * structure of `whole` bytes: allocates *out; *out_len is whole + the strings' bytes, as Microsoft's sample
 * measures it (sizeof(SOCKET_PEER_TARGET_NAME) + the name; the pages say "the size of the parameter", and a
 * system checking for at least the whole structure must not refuse a short name: issue 11, defect 9). The
 * lengths in bytes go to lens[]. 0 or -1 with err set.
 */
static int pack_strings(size_t header, size_t whole, const char *const *texts, const char *const *names,
                        int count, void **out, ULONG *out_len, ULONG *lens, secsock_error *err)
{
    size_t total, strings = 0;
    unsigned char *block;
    int i, n;

    for (i = 0; i < count; i++) {
        n = utf16_of(texts[i], NULL, 0, names[i], err);
        if (n < 0) {
            return -1;
        }
        lens[i] = (ULONG)n;
        strings += (size_t)n;
    }
    /* whole >= header + sizeof(WCHAR) (AllStrings[1]): room for the terminator MultiByteToWideChar writes. */
    block = (unsigned char *)calloc(1, whole + strings);
    if (block == NULL) {
        return secsock_error_set(err, SECSOCK_ERR_NOMEM, 0, 0, names[0], "out of memory for the %s", names[0]);
    }
    total = header;
    for (i = 0; i < count; i++) {
        if (lens[i] != 0) {
            (void)utf16_of(texts[i], (WCHAR *)(block + total), (int)(lens[i] / sizeof(WCHAR)), names[i], err);
            total += lens[i];
        }
    }
    *out = block;
    *out_len = (ULONG)(whole + strings);
    return 0;
}

secsock_pending *secsock_set_security_begin(secsock_fd sock, const secsock_settings *settings, secsock_error *err)
{
    secsock_pending *p;

    secsock_error_clear(err);
    p = pending_new(OP_SET_SECURITY, sock, err);
    if (p == NULL) {
        return NULL;
    }
    if (settings == NULL) {
        /* NULL settings: the system's defaults. */
    } else if (!settings->is_ipsec) {
        SOCKET_SECURITY_SETTINGS *plain = (SOCKET_SECURITY_SETTINGS *)calloc(1, sizeof(*plain));
        if (plain == NULL) {
            pending_destroy(p);
            secsock_error_set(err, SECSOCK_ERR_NOMEM, 0, 0, "settings", "out of memory for the settings");
            return NULL;
        }
        plain->SecurityProtocol = (SOCKET_SECURITY_PROTOCOL)settings->protocol;
        plain->SecurityFlags = settings->security_flags;
        p->in = plain;
        p->in_len = (ULONG)sizeof(*plain);
    } else {
        const char *texts[3], *names[3] = {"user", "domain", "password"};
        ULONG lens[3];
        SOCKET_SECURITY_SETTINGS_IPSEC *ipsec;

        texts[0] = settings->user;
        texts[1] = settings->domain;
        texts[2] = settings->password;
        if (pack_strings(offsetof(SOCKET_SECURITY_SETTINGS_IPSEC, AllStrings), sizeof(SOCKET_SECURITY_SETTINGS_IPSEC),
                         texts, names, 3, &p->in, &p->in_len, lens, err) != 0) {
            pending_destroy(p);
            return NULL;
        }
        p->wipe_in = settings->password != NULL;
        ipsec = (SOCKET_SECURITY_SETTINGS_IPSEC *)p->in;
        ipsec->SecurityProtocol = SOCKET_SECURITY_PROTOCOL_IPSEC;
        ipsec->SecurityFlags = settings->security_flags;
        ipsec->IpsecFlags = settings->ipsec_flags;
        memcpy(&ipsec->AuthipMMPolicyKey, settings->mm_policy_key, 16);
        memcpy(&ipsec->AuthipQMPolicyKey, settings->qm_policy_key, 16);
        ipsec->UserNameStringLen = lens[0];
        ipsec->DomainNameStringLen = lens[1];
        ipsec->PasswordStringLen = lens[2];
    }
    return pending_start(p);
}

secsock_pending *secsock_set_peer_target_name_begin(secsock_fd sock, uint32_t protocol, const secsock_peer *peer,
                                                    const char *name, secsock_error *err)
{
    const char *names[1] = {"name"};
    ULONG len;
    secsock_pending *p;
    SOCKET_PEER_TARGET_NAME *target;

    secsock_error_clear(err);
    if (name == NULL || name[0] == '\0') {
        secsock_error_set(err, SECSOCK_ERR_ARGUMENT, 0, 0, "name", "name (the peer's SPN) must not be empty");
        return NULL;
    }
    p = pending_new(OP_SET_TARGET_NAME, sock, err);
    if (p == NULL) {
        return NULL;
    }
    if (pack_strings(offsetof(SOCKET_PEER_TARGET_NAME, AllStrings), sizeof(SOCKET_PEER_TARGET_NAME), &name, names,
                     1, &p->in, &p->in_len, &len, err) != 0) {
        pending_destroy(p);
        return NULL;
    }
    target = (SOCKET_PEER_TARGET_NAME *)p->in;
    target->SecurityProtocol = (SOCKET_SECURITY_PROTOCOL)protocol;
    if (peer != NULL) {
        (void)peer_to_sockaddr(peer, &target->PeerAddress);
    }
    target->PeerTargetNameStringLen = len;
    return pending_start(p);
}

secsock_pending *secsock_delete_peer_target_name_begin(secsock_fd sock, const secsock_peer *peer, secsock_error *err)
{
    secsock_pending *p;

    secsock_error_clear(err);
    if (peer == NULL) {
        secsock_error_set(err, SECSOCK_ERR_ARGUMENT, 0, 0, "peer", "peer is required to delete its target name");
        return NULL;
    }
    p = pending_new(OP_DELETE_TARGET_NAME, sock, err);
    if (p == NULL) {
        return NULL;
    }
    p->addr_len = peer_to_sockaddr(peer, &p->addr);
    return pending_start(p);
}

int secsock_impersonate_peer(secsock_fd sock, const secsock_peer *peer, secsock_error *err)
{
    SOCKADDR_STORAGE addr;
    ULONG len = 0;

    secsock_error_clear(err);
    if (check_fits(sock, "sock", err) != 0) {
        return -1;
    }
    if (peer != NULL) {
        len = peer_to_sockaddr(peer, &addr);
    } else {
        /* The page ignores PeerAddr only for connection-oriented sockets: refuse the datagram case before the
           call, naming the argument, as the query does (the system would answer WSAEFAULT). */
        secsock_socket_kind kind;
        if (secsock_socket_kind_of(sock, &kind, err) != 0) {
            return -1;
        }
        if (kind.type == SECSOCK_TYPE_DGRAM) {
            return secsock_error_set(err, SECSOCK_ERR_ARGUMENT, 0, 0, "peer",
                                     "peer is required to impersonate the peer of a datagram socket");
        }
    }
    if (WSAImpersonateSocketPeer(to_socket(sock), peer != NULL ? (const struct sockaddr *)&addr : NULL, len) != 0) {
        long e = WSAGetLastError();
        return error_os(err, e, "WSAImpersonateSocketPeer", describe(e));
    }
    return 0;
}

int secsock_revert_impersonation(secsock_error *err)
{
    secsock_error_clear(err);
    if (WSARevertImpersonation() != 0) {
        long e = WSAGetLastError();
        return error_os(err, e, "WSARevertImpersonation", describe(e));
    }
    return 0;
}
