"""Step checkpoints in `step_runs`: reading a request's finished and parked steps, and the one
write that ends each step attempt (with its LLM calls, its own writes and, last, the caller's finish)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.exc import OperationalError

from app.inference.call_log import calls_params, with_calls
from app.state import StepRun, autocommit_scope, get_engine, session_scope, table_of
from workflows.engine.context import Carried, StepContext

log = logging.getLogger(__name__)


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


_STEPS = table_of(StepRun)
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


# The same upsert in the statement that completes the LLM calls the attempt paid for
# (call_log.with_calls): the checkpoint and its calls in one round trip.
_UPSERT_STEP_WITH_CALLS = with_calls(
    # with_calls puts it on one line: under psycopg's 4,096-character parse cache. The step rows
    # (this attempt's, and those of read-only steps carried with it) travel as one JSON array.
    """
    INSERT INTO step_runs (request_id, step, attempts, status, output, error, duration_ms,
                           started_at, finished_at)
    SELECT request_id, step, 1, status, output, error, duration_ms, started_at, finished_at
    FROM jsonb_to_recordset(:steps) AS s(request_id varchar, step varchar, status varchar, output jsonb,
         error text, duration_ms float8, started_at timestamptz, finished_at timestamptz)
    ON CONFLICT ON CONSTRAINT uq_step_runs_request_step DO UPDATE
    SET status = excluded.status, output = excluded.output, error = excluded.error,
        duration_ms = excluded.duration_ms, started_at = excluded.started_at,
        finished_at = excluded.finished_at, attempts = step_runs.attempts + 1
    WHERE step_runs.status <> 'succeeded'
    """,
    steps=JSONB,
)


def _step_json(row: dict[str, Any]) -> dict[str, Any]:
    """A step row as `_UPSERT_STEP_WITH_CALLS` reads it from JSON (times as ISO 8601)."""
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


Finish = Callable[[Connection, dict[str, dict[str, Any]]], None]


# How long a step that ended waits for the database to take its checkpoint. Until it commits, the
# step's output and the LLM calls it paid for exist only in this thread: a database restart must
# not make the retry pay for them again, unrecorded the first time.
CHECKPOINT_PATIENCE_S = 30.0


class _NotWritten(Exception):
    """The database failed before the checkpoint's commit was sent: nothing of it was written."""


def record_step(
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
    carried = ctx.carried
    if (
        carried is not None
        and ctx.step.reads_only
        and status == "succeeded"
        and not calls
        and not writes
        and finish is None
        and suspend is None
    ):
        carried.add(row)  # written with the run's next checkpoint (see Step.reads_only)
        return
    rows = [row, *(carried.take() if carried is not None else [])]

    def write(conn: Connection) -> None:
        if not calls:
            conn.execute(_UPSERT_STEP, rows if len(rows) > 1 else row)
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
        # tenant's other checkpoints and reservations queued behind it with the core idle. The
        # step's row goes with the calls, in the same statement.
        if calls:
            conn.execute(
                _UPSERT_STEP_WITH_CALLS, {"steps": [_step_json(r) for r in rows], **calls_params(calls)}
            )

    # One statement commits by itself. Completing a call twice is impossible (only an unfinished
    # intent row is completed), so only rows without one (cache hits, inserted) need a transaction.
    alone = (
        suspend is None
        and not (status == "succeeded" and (writes or finish))
        and all(call.get("call_id") is not None for call in calls)
    )
    waited, pause = 0.0, 0.5
    while True:
        try:
            return _write_checkpoint(write, alone=alone)
        except _NotWritten as failed:
            if waited >= CHECKPOINT_PATIENCE_S:
                if carried is not None:
                    for carried_row in rows[1:]:  # for a later checkpoint of the run to write
                        carried.add(carried_row)
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


def write_carried(carried: Carried) -> None:
    """Write the step rows still carried when a run ends without another checkpoint to take them
    (best effort: a read-only step whose row is lost runs again on the next attempt)."""
    rows = carried.take()
    if not rows:
        return
    try:
        with autocommit_scope() as conn:
            conn.execute(_UPSERT_STEP, rows if len(rows) > 1 else rows[0])
    except OperationalError as exc:
        log.warning("checkpoints of read-only steps not written (%s)", type(exc).__name__)


def _write_checkpoint(write: Callable[[Connection], None], *, alone: bool) -> None:
    if alone:
        # A checkpoint that is one statement commits by itself, without BEGIN and COMMIT round
        # trips. Run again after an unknown outcome it changes nothing: the upsert never
        # overwrites a succeeded step, and a call's intent row is completed only once.
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
