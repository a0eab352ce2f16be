"""What each queue holds and who serves it: depth from the broker, workers from Celery's inspect."""

from __future__ import annotations

from typing import Any

from amqp.exceptions import NotFound
from kombu import Connection
from pydantic import BaseModel

from app.celery_app import celery
from app.config import get_settings
from app.topology import all_queues


class WorkerView(BaseModel):
    name: str
    concurrency: int | None
    active: int


class QueueView(BaseModel):
    queue: str
    dead_letter: bool
    ready: int | None
    consumers: int | None
    workers: list[WorkerView]
    concurrency: int
    in_flight: int


def _depths() -> dict[str, tuple[int, int] | None]:
    found: dict[str, tuple[int, int] | None] = {}
    with Connection(get_settings().broker_url.get_secret_value()) as conn:
        for queue in all_queues():
            channel = conn.channel()
            try:
                ok = channel.queue_declare(queue=queue.name, passive=True)
                found[queue.name] = (ok.message_count, ok.consumer_count)
            except NotFound:
                found[queue.name] = None  # not declared yet: no worker has started
            finally:
                try:
                    channel.close()
                except Exception:  # the broker closes a channel whose passive declare failed
                    pass
    return found


def pools(timeout: float = 1.5) -> list[QueueView]:
    depths = _depths()
    inspector = celery.control.inspect(timeout=timeout)
    queues_of: dict[str, Any] = inspector.active_queues() or {}
    stats: dict[str, Any] = inspector.stats() or {}
    active: dict[str, Any] = inspector.active() or {}
    views = []
    for queue in all_queues():
        workers = [
            WorkerView(
                name=worker,
                concurrency=(stats.get(worker) or {}).get("pool", {}).get("max-concurrency"),
                active=len(active.get(worker) or []),
            )
            for worker, consumed in sorted(queues_of.items())
            if any(q.get("name") == queue.name for q in consumed)
        ]
        depth = depths.get(queue.name)
        views.append(
            QueueView(
                queue=queue.name,
                dead_letter=queue.name.endswith(".dlq"),
                ready=depth[0] if depth else None,
                consumers=depth[1] if depth else None,
                workers=workers,
                concurrency=sum(w.concurrency or 0 for w in workers),
                in_flight=sum(w.active for w in workers),
            )
        )
    return views


def queue_depths() -> dict[str, tuple[int, int] | None]:
    """(ready messages, consumers) per work queue and DLQ from the broker; None: not declared yet.
    The one place metrics read queue depth from."""
    return _depths()
