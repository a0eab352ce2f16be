"""Per-tenant limits at the door, shared by every ingress process through PostgreSQL.

Requests per minute reuse the inference layer's GCRA limiter (one `rate_buckets` row per tenant).
The concurrent-request cap counts the tenant's unfinished requests in the record under a
transaction-level advisory lock held until the new row is committed, so two ingress processes
cannot both admit the last free slot; the lock serialises one tenant's inserts only (the publish
happens after it), never two tenants'.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import func, select, text

from app.errors import IngressError
from app.inference.limiter import Candidate, Demand, PostgresLimiter, Rate, WaitTooLong
from app.ingress.tenants import Principal
from app.state import Request, Status, connection_scope

UNFINISHED = (Status.ACCEPTED, Status.ROUTED, Status.RUNNING, Status.FAILED)
_limiter = PostgresLimiter()


class LimitExceeded(IngressError):
    """The tenant is over one of its limits; `retry_after_s` says when to try again."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def tenant_rate(rpm: int) -> Rate:
    # Up to a tenth of the minute's budget may come at once; any 60 s window admits at most `rpm`.
    burst = max(1.0, rpm * 0.1)
    return Rate(per_minute=max(rpm - burst, 1e-6), burst=burst)


def take_rpm_slot(principal: Principal) -> None:
    try:
        rate = tenant_rate(principal.rpm_limit)
        bucket = Demand(f"tenant:{principal.tenant}/rpm", 1, principal.rpm_limit, rate=rate)
        _limiter.reserve([Candidate("tenant", (bucket,))], max_wait_s=0.0)
    except WaitTooLong as exc:
        raise LimitExceeded(
            f"tenant {principal.tenant!r} is over its limit of {principal.rpm_limit} requests per minute; "
            f"retry in {exc.wait_s:.1f}s",
            exc.wait_s,
        ) from None


@contextmanager
def admission(principal: Principal) -> Iterator[None]:
    """Admit one request within the tenant's concurrency cap and rate; its row is written inside."""
    with connection_scope() as conn:
        conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtext('switchboard.tenant:' || :t))"),
            {"t": principal.tenant},
        )
        unfinished = (
            conn.scalar(
                select(func.count())
                .select_from(Request)
                .where(Request.tenant == principal.tenant, Request.status.in_(UNFINISHED))
            )
            or 0
        )
        if unfinished >= principal.max_concurrent:
            raise LimitExceeded(
                f"tenant {principal.tenant!r} has {unfinished} unfinished requests, its limit is "
                f"{principal.max_concurrent}; retry when some have finished",
                5.0,
            )
        take_rpm_slot(principal)
        yield
