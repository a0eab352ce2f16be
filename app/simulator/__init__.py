"""Simulated OpenAI-compatible LLM provider.

It stands in for a real provider in the demo, tests and benchmarks. The engine
talks to it with the same httpx code it uses for real providers, so it speaks
the real chat-completions wire format, including the error bodies and
``x-ratelimit-*`` headers a client has to react to.

Answers are deterministic functions of the conversation so the engine's agent
loop (classify -> call tools -> answer) really runs. Rate limits, latency,
errors, timeouts and outages are what make it behave like a real provider.

Run it with ``python -m app.simulator --port 8765``. One module per part: `config` (settings and
the live fault switches), `wire` (the request format), `text` (helpers), `replies` (the
deterministic answers, with `labels`, `tool_calls`, `extraction` and `json_mode`), `ratelimit`,
`stats`, `state` (one provider's mutable state), `server` (the HTTP layer and `create_app`),
`stream` (streamed answers), `markers` (test aids), `cli`.
"""

from __future__ import annotations

from app.simulator.cli import main
from app.simulator.config import FaultUpdate, RuntimeSettings, SimulatorConfig, parse_model_limits
from app.simulator.json_mode import schema_instance
from app.simulator.markers import (
    BAD_JSON_MARKER,
    BAD_REQUEST_MARKER,
    CONTEXT_LENGTH_MARKER,
    CUT_STREAM_MARKER,
    FAIL_MARKER,
    SLOW_MARKER,
    TOOL_LOOP_MARKER,
)
from app.simulator.ratelimit import WINDOW_S, Level, RateDecision, RateLimitSnapshot, SlidingWindowLimiter
from app.simulator.replies import Reply, build_reply, completion_tokens, prompt_tokens
from app.simulator.server import create_app
from app.simulator.state import Simulator
from app.simulator.stats import AcceptedWindow, Stats, max_in_window
from app.simulator.text import estimate_tokens, format_reset_duration, key_fingerprint
from app.simulator.wire import ChatCompletionRequest

__all__ = [
    "BAD_JSON_MARKER",
    "BAD_REQUEST_MARKER",
    "CONTEXT_LENGTH_MARKER",
    "CUT_STREAM_MARKER",
    "FAIL_MARKER",
    "SLOW_MARKER",
    "TOOL_LOOP_MARKER",
    "WINDOW_S",
    "AcceptedWindow",
    "ChatCompletionRequest",
    "FaultUpdate",
    "Level",
    "RateDecision",
    "RateLimitSnapshot",
    "Reply",
    "RuntimeSettings",
    "Simulator",
    "SimulatorConfig",
    "SlidingWindowLimiter",
    "Stats",
    "build_reply",
    "completion_tokens",
    "create_app",
    "estimate_tokens",
    "format_reset_duration",
    "key_fingerprint",
    "main",
    "max_in_window",
    "parse_model_limits",
    "prompt_tokens",
    "schema_instance",
]
