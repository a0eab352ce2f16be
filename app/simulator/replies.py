"""Deterministic answers, a function of the conversation: a label for a classification prompt
(labels.py), tool calls (tool_calls.py), else a final answer quoting the tool results, as JSON of
the asked schema in JSON mode (json_mode.py); and the token counts a reply costs."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from app.simulator.json_mode import json_content
from app.simulator.labels import classify, find_label_prompt
from app.simulator.markers import TOOL_LOOP_MARKER
from app.simulator.text import (
    estimate_tokens,
    last_user_index,
    message_text,
    snippet,
)
from app.simulator.tool_calls import choose_tools, tool_call_payload, tool_results
from app.simulator.wire import ChatCompletionRequest


@dataclass(frozen=True)
class Reply:
    content: str | None
    tool_calls: list[dict[str, Any]]
    finish_reason: Literal["stop", "tool_calls", "length"]


def _final_answer(results: Sequence[tuple[str, str]], user_text: str) -> str:
    quote = snippet(user_text, 60)
    parts = [f"Thanks for reaching out about '{quote}'." if quote else "Thanks for reaching out."]
    if results:
        found = "; ".join(f"{name} returned {snippet(content, 80)}" for name, content in results)
        parts.append(f"Here is what I found: {found}.")
        parts.append("Based on this I have taken the next steps on your request.")
    else:
        parts.append("I have reviewed your request and it is being handled.")
    parts.append("Let me know if there is anything else I can help with.")
    return " ".join(parts)


def _truncate(content: str, body: ChatCompletionRequest) -> Reply:
    limit = body.max_completion_tokens or body.max_tokens
    if limit is not None and estimate_tokens(content) > limit:
        return Reply(content[: limit * 4], [], "length")
    return Reply(content, [], "stop")


def build_reply(body: ChatCompletionRequest) -> Reply:
    """The assistant's answer: a label, tool calls, or a final reply (as JSON in JSON mode)."""
    reply = _plain_reply(body)
    if body.json_mode and not reply.tool_calls:
        last_user = last_user_index(body.messages)
        user_text = message_text(body.messages[last_user]) if last_user is not None else ""
        return Reply(json_content(body, reply.content or "", user_text), [], "stop")
    return reply


def _plain_reply(body: ChatCompletionRequest) -> Reply:
    messages = body.messages
    last_user = last_user_index(messages)
    user_text = message_text(messages[last_user]) if last_user is not None else ""
    label_prompt = find_label_prompt(messages)
    if label_prompt is not None:
        return _truncate(classify(label_prompt, user_text), body)
    results = tool_results(messages, last_user if last_user is not None else -1)
    looping = TOOL_LOOP_MARKER in user_text
    if body.tools and (not results or looping) and body.tool_choice != "none":
        chosen = choose_tools(body.tools, "required" if looping else body.tool_choice, user_text)
        if chosen:
            calls = [tool_call_payload(i, f, args, user_text) for i, (f, args) in enumerate(chosen)]
            return Reply(None, calls, "tool_calls")
    return _truncate(_final_answer(results, user_text), body)


def prompt_tokens(body: ChatCompletionRequest) -> int:
    chars = 0
    for message in body.messages:
        chars += len(message_text(message))
        for call in message.tool_calls or []:
            chars += len(call.function.name) + len(call.function.arguments)
    if body.tools:
        schemas = [tool.model_dump(mode="json") for tool in body.tools]
        chars += len(json.dumps(schemas, sort_keys=True))
    return max(1, math.ceil(chars / 4))


def completion_tokens(reply: Reply) -> int:
    chars = len(reply.content or "")
    for call in reply.tool_calls:
        chars += len(call["function"]["name"]) + len(call["function"]["arguments"])
    return max(1, math.ceil(chars / 4))
