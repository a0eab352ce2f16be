"""No gap between record and broker: what the broker lost, the reconciler puts back."""

from __future__ import annotations

from sqlalchemy import insert, select

from app.ingress import client
from app.orchestration.reconciler import redispatch_stale, republish_unpublished
from app.state import Request, RequestEvent, session_scope
from app.state.models import new_id


def test_written_but_never_published_request_is_published_and_runs(workers: object) -> None:
    # What a crash between the insert and the publish leaves behind.
    request_id = new_id()
    with session_scope() as session:
        session.execute(insert(Request).values(id=request_id, tenant="acme", text="My invoice total looks wrong"))
    assert republish_unpublished(min_age_s=0) >= 1
    assert republish_unpublished(min_age_s=0) == 0  # published once, not again

    view = client.wait(request_id, timeout=60)
    assert view.status == "succeeded"
    with session_scope() as session:
        published = session.scalar(select(Request.published_at).where(Request.id == request_id))
    assert published is not None


def test_request_whose_message_was_lost_is_redispatched(workers: object) -> None:
    # A routed request whose specialist message vanished (say, the queue was deleted by hand).
    request_id = new_id()
    with session_scope() as session:
        session.execute(insert(Request).values(id=request_id, tenant="acme", text="Webhook retries never stop",
                                               status="routed", specialist="technical", route_method="rule",
                                               route_confidence=1.0))
        session.execute(insert(RequestEvent).values(request_id=request_id, kind="routed"))
    assert redispatch_stale(lease_s=3600) == 0  # still within its lease: left alone

    assert redispatch_stale(lease_s=0) >= 1
    view = client.wait(request_id, timeout=60)
    assert view.status == "succeeded"
    with session_scope() as session:
        kinds = session.scalars(select(RequestEvent.kind).where(RequestEvent.request_id == request_id)).all()
    assert "redispatched" in kinds


def test_finished_requests_are_never_redispatched(workers: object) -> None:
    view = client.wait(client.submit("Please resend my receipt for last month").id, timeout=60)
    assert view.status == "succeeded"
    redispatch_stale(lease_s=0)
    with session_scope() as session:
        kinds = session.scalars(select(RequestEvent.kind).where(RequestEvent.request_id == view.id)).all()
    assert "redispatched" not in kinds


def test_redelivered_request_resumes_after_its_finished_steps(workers: object) -> None:
    """A request whose first steps were checkpointed before its worker died does not make (or pay
    for) their LLM calls again when it runs once more."""
    from app.state import LlmCall, StepRun

    request_id = new_id()
    with session_scope() as session:
        session.execute(insert(Request).values(id=request_id, tenant="acme", text="Our webhooks return 401 since Monday",
                                               status="running", specialist="technical", route_method="rule",
                                               route_confidence=1.0, attempts=1))
        session.execute(insert(RequestEvent).values(request_id=request_id, kind="attempt_started"))
        # What the dead worker had finished: its checkpoints.
        session.execute(insert(StepRun).values(request_id=request_id, step="understand", status="succeeded",
                                               attempts=1, output={"summary": "Webhooks fail with 401."}))
        session.execute(insert(StepRun).values(request_id=request_id, step="retrieve", status="succeeded",
                                               attempts=1, output={"context": {}}))
    assert redispatch_stale(lease_s=0) >= 1
    view = client.wait(request_id, timeout=60)

    assert view.status == "succeeded" and view.attempts == 2
    with session_scope() as session:
        steps = session.scalars(select(LlmCall.step).where(LlmCall.request_id == request_id)).all()
    assert steps and "understand" not in steps and set(steps) == {"draft"}


def test_expired_cache_entries_are_purged(services: object) -> None:
    import time

    from app.inference.cache import PostgresCache, purge_expired
    from app.inference.provider import ChatResponse, Usage
    from app.state import CachedResponse

    cache = PostgresCache()
    answer = ChatResponse(model="sim-small", content="billing", usage=Usage(prompt_tokens=3, completion_tokens=1))
    cache.put("expiring-entry", answer, ttl_s=0.2)
    cache.put("fresh-entry", answer, ttl_s=3600)
    time.sleep(0.5)

    assert purge_expired() >= 1
    with session_scope() as session:
        keys = set(session.scalars(select(CachedResponse.key).where(
            CachedResponse.key.in_(["expiring-entry", "fresh-entry"]))))
    assert keys == {"fresh-entry"}


def test_a_submitted_request_is_recorded_as_published_and_never_republished(workers: object) -> None:
    from app.ingress import published

    submission = client.submit("My invoice total looks wrong this month")
    assert submission.published
    assert published.flush()  # what the background thread writes within moments
    with session_scope() as session:
        assert session.scalar(select(Request.published_at).where(Request.id == submission.id)) is not None
    assert client.wait(submission.id, timeout=60).status == "succeeded"
    republish_unpublished(min_age_s=0)  # nothing of it is left to the reconciler
    with session_scope() as session:
        routed = session.scalars(
            select(RequestEvent.kind).where(RequestEvent.request_id == submission.id, RequestEvent.kind == "routed")
        ).all()
    assert routed == ["routed"]


def test_a_duplicate_route_message_with_its_inputs_routes_once(workers: object) -> None:
    """The client's route message carries the routing inputs; a second copy (an at-least-once
    redelivery, a republish) finds the request routed already and dispatches nothing."""
    from app.ingress.client import SubmitRequest, accept, publish, routing_inputs

    req = SubmitRequest(text="Webhook deliveries fail with 401 since Monday", tenant="acme")
    request_id = accept(req).id
    assert publish(request_id, req.priority, routing_inputs(req))
    assert publish(request_id, req.priority, routing_inputs(req))
    view = client.wait(request_id, timeout=60)
    assert view.status == "succeeded" and view.attempts == 1
    # When the router took it is known without reading the row: the wait and the routing add up.
    queued, routing = view.timings["queued_for_router"], view.timings["routing"]
    assert queued is not None and routing is not None and queued >= 0 and routing >= 0
    with session_scope() as session:
        kinds = session.scalars(select(RequestEvent.kind).where(RequestEvent.request_id == request_id)).all()
    assert kinds.count("routed") == 1 and kinds.count("attempt_started") == 1
