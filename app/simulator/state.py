"""All mutable state of one simulated provider: live settings, limiter, statistics, the seeded fault draws,
recorded prompts."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.simulator.config import FaultUpdate, RuntimeSettings, SimulatorConfig
from app.simulator.ratelimit import SlidingWindowLimiter
from app.simulator.stats import Stats
from app.simulator.text import message_text
from app.simulator.wire import ChatCompletionRequest

MAX_RECORDED_PROMPTS = 20_000


@dataclass(frozen=True)
class FaultDraw:
    delay_s: float
    timeout: bool
    error_status: int | None


class Simulator:
    """All mutable state of one simulated provider."""

    def __init__(self, config: SimulatorConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self.clock = clock
        self.settings = RuntimeSettings(**config.model_dump(include=set(RuntimeSettings.model_fields)))
        self.limiter = SlidingWindowLimiter(config.rate_window_s)
        self.stats = Stats()
        self.rng = random.Random(config.seed)
        self.outage_until = 0.0
        self._keys = frozenset(config.api_keys)
        # Conversations whose first stream was cut off (CUT_STREAM_MARKER).
        self.cut_streams: set[str] = set()
        # Prompts received while recording (oldest dropped past the bound); None: not recording.
        self.prompts: deque[dict[str, Any]] | None = (
            deque(maxlen=MAX_RECORDED_PROMPTS) if config.record_prompts else None
        )

    def record(self, body: ChatCompletionRequest) -> None:
        if self.prompts is None:
            return
        self.prompts.append(
            {
                "model": body.model,
                "messages": [
                    {
                        "role": m.role,
                        "content": message_text(m),
                        "tool_calls": [
                            {"name": c.function.name, "arguments": c.function.arguments}
                            for c in m.tool_calls or []
                        ],
                    }
                    for m in body.messages
                ],
                "tools": [t.function.name for t in body.tools or []],
                "stream": body.stream,
            }
        )

    def key_allowed(self, key: str) -> bool:
        return bool(key) and (not self._keys or key in self._keys)

    def outage_remaining(self) -> float:
        return max(0.0, self.outage_until - self.clock())

    def reset(self) -> None:
        self.stats.reset()
        # Benchmarks reset between scenarios; a window left full by the last
        # scenario would make the next one start with 429s.
        self.limiter.clear()
        self.rng = random.Random(self.config.seed)
        self.cut_streams.clear()

    def apply_faults(self, update: FaultUpdate) -> None:
        for name in update.model_fields_set - {"outage_seconds"}:
            value = getattr(update, name)
            if value is not None:
                setattr(self.settings, name, value)
        if update.outage_seconds is not None:
            self.outage_until = self.clock() + update.outage_seconds

    def fault_view(self) -> dict[str, Any]:
        view: dict[str, Any] = self.settings.model_dump(exclude={"slow_marker_s"})
        view["outage_remaining_s"] = round(self.outage_remaining(), 3)
        return view

    def draw_fault(self, slow: bool) -> FaultDraw:
        s = self.settings
        # Fixed draw order keeps a sequential run reproducible for one seed.
        timeout = s.timeout_rate > 0 and self.rng.random() < s.timeout_rate
        error_status = None
        if not timeout and s.error_rate > 0 and self.rng.random() < s.error_rate:
            error_status = self.rng.choice((500, 502, 503))
        jitter = self.rng.uniform(-s.latency_jitter_ms, s.latency_jitter_ms) if s.latency_jitter_ms else 0.0
        delay = max(0.0, s.latency_ms + jitter) / 1000
        if slow:
            delay += s.slow_marker_s
        if timeout:
            delay += s.timeout_sleep_s
        return FaultDraw(delay, timeout, error_status)
