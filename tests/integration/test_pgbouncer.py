"""Every engine path behind PgBouncer in transaction mode (README, "Behind PgBouncer").

A local PgBouncer (scripts/pgbouncer: Debian's package, its own config in a temporary directory)
stands in front of the run's PostgreSQL. Router, specialist and callback pools, an HTTP API server,
this process (the client, the reconciler, approvals, replays) and `switchboard migrate` all connect
through it with SWITCHBOARD_DATABASE_PGBOUNCER=true, in a vhost of their own; the tests check what
a user sees: replies, a parked refund approved and paid once, a poisoned request dead-lettered and
replayed after the breaker opened and closed again, lost work put back by the reconciler, the
provider limiter's shared buckets and the tenant cap's advisory lock at the door.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import make_url

from app.ingress import client
from app.state import BreakerEvent, RateBucket, Request, RequestEvent, session_scope
from specialists import DEMO_TENANT
from specialists.billing.models import Refund
from tests import conftest as root
from tests.integration.conftest import new_tenant, own_pools, run_cli, wait_until
from tests.integration.test_people import _big_invoice, _refund_text

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pgbouncer(services: object) -> Iterator[dict[str, str]]:
    """A PgBouncer in transaction mode in front of the run's database: its port and directory."""
    upstream = make_url(os.environ["SWITCHBOARD_DATABASE_URL"])
    started = subprocess.run(
        [
            str(ROOT / "scripts" / "pgbouncer"),
            "start",
            upstream.host or "127.0.0.1",
            str(upstream.port or 5432),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if started.returncode == 3:
        pytest.skip(started.stderr.strip().splitlines()[-1])
    assert started.returncode == 0, started.stderr
    instance = dict(line.split("=", 1) for line in started.stdout.split())
    yield instance
    subprocess.run([str(ROOT / "scripts" / "pgbouncer"), "stop", instance["dir"]], check=True, timeout=30)


def admin(instance: dict[str, str], command: str) -> list[dict[str, str]]:
    """One command on PgBouncer's admin console (simple query protocol only: psql), as rows."""
    shown = subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            instance["port"],
            "-U",
            "postgres",
            "-d",
            "pgbouncer",
            "-AF\t",
            "-c",
            command,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    lines = shown.stdout.splitlines()
    if not lines or "\t" not in lines[0]:
        return []
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"), strict=False)) for line in lines[1:] if "\t" in line]


@pytest.fixture(scope="module")
def bounced(
    pgbouncer: dict[str, str], simulator: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Pools and an API server of this module's own, everything connecting through PgBouncer;
    yields the API's base URL."""
    from dataclasses import replace

    from app.config import get_settings, reset_settings
    from app.ops.pools import api_spec
    from app.ops.supervisor import Supervisor, wait_http
    from app.orchestration.celery_app import use_broker
    from app.orchestration.topology import work_queue_names
    from app.state import dispose_engine
    from tests.support.services import scratch_vhost

    assert root.SERVICES is not None
    if root.SERVICES.origin != "local":
        pytest.skip("needs rabbitmqctl on the local broker to make a vhost")
    direct = os.environ["SWITCHBOARD_DATABASE_URL"]
    through = make_url(direct).set(host="127.0.0.1", port=int(pgbouncer["port"]))
    vhost = f"{root.SERVICES.vhost}-bouncer-{os.urandom(3).hex()}"
    with (
        scratch_vhost("amqp://guest:guest@127.0.0.1:5672//", vhost) as broker,
        pytest.MonkeyPatch.context() as mp,
    ):
        mp.setenv("SWITCHBOARD_DATABASE_URL", through.render_as_string(hide_password=False))
        mp.setenv("SWITCHBOARD_DATABASE_PGBOUNCER", "true")
        mp.setenv("SWITCHBOARD_BROKER_URL", broker)
        # The provider limiter is on: its buckets are moved by every process through PgBouncer.
        mp.setenv("SWITCHBOARD_PROVIDER_RPM", "6000")
        reset_settings()
        dispose_engine()
        use_broker(broker)
        try:
            # Migrations through the pooler too (the database is at head: versions are read, the
            # statement timeout is stored on the database).
            migrated = run_cli("migrate")
            assert migrated.returncode == 0, migrated.stderr
            # Server connections PgBouncer opened before that keep their old settings: have it
            # replace them, as an operator would after the first migrate (README).
            admin(pgbouncer, "RECONNECT")
            logs = tmp_path_factory.mktemp("pgbouncer-pools")
            with own_pools(logs, work_queue_names()), Supervisor(logs / "api", restart=False) as sup:
                port = root._free_port()
                spec = api_spec(get_settings().model_copy(update={"api_port": port, "api_workers": 1}))
                sup.start(replace(spec, env={**spec.env, "SWITCHBOARD_API_PORT": str(port)}))
                base = f"http://127.0.0.1:{port}"
                wait_http(f"{base}/healthz", 60)
                yield base
        finally:
            dispose_engine()
            mp.undo()
            reset_settings()
            use_broker(get_settings().broker_url.get_secret_value())


def test_tickets_run_through_pgbouncer_from_every_pool(bounced: str, pgbouncer: dict[str, str]) -> None:
    with session_scope() as session:
        started = session.scalar(text("SELECT extract(epoch FROM clock_timestamp())"))
    billing = client.submit(
        "I was charged twice for invoice INV-1042 this month, please check", tenant="acme"
    )
    technical = client.submit(
        "Our webhooks stopped arriving since this morning, the endpoint never gets the POST"
    )
    for submission, specialist in ((billing, "billing"), (technical, "technical")):
        view = client.wait(submission.id, timeout=120)
        assert view.status == "succeeded", view.error
        assert view.specialist == specialist and view.result and view.result["reply"]
    names = [row["application_name"] for row in admin(pgbouncer, "SHOW CLIENTS")]
    for role in ("router", "billing", "technical", "client"):
        assert any(name.startswith(f"switchboard:{role}:") for name in names), names
    with session_scope() as session:
        timeout = session.scalar(text("SHOW statement_timeout"))
        # The key's requests-per-minute bucket, moved by the limiter for these calls in every process.
        moved = session.scalar(select(func.max(RateBucket.tat)).where(RateBucket.bucket.like("key:%/rpm")))
    assert timeout == "1min"  # stored on the database by `switchboard migrate`, as no startup option passes
    assert moved is not None and moved > started


def test_a_parked_refund_is_approved_and_paid_once(bounced: str) -> None:
    invoice, _amount, customer = _big_invoice()
    request_id = client.submit(_refund_text(invoice), tenant=DEMO_TENANT, customer=customer).id
    wait_until(
        lambda: client.get(request_id, estimate=False).status == "awaiting_approval", 120, "the approval"
    )

    decided = run_cli("approvals", "approve", request_id, "--by", "ops-alice", "--json")
    assert decided.returncode == 0, decided.stderr
    view = client.wait(request_id, timeout=120)
    assert view.status == "succeeded", view.error
    assert {
        "tool": "issue_refund",
        "approval": {"approved": True, "by": "ops-alice"},
        "ok": True,
    } in view.result["tool_calls"]
    with session_scope() as session:
        refunds = session.scalar(select(func.count()).select_from(Refund).where(Refund.invoice_id == invoice))
    assert refunds == 1


def test_a_dead_letter_is_replayed_after_the_breaker_closes(bounced: str, faults: httpx.Client) -> None:
    from app.ops import dlq

    with session_scope() as session:
        before = session.scalar(select(func.coalesce(func.max(BreakerEvent.id), 0)))
    faults.post("/admin/faults", json={"error_rate": 1.0}).raise_for_status()
    view = client.wait(client.submit("The dashboard export to CSV fails with an error").id, timeout=180)
    assert view.status == "dead_lettered", view.error
    assert view.id in {d.id for d in dlq.list_dead_letters()}

    faults.post("/admin/faults", json={"error_rate": 0}).raise_for_status()
    time.sleep(1.5)  # the breaker's cooldown in the test settings
    assert dlq.replay(view.id) == view.specialist
    assert client.wait(view.id, timeout=120).status == "succeeded"
    with session_scope() as session:
        moves = session.execute(
            select(BreakerEvent.from_state, BreakerEvent.to_state).where(BreakerEvent.id > before)
        ).all()
    assert ("closed", "open") in moves and any(to == "closed" for _, to in moves), moves


def test_the_reconciler_puts_back_what_the_broker_lost(bounced: str) -> None:
    from app.orchestration.reconciler import redispatch_stale, republish_unpublished
    from app.state.models import new_id

    unpublished, lost = new_id(), new_id()
    with session_scope() as session:
        session.execute(
            insert(Request).values(id=unpublished, tenant="acme", text="My invoice total looks wrong")
        )
        session.execute(
            insert(Request).values(
                id=lost,
                tenant="acme",
                text="Webhook retries never stop",
                status="routed",
                specialist="technical",
                route_method="rule",
                route_confidence=1.0,
            )
        )
        session.execute(insert(RequestEvent).values(request_id=lost, kind="routed"))
    assert republish_unpublished(min_age_s=0) >= 1
    assert redispatch_stale(lease_s=0) >= 1
    assert client.wait(unpublished, timeout=120).status == "succeeded"
    assert client.wait(lost, timeout=120).status == "succeeded"


def test_the_tenant_cap_holds_at_the_door(bounced: str) -> None:
    # The cap is counted under a transaction-level advisory lock, which PgBouncer keeps with its
    # transaction; one request fits, the second of a burst is refused while the first is unfinished.
    _tenant, token = new_tenant(f"bouncer-{uuid.uuid4().hex[:8]}", max_concurrent=1)
    headers = {"Authorization": f"Bearer {token}"}

    def send(text: str) -> httpx.Response:
        return httpx.post(f"{bounced}/v1/requests", headers=headers, json={"text": text}, timeout=30)

    # The first one's provider calls are slow, so it is unfinished while the others knock.
    answers: list[Any] = [send("My invoice total looks wrong [[sim:slow]]"), send("Invoice question")]
    codes = [a.status_code for a in answers]
    assert codes[0] == 202 and 429 in codes[1:], [a.text for a in answers]
    accepted = answers[0].json()["id"]
    assert client.wait(accepted, timeout=120).status == "succeeded"
    assert send("Invoice question again").status_code == 202  # room again once it finished
