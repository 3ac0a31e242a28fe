"""The ``secsock`` logger. Nothing on a query's hot path logs: a query costs the same whatever the level.

At INFO: each connection a server helper refused (SecureSocket.create_server, RequireSecurityMixIn,
Requirement.guard), and each connection they dropped because its peer left before the query, since neither
reaches a caller as an exception. At DEBUG: each refusal of
require() / Requirement.check(), which the caller also gets as NotSecuredError. The Linux backend counts its
snapshot re-reads and notification overruns in C but does not expose them to Python (and namespace switches
are not counted), so those are not logged.
"""

from __future__ import annotations

import logging

logger = logging.getLogger("secsock")
