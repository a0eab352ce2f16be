"""Running a workflow: each unfinished step once its dependencies are done, side by side where they
allow, each attempt checkpointed; which failures a step retries itself and which the task retries."""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import OperationalError

from app.inference import Deferred, ProviderError
from app.observability.tracing import step_span
from app.orchestration import approvals, handoffs
from app.orchestration.specialist import Specialist
from app.request_scope import carry
from app.state import connection_scope
from workflows.engine.checkpoints import Finish, load_checkpoints, record_step, write_carried
from workflows.engine.context import Carried, RequestInfo, StepContext
from workflows.engine.errors import AwaitingApproval, HandedOff, StepError
from workflows.engine.workflow import Step, Workflow

log = logging.getLogger(__name__)


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
            record_step(ctx, "deferred", started_at=started_at)
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
            record_step(
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
            record_step(
                ctx,
                "handed_off",
                started_at=started_at,
                error=handing.reason,
                duration_ms=(time.perf_counter() - started) * 1000,
                suspend=hand_off,
            )
            raise
        except Exception as exc:  # noqa: BLE001 - recorded, then classified below
            last = exc
        else:
            duration = (time.perf_counter() - started) * 1000
            record_step(
                ctx, "succeeded", started_at=started_at, output=output, duration_ms=duration, finish=finish
            )
            return output
        duration = (time.perf_counter() - started) * 1000
        record_step(ctx, "failed", started_at=started_at, error=str(last), duration_ms=duration)
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
    carried = Carried()

    def context(step: Step) -> StepContext:
        return StepContext(
            request, specialist, step, dict(outputs), parked=parked.get(step.name), carried=carried
        )

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
        write_carried(carried)  # rows no later checkpoint took (none, when the run went through)
    if finish is not None and not finished:
        with connection_scope() as conn:
            finish_once(conn, outputs)
    return outputs
