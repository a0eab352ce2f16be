"""`switchboard workers up`, the local supervisor, as an operator runs it: `scale` adds and removes
worker processes under it, a worker killed with -9 comes back at its current size, and Ctrl-C is a
warm shutdown that loses nothing (running requests finish, waiting ones stay in their queue)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.ingress import client
from app.observability.depth import from_amqp
from app.ops.queue_status import worker_views
from app.ops.supervisor import Supervisor, wait_for_workers
from app.orchestration.celery_app import celery
from tests.integration.conftest import ROOT, run_cli, wait_all, wait_until

TECHNICAL = "Our export job fails with a 502 error on the orders endpoint (job {})"
SETTINGS = {"SWITCHBOARD_SCALE_MAX_PER_PROCESS": "4", "SWITCHBOARD_TECHNICAL_CONCURRENCY": "2"}


@pytest.fixture
def workers_up(private_broker: str, simulator: str, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    env = {**os.environ, **SETTINGS}
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "workers", "up", "--queues", "router", "technical",
         "--log-dir", str(tmp_path / "logs")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        try:
            wait_for_workers(["router", "technical"], timeout=120)
        except TimeoutError:
            process.send_signal(signal.SIGINT)
            raise AssertionError(f"workers up did not start its pools:\n{process.communicate(timeout=120)[0]}") from None
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(120)
            except subprocess.TimeoutExpired:
                process.kill()


def _technical() -> dict[str, int]:
    return {w.name.split("@")[0]: w.concurrency or 0 for w in worker_views().get("technical", [])}


def _scale(n: int) -> dict:
    result = run_cli("scale", "technical", str(n), "--json", env=SETTINGS)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def test_scale_restart_and_warm_shutdown_under_the_supervisor(
        workers_up: subprocess.Popen[str], provider_latency: Callable[[int], None], tmp_path: Path) -> None:
    report = _scale(10)
    assert (report["via"], report["before"], report["after"]) == ("supervisor", 2, 10)
    assert (report["processes_before"], report["processes_after"]) == (1, 3)
    assert _technical() == {"technical": 4, "technical-2": 3, "technical-3": 3}
    assert [w.concurrency for w in worker_views()["router"]] == [4]  # the router pool untouched

    # kill -9 one process: the supervisor starts it again, at the size it had been scaled to.
    stats = celery.control.inspect(timeout=2.0).stats() or {}
    victim = next(node for node in stats if node.startswith("technical-2@"))
    os.kill(stats[victim]["pid"], signal.SIGKILL)

    def restarted() -> bool:
        fresh = celery.control.inspect(timeout=1.5).stats() or {}
        return victim in fresh and fresh[victim]["pid"] != stats[victim]["pid"]

    wait_until(restarted, 120, "the killed worker to be restarted")
    assert _technical() == {"technical": 4, "technical-2": 3, "technical-3": 3}

    report = _scale(2)
    assert (report["after"], report["processes_after"]) == (2, 1)
    assert {c["name"].split("@")[0]: c["after"] for c in report["changes"]} == {
        "technical": 2, "technical-2": None, "technical-3": None}

    # Ctrl-C while requests run: they finish; the rest wait in the queue, none lost.
    provider_latency(1500)
    ids = [client.submit(TECHNICAL.format(i)).id for i in range(6)]
    wait_until(lambda: sum(client.get(r).status == "running" for r in ids) == 2, 60, "two requests to run")
    workers_up.send_signal(signal.SIGINT)
    output, _ = workers_up.communicate(timeout=180)
    assert workers_up.returncode == 0, output
    assert "warm shutdown" in output
    statuses = {r: client.get(r).status for r in ids}
    waiting = sum(s == "routed" for s in statuses.values())
    assert set(statuses.values()) <= {"routed", "succeeded"} and waiting <= 4, statuses
    queued = from_amqp(["technical"]).queues["technical"]
    assert queued is not None and (queued.ready, queued.consumers) == (waiting, 0)
    provider_latency(0)

    # The waiting ones run once a pool consumes the queue again.
    from app.ops.pools import pool_specs

    with Supervisor(tmp_path / "after", restart=False) as sup:
        sup.start(pool_specs(queues=["technical"])[0])
        assert set(wait_all(ids).values()) == {"succeeded"}
