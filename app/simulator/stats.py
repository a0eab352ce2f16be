"""What the simulated provider counts for `/admin/stats`: requests by status, key and model, faults, tokens,
and the most requests admitted in any window."""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from app.simulator.ratelimit import WINDOW_S


def max_in_window(sorted_times: Sequence[float], window_s: float) -> int:
    """The most timestamps any window of `window_s` seconds contains (`sorted_times` ascending);
    the rate-limit tests count the limiter's admissions with it too."""
    best, start = 0, 0
    for end, t in enumerate(sorted_times):
        while sorted_times[start] <= t - window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


class AcceptedWindow:
    """Max number of 200-answered requests in any sliding window.

    Requests are placed at their admission time (when the limiter let them
    in), so the figure is directly comparable to the RPM limit even when
    latency jitter makes answers finish out of order.
    """

    _COMPACT_AT = 50_000
    # A request answered this long after admission is assumed not to exist;
    # older points can then be folded into a running maximum.
    _SLACK_S = 600.0

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self._window_s = window_s
        self._times: list[float] = []
        self._folded_max = 0
        self._compact_at = self._COMPACT_AT

    def add(self, admitted_at: float) -> None:
        self._times.append(admitted_at)
        if len(self._times) >= self._compact_at:
            self._compact()

    def _compact(self) -> None:
        self._times.sort()
        self._folded_max = max(self._folded_max, max_in_window(self._times, self._window_s))
        cutoff = self._times[-1] - self._window_s - self._SLACK_S
        self._times = self._times[bisect.bisect_right(self._times, cutoff) :]
        # Grow the threshold so a sustained high rate does not sort every call.
        self._compact_at = max(self._COMPACT_AT, 2 * len(self._times))

    def max_count(self) -> int:
        return max(self._folded_max, max_in_window(sorted(self._times), self._window_s))


class Stats:
    def __init__(self) -> None:
        self.in_flight = 0
        self.reset()

    def reset(self) -> None:
        self.started = time.time()
        self.total_requests = 0
        self.by_status: Counter[int] = Counter()
        self.rate_limited_by_type: Counter[str] = Counter()
        self.rate_limited_by_level: Counter[str] = Counter()
        self.by_key: Counter[str] = Counter()
        self.by_model: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.client_disconnects = 0
        # Requests still running keep counting; zeroing would go negative.
        self.max_in_flight = self.in_flight
        self.accepted = AcceptedWindow()
        self.accepted_by_model: dict[str, AcceptedWindow] = {}

    def enter(self) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self, status: int) -> None:
        self.in_flight -= 1
        self.total_requests += 1
        self.by_status[status] += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "total_requests": self.total_requests,
            "by_status": {str(code): n for code, n in sorted(self.by_status.items())},
            "rate_limited": self.by_status[429],
            "rate_limited_by_type": dict(self.rate_limited_by_type),
            "rate_limited_by_level": dict(self.rate_limited_by_level),
            "by_key": dict(self.by_key),
            "by_model": dict(self.by_model),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "accepted_per_minute_max": self.accepted.max_count(),
            "accepted_per_minute_max_by_model": {
                m: w.max_count() for m, w in sorted(self.accepted_by_model.items())
            },
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "faults_injected": dict(self.faults),
            "client_disconnects": self.client_disconnects,
            "seconds_since_reset": round(time.time() - self.started, 3),
        }
