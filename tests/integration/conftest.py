"""Fixtures on real services: the run's own vhost and database (see tests/conftest.py), the
simulated provider and real Celery worker processes, all stopped at the end of the run."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.ops.supervisor import wait_http
from tests import conftest as root

ROOT = Path(__file__).resolve().parents[2]
# Each pool's Prometheus port, by queue, once the `workers` fixture started them.
METRICS_PORTS: dict[str, int] = {}


@pytest.fixture(scope="session")
def services() -> object:
    assert root.SERVICES is not None
    from app.db import session_scope
    from app.db.migrate import upgrade
    from app.seed import seed

    upgrade()
    with session_scope() as session:
        seed(session)
    return root.SERVICES


@pytest.fixture(scope="session")
def supervisor(services: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from app.ops.supervisor import Supervisor

    with Supervisor(tmp_path_factory.mktemp("process-logs"), restart=False) as sup:
        yield sup


@pytest.fixture(scope="session")
def simulator(supervisor: object) -> str:
    from app.ops.pools import simulator_spec

    supervisor.start(simulator_spec())  # type: ignore[attr-defined]
    base = f"http://127.0.0.1:{os.environ['SWITCHBOARD_SIMULATOR_PORT']}"
    wait_http(f"{base}/healthz", 30)
    return base


@pytest.fixture(scope="session")
def workers(supervisor: object, simulator: str) -> object:
    from app.ops.pools import pool_specs
    from app.ops.supervisor import wait_for_workers
    from app.topology import work_queue_names

    for queue in work_queue_names():
        METRICS_PORTS[queue] = root._free_port()
        os.environ[f"SWITCHBOARD_{queue.upper()}_METRICS_PORT"] = str(METRICS_PORTS[queue])
    for spec in pool_specs():
        supervisor.start(spec)  # type: ignore[attr-defined]
    wait_for_workers(work_queue_names(), timeout=90)
    return supervisor


@pytest.fixture
def faults(simulator: str) -> Iterator[httpx.Client]:
    """The simulated provider's admin API; faults are cleared after each test."""
    with httpx.Client(base_url=simulator, timeout=5) as admin:
        yield admin
        admin.post("/admin/faults", json={"error_rate": 0, "timeout_rate": 0, "outage_seconds": 0})


def run_cli(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args], input=stdin, capture_output=True, text=True, timeout=180,
        cwd=ROOT, env={**os.environ, **(env or {})},
    )
