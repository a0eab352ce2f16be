"""`switchboard scale QUEUE N`: set one queue's total concurrency to N.

Under the local supervisor (`switchboard workers up`, which heartbeats in `pool_targets`), the
target is written there and the supervisor applies it: it splits N over as many worker processes
as `SWITCHBOARD_SCALE_MAX_PER_PROCESS` requires, starts or warm-stops processes, and resizes the
ones it keeps. Elsewhere (Procfile under honcho, Kubernetes) the workers that consume the queue are
resized in place with Celery's `pool_grow`/`pool_shrink` remote control; how many processes run is
then the process manager's business. Either way the result is read back from the workers, not
assumed.
"""

from __future__ import annotations

import math
import time
from datetime import timedelta
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert

from app.config import get_settings
from app.errors import OpsError
from app.ops.queue_status import WorkerView, worker_views
from app.orchestration.celery_app import celery
from app.orchestration.topology import work_queue_names
from app.state import PoolTarget, session_scope

# A supervisor heartbeats every second; one silent this long is gone.
SUPERVISOR_STALE_S = 10.0


class ScaleError(OpsError, ValueError):
    """The queue cannot be scaled as asked; nothing was changed."""


class WorkerChange(BaseModel):
    name: str
    before: int | None  # None: the process did not run
    after: int | None  # None: the process stopped


class ScaleReport(BaseModel):
    queue: str
    requested: int
    before: int
    after: int
    processes_before: int
    processes_after: int
    via: Literal["supervisor", "remote-control"]
    changes: list[WorkerChange]


def layout(total: int, max_per_process: int) -> list[int]:
    """Concurrency per process: as few processes as the per-process cap allows, sizes even."""
    if total <= 0:
        return []
    return layout_over(total, math.ceil(total / max(1, max_per_process)))


def validate(queue: str, n: int) -> None:
    known = work_queue_names()
    if queue not in known:
        hint = f" ({queue.removesuffix('.dlq')} is its work queue)" if queue.endswith(".dlq") else ""
        raise ScaleError(f"unknown queue {queue!r}{hint}; queues that can be scaled: {', '.join(known)}")
    if n < 0:
        raise ScaleError(f"concurrency must be 0 or more, not {n}")


def resize(node: str, current: int, target: int) -> None:
    """Grow or shrink one worker's pool by remote control; raises ScaleError if it refuses."""
    if target == current:
        return
    command = celery.control.pool_grow if target > current else celery.control.pool_shrink
    replies = command(abs(target - current), destination=[node], reply=True, timeout=5.0)
    answer = next((r[node] for r in replies or [] if node in r), None)
    if answer is None:
        raise ScaleError(f"worker {node} did not answer the resize (is it running?)")
    if "error" in answer:
        raise ScaleError(f"worker {node} refused to resize from {current} to {target}: {answer['error']}")


def supervised_by(queue: str) -> str | None:
    """The live supervisor that runs this queue's pool, if any."""
    with session_scope() as session:
        return session.scalar(
            select(PoolTarget.supervisor).where(
                PoolTarget.queue == queue,
                PoolTarget.supervisor.is_not(None),
                PoolTarget.supervisor_seen_at > func.now() - timedelta(seconds=SUPERVISOR_STALE_S),
            )
        )


def set_target(queue: str, n: int, set_by: str) -> None:
    processes = len(layout(n, get_settings().scale_max_per_process))
    with session_scope() as session:
        session.execute(
            insert(PoolTarget)
            .values(queue=queue, concurrency=n, processes=processes, set_by=set_by)
            .on_conflict_do_update(
                index_elements=[PoolTarget.queue],
                set_={"concurrency": n, "processes": processes, "set_by": set_by, "updated_at": func.now()},
            )
        )


def _sizes(workers: list[WorkerView]) -> dict[str, int]:
    return {w.name: w.concurrency or 0 for w in workers}


def _wait_for(queue: str, n: int, processes: int, timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        now = _sizes(worker_views().get(queue, []))
        if sum(now.values()) == n and len(now) == processes:
            return now
        if time.monotonic() > deadline:
            raise ScaleError(
                f"the supervisor did not bring {queue} to {n} within {timeout:g}s "
                f"(now {sum(now.values())} over {len(now)} process(es)); see its log"
            )
        time.sleep(0.5)


def scale(queue: str, n: int, *, set_by: str = "scale", timeout: float = 90.0) -> ScaleReport:
    validate(queue, n)
    before = _sizes(worker_views().get(queue, []))
    if supervised_by(queue):
        set_target(queue, n, set_by)
        after = _wait_for(queue, n, len(layout(n, get_settings().scale_max_per_process)), timeout)
        via: Literal["supervisor", "remote-control"] = "supervisor"
    else:
        if not before:
            raise ScaleError(
                f"no worker consumes {queue!r}: start its pool first "
                f"(switchboard workers up --queues {queue})"
            )
        if n < len(before):
            raise ScaleError(
                f"{queue} runs in {len(before)} worker process(es) outside `switchboard workers up`, and each "
                f"keeps at least one thread: scale to {len(before)} or more, or stop processes with your "
                "process manager"
            )
        for (node, current), target in zip(sorted(before.items()), layout_over(n, len(before)), strict=True):
            resize(node, current, target)
        set_target(queue, n, set_by)
        after = _sizes(worker_views().get(queue, []))
        via = "remote-control"
    names = sorted(set(before) | set(after))
    return ScaleReport(
        queue=queue,
        requested=n,
        before=sum(before.values()),
        after=sum(after.values()),
        processes_before=len(before),
        processes_after=len(after),
        via=via,
        changes=[
            WorkerChange(name=w, before=before.get(w), after=after.get(w))
            for w in names
            if before.get(w) != after.get(w)
        ],
    )


def layout_over(total: int, processes: int) -> list[int]:
    """`total` split evenly over a fixed number of processes."""
    base, extra = divmod(total, processes)
    return [base + (1 if i < extra else 0) for i in range(processes)]
