"""Chooses the services before any Switchboard module reads its settings.

Integration tests get a RabbitMQ vhost and a PostgreSQL database of their own for this run (local
services, else testcontainers); with neither, they are skipped with one line saying why.
"""

from __future__ import annotations

import contextlib
import os
import socket

import pytest

from tests.support.services import Services, provide

_stack = contextlib.ExitStack()
SERVICES: Services | None = None
SKIP_REASON = ("integration tests need RabbitMQ and PostgreSQL: none answers on 127.0.0.1 "
               "and no Docker engine runs for testcontainers")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wants_integration(config: pytest.Config) -> bool:
    args = " ".join(str(a) for a in config.args)
    return "unit" not in args or "integration" in args


def pytest_configure(config: pytest.Config) -> None:
    global SERVICES
    if not _wants_integration(config):
        return
    SERVICES = _stack.enter_context(provide())
    if SERVICES is None:
        return
    port = _free_port()
    os.environ.update(
        {
            # Development mode, explicitly: the processes the tests start use this machine's
            # guest/postgres accounts and the built-in development keys.
            "SWITCHBOARD_DEV": "true",
            "SWITCHBOARD_BROKER_URL": SERVICES.broker_url,
            "SWITCHBOARD_DATABASE_URL": SERVICES.database_url,
            "SWITCHBOARD_SIMULATOR_PORT": str(port),
            "SWITCHBOARD_PROVIDER_BASE_URL": f"http://127.0.0.1:{port}/v1",
            # Short backoff so failure paths finish within a test's patience.
            "SWITCHBOARD_RETRY_BACKOFF_S": "0.2",
            "SWITCHBOARD_RETRY_BACKOFF_MAX_S": "1",
            "SWITCHBOARD_SPECIALIST_CONCURRENCY": "8",
            # Fault tests open the breaker; a short cooldown lets the next test's calls through.
            "SWITCHBOARD_BREAKER_COOLDOWN_S": "1",
            # No fixed metrics ports: runs side by side would collide. The `workers` fixture gives
            # its pools free ones (METRICS_PORTS).
            "SWITCHBOARD_METRICS_BASE_PORT": "0",
            # Callback tests deliver to a receiver on this machine: allow-listed here, for tests only.
            "SWITCHBOARD_CALLBACK_ALLOWED_HOSTS": "127.0.0.1",
            "SWITCHBOARD_CALLBACK_ALLOW_PRIVATE": "true",
        }
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    with contextlib.suppress(Exception):
        from app.state import dispose_engine

        dispose_engine()
    _stack.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if SERVICES is not None:
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if "integration" in item.nodeid.split("/"):
            item.add_marker(skip)
