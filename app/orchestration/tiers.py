"""Model tiers per request: a cheap-tier step moves to the capable tier when a rule says the
request deserves it (high priority, a long text, or a router that was unsure), and every step of a
request that is not high priority drops to the cheap tier while its queue is past the first
degradation threshold (app/orchestration/admission/degradation.py)."""

from __future__ import annotations

from typing import Protocol

from app.config import get_settings
from app.orchestration.admission.degradation import Level, level


class RequestTraits(Protocol):
    # Read-only: a frozen dataclass (the workflow's RequestInfo) and a record row both fit.
    @property
    def priority(self) -> str: ...

    @property
    def text(self) -> str: ...

    @property
    def route_confidence(self) -> float | None: ...


def upgrade_reason(request: RequestTraits) -> str | None:
    s = get_settings()
    if s.upgrade_high_priority and request.priority == "high":
        return "high priority"
    if len(request.text) > s.upgrade_text_chars:
        return f"text longer than {s.upgrade_text_chars} characters"
    if request.route_confidence is not None and request.route_confidence < s.upgrade_below_confidence:
        return f"router confidence below {s.upgrade_below_confidence}"
    return None


def effective_tier(tier: str, request: RequestTraits, queue: str | None = None) -> str:
    if queue is not None and request.priority != "high" and level(queue) >= Level.CHEAP:
        return "cheap"
    if tier == "cheap" and upgrade_reason(request) is not None:
        return "capable"
    return tier
