"""A team's own specialist package, outside this repository, enabled with one setting.

The test writes `acme_support` (tools, prompt.md, examples.txt, its own migration and seed) into a
temporary directory, puts it on PYTHONPATH and names it in SWITCHBOARD_SPECIALISTS. Then, as an
operator would see it: `migrate` creates its table, `seed` its rows, `topology` declares its queue
and DLQ, its pool starts as a real Celery worker process, a ticket routed to it succeeds, and
`procfile`, `manifests` and `pools` name it. With only `acme_support` enabled, a fresh database gets
none of the bundled examples' tables.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection
from sqlalchemy import create_engine, inspect
from sqlalchemy.pool import NullPool

from app.ops.supervisor import Supervisor, wait_for_workers
from tests import conftest as root
from tests.integration.conftest import run_cli
from tests.support.outside_specialist import NAME, TABLE, TICKET, enabled, write_package
from tests.support.services import scratch_database

DEMO_TABLES = {"accounts", "invoices", "refunds", "kb_articles", "service_status"}


@pytest.fixture
def package_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_package(tmp_path_factory.mktemp("team-project"))


def _env(broker: str, package_dir: Path, entries: str, **more: str) -> dict[str, str]:
    return {
        "PYTHONPATH": str(package_dir),
        "SWITCHBOARD_SPECIALISTS": entries,
        "SWITCHBOARD_BROKER_URL": broker,
        **more,
    }


def _json(env: dict[str, str], *args: str) -> Any:
    result = run_cli(*args, "--json", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def _text(env: dict[str, str], *args: str) -> str:
    result = run_cli(*args, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _serve_tickets(
    env: dict[str, str], package_dir: Path, logs: Path
) -> tuple[list[dict[str, Any]], list[Any]]:
    """Starts the router's and acme_support's pools as worker processes, submits the ticket as its
    customer and as another one, and waits for both; returns their status and `switchboard pools`
    while the pools run."""
    from app.ops.pools import pool_specs

    with (
        enabled(env["SWITCHBOARD_SPECIALISTS"], package_dir),
        Supervisor(logs, env=env, restart=False) as sup,
    ):
        for spec in pool_specs(queues=["router", NAME]):
            sup.start(spec)
        wait_for_workers(["router", NAME], timeout=120)
        views = [
            _json(env, "submit", TICKET, "--tenant", "acme", "--customer", customer, "--wait", "120")
            for customer in ("wile@example.com", "road@example.com")
        ]
        pools = _json(env, "pools")
    return views, pools


def test_a_team_package_beside_the_bundled_specialists(
    private_broker: str, simulator: str, package_dir: Path, tmp_path: Path
) -> None:
    env = _env(private_broker, package_dir, f"specialists,{NAME}")
    migrated = _json(env, "migrate")
    assert migrated["histories"][NAME] == "acme_0001"
    assert _json(env, "seed")[NAME] == {TABLE: 2}

    assert {NAME, f"{NAME}.dlq"} <= set(_json(env, "topology")["declared"])
    with Connection(private_broker) as conn:
        for queue in (NAME, f"{NAME}.dlq"):
            conn.default_channel.queue_declare(queue=queue, passive=True)  # raises if it is not there

    procfile = _text(env, "procfile")
    assert f"\n{NAME}: SWITCHBOARD_PROCESS_NAME={NAME} " in procfile and f" -Q {NAME} " in procfile
    assert "\nbilling: " in procfile
    manifests = _text(env, "manifests")
    for kind in ("base", "keda", "hpa"):
        assert f"# Source: docker/k8s/{kind}/{NAME}.yaml" in manifests
    assert f"SWITCHBOARD_SPECIALISTS: specialists,{NAME}" in manifests

    (mine, other), pools = _serve_tickets(env, package_dir, tmp_path / "logs")
    assert (mine["status"], mine["specialist"], mine["route_method"]) == ("succeeded", NAME, "rule"), mine
    # Its tool read its own table, and only the requesting customer's row.
    assert mine["result"]["tool_calls"] == [{"tool": "order_status", "ok": True}]
    assert "Roadrunner 3" in mine["result"]["reply"]
    assert (other["status"], other["specialist"]) == ("succeeded", NAME)
    assert (
        "not found for this customer" in other["result"]["reply"]
        and "Roadrunner" not in other["result"]["reply"]
    )
    mine = next(p for p in pools if p["queue"] == NAME)
    assert [w["name"].split("@")[0] for w in mine["workers"]] == [NAME]
    assert any(p["queue"] == f"{NAME}.dlq" and p["dead_letter"] for p in pools)


def test_only_the_team_package_migrates_none_of_the_demo_tables(
    private_broker: str, simulator: str, package_dir: Path, tmp_path: Path
) -> None:
    assert root.SERVICES is not None
    with scratch_database(root.SERVICES.database_url, f"sb_team_{uuid.uuid4().hex[:8]}") as url:
        env = _env(private_broker, package_dir, NAME, SWITCHBOARD_DATABASE_URL=url)
        migrated = _json(env, "migrate")
        assert set(migrated["histories"]) == {"engine", NAME}
        engine = create_engine(url, poolclass=NullPool)
        tables = set(inspect(engine).get_table_names())
        engine.dispose()
        assert not tables & DEMO_TABLES, f"demo tables in a database without the demo: {tables & DEMO_TABLES}"
        assert {"requests", "llm_calls", TABLE, "alembic_version", f"alembic_version_{NAME}"} <= tables
        assert _json(env, "seed") == {NAME: {TABLE: 2}}

        procfile = _text(env, "procfile")
        assert f"\n{NAME}: " in procfile and "\nbilling: " not in procfile and "\ntechnical: " not in procfile

        (mine, _other), _ = _serve_tickets(env, package_dir, tmp_path / "logs")
        assert (mine["status"], mine["specialist"]) == ("succeeded", NAME), mine
        assert "Roadrunner 3" in mine["result"]["reply"]
