/*
 * The Secure Socket Extensions calls that have no counterpart on Linux: each fails with
 * SECSOCK_ERR_UNSUPPORTED and says why, so Python raises secsock.UnsupportedOperation instead of pretending.
 * (The query itself has a real answer on Linux: csrc/linux/.)
 */
#include "secsock_backend.h"

#include <stddef.h>

static const char NO_TOKENS[] = "Linux IPsec (XFRM) carries no peer access tokens; identities live in the IKE "
                                "daemon (strongSwan, Libreswan), not in the kernel";

secsock_pending *secsock_set_security_begin(secsock_fd sock, const secsock_settings *settings,
                                            secsock_error *err)
{
    (void)sock;
    (void)settings;
    secsock_error_set(err, SECSOCK_ERR_UNSUPPORTED, 0, 0, "set_security",
                      "Linux applies IPsec from system policy (ip xfrm, strongSwan, Libreswan); a per-socket "
                      "security request like WSASetSocketSecurity is not offered");
    return NULL;
}

secsock_pending *secsock_set_peer_target_name_begin(secsock_fd sock, uint32_t protocol, const secsock_peer *peer,
                                                    const char *name, secsock_error *err)
{
    (void)sock;
    (void)protocol;
    (void)peer;
    (void)name;
    secsock_error_set(err, SECSOCK_ERR_UNSUPPORTED, 0, 0, "set_peer_target_name",
                      "peer target names (SPNs) are a Windows AuthIP notion; on Linux the IKE daemon's "
                      "configuration names the peer");
    return NULL;
}

secsock_pending *secsock_delete_peer_target_name_begin(secsock_fd sock, const secsock_peer *peer,
                                                       secsock_error *err)
{
    (void)sock;
    (void)peer;
    secsock_error_set(err, SECSOCK_ERR_UNSUPPORTED, 0, 0, "delete_peer_target_name",
                      "peer target names (SPNs) are a Windows AuthIP notion; on Linux the IKE daemon's "
                      "configuration names the peer");
    return NULL;
}

int secsock_impersonate_peer(secsock_fd sock, const secsock_peer *peer, secsock_error *err)
{
    (void)sock;
    (void)peer;
    return secsock_error_set(err, SECSOCK_ERR_UNSUPPORTED, 0, 0, "impersonate_peer",
                             "impersonating the peer needs its access token, and %s", NO_TOKENS);
}

int secsock_revert_impersonation(secsock_error *err)
{
    return secsock_error_set(err, SECSOCK_ERR_UNSUPPORTED, 0, 0, "revert_impersonation",
                             "there is no impersonation to revert on Linux");
}

int secsock_token_user(uint64_t token, secsock_account *user, secsock_error *err)
{
    (void)token;
    (void)user;
    return secsock_error_set(err, SECSOCK_ERR_UNSUPPORTED, 0, 0, "Token.user", "%s", NO_TOKENS);
}

int secsock_token_groups(uint64_t token, secsock_account **groups, size_t *count, secsock_error *err)
{
    (void)token;
    if (groups != NULL) {
        *groups = NULL;
    }
    if (count != NULL) {
        *count = 0;
    }
    return secsock_error_set(err, SECSOCK_ERR_UNSUPPORTED, 0, 0, "Token.groups", "%s", NO_TOKENS);
}

int secsock_token_is_member(uint64_t token, const char *sid_or_account, int *member, secsock_error *err)
{
    (void)token;
    (void)sid_or_account;
    if (member != NULL) {
        *member = 0;
    }
    return secsock_error_set(err, SECSOCK_ERR_UNSUPPORTED, 0, 0, "Token.is_member", "%s", NO_TOKENS);
}
