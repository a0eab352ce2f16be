"""`switchboard.submit` by task name from a plain Celery app: no Switchboard code in the sender, the
documented kwargs on the documented queue; bad input dead-lettered with its error, never lost."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from typing import Any

import pytest
from kombu import Connection
from sqlalchemy import func, select

from tests.integration.conftest import run_cli, wait_until

# The sender: the README's snippet, in a process of its own that imports nothing of Switchboard's.
PLAIN_SENDER = textwrap.dedent("""
    import json, sys
    from celery import Celery

    plain = Celery("plain", broker=sys.argv[1])
    sends = json.loads(sys.stdin.read())
    ids = []
    for send in sends:
        result = plain.send_task("switchboard.submit", queue="submit", **send)
        ids.append(result.id)
    assert not [m for m in sys.modules if m == "app" or m.startswith(("app.", "workflows", "specialists"))]
    print(json.dumps(ids))
""")


def send_plain(*sends: dict[str, Any]) -> list[str]:
    """Send each as `send_task("switchboard.submit", queue="submit", **send)` from a plain Celery app."""
    done = subprocess.run([sys.executable, "-c", PLAIN_SENDER, os.environ["SWITCHBOARD_BROKER_URL"]],
                          input=json.dumps(list(sends)), capture_output=True, text=True, timeout=60,
                          cwd="/", env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def requests_of(tenant: str) -> list[Any]:
    from app.state import Request, session_scope

    with session_scope() as session:
        query = select(Request.id, Request.idempotency_key).where(Request.tenant == tenant)
        return list(session.execute(query))


def dlq_list() -> list[dict[str, Any]]:
    listed = run_cli("dlq", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)


def test_a_plain_celery_app_submits_by_name_and_a_repeated_key_runs_once(workers: object) -> None:
    from app.ingress import client
    from app.state import RequestEvent, session_scope

    tenant = f"plain-{uuid.uuid4().hex[:8]}"
    kwargs = {"text": "I was charged twice for INV-1042, please refund one", "tenant": tenant,
              "idempotency_key": "ticket-8812", "priority": "high", "customer": "maria.gonzalez@example.com"}
    send_plain({"kwargs": kwargs}, {"kwargs": kwargs})

    wait_until(lambda: len(requests_of(tenant)) == 1, 60, "the submission to be recorded")
    ((request_id, key),) = requests_of(tenant)
    assert key == "ticket-8812"
    view = client.wait(request_id, timeout=120)
    assert view.status == "succeeded", view
    assert view.specialist == "billing" and view.priority == "high" and view.result["reply"]
    assert view.customer == "maria.gonzalez@example.com"
    # Both messages were taken (the submit queue drained) and still one request ran, once.
    wait_until(lambda: _depth("submit") == 0, 30, "the submit queue to drain")
    assert len(requests_of(tenant)) == 1
    with session_scope() as session:
        started = session.scalar(select(func.count()).select_from(RequestEvent).where(
            RequestEvent.request_id == request_id, RequestEvent.kind == "attempt_started"))
    assert started == 1


def test_a_redelivered_submission_without_a_key_is_recorded_once(workers: object) -> None:
    tenant = f"plain-{uuid.uuid4().hex[:8]}"
    task_id = str(uuid.uuid4())
    # The same message twice (what a redelivery after a worker died looks like): its task id keys it.
    send = {"kwargs": {"text": "The SDK throws a TypeError on import", "tenant": tenant}, "task_id": task_id}
    send_plain(send, send)
    wait_until(lambda: len(requests_of(tenant)) == 1 and _depth("submit") == 0, 60, "the submissions")
    assert [key for _, key in requests_of(tenant)] == [f"task-{task_id}"]


def test_bad_input_is_dead_lettered_with_its_error_and_shown_by_dlq_list(workers: object) -> None:
    tenant = f"plain-{uuid.uuid4().hex[:8]}"
    empty, positional, unknown, customer = send_plain(
        {"kwargs": {"text": "   ", "tenant": tenant}},
        {"args": ["I was charged twice"]},
        {"kwargs": {"text": "hello", "tenant": tenant, "urgency": "very"}},
        {"kwargs": {"text": "hello", "tenant": tenant, "customer": "maria gonzalez"}},
    )

    def listed() -> dict[str, dict[str, Any]]:
        return {d["id"]: d for d in dlq_list() if d["queue"] == "submit"}

    wait_until(lambda: {empty, positional, unknown, customer} <= set(listed()), 60,
               "the bad submissions in submit.dlq")
    dead = listed()
    assert requests_of(tenant) == []  # nothing half-written
    for task_id in (empty, positional, unknown, customer):
        assert dead[task_id]["in_record"] is False and dead[task_id]["task"] == "switchboard.submit"
    assert "text" in dead[empty]["error"] and "empty" in dead[empty]["error"]
    assert dead[empty]["tenant"] == tenant
    assert "keyword arguments only" in dead[positional]["error"]
    assert "urgency" in dead[unknown]["error"]
    assert "customer" in dead[customer]["error"] and "without spaces" in dead[customer]["error"]

    shown = run_cli("dlq", "show", empty, "--json")
    assert shown.returncode == 0, shown.stderr
    detail = json.loads(shown.stdout)
    assert detail["kwargs"] == {"text": "   ", "tenant": tenant} and "empty" in detail["error"]

    # Listing looked without taking: the messages are all still there.
    assert {empty, positional, unknown} <= set(listed())

    # Replay sends it to `submit` again as a new task; still invalid, it comes back under a new id.
    replayed = run_cli("dlq", "replay", positional, "--json")
    assert replayed.returncode == 0, replayed.stderr
    assert json.loads(replayed.stdout)["replayed"] == [{"id": positional, "queue": "submit"}]

    def back() -> list[dict[str, Any]]:
        return [d for d in listed().values()
                if "keyword arguments only" in d["error"] and d["id"] != positional]

    wait_until(lambda: positional not in listed() and len(back()) == 1, 60, "the replayed submission back")
    (returned,) = back()

    purged = run_cli("dlq", "purge", "submit.dlq", "--yes", "--json")
    assert purged.returncode == 0, purged.stderr
    assert json.loads(purged.stdout)["purged"]["submit.dlq"] >= 3
    assert not {empty, unknown, returned["id"]} & set(listed())


def test_dlq_list_shows_a_router_message_with_no_request_row(workers: object) -> None:
    from app.orchestration.celery_app import ROUTE_TASK, celery
    from app.orchestration.topology import ROUTER_QUEUE

    orphan = str(uuid.uuid4())
    celery.send_task(ROUTE_TASK, args=[orphan], queue=ROUTER_QUEUE, routing_key=ROUTER_QUEUE)
    wait_until(lambda: orphan in {d["id"] for d in dlq_list()}, 60, "the orphan route message in router.dlq")
    (entry,) = [d for d in dlq_list() if d["id"] == orphan]
    assert entry["queue"] == "router" and entry["in_record"] is False
    assert f"no request {orphan} in the record" in entry["error"]


def test_a_route_message_with_inputs_but_no_request_row_is_dead_lettered(workers: object) -> None:
    from app.ingress.client import SubmitRequest, publish, routing_inputs

    orphan = str(uuid.uuid4())
    assert publish(orphan, "normal", routing_inputs(SubmitRequest(text="My invoice is wrong")))
    wait_until(lambda: orphan in {d["id"] for d in dlq_list()}, 60, "the orphan route message in router.dlq")
    (entry,) = [d for d in dlq_list() if d["id"] == orphan]
    assert entry["queue"] == "router" and entry["in_record"] is False
    assert f"no request {orphan} in the record" in entry["error"]


def test_a_route_message_naming_another_tenant_routes_nothing_and_the_record_routes_it(workers: object) -> None:
    """The router trusts the route message's inputs to save a read, but not its tenant: one that
    is not the row's is dead-lettered, and the reconciler routes the request from the record."""
    from app.ingress.client import SubmitRequest, accept, publish, routing_inputs
    from app.orchestration.reconciler import redispatch_stale
    from app.state import Request, RequestEvent, session_scope

    owner = f"owner-{uuid.uuid4().hex[:8]}"
    request_id = accept(SubmitRequest(text="Webhook deliveries fail with 401 since Monday", tenant=owner)).id
    forged = routing_inputs(SubmitRequest(text="Webhook deliveries fail with 401 since Monday", tenant="acme"))
    assert publish(request_id, "normal", forged)
    wait_until(lambda: request_id in {d["id"] for d in dlq_list()}, 60, "the forged route message in router.dlq")
    (entry,) = [d for d in dlq_list() if d["id"] == request_id]
    # Only the broker holds it: the request is not dead-lettered, it waits to be routed.
    assert entry["queue"] == "router" and entry["in_record"] is False
    assert "names a tenant that is not the request's" in entry["error"]
    assert "acme" not in entry["error"] and owner not in entry["error"]
    with session_scope() as session:
        assert session.scalar(select(Request.status).where(Request.id == request_id)) == "accepted"
        kinds = session.scalars(select(RequestEvent.kind).where(RequestEvent.request_id == request_id)).all()
    assert "routed" not in kinds

    def published() -> bool:
        with session_scope() as session:
            return session.scalar(select(Request.published_at).where(Request.id == request_id)) is not None

    wait_until(published, 30, "the publish to be recorded")  # the reconciler redispatches published rows
    assert redispatch_stale(lease_s=0) >= 1
    from app.ingress import client

    view = client.wait(request_id, timeout=60)
    assert view.status == "succeeded" and view.specialist == "technical" and view.tenant == owner


def test_a_route_message_naming_another_tenant_spends_and_reads_nothing_as_that_tenant(workers: object) -> None:
    """Before the routed write rejects it, a forged message must not charge the fallback LLM call
    to the tenant it names, nor read that tenant's conversations."""
    from app.ingress.client import SubmitRequest, accept, publish, routing_inputs
    from app.state import Conversation, LlmCall, conversations, session_scope

    owner = f"owner-{uuid.uuid4().hex[:8]}"
    # No rule places it and the classifier is unsure of it: the router would ask the LLM.
    unsure = "hello, is anyone there?"
    request_id = accept(SubmitRequest(text=unsure, tenant=owner)).id
    assert publish(request_id, "normal", routing_inputs(SubmitRequest(text=unsure, tenant="acme")))
    wait_until(lambda: request_id in {d["id"] for d in dlq_list()}, 60, "the forged route message in router.dlq")
    with session_scope() as session:
        calls = session.scalars(select(LlmCall.purpose).where(LlmCall.request_id == request_id)).all()
    assert calls == [], "the forged message's tenant was charged for the fallback LLM call"

    conversation = f"c-{uuid.uuid4().hex[:8]}"
    with session_scope() as session:
        session.add(Conversation(tenant="acme", id=conversation, specialist="billing"))
    assert conversations.specialist_of("acme", conversation) == "billing"
    assert conversations.specialist_of("acme", conversation, for_request=request_id) is None


@pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs rabbitmqctl for a scratch vhost")
def test_the_submit_queue_takes_either_declaration_first(services: object) -> None:
    """A plain app's default declaration of `submit` and Switchboard's are the same, in either order."""
    from celery import Celery

    from app.orchestration.topology import declare
    from tests.support.services import scratch_vhost

    for plain_first in (True, False):
        with scratch_vhost("amqp://guest:guest@127.0.0.1:5672//", f"sb-submit-{uuid.uuid4().hex[:8]}") as url:
            plain = Celery("plain", broker=url)
            if not plain_first:
                with Connection(url) as conn:
                    declare(conn)
            plain.send_task("switchboard.submit", kwargs={"text": "hi"}, queue="submit")
            with Connection(url) as conn:
                assert "submit" in declare(conn)  # raises TopologyError on PRECONDITION_FAILED
                assert conn.default_channel.queue_declare("submit", passive=True).message_count == 1
            plain.close()


def _depth(queue: str) -> int:
    with Connection(os.environ["SWITCHBOARD_BROKER_URL"]) as conn:
        return int(conn.default_channel.queue_declare(queue, passive=True).message_count)

