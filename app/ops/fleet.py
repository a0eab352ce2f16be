"""The local supervisor's pools, kept at their targets.

`switchboard workers up` runs one `Fleet`: each queue starts as one worker process at its
configured concurrency; a target in `pool_targets` (set by `switchboard scale` or the autoscaler)
is applied by starting processes first (capacity never dips), then resizing the processes it keeps
(remote control), then warm-stopping surplus ones (their running tasks finish; with acks_late and
prefetch 1 nothing else is held). The fleet heartbeats in `pool_targets` so `scale` knows it runs.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError

from app.config import Settings, get_settings
from app.ops.pools import concurrency_for, process_name, worker_spec
from app.ops.scale import ScaleError, layout_over, resize
from app.ops.supervisor import Supervisor
from app.state import PoolTarget, session_scope

log = logging.getLogger(__name__)


class Fleet:
    def __init__(self, supervisor: Supervisor, queues: list[str], settings: Settings | None = None) -> None:
        self.supervisor = supervisor
        self.queues = queues
        self.settings = settings or get_settings()
        self.ident = f"{socket.gethostname()}:{os.getpid()}"
        # Per queue, the concurrency of each of its processes, in process order.
        self.sizes: dict[str, list[int]] = {}
        self._stoppers: list[threading.Thread] = []
        self._claimed = False

    def node(self, queue: str, index: int) -> str:
        # Celery's `%h` in `-n` is this host's name.
        return f"{process_name(queue, index)}@{socket.gethostname()}"

    def start(self) -> None:
        for queue in self.queues:
            size = concurrency_for(queue, self.settings)
            self.supervisor.start(worker_spec(queue, size, self.settings))
            self.sizes[queue] = [size]
        try:
            self._claim()
        except SQLAlchemyError as exc:  # the pools run anyway; reconcile() claims once the record answers
            log.warning("could not record the pools' targets yet: %s", exc)

    def _claim(self) -> None:
        """Record this supervisor as running these queues, at their configured sizes: an old target
        does not carry over to a new supervisor."""
        with session_scope() as session:
            for queue, sizes in self.sizes.items():
                values = {
                    "concurrency": sum(sizes),
                    "processes": len(sizes),
                    "set_by": "workers up",
                    "supervisor": self.ident,
                    "supervisor_seen_at": func.now(),
                    "updated_at": func.now(),
                }
                session.execute(
                    insert(PoolTarget)
                    .values(queue=queue, **values)
                    .on_conflict_do_update(index_elements=[PoolTarget.queue], set_=values)
                )
        self._claimed = True

    def reconcile(self) -> list[str]:
        """Heartbeat, then apply any target that differs from what runs; returns what it did."""
        if not self._claimed:
            self._claim()
        with session_scope() as session:
            session.execute(
                update(PoolTarget)
                .where(PoolTarget.queue.in_(self.queues))
                .values(supervisor=self.ident, supervisor_seen_at=func.now())
            )
            targets = session.execute(
                select(PoolTarget.queue, PoolTarget.concurrency, PoolTarget.processes).where(
                    PoolTarget.queue.in_(self.queues)
                )
            ).all()
        done = []
        for queue, target, processes in targets:
            running = self.sizes.get(queue, [])
            if target != sum(running) or processes != len(running):
                # The process count comes with the target (see scale.set_target), so the command
                # that set it and this supervisor agree on the layout.
                done.append(self.apply(queue, layout_over(target, processes) if processes else []))
        return done

    def apply(self, queue: str, new: list[int]) -> str:
        old = list(self.sizes.get(queue, []))
        for index in range(len(old), len(new)):
            self.supervisor.start(worker_spec(queue, new[index], self.settings, index))
        kept = []
        for index in range(min(len(old), len(new))):
            if old[index] != new[index]:
                try:
                    resize(self.node(queue, index), old[index], new[index])
                except ScaleError as exc:
                    # Not answering yet (restarting after a crash): the next tick tries again.
                    log.warning("%s: %s", queue, exc)
                    new[index] = old[index]
                    continue
                # A crashed process comes back at its current size, not its first one.
                self.supervisor.specs[process_name(queue, index)] = worker_spec(
                    queue, new[index], self.settings, index
                )
            kept.append(new[index])
        for index in range(len(new), len(old)):
            # Warm shutdown can take as long as the longest running task: do not block the loop.
            stopper = threading.Thread(
                target=self.supervisor.stop,
                args=(process_name(queue, index),),
                kwargs={"timeout": self.settings.task_time_limit_s},
                daemon=True,
            )
            stopper.start()
            self._stoppers.append(stopper)
        self.sizes[queue] = kept + new[len(kept) : len(new)] if len(new) > len(old) else kept
        message = (
            f"{queue}: {sum(old)} over {len(old)} process(es) -> {sum(self.sizes[queue])} over "
            f"{len(self.sizes[queue])} ({self.sizes[queue]})"
        )
        log.info(message)
        return message

    def stop(self) -> None:
        """Warm-stop everything and give up the queues' supervision."""
        self.supervisor.stop(timeout=self.settings.task_time_limit_s)
        for stopper in self._stoppers:
            stopper.join()
        try:
            with session_scope() as session:
                session.execute(
                    update(PoolTarget)
                    .where(PoolTarget.supervisor == self.ident)
                    .values(supervisor=None, supervisor_seen_at=None)
                )
        except SQLAlchemyError:  # the database may be gone at shutdown; the heartbeat goes stale anyway
            log.warning("could not release the pool targets; they expire on their own")
