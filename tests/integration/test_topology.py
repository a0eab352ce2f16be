"""Queues are declared idempotently; a conflicting queue stops start-up with an actionable message."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import pytest
from kombu import Connection, Queue

from app.orchestration.topology import all_queues, declare
from tests.integration.conftest import ROOT, run_cli
from tests.support.services import scratch_vhost

pytestmark = pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs rabbitmqctl for a scratch vhost")


def test_declaring_twice_is_harmless_and_creates_every_dlq(services: object) -> None:
    with scratch_vhost("amqp://guest:guest@127.0.0.1:5672//", f"sb-topo-{uuid.uuid4().hex[:8]}") as url:
        with Connection(url) as conn:
            first = declare(conn)
            assert declare(conn) == first
            for queue in all_queues():
                conn.default_channel.queue_declare(queue=queue.name, passive=True)
        assert {"router.dlq", "billing.dlq", "technical.dlq"} <= set(first)


def test_conflicting_queue_stops_worker_and_cli_with_a_clear_message(services: object) -> None:
    with scratch_vhost("amqp://guest:guest@127.0.0.1:5672//", f"sb-topo-{uuid.uuid4().hex[:8]}") as url:
        with Connection(url) as conn:
            Queue("billing", durable=True)(conn.default_channel).declare()  # no DLX, no priority

        cli = run_cli("topology", "--json", env={"SWITCHBOARD_BROKER_URL": url})
        assert cli.returncode == 78
        assert "'billing'" in cli.stderr and "delete_queue billing" in cli.stderr

        worker = subprocess.run(
            [sys.executable, "-m", "celery", "-A", "app.orchestration.celery_app:celery", "worker", "-Q", "billing",
             "-P", "threads", "-c", "1", "--without-gossip", "--without-mingle"],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
            env={**os.environ, "SWITCHBOARD_BROKER_URL": url},
            check=False,
        )
        assert worker.returncode == 78
        assert "'billing'" in worker.stderr
