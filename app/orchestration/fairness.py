"""Fair share in the specialist queues: one tenant's burst cannot starve the others.

Each specialist queue is a RabbitMQ priority queue consumed with prefetch 1. When the router
dispatches a request, it counts the tenant's unfinished requests at that specialist; within
SWITCHBOARD_FAIR_SHARE they keep their priority, beyond it they go SWITCHBOARD_FAIR_SHARE_DEMOTION
levels lower. So a burst of N from one tenant takes its share at full priority and waits behind
everyone else for the rest, while nothing is refused and nothing is held back when the queue is
otherwise idle (a demoted message still runs as soon as a worker is free).
"""

from __future__ import annotations

from sqlalchemy import select

from app.config import get_settings
from app.orchestration import publisher
from app.orchestration.specialist import Specialist
from app.orchestration.topology import PRIORITIES
from app.state import autocommit_scope
from app.state.transitions import unfinished_at


def demoted(base: int, unfinished: int, share: int, levels: int) -> int:
    """The priority a request is dispatched with, given its tenant's unfinished count there."""
    if share <= 0 or unfinished <= share:
        return base
    return max(0, base - levels)


def dispatch_priority(tenant: str, specialist: str, priority: str) -> int:
    settings = get_settings()
    base = PRIORITIES[priority]
    if settings.fair_share <= 0:
        return base
    with autocommit_scope() as conn:  # one read: no transaction around it
        unfinished = conn.scalar(select(unfinished_at(tenant, specialist, settings.fair_share + 1))) or 0
    return demoted(base, unfinished, settings.fair_share, settings.fair_share_demotion)


def counted_priority(priority: str, unfinished: int) -> int:
    """The fair-share priority when the tenant's unfinished count at the specialist is known
    already (the router's decision statement counts them)."""
    settings = get_settings()
    return demoted(PRIORITIES[priority], unfinished, settings.fair_share, settings.fair_share_demotion)


def dispatch(
    request_id: str, specialist: Specialist, priority: str, tenant: str, *, unfinished: int | None = None
) -> None:
    """Send the request to its specialist's queue with its fair-share priority (the router after
    its decision, with the `unfinished` count it read; an approver's decision resuming a parked
    request, which counts here)."""
    publisher.publish(
        specialist.task_name,
        [request_id],
        specialist.queue,
        (
            counted_priority(priority, unfinished)
            if unfinished is not None
            else dispatch_priority(tenant, specialist.name, priority)
        ),
    )
