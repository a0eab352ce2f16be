"""The Celery tasks: the router and one task per specialist. Only workers import this module."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from celery import Task
from celery.exceptions import Reject
from celery.signals import task_postrun, task_prerun
from sqlalchemy import Connection

from app import request_scope as context
from app.config import get_settings
from app.errors import OrchestrationError
from app.inference import BudgetExhausted, Deferred
from app.inference.cache import purge_expired
from app.observability import metrics, tracing
from app.orchestration import callbacks, fairness, handoffs, live
from app.orchestration.approvals import escalate_overdue
from app.orchestration.celery_app import CALLBACK_TASK, RECONCILE_TASK, ROUTE_TASK, SUBMIT_TASK, celery
from app.orchestration.reconciler import mark_in_doubt, redispatch_stale, republish_unpublished
from app.orchestration.registry import get_specialist, specialists
from app.orchestration.route_message import RoutingInputs
from app.orchestration.routing import decide
from app.orchestration.specialist import Specialist
from app.orchestration.topology import ROUTER_QUEUE
from app.state import Status, conversations
from app.state import transitions as record
from app.state.transitions import RequestNotFound, TenantMismatch
from workflows import get_workflow
from workflows.engine import AwaitingApproval, RequestInfo, StepError, Suspended, run

log = logging.getLogger(__name__)


# Tokens of the request each running task bound, by (task id, thread): a duplicate delivery of the
# same task may run at the same time in another thread.
_bound: dict[tuple[str, int], Any] = {}


@task_prerun.connect
def _bind_request(task_id: str = "", task: Task[Any, Any] | None = None, args: Any = None, **_: Any) -> None:
    # Every Switchboard task but the reconciler and submit takes its request id first: bound for the
    # task's length, so its log lines carry it and its database time is counted (app/request_scope.py).
    if task is not None and task.name not in (RECONCILE_TASK, SUBMIT_TASK) and args:
        _bound[(task_id, threading.get_ident())] = context.enter(str(args[0]))


@task_postrun.connect
def _unbind_request(task_id: str = "", **_: Any) -> None:
    token = _bound.pop((task_id, threading.get_ident()), None)
    if token is not None:
        context.leave(token)


class PermanentError(OrchestrationError):
    """Retrying cannot help; dead-letter at once."""


def backoff_s(attempt: int) -> float:
    settings = get_settings()
    base = min(settings.retry_backoff_s * 2 ** (attempt - 1), settings.retry_backoff_max_s)
    # Full jitter keeps a burst of failures from retrying in lockstep against a recovering provider.
    return random.uniform(base / 2, base)


def _budget_refusal(exc: BaseException | None) -> BudgetExhausted | None:
    """The budget refusal behind `exc` (a step's error wraps it), if that is what ended the attempt."""
    while exc is not None and not isinstance(exc, BudgetExhausted):
        exc = exc.__cause__
    return exc


def give_up_or_retry(task: Task[Any, Any], request_id: str, queue: str, attempt: int, exc: Exception) -> None:
    """The one place that decides between another attempt and the dead-letter queue."""
    refusal = _budget_refusal(exc)
    transient = (
        refusal is None
        and not isinstance(exc, PermanentError)
        and not (isinstance(exc, StepError) and not exc.transient)
    )
    # A spent budget ends the request at once with an error that says so ("budget_exhausted: ..."):
    # another attempt would be refused the same way. Replay it once the budget allows.
    error = str(refusal) if refusal is not None else f"{type(exc).__name__}: {exc}"
    priority = (task.request.delivery_info or {}).get("priority")
    specialist = queue if queue != ROUTER_QUEUE else "unrouted"
    if transient and attempt < get_settings().max_attempts:
        delay = backoff_s(attempt)
        metrics.RETRIES.labels(queue, "failed").inc()
        metrics.REQUESTS.labels(specialist, Status.FAILED).inc()
        try:
            record.mark_failed(request_id, error, attempt=attempt, retry_in_s=round(delay, 2))
        except Exception:  # noqa: BLE001 - the database is down: retry anyway, the attempt is recorded next time
            log.warning(
                "request %s: could not record the failed attempt; retrying in %.1fs", request_id, delay
            )
        raise task.retry(countdown=delay, exc=exc, max_retries=None, queue=queue, priority=priority)  # type: ignore[arg-type]  # Celery takes priority=None (no priority); celery-types says int
    if get_settings().handoff_on_failure and _handed_to_people(request_id, error):
        metrics.REQUESTS.labels(specialist, Status.NEEDS_HUMAN).inc()
        log.error("request %s handed to the human queue after %d attempt(s): %s", request_id, attempt, error)
        return  # acked: a person's reply finishes it
    try:
        record.mark_dead_lettered(request_id, error, queue=queue)
    except Exception:  # noqa: BLE001 - whatever the record raises, the message is retried, never dropped unrecorded
        # Dead-lettering a message the record cannot mirror would split the two; come back later.
        log.warning("request %s: could not record the dead letter; retrying", request_id)
        raise task.retry(
            countdown=backoff_s(attempt),
            exc=exc,
            max_retries=None,
            queue=queue,
            priority=priority,  # type: ignore[arg-type]  # Celery takes priority=None (no priority); celery-types says int
        ) from None
    metrics.DEAD_LETTERS.labels(queue).inc()
    metrics.REQUESTS.labels(specialist, Status.DEAD_LETTERED).inc()
    log.error(
        "request %s dead-lettered into %s.dlq after %d attempt(s): %s", request_id, queue, attempt, error
    )
    # Rejected without requeue: RabbitMQ moves the message to <queue>.dlq through the DLX.
    raise Reject(error, requeue=False)


def _handed_to_people(request_id: str, error: str) -> bool:
    try:
        return handoffs.hand_off_failed(request_id, error)
    except Exception:  # noqa: BLE001 - the database is down: the dead-letter path below retries the recording
        log.warning("request %s: could not hand it to the human queue", request_id)
        return False


# max_retries=None: the attempt counter in the record decides when to give up, not Celery.
@celery.task(name=ROUTE_TASK, bind=True, max_retries=None)
def route(self: Task[Any, Any], request_id: str, routing: dict[str, Any] | None = None) -> None:
    taken = time.monotonic()
    try:
        if routing is None:
            # A message without the routing inputs (the reconciler's, a replayed dead letter, an
            # older client's): read them. The client's own message carries them, saving the read.
            request = record.for_routing(request_id)
            if request is None:
                # Clients write the row before publishing, so this is a message from another database.
                raise Reject(f"no request {request_id} in the record", requeue=False)
            if request.status != Status.ACCEPTED:
                return  # routed already: a duplicate message (a lost dispatch is the reconciler's job)
            inputs = RoutingInputs(request.text, request.tenant, request.priority, request.conversation_id)
            started_at = request.taken_at
        else:
            inputs, started_at = RoutingInputs.of(routing), None
        _route(request_id, inputs, started_at, taken)
    except RequestNotFound:
        raise Reject(f"no request {request_id} in the record", requeue=False) from None
    except TenantMismatch as exc:
        # Dead-lettered for a person to inspect; the row stays `accepted`, so the reconciler
        # routes it later from the record's own inputs.
        metrics.DEAD_LETTERS.labels(ROUTER_QUEUE).inc()
        log.error("request %s: %s; dead-lettered, not routed", request_id, exc)
        raise Reject(str(exc), requeue=False) from None
    except Reject:
        raise
    except Exception as exc:  # noqa: BLE001 - the task boundary: every failure is retried or dead-lettered
        give_up_or_retry(self, request_id, ROUTER_QUEUE, self.request.retries + 1, exc)


def _route(request_id: str, inputs: RoutingInputs, started_at: datetime | None, taken: float) -> None:
    tenant, conversation_id = inputs.tenant, inputs.conversation_id
    # Inputs from the route message are the publisher's word until the routed write checks the
    # tenant, so nothing before it may read or spend as that tenant unchecked (inputs read from
    # the row, with `started_at`, are the record's own).
    from_message = started_at is None
    current = (
        conversations.specialist_of(tenant, conversation_id, for_request=request_id if from_message else None)
        if conversation_id
        else None
    )
    decision = decide(
        inputs.text,
        current_specialist=current,
        request_id=request_id,
        tenant=tenant,
        before_llm=(lambda: record.confirm_tenant(request_id, tenant)) if from_message else None,
    )
    tracing.annotate(
        request_id=request_id,
        specialist=decision.specialist,
        confidence=decision.confidence,
        method=decision.method,
    )
    # Only the copy that records the decision dispatches, so duplicate route messages (an
    # impatient client, a republish) never start a request twice: the statement changes an
    # `accepted` row only. The same statement counts the tenant's unfinished requests there, for
    # the fair-share priority.
    unfinished = record.mark_routed(
        request_id,
        decision.specialist,
        decision.confidence,
        decision.method,
        started_at,
        tenant=tenant,
        count_unfinished=max(0, get_settings().fair_share),
        taken_s_ago=time.monotonic() - taken,
    )
    if unfinished is None:
        return  # routed already: a duplicate message
    metrics.ROUTING_DECISIONS.labels(decision.method, decision.specialist).inc()
    log.info(
        "routed to %s by %s (confidence %.2f)",
        decision.specialist,
        decision.method,
        decision.confidence,
    )
    fairness.dispatch(
        request_id,
        get_specialist(decision.specialist),
        inputs.priority,
        tenant,
        unfinished=unfinished,
    )


def _specialist_task(spec: Specialist) -> Callable[..., Any]:
    @celery.task(name=spec.task_name, bind=True, max_retries=None)
    def run_specialist(self: Task[Any, Any], request_id: str, reclaim: bool = False) -> None:
        # A request already running is taken over only by a redelivery (its worker died) or the
        # reconciler; any other copy of the message is a duplicate.
        take_over = reclaim or bool((self.request.delivery_info or {}).get("redelivered"))
        try:
            attempt = record.start_attempt(request_id, take_over=take_over)
        except Exception as exc:  # noqa: BLE001 - the task boundary: every failure is retried or dead-lettered
            give_up_or_retry(self, request_id, spec.queue, 1, exc)
            return
        if attempt is None:
            return  # finished, or running elsewhere: a duplicate delivery
        tracing.annotate(
            request_id=request_id,
            attempt=attempt.number,
            resumed=bool(attempt.checkpoints),
            checkpointed_steps=sorted(attempt.checkpoints),
        )
        live.attempt_started(request_id, attempt.number)
        try:
            if attempt.number > get_settings().max_attempts:
                # The message keeps coming back (its worker died each time): stop the loop.
                raise PermanentError(f"gave up after {attempt.number - 1} attempts without finishing")
            history = (
                conversations.history(attempt.tenant, attempt.conversation_id, before_request=request_id)
                if attempt.conversation_id
                else []
            )
            info = RequestInfo(
                request_id,
                attempt.tenant,
                attempt.text,
                attempt.priority,
                history,
                attempt.route_confidence,
                customer=attempt.customer,
            )
            callback_pending = False

            def finish(conn: Connection, outputs: dict[str, dict[str, Any]]) -> None:
                nonlocal callback_pending
                draft = outputs.get("draft", {})
                result = {"reply": draft.get("reply", ""), "tool_calls": draft.get("tool_calls", [])}
                callback_pending = record.mark_succeeded(conn, request_id, result, attempt)

            run(
                get_workflow(spec.workflow),
                info,
                spec,
                attempt.checkpoints,
                finish=finish,
                parked=attempt.parked,
            )
            _observe_success(spec, attempt, len(history) // 2 + 1)
            if callback_pending:
                callbacks.enqueue(request_id)
        except Reject:
            raise
        except Suspended as waiting:
            # Recorded with the step's checkpoint; the message is acked and the slot freed. A
            # person's decision or reply sends the request on.
            parked = isinstance(waiting, AwaitingApproval)
            waits_for = Status.AWAITING_APPROVAL if parked else Status.NEEDS_HUMAN
            metrics.REQUESTS.labels(spec.name, waits_for).inc()
            log.info("waiting for a person: %s", waiting)
        except Deferred as deferred:
            record.mark_deferred(request_id, str(deferred), retry_in_s=deferred.retry_in_s)
            metrics.RETRIES.labels(spec.queue, "deferred").inc()
            priority = (self.request.delivery_info or {}).get("priority")
            raise self.retry(
                countdown=deferred.retry_in_s,
                max_retries=None,
                queue=spec.queue,
                priority=priority,  # type: ignore[arg-type]  # Celery takes priority=None (no priority); celery-types says int
            ) from None
        except Exception as exc:  # noqa: BLE001 - the task boundary: every failure is retried or dead-lettered
            give_up_or_retry(self, request_id, spec.queue, attempt.number, exc)
        finally:
            live.status_changed(request_id)  # after the record's change committed: readers read it

    return run_specialist


def _observe_success(spec: Specialist, attempt: record.Attempt, turn: int) -> None:
    metrics.REQUESTS.labels(spec.name, Status.SUCCEEDED).inc()
    scope = context.current()
    if scope is not None:
        metrics.observe_request_usage(spec.name, attempt.tenant, scope.usage)
    if attempt.conversation_id:
        metrics.CONVERSATION_TURNS.labels(spec.name).observe(turn)
    log.info("succeeded on attempt %d", attempt.number)


SPECIALIST_TASKS = {name: _specialist_task(spec) for name, spec in specialists().items()}


@celery.task(name=CALLBACK_TASK, bind=True, max_retries=None)
def deliver_callback(self: Task[Any, Any], request_id: str) -> str:
    # The callbacks table counts attempts and decides when to give up; Celery only schedules.
    delivery = callbacks.deliver(request_id)
    if delivery.outcome == "retry":
        raise self.retry(countdown=callbacks.backoff_s(delivery.attempts), max_retries=None)
    return delivery.outcome


@celery.task(name=RECONCILE_TASK)
def reconcile() -> dict[str, int]:
    return {
        "republished": republish_unpublished(),
        "redispatched": redispatch_stale(),
        "llm_calls_in_doubt": mark_in_doubt(),
        "cache_entries_expired": purge_expired(),
        "callbacks_resent": callbacks.resend_pending(),
        "approvals_escalated": escalate_overdue(),
    }
