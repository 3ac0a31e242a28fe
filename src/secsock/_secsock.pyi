# Stubs for the C extension secsock._secsock (csrc/_secsock.c, csrc/module/). Private: use the secsock facade.

import uuid
from collections.abc import Callable
from typing import Any

from secsock._types import (
    ConnectionFlags,
    IpsecDetails,
    IpsecMode,
    IpsecProtocol,
    SecurityAssociation,
    SecurityInfo,
    SecurityProtocol,
    Token,
)

_RawPeer = tuple[bool, bytes, int, int, int]
_RawSA = tuple[int, int, int, int, str, str, str]
_RawIpsec2 = tuple[int, int, int, bytes]
_RawResult = tuple[
    int, int, int, int, _RawIpsec2 | None, tuple[tuple[_RawSA, ...], tuple[_RawSA, ...]] | None, str | None
]

BACKEND: str
MAX_SAS_PER_DIRECTION: int

class SecurityInfoBase:
    protocol: SecurityProtocol | int
    flags: ConnectionFlags
    peer_application_token: Token | None
    peer_machine_token: Token | None
    mm_sa_id: int | None
    qm_sa_id: int | None
    negotiation_error: int | None
    sa_lookup_context: uuid.UUID | None
    ipsec: IpsecDetails | None
    reason: str | None

class Pending:
    @property
    def closed(self) -> bool: ...
    def done(self) -> bool: ...
    def wait(self, timeout_ms: int, /) -> bool: ...
    def result(self) -> _RawResult | None: ...
    def cancel(self) -> bool: ...
    def event(self) -> int | None: ...
    def close(self) -> None: ...

def bind_results(
    cls: type[SecurityInfo],
    protocols: tuple[SecurityProtocol, ...],
    flags: tuple[ConnectionFlags, ...],
    in_the_clear: IpsecDetails,
    decode: Callable[[_RawResult], SecurityInfo],
    sa_cls: type[SecurityAssociation],
    ipsec_protocols: dict[int, IpsecProtocol],
    ipsec_modes: dict[int, IpsecMode],
    /,
) -> None: ...
def query_info(
    sock: object, peer: object, token_access: object, ipsec2: object, /
) -> SecurityInfo | None: ...
def query_sock(sock: object, /) -> SecurityInfo | None: ...
def bind_query(
    general: Callable[..., SecurityInfo],
    extension_namespace: dict[str, Any],
    debug_memo: dict[int, bool],
    debug_level: int,
    after_direct: Callable[[], None],
    /,
) -> Callable[..., SecurityInfo]: ...
def query(fd: int, peer: _RawPeer | None, token_access: int, ipsec2: bool, /) -> _RawResult: ...
def begin_query(fd: int, peer: _RawPeer | None, token_access: int, ipsec2: bool, /) -> Pending: ...
def close_token(handle: int, /) -> None: ...
def set_security_begin(fd: int, settings: tuple[object, ...] | None, /) -> Pending: ...
def set_peer_target_name_begin(fd: int, protocol: int, peer: _RawPeer | None, name: str, /) -> Pending: ...
def delete_peer_target_name_begin(fd: int, peer: _RawPeer, /) -> Pending: ...
def impersonate_peer(fd: int, peer: _RawPeer | None, /) -> None: ...
def revert_impersonation() -> None: ...
def token_user(handle: int, /) -> tuple[str, str]: ...
def token_groups(handle: int, /) -> tuple[tuple[str, str], ...]: ...
def token_is_member(handle: int, sid_or_account: str, /) -> bool: ...
def backend_stats() -> tuple[int, int, int, int]: ...
