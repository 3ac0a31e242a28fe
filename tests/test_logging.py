"""The secsock logger (issue 13, item 5): refusals are logged; a query logs only the backend's upkeep, at
DEBUG, when its counters moved."""

from __future__ import annotations

import logging
import socket

import pytest

import secsock
from fakes import FakeBackend


def test_a_query_without_upkeep_logs_nothing_even_at_debug(
    fake_backend: FakeBackend, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="secsock"):
        secsock.query(5)
        secsock.require(5, secured=False)
        with secsock.SecureSocket.create_server(("127.0.0.1", 0), require=None) as listener:
            with socket.create_connection(listener.getsockname()):
                listener.accept()[0].close()
    assert caplog.records == []


def test_the_logger_is_the_package_logger_and_unconfigured() -> None:
    from secsock._log import logger

    assert logger is logging.getLogger("secsock") and logger.handlers == [] and logger.level == logging.NOTSET


def test_require_logs_its_refusal_at_debug(
    fake_backend: FakeBackend, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="secsock"), pytest.raises(secsock.NotSecuredError):
        secsock.require(5, encrypted=True)
    assert [(r.levelno, r.name) for r in caplog.records] == [(logging.DEBUG, "secsock")]
    assert "secured" in caplog.records[0].getMessage()


def test_a_server_refusal_is_logged_at_info_with_the_address(
    fake_backend: FakeBackend, caplog: pytest.LogCaptureFixture
) -> None:
    fake_backend.result = (1, 0, 0, 0, None, None, None)
    with secsock.SecureSocket.create_server(("127.0.0.1", 0), require=secsock.Requirement()) as listener:
        listener.settimeout(0.5)
        with socket.create_connection(listener.getsockname()) as client:
            with caplog.at_level(logging.INFO, logger="secsock"), pytest.raises(socket.timeout):
                listener.accept()
            address = client.getsockname()
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(infos) == 1 and str(address) in infos[0].getMessage()
    assert "not secured" in infos[0].getMessage()


class UpkeepBackend(FakeBackend):
    """Counts like the Linux backend: (reloads, overruns, netns_switches, crosscheck_reloads), as scripted."""

    def __init__(self) -> None:
        super().__init__()
        self.counters = (0, 0, 0, 0)

    def backend_stats(self) -> tuple[int, int, int, int]:
        return self.counters


def test_a_query_logs_the_backend_upkeep_that_happened_at_debug(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from secsock import _extension, _log

    backend = UpkeepBackend()
    monkeypatch.setattr(_extension, "backend", backend)
    monkeypatch.setattr(_log, "_last_upkeep", (0, 0, 0, 0))
    with caplog.at_level(logging.DEBUG, logger="secsock"):
        backend.counters = (2, 0, 0, 0)
        secsock.query(5)
        secsock.query(5)  # nothing moved: nothing logged
        backend.counters = (4, 1, 1, 0)
        secsock.query(5)
        backend.counters = (5, 1, 1, 1)
        secsock.query(5)
    assert [r.getMessage() for r in caplog.records] == [
        "snapshot reload: the backend re-read the XFRM tables (2 full dumps since last logged, 2 in all)",
        "snapshot reload: the backend re-read the XFRM tables (2 full dumps since last logged, 4 in all)",
        "notification overrun: XFRM notifications were lost, so the tables are re-read"
        " (1 since last logged, 1 in all)",
        "namespace switch: a network namespace without a kept snapshot was queried, so its tables were read"
        " (1 since last logged, 1 in all)",
        "snapshot reload: the backend re-read the XFRM tables (1 full dumps since last logged, 5 in all)",
        "count cross-check: the kernel's XFRM counts showed a change no notification announced, so the tables"
        " are re-read (1 since last logged, 1 in all)",
    ]
    assert {r.levelno for r in caplog.records} == {logging.DEBUG}


def test_the_debug_memo_is_the_loggers_own_and_none_for_a_logger_class_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from secsock import _log

    assert _log._enabled_memo() is _log.logger._cache  # type: ignore[attr-defined]

    class Chatty(logging.Logger):
        def isEnabledFor(self, level: int) -> bool:
            return True

    chatty = Chatty("secsock-chatty")
    chatty._cache[logging.DEBUG] = False  # type: ignore[attr-defined]
    monkeypatch.setattr(_log, "logger", chatty)
    assert _log._enabled_memo() == {}  # its isEnabledFor is asked every time
