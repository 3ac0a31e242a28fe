#!/usr/bin/env bash
# Runs a command without CAP_NET_ADMIN, as the tests run in GitHub's manylinux containers: the capability is
# dropped from the bounding and inheritable sets, so not even root gets it back on exec. Refuses to run the
# command if the capability is still effective in a process started under it.
set -euo pipefail
exec setpriv --bounding-set -net_admin --inh-caps -net_admin -- bash -c '
    set -euo pipefail
    capeff=$(awk "/^CapEff:/ {print \$2}" /proc/self/status)
    if (( (16#$capeff >> 12) & 1 )); then  # CAP_NET_ADMIN is capability 12
        echo "without_net_admin: CAP_NET_ADMIN is still effective (CapEff $capeff)" >&2
        exit 1
    fi
    exec "$@"' without_net_admin "$@"
