"""The whole path on real services: client -> router -> specialist pool -> record -> DLQ."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from kombu import Connection
from sqlalchemy import func, select, text

from app.config import get_settings
from app.ingress import client
from app.state import Delivery, LlmCall, RequestEvent, StepRun, Turn, session_scope
from specialists.billing.models import Refund


def _email_with_recent_paid_invoice() -> tuple[str, str]:
    with session_scope() as session:
        row = session.execute(
            text(
                "SELECT a.email, i.id FROM invoices i JOIN accounts a ON a.id = i.account_id "
                "WHERE i.status = 'paid' AND i.issued_at > now() - interval '20 days' "
                "AND i.amount_usd <= 500 ORDER BY i.id LIMIT 1"
            )
        ).one()
    return row.email, row.id


def _dlq_depth(queue: str) -> int:
    with Connection(get_settings().broker_url.get_secret_value()) as conn:
        return conn.default_channel.queue_declare(queue=queue, passive=True).message_count


def test_billing_ticket_runs_every_step_and_is_recorded(workers: object) -> None:
    email, invoice = _email_with_recent_paid_invoice()
    submission = client.submit(
        f"Hello, I was billed twice for {invoice} this month. My account email is {email}. Can I get a refund?",
        tenant="acme",
        priority="high",
    )
    view = client.wait(submission.id, timeout=60)

    assert view.status == "succeeded", view.error
    assert view.specialist == "billing"
    assert view.result and view.result["reply"]
    assert view.attempts == 1
    assert view.tokens["total"] > 0 and view.cost_usd > 0
    assert {"step.understand", "step.retrieve", "step.draft", "step.deliver"} <= set(view.timings)
    assert view.timings["end_to_end"] is not None and view.timings["end_to_end"] > 0
    with session_scope() as session:
        steps = dict(session.execute(select(StepRun.step, StepRun.status).where(StepRun.request_id == view.id)).all())
        calls = session.scalars(select(LlmCall).where(LlmCall.request_id == view.id)).all()
        events = session.scalars(
            select(RequestEvent.kind).where(RequestEvent.request_id == view.id).order_by(RequestEvent.id)
        ).all()
        delivered = session.scalar(select(func.count()).select_from(Delivery).where(Delivery.request_id == view.id))
    assert steps == dict.fromkeys(["understand", "retrieve", "draft", "deliver"], "succeeded")
    assert len(calls) >= 2 and all(c.outcome == "ok" and c.prompt_tokens > 0 for c in calls)
    assert sum(c.prompt_tokens + c.completion_tokens for c in calls) == view.tokens["total"]
    assert events == ["accepted", "routed", "attempt_started", "succeeded"]
    assert delivered == 1


def test_technical_ticket_uses_the_knowledge_base(workers: object) -> None:
    view = client.wait(
        client.submit("Our webhooks stopped arriving since this morning, the endpoint never gets the POST").id,
        timeout=60,
    )
    assert view.status == "succeeded", view.error
    assert view.specialist == "technical"
    assert any(call["tool"] in ("search_kb", "check_service_status") for call in view.result["tool_calls"])


def test_refund_is_not_paid_twice_for_one_request(workers: object) -> None:
    email, invoice = _email_with_recent_paid_invoice()
    # Written by the invoice's own customer: the tools act for them, so the refund goes through once.
    view = client.wait(
        client.submit(f"Please refund invoice {invoice}, I cancelled before renewal", customer=email).id,
        timeout=60
    )
    assert view.status == "succeeded", view.error
    with session_scope() as session:
        refunds = session.scalar(select(func.count()).select_from(Refund).where(Refund.invoice_id == invoice))
    assert refunds == 1, view.result


def test_idempotency_key_returns_the_same_request_and_runs_it_once(workers: object) -> None:
    key = f"order-{uuid.uuid4()}"
    first = client.submit("My invoice shows the wrong VAT number", tenant="globex", idempotency_key=key)
    second = client.submit("My invoice shows the wrong VAT number", tenant="globex", idempotency_key=key)
    other_tenant = client.submit("My invoice shows the wrong VAT number", tenant="initech", idempotency_key=key)

    assert second.id == first.id and second.duplicate and not first.duplicate
    assert other_tenant.id != first.id
    assert client.wait(first.id, timeout=60).status == "succeeded"
    with session_scope() as session:
        attempts = session.scalar(
            select(func.count()).select_from(RequestEvent).where(
                RequestEvent.request_id == first.id, RequestEvent.kind == "attempt_started"
            )
        )
    assert attempts == 1


def test_poison_request_is_dead_lettered_with_its_error(workers: object) -> None:
    before = _dlq_depth("billing.dlq")
    view = client.wait(
        client.submit("Refund my last invoice please [[sim:fail]]", tenant="acme").id, timeout=90
    )
    assert view.status == "dead_lettered"
    assert view.attempts == get_settings().max_attempts
    assert "HTTP 500" in (view.error or "")
    assert _dlq_depth("billing.dlq") == before + 1


def test_dead_letter_is_replayed_after_the_outage_ends(workers: object, faults: httpx.Client) -> None:
    from app.ops import dlq

    faults.post("/admin/faults", json={"error_rate": 1.0}).raise_for_status()
    view = client.wait(client.submit("The dashboard export to CSV fails with an error").id, timeout=90)
    assert view.status == "dead_lettered"
    assert view.id in {d.id for d in dlq.list_dead_letters()}
    depth = _dlq_depth(f"{view.specialist}.dlq")

    faults.post("/admin/faults", json={"error_rate": 0}).raise_for_status()
    assert dlq.replay(view.id) == view.specialist
    replayed = client.wait(view.id, timeout=60)

    assert replayed.status == "succeeded"
    assert _dlq_depth(f"{view.specialist}.dlq") == depth - 1
    assert view.id not in {d.id for d in dlq.list_dead_letters()}


def test_follow_up_turn_keeps_history_and_specialist(workers: object) -> None:
    conversation = f"conv-{uuid.uuid4().hex[:12]}"
    first = client.wait(
        client.submit("Why did my card get charged $49 yesterday?", conversation_id=conversation).id, timeout=60
    )
    # Ambiguous on its own; as a follow-up it stays with billing.
    second = client.wait(client.submit("ok and what about last month?", conversation_id=conversation).id, timeout=60)

    assert first.status == second.status == "succeeded"
    assert second.specialist == first.specialist == "billing"
    assert second.route_method == "conversation"
    with session_scope() as session:
        turns = session.scalars(select(Turn.role).where(Turn.conversation_id == conversation).order_by(Turn.id)).all()
    assert turns == ["user", "assistant", "user", "assistant"]


def test_conversation_of_another_customer_is_refused(services: object) -> None:
    # Another tenant's use of the same id is a conversation of its own (tests/integration/test_authority.py).
    conversation = f"conv-{uuid.uuid4().hex[:12]}"
    client.submit("Where is my invoice?", tenant="acme", customer="ann", conversation_id=conversation)
    client.submit("And the one before?", tenant="acme", customer="ann", conversation_id=conversation)
    with pytest.raises(client.InvalidRequest, match="conversation_id: .*another customer"):
        client.submit("Where is my invoice?", tenant="acme", customer="bob", conversation_id=conversation)
    with pytest.raises(client.InvalidRequest, match="conversation_id: .*another customer"):
        client.submit("Where is my invoice?", tenant="acme", conversation_id=conversation)


def test_event_log_is_append_only(services: object) -> None:
    from sqlalchemy.exc import DBAPIError

    submission = client.submit("Can I change my billing address?")
    with pytest.raises(DBAPIError, match="append-only"), session_scope() as session:
        session.execute(text("DELETE FROM request_events WHERE request_id = :id"), {"id": submission.id})


def test_purge_refuses_without_confirmation_then_empties_the_dlq(workers: object) -> None:
    from tests.integration.conftest import run_cli

    client.wait(client.submit("Refund the double charge please [[sim:fail]]").id, timeout=90)
    depth = _dlq_depth("billing.dlq")
    assert depth >= 1

    refused = run_cli("dlq", "purge", "billing", "--json")
    assert refused.returncode == 2 and "--yes" in json.loads(refused.stdout)["error"]
    assert _dlq_depth("billing.dlq") == depth

    purged = run_cli("dlq", "purge", "billing", "--yes", "--json")
    assert purged.returncode == 0, purged.stderr
    assert json.loads(purged.stdout) == {"purged": {"billing.dlq": depth}}
    assert _dlq_depth("billing.dlq") == 0
