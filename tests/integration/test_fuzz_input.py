"""Hypothesis throws 1,000+ generated inputs at the client: each is refused with a clear error or
accepted intact; nothing is ever half-written (no row without its message, no message without a row)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kombu import Connection
from sqlalchemy import func, select

from app.ingress import client
from app.orchestration.celery_app import celery, use_broker
from app.orchestration.topology import declare
from app.state import Request, RequestEvent, session_scope
from tests.support.services import scratch_vhost

pytestmark = pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs rabbitmqctl for a scratch vhost")

INJECTIONS = ["'; DROP TABLE requests; --", "<script>alert(1)</script>", "{{7*7}}", "${jndi:ldap://x/a}",
              "\u202e\u0000", "../../etc/passwd", "%s%s%n", "\ufeff", "🙂" * 3000, " " * 10, "\n", ""]

texts = st.one_of(
    st.text(max_size=300),
    # Around the 32 KiB limit, in one- to four-byte characters.
    st.tuples(st.text(min_size=1, max_size=4), st.integers(6_000, 34_000)).map(lambda t: (t[0] * t[1])[: t[1]]),
    st.sampled_from(INJECTIONS),
    st.binary(max_size=50),
    st.integers(),
    st.none(),
    st.lists(st.text(max_size=5), max_size=3),
)
fields = st.fixed_dictionaries(
    {"text": texts},
    optional={
        "tenant": st.one_of(st.from_regex(r"[a-z0-9][a-z0-9_-]{0,62}", fullmatch=True), st.text(max_size=70),
                            st.integers()),
        "priority": st.one_of(st.sampled_from(["high", "normal", "low"]), st.text(max_size=10), st.none()),
        "idempotency_key": st.one_of(st.none(), st.text(max_size=210), st.uuids().map(str)),
        "conversation_id": st.one_of(st.none(), st.text(max_size=70)),
        "metadata": st.one_of(
            st.dictionaries(st.text(max_size=10), st.one_of(st.text(max_size=20), st.integers(), st.floats(),
                                                            st.booleans(), st.none()), max_size=40),
            st.text(max_size=5), st.lists(st.integers(), max_size=3),
        ),
    },
)


@pytest.fixture(scope="module")
def quiet_broker(services: object) -> Iterator[str]:
    """Publish into a vhost with no consumers, so every accepted request's message can be counted."""
    original = celery.conf.broker_url
    with scratch_vhost("amqp://guest:guest@127.0.0.1:5672//", f"sb-fuzz-{uuid.uuid4().hex[:8]}") as url:
        with Connection(url) as conn:
            declare(conn)
        use_broker(url)
        try:
            yield url
        finally:
            use_broker(original)


ACCEPTED: list[str] = []


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(fields)
def test_every_input_is_refused_cleanly_or_kept_intact(quiet_broker: str, data: dict[str, Any]) -> None:
    data.setdefault("tenant", "fuzz")
    if isinstance(data.get("idempotency_key"), str):
        data["idempotency_key"] = f"{uuid.uuid4().hex}{data['idempotency_key']}"[:200]
    try:
        submission = client.submit(**data)
    except client.InvalidRequest as exc:
        assert exc.problems and all(":" in p for p in exc.problems)
        return
    assert submission.published and not submission.duplicate
    ACCEPTED.append(submission.id)
    with session_scope() as session:
        row = session.scalar(select(Request).where(Request.id == submission.id))
    assert row is not None
    assert row.text == data["text"] and row.tenant == data["tenant"]
    assert row.priority == data.get("priority", "normal")
    assert row.metadata_ == (data.get("metadata") or {})


def test_rows_and_messages_match_one_to_one(quiet_broker: str) -> None:
    """Runs after the fuzz above: exactly one message waits for every request it accepted."""
    assert ACCEPTED, "the fuzz accepted nothing: the generator is broken"
    with session_scope() as session:
        rows = session.scalar(select(func.count()).select_from(Request).where(Request.id.in_(ACCEPTED)))
        accepted_events = session.scalar(select(func.count()).select_from(RequestEvent).where(
            RequestEvent.request_id.in_(ACCEPTED), RequestEvent.kind == "accepted"))
    with Connection(quiet_broker) as conn:
        messages = conn.default_channel.queue_declare(queue="router", passive=True).message_count
    assert rows == accepted_events == messages == len(ACCEPTED)
