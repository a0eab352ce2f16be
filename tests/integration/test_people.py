"""A person steps in, on real workers: a refund above the tenant's limit parks its request until a
person approves (across a restart of the billing pool) or rejects it, an approval past its deadline
escalates to the human queue, and a request handed to people is answered with a reply that is
delivered and called back like an agent's result. Through the CLI, the Python API and HTTP."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import exists, func, select

from app.ingress import client, tenants
from app.orchestration import approvals
from app.state import Approval, Delivery, Handoff, LlmCall, RequestEvent, StepRun, session_scope
from specialists import DEMO_TENANT
from specialists.billing.models import Account, Invoice, Refund
from tests.integration.conftest import run_cli, wait_until
from tests.integration.test_callbacks import Receiver, receiver  # noqa: F401 - the receiver fixture

_TAKEN: set[str] = set()


def _big_invoice() -> tuple[str, Decimal, str]:
    """A demo invoice (tenant `default`) that is paid, above $500, issued in the last 30 days, never
    refunded, not waiting for an approval and not used by another test of this module: refundable,
    but above the default approval limit. With its amount and its customer, who asks for it."""
    with session_scope() as session:
        rows = session.execute(
            select(Invoice.id, Invoice.amount_usd, Invoice.customer)
            .join(Account, Account.id == Invoice.account_id)
            .where(
                Invoice.tenant == DEMO_TENANT,
                Invoice.status == "paid",
                Invoice.amount_usd > 500,
                Invoice.issued_at > func.now() - func.make_interval(0, 0, 0, 29),
                ~exists().where(Refund.invoice_id == Invoice.id),
                ~exists().where(
                    Approval.arguments["invoice_id"].astext == Invoice.id, Approval.decision.is_(None)
                ),
            )
            .order_by(Invoice.id)
        ).all()
    invoice, amount, customer = next((r.id, r.amount_usd, r.customer) for r in rows if r.id not in _TAKEN)
    _TAKEN.add(invoice)
    return invoice, amount, customer


def _refund_text(invoice: str) -> str:
    return f"Please issue a refund for invoice {invoice}, I cancelled before renewal"


def _status(request_id: str) -> str:
    return client.get(request_id, estimate=False).status


def _wait_status(request_id: str, status: str, timeout: float = 120) -> None:
    wait_until(lambda: _status(request_id) == status, timeout, f"request {request_id} to be {status}")


def _refunds(invoice: str) -> list[str]:
    with session_scope() as session:
        return list(session.scalars(select(Refund.request_id).where(Refund.invoice_id == invoice)))


def _events(request_id: str) -> list[tuple[str, dict]]:
    with session_scope() as session:
        return [
            (r.kind, r.detail)
            for r in session.execute(
                select(RequestEvent.kind, RequestEvent.detail)
                .where(RequestEvent.request_id == request_id)
                .order_by(RequestEvent.id)
            )
        ]


def _calls_by_step(request_id: str) -> dict[str, int]:
    with session_scope() as session:
        return dict(
            session.execute(
                select(LlmCall.step, func.count())
                .where(LlmCall.request_id == request_id, LlmCall.outcome == "ok")
                .group_by(LlmCall.step)
            ).all()
        )


def _approval(request_id: str) -> Approval:
    with session_scope() as session:
        found = session.scalar(select(Approval).where(Approval.request_id == request_id))
        assert found is not None
        session.expunge(found)
        return found


def _keys(name: str) -> dict[str, str]:
    """A submit key and a read-only key of tenant `name` (created if missing), and another
    tenant's key."""
    try:
        tenants.create_tenant(name)
    except tenants.TenantError:
        pass  # the demo tenant, created by an earlier test
    other = f"other-{uuid.uuid4().hex[:8]}"
    tenants.create_tenant(other)
    submit = tenants.create_key(name)
    return {
        "name": name,
        "key_id": submit.id,
        "submit": f"Bearer {submit.token}",
        "read": f"Bearer {tenants.create_key(name, scope='read').token}",
        "other": f"Bearer {tenants.create_key(other).token}",
    }


@pytest.fixture
def http_tenant() -> dict[str, str]:
    """Keys of a tenant of this test's own (see _keys)."""
    return _keys(f"people-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def demo_http_tenant() -> dict[str, str]:
    """Keys of the tenant the demo's invoices belong to (see _keys)."""
    return _keys(DEMO_TENANT)


def test_refund_above_the_limit_waits_for_approval_across_a_worker_restart(workers: object) -> None:
    invoice, amount, customer = _big_invoice()
    tenant = DEMO_TENANT
    request_id = client.submit(_refund_text(invoice), tenant=tenant, customer=customer).id
    _wait_status(request_id, "awaiting_approval")

    pending = [a for a in approvals.pending(tenant) if a.request_id == request_id]
    assert len(pending) == 1 and pending[0].tool == "issue_refund" and pending[0].step == "draft"
    assert pending[0].arguments["invoice_id"] == invoice and f"${amount}" in pending[0].why
    assert _refunds(invoice) == []  # nothing paid before a person decided
    with session_scope() as session:
        draft = session.scalar(
            select(StepRun).where(StepRun.request_id == request_id, StepRun.step == "draft")
        )
        assert draft is not None and draft.status == "parked"
        assert draft.output["calls"][0]["name"] == "issue_refund"
    listed = run_cli("approvals", "list", "--tenant", tenant, "--json")
    assert listed.returncode == 0, listed.stderr
    assert [a["tool"] for a in json.loads(listed.stdout) if a["request_id"] == request_id] == ["issue_refund"]
    before = _calls_by_step(request_id)

    # Parked means no task holds it: the billing pool stops and starts again with nothing lost.
    workers.stop("billing")  # type: ignore[attr-defined]
    try:
        assert _status(request_id) == "awaiting_approval"
    finally:
        from app.ops.supervisor import wait_for_workers

        workers.start(workers.specs["billing"])  # type: ignore[attr-defined]
        wait_for_workers(["billing"], timeout=90)

    decided = run_cli("approvals", "approve", request_id, "--by", "ops-alice", "--json")
    assert decided.returncode == 0, decided.stderr
    assert json.loads(decided.stdout)["decision"] == "approved"
    view = client.wait(request_id, timeout=120)
    assert view.status == "succeeded", view.error
    assert _refunds(invoice) == [request_id]  # made once, by this request
    refund_calls = [c for c in view.result["tool_calls"] if c["tool"] == "issue_refund"]
    assert refund_calls == [
        {"tool": "issue_refund", "approval": {"approved": True, "by": "ops-alice"}, "ok": True}
    ]
    after = _calls_by_step(request_id)
    # The finished steps' calls and the draft's first call are not paid again: one more draft call
    # (the answer after the refund) is all the resumed step made.
    assert after["understand"] == before["understand"] == 1
    assert after["draft"] == before["draft"] + 1
    approval = _approval(request_id)
    assert (approval.decision, approval.decided_by) == ("approved", "ops-alice") and approval.decided_at
    kinds = [k for k, _ in _events(request_id)]
    assert kinds == [
        "accepted",
        "routed",
        "attempt_started",
        "awaiting_approval",
        "approved",
        "attempt_started",
        "succeeded",
    ]

    again = run_cli("approvals", "approve", request_id, "--json")
    assert again.returncode == 2 and "succeeded, not awaiting_approval" in json.loads(again.stdout)["error"]


def test_reject_over_http_ends_with_an_honest_reply_and_tenants_are_kept_apart(
    api: str, workers: object, demo_http_tenant: dict[str, str]
) -> None:
    http_tenant = demo_http_tenant
    invoice, _, customer = _big_invoice()
    with httpx.Client(base_url=api, timeout=10) as http:
        answer = http.post(
            "/v1/requests",
            headers={"Authorization": http_tenant["submit"]},
            json={"text": _refund_text(invoice), "customer": customer},
        )
        assert answer.status_code == 202, answer.text
        request_id = answer.json()["id"]
        _wait_status(request_id, "awaiting_approval")

        mine = http.get("/v1/approvals", headers={"Authorization": http_tenant["read"]}).json()["approvals"]
        assert [a["tool"] for a in mine if a["request_id"] == request_id] == ["issue_refund"]
        assert http.get("/v1/approvals", headers={"Authorization": http_tenant["other"]}).json() == {
            "approvals": []
        }
        reject = f"/v1/requests/{request_id}/reject"
        assert (
            http.post(
                reject, headers={"Authorization": http_tenant["other"]}, json={"reason": "no"}
            ).status_code
            == 404
        )
        assert (
            http.post(
                f"/v1/requests/{request_id}/approve", headers={"Authorization": http_tenant["other"]}
            ).status_code
            == 404
        )
        assert (
            http.post(
                reject, headers={"Authorization": http_tenant["read"]}, json={"reason": "no"}
            ).status_code
            == 403
        )
        assert http.post(reject, headers={"Authorization": http_tenant["submit"]}, json={}).status_code == 422
        assert _status(request_id) == "awaiting_approval"  # none of those decided anything

        decided = http.post(
            reject,
            headers={"Authorization": http_tenant["submit"]},
            json={"reason": "the contract has no refunds after renewal"},
        )
        assert decided.status_code == 200, decided.text
        assert (
            decided.json()["decision"] == "rejected" and decided.json()["decided_by"] == http_tenant["key_id"]
        )
        view = client.wait(request_id, timeout=120)
        assert view.status == "succeeded", view.error
        assert _refunds(invoice) == []
        assert [c for c in view.result["tool_calls"] if c["tool"] == "issue_refund"] == [
            {
                "tool": "issue_refund",
                "approval": {"approved": False, "by": http_tenant["key_id"]},
                "ok": False,
            }
        ]
        # The model was told plainly that it was not done, and its reply says so.
        assert "NOT DONE" in view.result["reply"] and "declined" in view.result["reply"]
        assert (
            "rejected",
            {
                "approval": _approval(request_id).id,
                "tool": "issue_refund",
                "step": "draft",
                "by": http_tenant["key_id"],
                "reason": "the contract has no refunds after renewal",
            },
        ) in _events(request_id)

        late = http.post(reject, headers={"Authorization": http_tenant["submit"]}, json={"reason": "again"})
        assert late.status_code == 409 and late.json()["error"]["code"] == "not_waiting"
        replied = http.post(
            f"/v1/requests/{request_id}/reply",
            headers={"Authorization": http_tenant["submit"]},
            json={"text": "hello"},
        )
        assert replied.status_code == 409


def test_an_approval_past_its_deadline_escalates_to_the_human_queue(
    workers: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prometheus_client import REGISTRY

    from app.config import reset_settings
    from app.orchestration.tasks import reconcile

    invoice, _, customer = _big_invoice()
    tenant = DEMO_TENANT
    request_id = client.submit(_refund_text(invoice), tenant=tenant, customer=customer).id
    _wait_status(request_id, "awaiting_approval")

    # Inside the default day's deadline the reconciler's sweep leaves it alone; with a short one it
    # escalates (the sweep as the beat task runs it, in this process so its metric can be read).
    swept = run_cli("reconcile", "--json")
    assert swept.returncode == 0, swept.stderr
    assert json.loads(swept.stdout)["approvals_escalated"] == 0
    before = (
        REGISTRY.get_sample_value("switchboard_approval_escalations_total", {"tool": "issue_refund"}) or 0
    )
    time.sleep(0.2)
    waiting = len(approvals.pending())  # this one, and any another test of the session left waiting
    monkeypatch.setenv("SWITCHBOARD_APPROVAL_DEADLINE_S", "0.1")
    reset_settings()
    try:
        assert reconcile()["approvals_escalated"] == waiting >= 1
    finally:
        monkeypatch.delenv("SWITCHBOARD_APPROVAL_DEADLINE_S")
        reset_settings()
    assert (
        REGISTRY.get_sample_value("switchboard_approval_escalations_total", {"tool": "issue_refund"})
        == before + waiting
    )

    assert _status(request_id) == "needs_human"
    approval = _approval(request_id)
    assert (approval.decision, approval.decided_by) == ("escalated", "reconciler")
    assert "approval_escalated" in [k for k, _ in _events(request_id)]
    inbox = json.loads(run_cli("inbox", "--tenant", tenant, "--json").stdout)
    [item] = [i for i in inbox if i["id"] == request_id]
    assert item["source"] == "approval_deadline" and "issue_refund" in item["reason"]
    assert item["sla_breached"] is False

    again = run_cli("reconcile", "--json", env={"SWITCHBOARD_APPROVAL_DEADLINE_S": "0.1"})
    assert json.loads(again.stdout)["approvals_escalated"] == 0  # escalated once only
    late = run_cli("approvals", "approve", request_id, "--json")
    assert late.returncode == 2 and "needs_human, not awaiting_approval" in late.stderr

    replied = run_cli(
        "reply", request_id, "We looked at your contract: no refund, sorry.", "--by", "ops-bob", "--json"
    )
    assert replied.returncode == 0, replied.stderr
    view = client.get(request_id, estimate=False)
    assert view.status == "succeeded"
    assert view.result == {
        "reply": "We looked at your contract: no refund, sorry.",
        "by": "ops-bob",
        "tool_calls": [],
    }
    assert _refunds(invoice) == []


def test_a_tenant_override_of_the_limit_lets_the_refund_run_at_once(workers: object) -> None:
    invoice, amount, customer = _big_invoice()
    tenant = DEMO_TENANT
    bad = run_cli("settings", "set", tenant, "billing.refund_approval_above_usd", "-5", "--json")
    assert bad.returncode == 2 and "0 or more" in bad.stderr
    unknown = run_cli("settings", "set", tenant, "billing.refund_limit", "5", "--json")
    assert unknown.returncode == 2 and "no specialist declares" in unknown.stderr
    raised = run_cli(
        "settings", "set", tenant, "billing.refund_approval_above_usd", str(amount + 1), "--json"
    )
    assert raised.returncode == 0, raised.stderr

    try:
        view = client.wait(
            client.submit(_refund_text(invoice), tenant=tenant, customer=customer).id, timeout=120
        )
    finally:
        assert run_cli("settings", "unset", tenant, "billing.refund_approval_above_usd").returncode == 0
    assert view.status == "succeeded", view.error
    assert _refunds(invoice) == [view.id]
    with session_scope() as session:
        assert (
            session.scalar(select(func.count()).select_from(Approval).where(Approval.request_id == view.id))
            == 0
        )


def test_a_customer_asking_for_a_person_is_answered_by_one_and_called_back(
    api: str,
    workers: object,
    http_tenant: dict[str, str],
    receiver: tuple[str, Receiver],  # noqa: F811
) -> None:
    url, state = receiver
    state.fail_first = 0
    text = "I want to talk to a human about invoice INV-1042, your bot keeps going in circles"
    with httpx.Client(base_url=api, timeout=10) as http:
        answer = http.post(
            "/v1/requests",
            headers={"Authorization": http_tenant["submit"]},
            json={"text": text, "callback_url": url},
        )
        assert answer.status_code == 202, answer.text
        request_id = answer.json()["id"]
        _wait_status(request_id, "needs_human")

        inbox = http.get("/v1/inbox", headers={"Authorization": http_tenant["read"]}).json()["requests"]
        assert [(i["id"], i["source"], i["text"]) for i in inbox] == [(request_id, "workflow", text)]
        assert inbox[0]["waiting_s"] >= 0 and inbox[0]["sla_s"] == 3600 and inbox[0]["sla_breached"] is False
        assert http.get("/v1/inbox", headers={"Authorization": http_tenant["other"]}).json() == {
            "requests": []
        }
        assert not state.calls  # nothing is called back before a person answers

        path = f"/v1/requests/{request_id}/reply"
        assert (
            http.post(path, headers={"Authorization": http_tenant["read"]}, json={"text": "hi"}).status_code
            == 403
        )
        assert (
            http.post(path, headers={"Authorization": http_tenant["other"]}, json={"text": "hi"}).status_code
            == 404
        )
        assert (
            http.post(path, headers={"Authorization": http_tenant["submit"]}, json={"text": " "}).status_code
            == 422
        )
        reply_text = "Hi, this is Sam from billing. I have corrected INV-1042 and emailed you the new copy."
        replied = http.post(path, headers={"Authorization": http_tenant["submit"]}, json={"text": reply_text})
        assert replied.status_code == 200, replied.text
        expected = {"reply": reply_text, "by": http_tenant["key_id"], "tool_calls": []}
        assert replied.json() == {"id": request_id, "status": "succeeded", "result": expected}

        wait_until(lambda: bool(state.calls), 60, "the callback of the human reply")
        payload = json.loads(state.calls[0][1])
        assert (
            payload["id"] == request_id and payload["status"] == "succeeded" and payload["result"] == expected
        )
        got = http.get(f"/v1/requests/{request_id}", headers={"Authorization": http_tenant["read"]}).json()
        assert got["status"] == "succeeded" and got["result"] == expected
        again = http.post(path, headers={"Authorization": http_tenant["submit"]}, json={"text": "twice"})
        assert again.status_code == 409
    with session_scope() as session:
        delivery = session.get(Delivery, request_id)
        handoff = session.get(Handoff, request_id)
        assert delivery is not None and (delivery.channel, delivery.body) == ("human", reply_text)
        assert handoff is not None and handoff.replied_by == http_tenant["key_id"] and handoff.replied_at
        # Handed over before the agent loop: the draft made no LLM call.
        assert (
            session.scalar(
                select(func.count())
                .select_from(LlmCall)
                .where(LlmCall.request_id == request_id, LlmCall.step == "draft")
            )
            == 0
        )
    kinds = [k for k, _ in _events(request_id)]
    assert kinds[:4] == ["accepted", "routed", "attempt_started", "handed_off"]
    assert kinds[4] == "human_replied" and "callback_delivered" in kinds[5:]


def test_the_model_can_hand_a_request_to_a_person(workers: object) -> None:
    request_id = client.submit("Please escalate this, nobody has helped so far", tenant="escalation").id
    _wait_status(request_id, "needs_human")
    with session_scope() as session:
        handoff = session.get(Handoff, request_id)
        assert handoff is not None and handoff.source == "tool"
    replied = run_cli("reply", request_id, "A person here: what can I do for you?", "--json")
    assert replied.returncode == 0, replied.stderr
    assert client.get(request_id, estimate=False).result["reply"] == "A person here: what can I do for you?"


@pytest.fixture
def handing_over_pools(
    private_broker: str,
    simulator: str,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[str]:
    """Router and billing workers of this test's own, set to hand failures retries cannot fix to
    the human queue; yields the broker URL."""
    from app.config import reset_settings
    from app.ops.pools import pool_specs
    from app.ops.supervisor import Supervisor, wait_for_workers

    monkeypatch.setenv("SWITCHBOARD_HANDOFF_ON_FAILURE", "true")
    monkeypatch.setenv("SWITCHBOARD_RETRY_BACKOFF_S", "0.2")
    reset_settings()
    with Supervisor(tmp_path_factory.mktemp("handoff-pools"), restart=False) as sup:
        for spec in pool_specs(queues=["router", "billing"]):
            sup.start(spec)
        wait_for_workers(["router", "billing"], timeout=120)
        yield private_broker
    reset_settings()


def test_with_the_setting_a_failure_goes_to_people_instead_of_the_dead_letter_queue(
    handing_over_pools: str,
) -> None:
    from kombu import Connection

    request_id = client.submit("Refund my last invoice please [[sim:fail]]", tenant="acme").id
    _wait_status(request_id, "needs_human", timeout=180)
    view = client.get(request_id, estimate=False)
    assert view.attempts == 3 and "HTTP 500" in (view.error or "")
    with Connection(handing_over_pools) as conn:
        assert conn.default_channel.queue_declare(queue="billing.dlq", passive=True).message_count == 0
    with session_scope() as session:
        handoff = session.get(Handoff, request_id)
        assert handoff is not None and handoff.source == "failure" and "HTTP 500" in handoff.reason
    assert "dead_lettered" not in [k for k, _ in _events(request_id)]
    replied = run_cli("reply", request_id, "Sorry, our systems failed; I refunded it by hand.", "--json")
    assert replied.returncode == 0, replied.stderr
    assert client.get(request_id, estimate=False).status == "succeeded"


def test_a_persons_reply_joins_the_conversation_and_follow_ups_stay_with_its_specialist(
    workers: object,
) -> None:
    from app.state import conversations

    conversation = f"conv-{uuid.uuid4().hex[:8]}"
    first = client.submit(
        "Can I speak with a real person about invoice INV-1042?", tenant="acme", conversation_id=conversation
    ).id
    _wait_status(first, "needs_human")
    replied = run_cli("reply", first, "Hello, Sam here: INV-1042 is paid in full.", "--json")
    assert replied.returncode == 0, replied.stderr
    assert conversations.history("acme", conversation, before_request="none") == [
        {"role": "user", "content": "Can I speak with a real person about invoice INV-1042?"},
        {"role": "assistant", "content": "Hello, Sam here: INV-1042 is paid in full."},
    ]
    assert conversations.specialist_of("acme", conversation) == "billing"
    follow_up = client.wait(
        client.submit(
            "Thanks, and when is the next invoice due?", tenant="acme", conversation_id=conversation
        ).id,
        timeout=120,
    )
    assert follow_up.status == "succeeded" and follow_up.specialist == "billing"
