"""A small engine for multi-step workflows with durable steps.

A workflow is named steps with dependencies. Steps whose dependencies are done run side by side;
each step's output is checkpointed in `step_runs`, so a redelivered task resumes at its first
unfinished step and never pays again for LLM calls a finished step made. Steps do I/O only through
`app.inference` and `app.state`, never by talking to queues.

A step runs in the task's own thread (steps running side by side: all but one in a shared pool).
Its `timeout_s` is a deadline checked before each LLM call: a step past it makes no further call
and fails as timed out (retryable). Each wait inside a step is bounded too: an LLM call by the
provider's HTTP timeout, a statement by the database's statement timeout. Python cannot stop a
thread, so abandoning a step still running would leave it calling the provider, unrecorded, next
to its own retry; a deadline the step obeys cannot.

A step can stop to wait for a person. `ctx.await_approval(...)` parks it: its state (for the agent
loop, the conversation so far and the pending tool call) becomes the step's checkpoint with status
`parked`, written with the LLM calls it paid for, the pending approval and the request's move to
`awaiting_approval` in one transaction; the task then ends, its message acked. Once a person
decides, the task runs again and the step gets that state back as `ctx.parked` and the decision
from `ctx.decision(key)`. `ctx.handoff(reason)` gives the request to the human queue the same way.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, NoReturn, TypeVar, overload

from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection, Executable, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import OperationalError

from app.config import get_settings
from app.inference import ChatResponse, Deferred, ProviderError, complete, structured
from app.inference.call_log import write_calls
from app.inference.tiers import effective_tier
from app.observability.request_scope import carry
from app.observability.tracing import step_span
from app.orchestration import approvals, handoffs, live
from app.orchestration.approvals import Decision
from app.orchestration.specialist import Specialist, ToolContext
from app.state import StepRun, autocommit_scope, connection_scope, get_engine, session_scope

log = logging.getLogger(__name__)

StepFn = Callable[["StepContext"], dict[str, Any]]
M = TypeVar("M", bound=BaseModel)


class Suspended(Exception):  # noqa: N818 - not an error: the step waits for a person
    """A step stopped to wait for a person. Its state is checkpointed with the request's new
    status in one transaction; the task then ends (its message acked, no worker slot held)."""


class AwaitingApproval(Suspended):
    """A tool call needs a person's approval: the step parks with `state` and resumes from it."""

    def __init__(
        self, *, key: str, tool: str, arguments: dict[str, Any], why: str, state: dict[str, Any]
    ) -> None:
        super().__init__(f"{tool} needs approval: {why}")
        self.key, self.tool, self.arguments, self.why, self.state = key, tool, arguments, why, state


class HandedOff(Suspended):
    """The step gave the request to the human queue."""

    def __init__(self, reason: str, source: str) -> None:
        super().__init__(f"handed to a person: {reason}")
        self.reason, self.source = reason, source


class StepError(Exception):
    """A step failed. `transient` says whether running the task again may succeed."""

    def __init__(self, step: str, message: str, *, transient: bool) -> None:
        super().__init__(f"step {step!r} failed: {message}")
        self.step = step
        self.transient = transient


@dataclass(frozen=True)
class Step:
    name: str
    fn: StepFn
    tier: str = "cheap"
    retries: int = 1
    timeout_s: float = 120.0
    after: tuple[str, ...] = ()
    # A single-shot step's LLM answers depend only on their messages, so they may be cached.
    single_shot: bool = False


@dataclass(frozen=True)
class RequestInfo:
    id: str
    tenant: str
    text: str
    priority: str
    history: list[dict[str, str]]
    route_confidence: float | None = None
    # The verified end user the request acts for (requests.customer); tools see only their rows.
    customer: str | None = None


@dataclass
class StepContext:
    request: RequestInfo
    specialist: Specialist
    step: Step
    outputs: dict[str, dict[str, Any]]
    # This step's answered LLM calls (their intent rows are in the record already), completed with
    # its checkpoint in one transaction.
    calls: list[dict[str, Any]] = field(default_factory=list)
    # Writes that must commit with the checkpoint or not at all (see `write`).
    writes: list[Callable[[Connection], object]] = field(default_factory=list)
    # time.monotonic() past which the step makes no further LLM call (see the module docstring).
    deadline: float = float("inf")
    # Where this step's streamed calls send their text (created on the first `stream=True` call);
    # kept across the step's attempts, so a retry announces that the text sent before is void.
    streamed: live.LiveAnswer | None = None
    # The state this step parked with (waiting for an approval), when it runs again to resume.
    parked: dict[str, Any] | None = None

    @overload
    def llm(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        tier: str | None = None,
        max_tokens: int = 512,
        temperature: float | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        response_format: dict[str, Any] | None = None,
        response_model: None = None,
        stream: bool = False,
    ) -> ChatResponse: ...

    @overload
    def llm(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        tier: str | None = None,
        max_tokens: int = 512,
        temperature: float | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        response_format: dict[str, Any] | None = None,
        response_model: type[M],
        stream: bool = False,
    ) -> M: ...

    def llm(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        tier: str | None = None,
        max_tokens: int = 512,
        temperature: float | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        response_format: dict[str, Any] | None = None,
        response_model: type[M] | None = None,
        stream: bool = False,
    ) -> ChatResponse | M:
        """One LLM call through the gateway. With `response_model` (a pydantic model) the call
        asks for JSON of its schema and returns a validated instance; an invalid answer gets one
        repair prompt naming what was wrong, then fails the step (not retryable). With `stream`
        the answer's text reaches the request's stream readers while the model writes it (for the
        step's final answer; see app/orchestration/live.py); the call returns the same whole answer."""
        stream = stream and get_settings().stream_replies
        if stream and self.streamed is None:
            self.streamed = live.LiveAnswer(self.request.id, self.step.name)

        def call(conversation: list[dict[str, Any]], fmt: dict[str, Any] | None) -> ChatResponse:
            if time.monotonic() > self.deadline:
                raise TimeoutError(f"took longer than {self.step.timeout_s:g}s")
            return complete(
                conversation,
                tier=effective_tier(tier or self.step.tier, self.request, self.specialist.queue),
                purpose=self.step.name,
                request_id=self.request.id,
                step=self.step.name,
                tools=tools,
                max_tokens=max_tokens,
                temperature=temperature,
                tool_choice=tool_choice,
                response_format=fmt,
                cache=self.step.single_shot and not tools,
                tenant=self.request.tenant,
                record_into=self.calls,
                writes_into=self.writes,
                stream_to=self.streamed if stream else None,
            )

        if response_model is None:
            return call(messages, response_format)
        fmt = response_format or structured.response_format(response_model)
        response = call(messages, fmt)
        try:
            return structured.parse(response_model, response)
        except ValidationError as first:
            repaired = call(structured.repair_messages(messages, response, first), fmt)
            try:
                return structured.parse(response_model, repaired)
            except ValidationError as second:
                raise structured.InvalidStructuredOutput(
                    f"the model's answer is not a valid {response_model.__name__} after one repair: "
                    f"{second.errors()[0]['msg']}"
                ) from None

    def write(self, statement: Executable) -> None:
        """Execute `statement` in the transaction that checkpoints this step, if the step
        succeeds: a record of what the step did commits together with its checkpoint, and costs
        no transaction of its own."""
        self.writes.append(lambda conn: conn.execute(statement))

    def await_approval(
        self, *, key: str, tool: str, arguments: dict[str, Any], why: str, state: dict[str, Any]
    ) -> NoReturn:
        """Park the step until a person decides on the call `key` (unique within the step, e.g. the
        model's tool-call id). The step runs again once decided, with `state` as `ctx.parked`:
        everything it needs to go on without repeating paid LLM calls."""
        raise AwaitingApproval(key=key, tool=tool, arguments=arguments, why=why, state=state)

    def decision(self, key: str) -> Decision | None:
        """A person's decision on the call `key` of this step, if one was made."""
        return approvals.decision(self.request.id, self.step.name, key)

    def handoff(self, reason: str, *, source: str = "workflow") -> NoReturn:
        """Give the request to the human queue (`needs_human`); a person's reply becomes its result."""
        raise HandedOff(reason, source)

    def tool_context(self) -> ToolContext:
        return ToolContext(
            request_id=self.request.id,
            tenant=self.request.tenant,
            step=self.step.name,
            customer=self.request.customer,
        )


@dataclass
class Workflow:
    name: str
    steps: dict[str, Step] = field(default_factory=dict)

    def step(
        self,
        name: str | None = None,
        *,
        tier: str = "cheap",
        retries: int = 1,
        timeout_s: float = 120.0,
        after: tuple[str, ...] = (),
        single_shot: bool = False,
    ) -> Callable[[StepFn], StepFn]:
        def register(fn: StepFn) -> StepFn:
            step_name = name or fn.__name__
            missing = [dep for dep in after if dep not in self.steps]
            if missing:
                raise ValueError(
                    f"workflow {self.name!r}: step {step_name!r} runs after unknown steps {missing}"
                )
            if step_name in self.steps:
                raise ValueError(f"workflow {self.name!r} already has a step named {step_name!r}")
            self.steps[step_name] = Step(step_name, fn, tier, retries, timeout_s, after, single_shot)
            return fn

        return register


def load_checkpoints(request_id: str) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The finished steps' outputs and the parked steps' states."""
    with session_scope() as session:
        rows = session.execute(
            select(StepRun.step, StepRun.status, StepRun.output).where(
                StepRun.request_id == request_id, StepRun.status.in_(("succeeded", "parked"))
            )
        ).all()
    return (
        {row.step: row.output or {} for row in rows if row.status == "succeeded"},
        {row.step: row.output for row in rows if row.status == "parked" and row.output is not None},
    )


_STEPS = StepRun.__table__
_new_step = insert(_STEPS)
# Built once: this runs for every step of every request, and building the statement costs more
# than executing it.
_UPSERT_STEP = _new_step.on_conflict_do_update(
    constraint="uq_step_runs_request_step",
    set_={
        **{
            name: _new_step.excluded[name]
            for name in ("status", "output", "error", "duration_ms", "started_at", "finished_at")
        },
        "attempts": _STEPS.c.attempts + 1,
    },
    # A succeeded checkpoint is final; a late duplicate attempt must not overwrite it.
    where=_STEPS.c.status != "succeeded",
)


Finish = Callable[[Connection, dict[str, dict[str, Any]]], None]


# How long a step that ended waits for the database to take its checkpoint. Until it commits, the
# step's output and the LLM calls it paid for exist only in this thread: a database restart must
# not make the retry pay for them again, unrecorded the first time.
CHECKPOINT_PATIENCE_S = 30.0


class _NotWritten(Exception):
    """The database failed before the checkpoint's commit was sent: nothing of it was written."""


def _record_step(
    ctx: StepContext,
    status: str,
    *,
    started_at: datetime,
    output: dict[str, Any] | None = None,
    error: str | None = None,
    duration_ms: float | None = None,
    finish: Finish | None = None,
    suspend: Callable[[Connection], None] | None = None,
) -> None:
    """One write per step attempt, when it ends: a step's row is its checkpoint and its history,
    written with the LLM calls the attempt made, the step's own writes if it succeeded, and for
    the workflow's last step the caller's `finish`; for a step that stopped to wait for a person
    (`parked`, `handed_off`), `suspend` moves the request to its waiting status."""
    if status in ("failed", "deferred") and ctx.parked is not None:
        # A resumed step that failed keeps the state it resumes from: its next attempt must not
        # start over and pay again for the LLM calls made before it parked.
        status, output = "parked", ctx.parked
    row = {
        "request_id": ctx.request.id,
        "step": ctx.step.name,
        "attempts": 1,
        "status": status,
        "output": output,
        "error": error,
        "duration_ms": duration_ms,
        "started_at": started_at,
        "finished_at": datetime.now(UTC) if status in ("succeeded", "failed") else None,
    }
    calls, ctx.calls[:] = list(ctx.calls), []
    writes, ctx.writes[:] = list(ctx.writes), []

    def write(conn: Connection) -> None:
        conn.execute(_UPSERT_STEP, row)
        if suspend is not None:
            suspend(conn)
        if status == "succeeded":
            for step_write in writes:
                step_write(conn)
            if finish is not None:
                assert output is not None
                finish(conn, {**ctx.outputs, ctx.step.name: output})
        # Last, so the tenant's day row (tenant_spend), which every call of the tenant's requests
        # locks, stays locked only until the COMMIT that follows: written first, every other
        # statement of the checkpoint and each wait for the GIL between them held it too, and the
        # tenant's other checkpoints and reservations queued behind it with the core idle.
        write_calls(conn, calls)

    alone = not calls and suspend is None and not (status == "succeeded" and (writes or finish))
    waited, pause = 0.0, 0.5
    while True:
        try:
            return _write_checkpoint(write, alone=alone)
        except _NotWritten as failed:
            if waited >= CHECKPOINT_PATIENCE_S:
                raise failed.__cause__ or failed from None
            log.warning(
                "checkpoint of step %s of %s not written (%s); trying again in %.1fs",
                ctx.step.name,
                ctx.request.id,
                type(failed.__cause__).__name__,
                pause,
            )
            time.sleep(pause)
            waited, pause = waited + pause, min(pause * 2, 5.0)


def _write_checkpoint(write: Callable[[Connection], None], *, alone: bool) -> None:
    if alone:
        # A checkpoint that is the only write commits by itself, without BEGIN and COMMIT round
        # trips. Run again after an unknown outcome it changes nothing: the upsert never
        # overwrites a succeeded step.
        try:
            with autocommit_scope() as conn:
                write(conn)
        except OperationalError as exc:
            raise _NotWritten() from exc
        return
    try:
        conn = get_engine().connect()  # while the database is down, this is what fails
    except OperationalError as exc:
        raise _NotWritten() from exc
    with conn:
        transaction = conn.begin()
        try:
            write(conn)
        except OperationalError as exc:
            raise _NotWritten() from exc
        # A failure from here on leaves it unknown whether the commit landed: not tried again,
        # so a checkpoint is never written twice.
        transaction.commit()


def _retry_here(exc: BaseException) -> bool:
    """Whether the step itself should try again. Provider errors are not retried here: the
    gateway already spent the call's one retry budget, and stacking retries multiplies load on a
    provider that is struggling."""
    return isinstance(exc, (TimeoutError, ConnectionError, OperationalError))


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, ProviderError):
        return exc.retryable
    return _retry_here(exc)


def _run_step(step: Step, ctx: StepContext, finish: Finish | None = None) -> dict[str, Any]:
    last: BaseException | None = None
    for attempt in range(step.retries + 1):
        if attempt:
            time.sleep(min(0.5 * 2 ** (attempt - 1), 5.0))
        started_at = datetime.now(UTC)
        started = time.perf_counter()
        ctx.deadline = time.monotonic() + step.timeout_s
        try:
            with step_span(step.name, attempt + 1, ctx.request.id):
                output = step.fn(ctx)
        except Deferred:
            _record_step(ctx, "deferred", started_at=started_at)
            raise
        except AwaitingApproval as parking:
            park = partial(
                approvals.park,
                request_id=ctx.request.id,
                step=ctx.step.name,
                key=parking.key,
                tool=parking.tool,
                arguments=parking.arguments,
                why=parking.why,
            )
            _record_step(
                ctx,
                "parked",
                started_at=started_at,
                output=parking.state,
                duration_ms=(time.perf_counter() - started) * 1000,
                suspend=park,
            )
            raise
        except HandedOff as handing:
            hand_off = partial(
                handoffs.open_handoff, request_id=ctx.request.id, source=handing.source, reason=handing.reason
            )
            _record_step(
                ctx,
                "handed_off",
                started_at=started_at,
                error=handing.reason,
                duration_ms=(time.perf_counter() - started) * 1000,
                suspend=hand_off,
            )
            raise
        except Exception as exc:  # recorded, then classified below
            last = exc
        else:
            duration = (time.perf_counter() - started) * 1000
            _record_step(
                ctx, "succeeded", started_at=started_at, output=output, duration_ms=duration, finish=finish
            )
            return output
        duration = (time.perf_counter() - started) * 1000
        _record_step(ctx, "failed", started_at=started_at, error=str(last), duration_ms=duration)
        if not _retry_here(last):
            raise StepError(step.name, str(last), transient=_transient(last)) from last
        log.warning("step %s of %s failed (attempt %d): %s", step.name, ctx.request.id, attempt + 1, last)
    assert last is not None
    raise StepError(step.name, str(last), transient=True) from last


_pool_lock = threading.Lock()
_pool: tuple[int, ThreadPoolExecutor] | None = None


def _side_pool() -> ThreadPoolExecutor:
    """The process-wide pool for steps that run beside the task thread's own, created lazily and
    reused across tasks: a pool per task would start threads for every request."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (os.getpid(), ThreadPoolExecutor(max_workers=1024, thread_name_prefix="step"))
        return _pool[1]


def run(
    workflow: Workflow,
    request: RequestInfo,
    specialist: Specialist,
    checkpoints: dict[str, dict[str, Any]] | None = None,
    finish: Finish | None = None,
    parked: dict[str, dict[str, Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run every unfinished step, side by side where dependencies allow; returns all outputs.
    `checkpoints` are the finished steps' outputs and `parked` the parked steps' states, if the
    caller read them already. `finish(conn, outputs)` is called once, after every step
    succeeded: in the last step's checkpoint transaction when it can be (one transaction fewer
    per request), else in its own. A step waiting for a person raises Suspended."""
    if checkpoints is None:
        checkpoints, parked = load_checkpoints(request.id)
    outputs = dict(checkpoints)
    parked = parked or {}

    def context(step: Step) -> StepContext:
        return StepContext(request, specialist, step, dict(outputs), parked=parked.get(step.name))

    pending = {name: step for name, step in workflow.steps.items() if name not in outputs}
    running: dict[Future[dict[str, Any]], str] = {}
    finished = False

    def finish_once(conn: Connection, final: dict[str, dict[str, Any]]) -> None:
        nonlocal finished
        assert finish is not None
        finish(conn, final)
        finished = True

    try:
        while pending or running:
            for future in [f for f in running if f.done()]:
                outputs[running.pop(future)] = future.result()
            ready = [s for s in pending.values() if all(dep in outputs for dep in s.after)]
            # All ready steps but the first run beside this thread, which runs the first itself: a
            # hand-off to another thread costs more CPU than most steps' own Python.
            for step in ready[1:]:
                running[_side_pool().submit(carry(_run_step), step, context(step))] = step.name
                del pending[step.name]
            if ready:
                step = pending.pop(ready[0].name)
                last = finish_once if finish is not None and not pending and not running else None
                outputs[step.name] = _run_step(step, context(step), finish=last)
                continue
            if not running:
                raise StepError(next(iter(pending)), "its dependencies can never finish", transient=False)
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                name = running.pop(future)
                outputs[name] = future.result()
    finally:
        # A failed step's siblings finish (and checkpoint) before the error propagates.
        wait(running)
    if finish is not None and not finished:
        with connection_scope() as conn:
            finish_once(conn, outputs)
    return outputs
