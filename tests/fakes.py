"""Test doubles of the C extension, for testing the facade's own logic."""

from __future__ import annotations

from typing import Any


class FakeBackend:
    """Stands in for secsock._secsock to test the facade's own logic: it records every call."""

    BACKEND = "fake"

    def __init__(self, result: tuple[Any, ...] | None = None) -> None:
        self.result = result if result is not None else (1, 0, 0, 0, None, None, None)
        self.queries: list[tuple[Any, ...]] = []
        self.closed_tokens: list[int] = []

    def query(self, *request: Any) -> tuple[Any, ...]:
        self.queries.append(request)
        return self.result

    def close_token(self, handle: int) -> None:
        self.closed_tokens.append(handle)


class FakePending:
    """A completed set/delete call: result() raises the scripted error, close() is recorded."""

    def __init__(self, backend: FakeFamilyBackend, error: BaseException | None) -> None:
        self.backend = backend
        self.error = error
        self.closed = False

    def result(self) -> None:
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.closed = True
        self.backend.calls.append(("close",))


class FakeFamilyBackend(FakeBackend):
    """Records the family's calls in order; `observe` sees each call's handle; `fail` scripts errors."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, ...]] = []
        self.fail: dict[str, BaseException] = {}
        self.observe: Any = None
        self.pendings: list[FakePending] = []

    def _call(self, name: str, *args: Any) -> Any:
        self.calls.append((name, *args))
        if self.observe is not None and args:
            self.observe(name, args[0])
        return self.fail.get(name)

    def _pending(self, name: str, *args: Any) -> FakePending:
        pending = FakePending(self, self._call(name, *args))
        self.pendings.append(pending)
        return pending

    def set_security_begin(self, fd: int, settings: Any) -> FakePending:
        return self._pending("set_security", fd, settings)

    def set_peer_target_name_begin(self, fd: int, protocol: int, peer: Any, name: str) -> FakePending:
        return self._pending("set_peer_target_name", fd, protocol, peer, name)

    def delete_peer_target_name_begin(self, fd: int, peer: Any) -> FakePending:
        return self._pending("delete_peer_target_name", fd, peer)

    def impersonate_peer(self, fd: int, peer: Any) -> None:
        error = self._call("impersonate", fd, peer)
        if error is not None:
            raise error

    def revert_impersonation(self) -> None:
        self.calls.append(("revert",))


# --- socket-likes that are not sockets: what query() must refuse, naming sock -------------------------------


class NoFileno:
    pass


class FilenoNotCallable:
    fileno = 3


class FilenoStr:
    def fileno(self) -> str:
        return "3"


class FilenoBool:
    def fileno(self) -> bool:
        return True


class FilenoClosed:
    def fileno(self) -> int:
        return -1
