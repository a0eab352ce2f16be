"""What the API answers, as pydantic models (the schemas in the API's /openapi.json)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Priority = Literal["high", "normal", "low"]
# A request in one of these statuses changes no more.
FINISHED_STATUSES = frozenset({"succeeded", "dead_lettered"})


class _Answer(BaseModel):
    # Fields a newer API adds are ignored, so an older client keeps working.
    model_config = ConfigDict(extra="ignore", frozen=True)


class Accepted(_Answer):
    """The answer to a submit: the request's id, and whether an earlier one had its idempotency key."""

    id: str
    status: str
    duplicate: bool = False


class Tokens(_Answer):
    prompt: int = 0
    completion: int = 0
    total: int = 0


class RequestView(_Answer):
    """One request as the record has it: status, specialist, result, tokens, cost and timings."""

    id: str
    tenant: str
    status: str
    priority: str
    customer: str | None = None
    specialist: str | None = None
    route_confidence: float | None = None
    route_method: str | None = None
    attempts: int = 0
    result: dict[str, Any] | None = None
    error: str | None = None
    tokens: Tokens = Tokens()
    cost_usd: float = 0.0
    timings: dict[str, float | None] = {}
    accepted_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # While it waits: requests ahead of it in its queue and its estimated start.
    queue_position: int | None = None
    estimated_wait_s: float | None = None
    estimated_start: datetime | None = None

    @property
    def finished(self) -> bool:
        """Succeeded or dead-lettered: the status changes no more."""
        return self.status in FINISHED_STATUSES

    @property
    def reply(self) -> str | None:
        """The specialist's answer, once it succeeded."""
        return (self.result or {}).get("reply")


class Event(_Answer):
    at: datetime
    kind: str
    detail: dict[str, Any] = {}


class EventList(_Answer):
    events: list[Event]


class Health(_Answer):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = {}
