"""Counting admissions in sliding windows, for the rate-limit tests."""

from __future__ import annotations


def max_in_window(starts: list[float], window: float) -> int:
    """The most admissions any window of `window` seconds contains."""
    starts = sorted(starts)
    best, j = 0, 0
    for i, s in enumerate(starts):
        while starts[j] <= s - window:
            j += 1
        best = max(best, i - j + 1)
    return best
