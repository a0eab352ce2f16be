"""Fixtures on real services: the run's own vhost and database (see tests/conftest.py), the
simulated provider and real Celery worker processes, all stopped at the end of the run."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests import conftest as root

ROOT = Path(__file__).resolve().parents[2]
# Each pool's Prometheus port, by queue, once the `workers` fixture started them.
METRICS_PORTS: dict[str, int] = {}


@pytest.fixture(scope="session")
def services() -> object:
    assert root.SERVICES is not None
    from app.ops.migrate import upgrade
    from app.ops.seeding import seed_enabled
    from app.state import session_scope

    upgrade()
    with session_scope() as session:
        seed_enabled(session)
    return root.SERVICES


@pytest.fixture(scope="session")
def supervisor(services: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from app.ops.supervisor import Supervisor

    with Supervisor(tmp_path_factory.mktemp("process-logs"), restart=False) as sup:
        yield sup


@pytest.fixture(scope="session")
def simulator(supervisor: object) -> str:
    from app.ops.pools import simulator_spec
    from app.ops.supervisor import wait_http

    supervisor.start(simulator_spec())  # type: ignore[attr-defined]
    base = f"http://127.0.0.1:{os.environ['SWITCHBOARD_SIMULATOR_PORT']}"
    wait_http(f"{base}/healthz", 30)
    return base


@pytest.fixture(scope="session")
def workers(supervisor: object, simulator: str) -> object:
    from app.ops.pools import pool_specs
    from app.ops.supervisor import wait_for_workers
    from app.orchestration.topology import work_queue_names

    for queue in work_queue_names():
        METRICS_PORTS[queue] = root._free_port()
        os.environ[f"SWITCHBOARD_{queue.upper()}_METRICS_PORT"] = str(METRICS_PORTS[queue])
    for spec in pool_specs():
        supervisor.start(spec)  # type: ignore[attr-defined]
    wait_for_workers(work_queue_names(), timeout=90)
    return supervisor


@pytest.fixture(scope="session")
def api(supervisor: object) -> str:
    """The HTTP API under uvicorn on a free port, as the Procfile runs it; its base URL."""
    from dataclasses import replace

    from app.config import get_settings
    from app.ops.pools import api_spec
    from app.ops.supervisor import wait_http

    port = root._free_port()
    # One server process: the database server is shared with other test runs on this machine.
    spec = api_spec(get_settings().model_copy(update={"api_port": port, "api_workers": 1}))
    supervisor.start(replace(spec, env={**spec.env, "SWITCHBOARD_API_PORT": str(port)}))  # type: ignore[attr-defined]
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/healthz", 60)
    return base


@pytest.fixture(scope="module")
def quiet_api(supervisor: object) -> Iterator[tuple[str, str]]:
    """A second API server publishing into a vhost with no consumers: accepted requests stay
    unfinished and every published message can be counted. Yields (base URL, broker URL)."""
    import uuid
    from dataclasses import replace

    from kombu import Connection

    from app.config import get_settings
    from app.ops.pools import api_spec
    from app.ops.supervisor import wait_http
    from app.orchestration.topology import declare
    from tests.support.services import scratch_vhost

    with scratch_vhost("amqp://guest:guest@127.0.0.1:5672//", f"sb-quiet-{uuid.uuid4().hex[:8]}") as broker:
        with Connection(broker) as conn:
            declare(conn)
        port = root._free_port()
        spec = api_spec(get_settings().model_copy(update={"api_port": port, "api_workers": 1}))
        env = {**spec.env, "SWITCHBOARD_API_PORT": str(port), "SWITCHBOARD_BROKER_URL": broker}
        supervisor.start(replace(spec, name="api-quiet", env=env))  # type: ignore[attr-defined]
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz", 60)
        yield base, broker
        supervisor.stop("api-quiet")  # type: ignore[attr-defined]


def new_tenant(name: str | None = None, **limits: int) -> tuple[str, str]:
    """A tenant of its own for one test and a submit key: (tenant, token)."""
    import uuid

    from app.ingress import tenants

    name = name or f"t-{uuid.uuid4().hex[:10]}"
    tenants.create_tenant(name, **limits)
    return name, tenants.create_key(name).token


@pytest.fixture
def faults(simulator: str) -> Iterator[httpx.Client]:
    """The simulated provider's admin API; faults are cleared after each test."""
    with httpx.Client(base_url=simulator, timeout=5) as admin:
        yield admin
        admin.post("/admin/faults", json={"error_rate": 0, "timeout_rate": 0, "outage_seconds": 0})


@pytest.fixture
def provider_latency(faults: httpx.Client) -> Iterator[Callable[[int], None]]:
    """Sets the simulated provider's latency (ms) for one test; none again afterwards."""

    def set_latency(ms: int) -> None:
        faults.post("/admin/faults", json={"latency_ms": ms}).raise_for_status()

    yield set_latency
    set_latency(0)


def run_cli(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args], input=stdin, capture_output=True, text=True, timeout=180,
        cwd=ROOT, env={**os.environ, **(env or {})},
        check=False,
    )


@pytest.fixture
def private_broker(services: object, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A RabbitMQ vhost of this test's own, for tests that run their own worker processes: the
    session's workers never see its messages. This process publishes and inspects there too."""
    from app.config import reset_settings
    from app.orchestration.celery_app import use_broker
    from tests.support.services import scratch_vhost

    assert root.SERVICES is not None
    if root.SERVICES.origin != "local":
        pytest.skip("needs rabbitmqctl on the local broker to make a vhost")
    previous = os.environ["SWITCHBOARD_BROKER_URL"]
    with scratch_vhost("amqp://guest:guest@127.0.0.1:5672//", f"{root.SERVICES.vhost}-{os.urandom(3).hex()}") as url:
        monkeypatch.setenv("SWITCHBOARD_BROKER_URL", url)
        reset_settings()
        use_broker(url)
        try:
            yield url
        finally:
            monkeypatch.setenv("SWITCHBOARD_BROKER_URL", previous)
            reset_settings()
            use_broker(previous)


@contextlib.contextmanager
def own_pools(log_dir: Path, queues: list[str]) -> Iterator[None]:
    """Worker pools of a test's own (with the settings its environment has now, in its private
    vhost), started and awaited; stopped afterwards."""
    from app.ops.pools import pool_specs
    from app.ops.supervisor import Supervisor, wait_for_workers

    with Supervisor(log_dir, restart=False) as sup:
        for spec in pool_specs(queues=queues):
            sup.start(spec)
        wait_for_workers(queues, timeout=120)
        yield


def peak_overlap(request_ids: list[str]) -> int:
    """The most attempts of these requests that ran at the same moment, from the record's events:
    an attempt runs from `attempt_started` to the event that ends it (a deferred or failed attempt
    ends early, and its retry is another attempt)."""
    from sqlalchemy import select

    from app.state import RequestEvent, session_scope

    with session_scope() as session:
        events = session.execute(
            select(RequestEvent.request_id, RequestEvent.kind, RequestEvent.at)
            .where(RequestEvent.request_id.in_(request_ids)).order_by(RequestEvent.id)
        ).all()
    edges, open_at = [], {}
    for request_id, kind, at in events:
        if kind == "attempt_started":
            open_at[request_id] = at
        elif kind in ("succeeded", "deferred", "attempt_failed", "dead_lettered") and request_id in open_at:
            edges += [(open_at.pop(request_id), 1), (at, -1)]
    running = peak = 0
    for _, step in sorted(edges):  # at the same instant an end sorts before a start
        running += step
        peak = max(peak, running)
    return peak


def wait_all(request_ids: list[str], timeout: float = 240.0) -> dict[str, str]:
    from app.ingress import client

    return {rid: client.wait(rid, timeout=timeout).status for rid in request_ids}


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)
