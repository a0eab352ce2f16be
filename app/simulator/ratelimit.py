"""RPM/TPM limits over a sliding window, per key and model and per key across models, with the `x-ratelimit-*`
headers OpenAI sends."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from app.simulator.text import format_reset_duration

WINDOW_S = 60.0
# OpenAI always sends the x-ratelimit-* headers; when a limit is off we
# advertise a huge one so header-driven clients never throttle themselves.
UNLIMITED = 1_000_000_000


@dataclass(frozen=True)
class RateLimitSnapshot:
    limit_requests: int
    remaining_requests: int
    reset_requests_s: float
    limit_tokens: int
    remaining_tokens: int
    reset_tokens_s: float

    def headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit-requests": str(self.limit_requests),
            "x-ratelimit-remaining-requests": str(self.remaining_requests),
            "x-ratelimit-reset-requests": format_reset_duration(self.reset_requests_s),
            "x-ratelimit-limit-tokens": str(self.limit_tokens),
            "x-ratelimit-remaining-tokens": str(self.remaining_tokens),
            "x-ratelimit-reset-tokens": format_reset_duration(self.reset_tokens_s),
        }


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    snapshot: RateLimitSnapshot
    limit_type: Literal["requests", "tokens"] | None = None
    retry_after_s: float = 0.0
    limit: int = 0
    used: int = 0
    level: str | None = None  # which level refused: "account" or "model"


@dataclass(frozen=True)
class Level:
    """One limit a request must fit: per key across models ("account") or per key and model."""

    name: str
    bucket: tuple[str, str]
    rpm: int
    tpm: int


@dataclass
class _Window:
    events: deque[tuple[float, int]] = field(default_factory=deque)
    tokens: int = 0


class SlidingWindowLimiter:
    """RPM/TPM over a sliding 60 s window of admitted requests, per bucket.

    A bucket is (key fingerprint, model), like OpenAI's per-model limits, or
    (key fingerprint, "*") for a limit on the key across models. A request is
    admitted only if it fits every level, and then counts in each.
    Check-and-record happens without an await in between, so concurrent
    requests on the single event loop cannot both take the last slot.
    """

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self._window_s = window_s
        self._windows: dict[tuple[str, str], _Window] = {}

    def clear(self) -> None:
        self._windows.clear()

    def _window(self, bucket: tuple[str, str], now: float) -> _Window:
        window = self._windows.setdefault(bucket, _Window())
        while window.events and window.events[0][0] <= now - self._window_s:
            _, tokens = window.events.popleft()
            window.tokens -= tokens
        return window

    def snapshot(self, bucket: tuple[str, str], rpm: int, tpm: int, now: float) -> RateLimitSnapshot:
        window = self._window(bucket, now)
        # Reset = when the oldest counted request leaves the window, i.e. the
        # next moment capacity grows; that is what a waiting client needs.
        reset = window.events[0][0] + self._window_s - now if window.events else 0.0
        return RateLimitSnapshot(
            limit_requests=rpm or UNLIMITED,
            remaining_requests=max(0, rpm - len(window.events)) if rpm else UNLIMITED,
            reset_requests_s=reset,
            limit_tokens=tpm or UNLIMITED,
            remaining_tokens=max(0, tpm - window.tokens) if tpm else UNLIMITED,
            reset_tokens_s=reset,
        )

    def snapshot_levels(self, levels: Sequence[Level], now: float) -> RateLimitSnapshot:
        """The headers of the tightest limit (requests and tokens each), as OpenAI reports the
        limit that binds; a level without a limit reports none."""
        shots = [(lv, self.snapshot(lv.bucket, lv.rpm, lv.tpm, now)) for lv in levels]
        requests = min(shots, key=lambda s: (s[1].limit_requests, s[1].remaining_requests))[1]
        tokens = min(shots, key=lambda s: (s[1].limit_tokens, s[1].remaining_tokens))[1]
        return RateLimitSnapshot(
            requests.limit_requests,
            requests.remaining_requests,
            requests.reset_requests_s,
            tokens.limit_tokens,
            tokens.remaining_tokens,
            tokens.reset_tokens_s,
        )

    def acquire_levels(self, levels: Sequence[Level], tokens: int, now: float) -> RateDecision:
        """Admit only if every level has room; then the request counts at every level."""
        for level in levels:
            decision = self.check(level.bucket, tokens, level.rpm, level.tpm, now)
            if decision is not None:
                return RateDecision(
                    False,
                    self.snapshot_levels(levels, now),
                    decision.limit_type,
                    decision.retry_after_s,
                    decision.limit,
                    decision.used,
                    level.name,
                )
        for level in levels:
            window = self._window(level.bucket, now)
            window.events.append((now, tokens))
            window.tokens += tokens
        return RateDecision(True, self.snapshot_levels(levels, now))

    def check(
        self, bucket: tuple[str, str], tokens: int, rpm: int, tpm: int, now: float
    ) -> RateDecision | None:
        """The refusal if this bucket has no room, else None (nothing recorded)."""
        decision = self._decide(bucket, tokens, rpm, tpm, now)
        return None if decision.allowed else decision

    def acquire(self, bucket: tuple[str, str], tokens: int, rpm: int, tpm: int, now: float) -> RateDecision:
        decision = self._decide(bucket, tokens, rpm, tpm, now)
        if decision.allowed:
            window = self._window(bucket, now)
            window.events.append((now, tokens))
            window.tokens += tokens
            return RateDecision(True, self.snapshot(bucket, rpm, tpm, now))
        return decision

    def _decide(self, bucket: tuple[str, str], tokens: int, rpm: int, tpm: int, now: float) -> RateDecision:
        window = self._window(bucket, now)
        if rpm and len(window.events) >= rpm:
            # Enough of the oldest requests must expire to free one slot.
            oldest_needed = window.events[len(window.events) - rpm][0]
            return RateDecision(
                False,
                self.snapshot(bucket, rpm, tpm, now),
                "requests",
                oldest_needed + self._window_s - now,
                rpm,
                len(window.events),
            )
        if tpm and window.tokens + tokens > tpm:
            return RateDecision(
                False,
                self.snapshot(bucket, rpm, tpm, now),
                "tokens",
                self._token_retry(window, tokens, tpm, now),
                tpm,
                window.tokens,
            )
        return RateDecision(True, self.snapshot(bucket, rpm, tpm, now))

    def _token_retry(self, window: _Window, tokens: int, tpm: int, now: float) -> float:
        if tokens > tpm:
            return self._window_s  # never fits; like OpenAI, still a 429
        freed = 0
        for admitted_at, used in window.events:
            freed += used
            if window.tokens - freed + tokens <= tpm:
                return admitted_at + self._window_s - now
        return self._window_s
