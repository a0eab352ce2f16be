"""The unit suite's fixtures."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator

import pytest

from tests.unit.scripted_http import Answer, Server


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    """Start scripted servers (tests/unit/scripted_http.py); each is closed after the test."""
    servers: list[Server] = []

    def start(answers: list[Answer], tls: ssl.SSLContext | None = None) -> Server:
        servers.append(Server(answers, tls))
        return servers[-1]

    yield start
    for server in servers:
        server.close()
