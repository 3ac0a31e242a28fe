from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest


@pytest.fixture
def tcp6_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    with socket.create_server(("::1", 0), family=socket.AF_INET6) as listener:
        client = socket.create_connection(listener.getsockname()[:2])
        server, _ = listener.accept()
    with client, server:
        yield client, server


@pytest.fixture
def udp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with a, b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        a.sendto(b"hello", b.getsockname())
        b.recvfrom(16)
        yield a, b
