"""What Django and Flask apps import: submit, get, wait, stream.

Needs only Celery, the settings and the record; tasks are sent by name, so no worker code is
imported. A request is written to PostgreSQL first and then published with publisher confirms; if
the broker cannot take it, the row stays `accepted` and unpublished, and the reconciler publishes it.
That the broker took it is recorded off the caller's path, batched (app/ingress/published.py).
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from kombu import Connection, Queue
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError, field_validator
from sqlalchemy import func, select

from app.config import get_settings
from app.errors import IngressError
from app.ingress import published
from app.observability import tracing
from app.observability.timings import call_rows, request_timings, seconds_between, step_rows
from app.orchestration import callbacks, publisher
from app.orchestration.admission import backlog
from app.orchestration.admission.degradation import Level, level, thresholds, waiting_counts
from app.orchestration.celery_app import ROUTE_TASK
from app.orchestration.live import EXCHANGE, QUEUE_ARGUMENTS, reader_queue_name
from app.orchestration.live_follow import Follower, StreamEvent
from app.orchestration.registry import match_rules
from app.orchestration.route_message import RoutingInputs
from app.orchestration.topology import PRIORITIES, ROUTER_QUEUE
from app.request_scope import bound
from app.state import (
    LlmCall,
    Request,
    RequestEvent,
    Tenant,
    acceptance,
    autocommit_scope,
    connection_scope,
    conversations,
    session_scope,
)
from app.state.models import TERMINAL, new_id
from app.state.transitions import RequestNotFound

log = logging.getLogger(__name__)

Priority = Literal["high", "normal", "low"]
MAX_METADATA_BYTES = 4096
MAX_CUSTOMER_CHARS = 200
# Printable ASCII without spaces: e-mail addresses, UUIDs, "user:42" and the like.
_CUSTOMER_RE = re.compile(r"[\x21-\x7e]+")


def check_customer(value: str | None) -> str | None:
    """A customer id as the calling app authenticated it; compared exactly, never normalised."""
    if value is None:
        return None
    if not 1 <= len(value) <= MAX_CUSTOMER_CHARS or not _CUSTOMER_RE.fullmatch(value):
        raise ValueError(
            f"must be 1-{MAX_CUSTOMER_CHARS} printable ASCII characters without spaces: the id "
            "your app authenticated the end user by (e.g. their account e-mail)"
        )
    return value


class Refused(IngressError):
    """The request was refused; nothing was written or published."""


class InvalidRequest(Refused, ValueError):
    """The request is invalid: `problems` lists what to fix before sending it again."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid request: " + "; ".join(problems))
        self.problems = problems


class Overloaded(Refused):
    """A `low` priority request was refused because a queue it would wait in is past its second
    degradation threshold; nothing was written or published. Try again after `retry_after_s`
    (HTTP: 503 with Retry-After): the same request is valid, only not now."""

    def __init__(self, queue: str, waiting: int, threshold: int, estimated_wait_s: float | None) -> None:
        wait = f"about {estimated_wait_s:.0f}s" if estimated_wait_s is not None else "unknown"
        message = (
            f"overloaded: {waiting} requests wait for the {queue} queue (limit {threshold} for low "
            f"priority); estimated wait {wait}. Retry later or submit with a higher priority"
        )
        super().__init__(message)
        self.problems = [message]
        self.queue = queue
        self.waiting = waiting
        self.threshold = threshold
        self.estimated_wait_s = estimated_wait_s
        # Unknown when nothing has finished lately: a minute is a safe default to come back after.
        self.retry_after_s = max(1, math.ceil(estimated_wait_s)) if estimated_wait_s is not None else 60


class SubmitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: StrictStr
    tenant: StrictStr = Field("default", pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    # The end user the calling app authenticated: tools and retrieval act for this customer only.
    customer: StrictStr | None = None
    priority: Priority = "normal"
    idempotency_key: StrictStr | None = Field(None, min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")
    conversation_id: StrictStr | None = Field(None, pattern=r"^[A-Za-z0-9._:-]{1,64}$")
    metadata: dict[StrictStr, StrictStr | int | float | bool | None] = Field(
        default_factory=dict, max_length=32
    )
    callback_url: StrictStr | None = Field(None, max_length=2000)

    @field_validator("customer")
    @classmethod
    def _customer(cls, value: str | None) -> str | None:
        return check_customer(value)

    @field_validator("callback_url")
    @classmethod
    def _callback(cls, value: str | None) -> str | None:
        return None if value is None else callbacks.check_url(value)

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        limit = get_settings().max_text_bytes
        size = len(value.encode("utf-8", errors="surrogatepass"))
        if size > limit:
            raise ValueError(f"is {size} bytes; the limit is {limit} (SWITCHBOARD_MAX_TEXT_BYTES)")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("must be valid Unicode (it contains lone surrogates)") from None
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            encoded = json.dumps(value, allow_nan=False)
        except ValueError:
            raise ValueError("values must be finite numbers, strings, booleans or null") from None
        if "\\u0000" in encoded:
            raise ValueError("must not contain NUL characters")
        if len(encoded.encode("utf-8", errors="surrogatepass")) > MAX_METADATA_BYTES:
            raise ValueError(f"must be at most {MAX_METADATA_BYTES} bytes as JSON")
        return value


class Submission(BaseModel):
    id: str
    status: str
    duplicate: bool = False
    published: bool = True


class EventView(BaseModel):
    at: datetime
    kind: str
    detail: dict[str, Any]


class BudgetView(BaseModel):
    """A request's LLM spend against its ceiling (None: no ceiling), in USD. `reserved_usd` is held
    by its unfinished calls, those in doubt (their process died) included."""

    ceiling_usd: float | None
    spent_usd: float
    reserved_usd: float
    in_doubt_usd: float


class RequestView(BaseModel):
    id: str
    tenant: str
    customer: str | None = None
    status: str
    priority: str
    specialist: str | None
    route_confidence: float | None
    route_method: str | None
    attempts: int
    result: dict[str, Any] | None
    error: str | None
    tokens: dict[str, int]
    cost_usd: float
    budget: BudgetView | None = None
    timings: dict[str, float | None]
    accepted_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    # While waiting: requests ahead of it in its queue, and when it should start at the queue's
    # recent drain rate (None when nothing says how fast the queue moves).
    queue_position: int | None = None
    estimated_wait_s: float | None = None
    estimated_start: datetime | None = None
    # The request's OpenTelemetry trace (32 hex digits); None when it was accepted untraced.
    trace_id: str | None = None


def validate(**fields: Any) -> SubmitRequest:
    try:
        return SubmitRequest(**fields)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or 'request'}: {err['msg']}" for err in exc.errors()
        ]
        raise InvalidRequest(problems) from None


def refuse_if_overloaded(req: SubmitRequest) -> None:
    """Raise Overloaded for a `low` request bound for a queue past its second threshold. Where it
    will go: the router, then its conversation's specialist or the one whose rules match (the
    classifier is the router's job; a request no rule places is checked at the router only)."""
    if req.priority != "low":
        return
    bound = [ROUTER_QUEUE]
    specialist = conversations.specialist_of(req.tenant, req.conversation_id) if req.conversation_id else None
    specialist = specialist or match_rules(req.text)
    if specialist:
        bound.append(specialist)
    counts = waiting_counts()
    for queue in bound:
        if level(queue, counts.get(queue, 0)) >= Level.REFUSE_LOW:
            limits = thresholds(queue)
            assert limits is not None
            with session_scope() as session:
                load = backlog.backlog(session, [queue])[queue]
            raise Overloaded(queue, load.waiting, limits[1], load.wait_s(load.waiting))


def publish(request_id: str, priority: str, routing: RoutingInputs | None = None) -> bool:
    """Publish to the router with publisher confirms; False if the broker did not take it. The
    row's `published_at` is written shortly after, by a background thread (app/ingress/published.py)."""
    try:
        # With the routing inputs the router decides without reading the row first.
        args: list[Any] = [request_id] if routing is None else [request_id, routing.message()]
        # The headers name the request only: its text stays out of monitoring tools and logs.
        publisher.publish(
            ROUTE_TASK, args, ROUTER_QUEUE, PRIORITIES[priority], argsrepr=f"({request_id!r}, ...)"
        )
    except Exception as exc:  # noqa: BLE001 - broker down: the reconciler publishes it later
        log.warning(
            "request %s accepted but not yet published (%s); the reconciler will publish it",
            request_id,
            type(exc).__name__,
        )
        return False
    # Recorded in the background, batched with the other publishes of the moment (published.py).
    published.record(request_id)
    return True


@tracing.submit_span
def submit(
    text: str,
    *,
    tenant: str = "default",
    customer: str | None = None,
    priority: str = "normal",
    idempotency_key: str | None = None,
    conversation_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    callback_url: str | None = None,
) -> Submission:
    """Accept a request. Raises InvalidRequest (nothing written) for bad input, and Overloaded
    (nothing written either; both are Refused) for a `low` request while its queue is past the
    refusal threshold.

    `customer` is your app's id of the end user you authenticated (the demo uses the account's
    e-mail); the request's tools read and change only that customer's rows of `tenant`, and with
    no customer they refuse account data. It is recorded with the request and never changes.

    With an idempotency key, a repeated submit returns the first request and runs nothing again.
    """
    req = validate(
        text=text,
        tenant=tenant,
        customer=customer,
        priority=priority,
        idempotency_key=idempotency_key,
        conversation_id=conversation_id,
        metadata=metadata or {},
        callback_url=callback_url,
    )
    return submit_valid(req)


def submit_valid(req: SubmitRequest) -> Submission:
    """Record a validated request and publish it: what `submit` and the `switchboard.submit` task do."""
    submission = accept(req)
    if submission.duplicate:
        return submission
    return submission.model_copy(
        update={"published": publish(submission.id, req.priority, routing_inputs(req))}
    )


def routing_inputs(req: SubmitRequest) -> RoutingInputs:
    """What the route message carries of a validated request (app/orchestration/routing.py)."""
    return RoutingInputs(req.text, req.tenant, req.priority, req.conversation_id)


def accept(req: SubmitRequest) -> Submission:
    """Record a validated request without publishing it; `submit` publishes right after (the HTTP
    ingress does so outside its per-tenant lock). A recorded request that is never published is
    published by the reconciler, as after a broker outage. Raises Overloaded (nothing written)
    for a `low` request while its queue is past the refusal threshold.
    """
    refuse_if_overloaded(req)
    request_id = new_id()
    # Without a conversation the request is one statement that commits by itself (its event and
    # callback row with it); a conversation's first turn creates it in the same transaction.
    with connection_scope() if req.conversation_id else autocommit_scope() as conn:
        if req.conversation_id:
            try:
                conversations.ensure(conn, req.conversation_id, req.tenant, req.customer)
            except conversations.ConversationError as exc:
                raise InvalidRequest([f"conversation_id: {exc}"]) from None
        inserted = acceptance.accept(
            conn,
            request_id,
            req.callback_url,
            tenant=req.tenant,
            customer=req.customer,
            text=req.text,
            metadata=req.metadata,
            priority=req.priority,
            idempotency_key=req.idempotency_key,
            conversation_id=req.conversation_id,
            traceparent=tracing.current_traceparent(),
        )
        if not inserted:
            existing = conn.execute(
                select(Request.id, Request.status, Request.published_at).where(
                    Request.tenant == req.tenant, Request.idempotency_key == req.idempotency_key
                )
            ).one()
    if not inserted:
        # The first submission publishes its own request (or the reconciler does, if the broker
        # was down); publishing again here would race it and send the request twice.
        return Submission(
            id=existing.id,
            status=existing.status,
            duplicate=True,
            published=existing.published_at is not None,
        )
    tracing.annotate(request_id=request_id, tenant=req.tenant, priority=req.priority)
    with bound(request_id):
        log.info("accepted", extra={"tenant": req.tenant, "priority": req.priority})
    return Submission(id=request_id, status="accepted", published=False)


def get(request_id: str, *, tenant: str | None = None, estimate: bool = True) -> RequestView:
    """The request as the record has it. With `tenant`, another tenant's request is not found.
    A waiting request carries its queue position and estimated start (`estimate=False` skips that)."""
    with session_scope() as session:
        query = select(Request).where(Request.id == request_id)
        if tenant is not None:
            query = query.where(Request.tenant == tenant)
        request = session.scalar(query)
        if request is None:
            raise RequestNotFound(f"no request {request_id!r}")
        this = Request.id == request_id
        steps = {s.step: round(s.duration_ms / 1000, 4) for s in session.execute(step_rows(this))}
        calls = session.execute(call_rows(this)).first()
        ceiling, in_doubt = session.execute(
            select(
                select(Tenant.request_budget_usd).where(Tenant.name == request.tenant).scalar_subquery(),
                select(func.coalesce(func.sum(LlmCall.estimated_cost_usd), 0))
                .where(LlmCall.request_id == request_id, LlmCall.outcome == "in_doubt")
                .scalar_subquery(),
            )
        ).one()
        where = backlog.estimate(session, request) if estimate else None
    if ceiling is None:
        ceiling = get_settings().request_budget_usd
    timings = request_timings(
        request, steps, calls.llm_ms / 1000 if calls else 0.0, calls.limiter_ms / 1000 if calls else 0.0
    ).as_dict()
    timings["accepted_to_routed"] = seconds_between(request.accepted_at, request.routed_at)
    return RequestView(
        id=request.id,
        tenant=request.tenant,
        customer=request.customer,
        status=request.status,
        priority=request.priority,
        specialist=request.specialist,
        route_confidence=request.route_confidence,
        route_method=request.route_method,
        attempts=request.attempts,
        result=request.result,
        error=request.error,
        tokens={
            "prompt": request.prompt_tokens,
            "completion": request.completion_tokens,
            "total": request.prompt_tokens + request.completion_tokens,
        },
        cost_usd=float(request.cost_usd or Decimal(0)),
        budget=BudgetView(
            ceiling_usd=float(ceiling) if ceiling else None,
            spent_usd=float(request.cost_usd),
            reserved_usd=float(request.reserved_usd),
            in_doubt_usd=float(in_doubt),
        ),
        timings=timings,
        accepted_at=request.accepted_at,
        started_at=request.started_at,
        finished_at=request.finished_at,
        queue_position=where.ahead if where else None,
        estimated_wait_s=where.wait_s if where else None,
        estimated_start=where.start_at if where else None,
        trace_id=tracing.trace_id_of(request.traceparent),
    )


def events(request_id: str, *, tenant: str | None = None) -> list[EventView]:
    """The request's event log, oldest first. With `tenant`, another tenant's request is not found."""
    with session_scope() as session:
        query = select(Request.id).where(Request.id == request_id)
        if tenant is not None:
            query = query.where(Request.tenant == tenant)
        if session.scalar(query) is None:
            raise RequestNotFound(f"no request {request_id!r}")
        rows = session.execute(
            select(RequestEvent.at, RequestEvent.kind, RequestEvent.detail)
            .where(RequestEvent.request_id == request_id)
            .order_by(RequestEvent.id)
        ).all()
    return [EventView(at=r.at, kind=r.kind, detail=r.detail) for r in rows]


def wait(
    request_id: str, timeout: float = 60.0, *, poll_s: float = 0.2, tenant: str | None = None
) -> RequestView:
    """Poll the record until the request is finished (succeeded or dead-lettered).

    Raises TimeoutError if it is still running when `timeout` seconds have passed.
    """
    deadline = time.monotonic() + timeout
    while True:
        view = get(request_id, tenant=tenant, estimate=False)
        if view.status in TERMINAL:
            return view
        if time.monotonic() >= deadline:
            raise TimeoutError(f"request {request_id} is still {view.status} after {timeout:g}s")
        time.sleep(poll_s)


def stream(
    request_id: str, *, tenant: str | None = None, timeout: float = 300.0, poll_s: float = 2.0
) -> Iterator[StreamEvent]:
    """The request's events as they happen: `status`, `delta` (the reply's text while the model
    writes it), `restart` (drop the text shown so far), and last `done` with the record's final
    view (its `result` is the answer, whatever the deltas said). See app/orchestration/live_follow.py for what a
    late reader sees. Raises RequestNotFound (another tenant's, with `tenant`) and TimeoutError."""
    deadline = time.monotonic() + timeout
    arrived: list[dict[str, Any]] = []
    with Connection(get_settings().broker_url.get_secret_value()) as conn:
        queue = Queue(
            reader_queue_name(),
            EXCHANGE,
            routing_key=request_id,
            exclusive=True,
            auto_delete=True,
            queue_arguments=QUEUE_ARGUMENTS,
            channel=conn.default_channel,
        )
        queue.declare()  # bound before the record is read: nothing after the read is missed
        with conn.Consumer(
            queue, callbacks=[lambda body, _m: arrived.append(body)], no_ack=True, accept=["json"]
        ):
            follower = Follower()
            yield from follower.record(get(request_id, tenant=tenant, estimate=False))
            polled = time.monotonic()
            while not follower.finished:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"request {request_id} is still {follower.status} after {timeout:g}s")
                try:
                    conn.drain_events(timeout=min(poll_s, left))
                except TimeoutError:
                    pass
                while arrived and not follower.finished:
                    yield from follower.message(arrived.pop(0))
                    if follower.wants_record:
                        polled = time.monotonic()
                        yield from follower.record(get(request_id, tenant=tenant, estimate=False))
                if not follower.finished and time.monotonic() - polled >= poll_s:
                    polled = time.monotonic()
                    yield from follower.record(get(request_id, tenant=tenant, estimate=False))
