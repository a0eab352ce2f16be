"""Reads a provider's rate-limit headers: how long the caller's key and model must pause, and the
limits the provider says it enforces.

OpenAI: x-ratelimit-remaining-{requests,tokens} with x-ratelimit-reset-* durations ("1s", "6m0s",
"850ms"); Anthropic: anthropic-ratelimit-{requests,tokens}-remaining with -reset RFC 3339 times;
both: retry-after (seconds) and retry-after-ms.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_SCALE = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: str) -> float | None:
    value = value.strip()
    try:
        return float(value)
    except ValueError:
        pass
    parts = _PART.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    return sum(float(n) * _SCALE[u] for n, u in parts)


def _until(value: str, now: datetime) -> float | None:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return parse_duration(value)
    return max(0.0, (moment - now).total_seconds())


def retry_after(headers: Mapping[str, str]) -> float | None:
    if "retry-after-ms" in headers:
        try:
            return float(headers["retry-after-ms"]) / 1000
        except ValueError:
            pass
    if "retry-after" in headers:
        return parse_duration(headers["retry-after"])
    return None


def exhausted_for(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds until the provider will accept again when a limit is used up, else None."""
    now = now or datetime.now(UTC)
    waits = []
    for kind in ("requests", "tokens"):
        for remaining_name, reset_name in (
            (f"x-ratelimit-remaining-{kind}", f"x-ratelimit-reset-{kind}"),
            (f"anthropic-ratelimit-{kind}-remaining", f"anthropic-ratelimit-{kind}-reset"),
        ):
            remaining = headers.get(remaining_name)
            if remaining is None:
                continue
            try:
                if int(float(remaining)) > 0:
                    continue
            except ValueError:
                continue
            reset = headers.get(reset_name)
            wait = _until(reset, now) if reset else None
            if wait is not None:
                waits.append(wait)
    return max(waits) if waits else None


@dataclass(frozen=True)
class ReportedLimits:
    """The limits (per minute) a provider says apply to the call's key and model; None: not sent."""

    requests: int | None = None
    tokens: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None


def _count(headers: Mapping[str, str], *names: str) -> int | None:
    for name in names:
        value = headers.get(name)
        if value is None:
            continue
        try:
            count = int(float(value))
        except ValueError:
            continue
        if count > 0:
            return count
    return None


def reported_limits(headers: Mapping[str, str]) -> ReportedLimits:
    """OpenAI's x-ratelimit-limit-{requests,tokens}; Anthropic's anthropic-ratelimit-requests-limit,
    -input-tokens-limit, -output-tokens-limit and -tokens-limit (the most restrictive of the two).
    `tokens` is a limit on input and output together, as the limiter counts them: for Anthropic
    the input limit (a call's tokens are mostly input; its far smaller output limit would starve
    the input), else its most restrictive one."""
    return ReportedLimits(
        requests=_count(headers, "x-ratelimit-limit-requests", "anthropic-ratelimit-requests-limit"),
        tokens=_count(
            headers,
            "x-ratelimit-limit-tokens",
            "anthropic-ratelimit-input-tokens-limit",
            "anthropic-ratelimit-tokens-limit",
        ),
        input_tokens=_count(headers, "anthropic-ratelimit-input-tokens-limit"),
        output_tokens=_count(headers, "anthropic-ratelimit-output-tokens-limit"),
    )
