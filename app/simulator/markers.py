"""Markers a test puts in a user message to make the simulated provider fail, stall or misbehave in one chosen
way."""

from __future__ import annotations

FAIL_MARKER = "[[sim:fail]]"
BAD_REQUEST_MARKER = "[[sim:bad_request]]"
SLOW_MARKER = "[[sim:slow]]"
# Test aid (tests/integration/test_gateway.py): a user message carrying this marker is answered
# with OpenAI's context-length error (HTTP 400, code context_length_exceeded), so the gateway's
# trim-and-retry path can be exercised on a real provider process.
CONTEXT_LENGTH_MARKER = "[[sim:context_length]]"
# Test aid (tests/integration/test_budgets.py): a conversation whose user message carries this
# marker is answered with tool calls whenever tools are offered, however many results came back:
# a runaway agent loop, which only a step cap or a budget stops.
TOOL_LOOP_MARKER = "[[sim:tool_loop]]"
# Test aid: in JSON mode, a last user message carrying this marker is answered with broken JSON,
# as models sometimes do; the step's repair prompt (without the marker) gets valid JSON.
BAD_JSON_MARKER = "[[sim:bad_json]]"
# Test aid: the first streamed answer to a conversation carrying this marker is cut off half-way
# (no finish_reason, no [DONE]); the same request streamed again gets the whole answer.
CUT_STREAM_MARKER = "[[sim:cut_stream]]"
