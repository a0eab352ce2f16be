"""Anthropic's Messages API (`{base}/v1/messages`, `x-api-key`, `anthropic-version`).

From the engine's OpenAI-shaped call: system messages are lifted into `system`, assistant tool
calls become `tool_use` blocks and `tool` results `tool_result` blocks in the next user turn
(consecutive turns of one role merged, as the API wants them alternating), `max_tokens` is
always sent. A JSON-schema `response_format` becomes a tool the model must call (Anthropic's way
to structured output), whose input is returned as the content; JSON mode is an instruction.
"""

from __future__ import annotations

import json
from typing import Any

from app.config import get_settings
from app.inference.adapters.anthropic_stream import AnthropicMessagesStream
from app.inference.adapters.base import (
    ChatRequest,
    Failure,
    HttpCall,
    error_body,
    json_arguments,
)
from app.inference.errors import FailureClass, classify_status
from app.inference.response import ChatResponse, ToolCall, Usage

# stop_reason in the engine's (OpenAI's) words.
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "stop",
}
# error.type -> failure class, before the status code is looked at.
_ERROR_TYPES = {
    "rate_limit_error": FailureClass.RATE_LIMITED,
    "overloaded_error": FailureClass.SERVER,  # HTTP 529: retryable, counts toward the breaker
    "api_error": FailureClass.SERVER,
    "authentication_error": FailureClass.AUTH,
    "permission_error": FailureClass.AUTH,
}
_INPUT_TOKENS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
JSON_INSTRUCTION = "Reply with one JSON object and nothing else: no prose, no code fences."
STRUCTURED_TOOL = "structured_output"


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") == "text")


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    role = message.get("role")
    if role == "tool":
        return [
            {
                "type": "tool_result",
                "tool_use_id": message.get("tool_call_id") or "",
                "content": _text(message.get("content")),
            }
        ]
    blocks: list[dict[str, Any]] = []
    text = _text(message.get("content"))
    if text:
        blocks.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id") or "",
                "name": function.get("name") or "",
                "input": json_arguments(function.get("arguments") or "{}"),
            }
        )
    return blocks


def convert_messages(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """(system prompt, Anthropic messages) from OpenAI-shaped messages."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(_text(message.get("content")))
            continue
        wire_role = "assistant" if role == "assistant" else "user"  # tool results travel in a user turn
        blocks = _blocks(message)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == wire_role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": wire_role, "content": blocks})
    return "\n\n".join(s for s in system if s), turns


def _tool(function: dict[str, Any]) -> dict[str, Any]:
    schema = function.get("parameters") or {"type": "object", "properties": {}}
    tool = {"name": function["name"], "input_schema": schema}
    if function.get("description"):
        tool["description"] = function["description"]
    return tool


def _tool_choice(choice: str | dict[str, Any] | None) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        return {"type": "tool", "name": name} if name else None
    return {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}.get(choice)


def messages_body(request: ChatRequest) -> tuple[dict[str, Any], dict[str, Any]]:
    """(body, notes for parse)."""
    system, turns = convert_messages(request.messages)
    body: dict[str, Any] = {"model": request.model, "max_tokens": request.max_tokens, "messages": turns}
    notes: dict[str, Any] = {}
    tools = [_tool(t["function"]) for t in request.tools or [] if t.get("type", "function") == "function"]
    choice = _tool_choice(request.tool_choice) if tools else None
    fmt = request.response_format or {}
    if fmt.get("type") == "json_schema" and not tools:
        spec = fmt.get("json_schema") or {}
        tools = [
            {
                "name": STRUCTURED_TOOL,
                "description": "Give the answer in this structure.",
                "input_schema": spec.get("schema") or {"type": "object"},
            }
        ]
        choice = {"type": "tool", "name": STRUCTURED_TOOL}
        notes["structured"] = True
    elif fmt.get("type") in ("json_object", "json_schema"):
        schema = (fmt.get("json_schema") or {}).get("schema")
        shape = f"JSON schema: {json.dumps(schema)}" if schema else ""
        system = "\n\n".join(filter(None, [system, JSON_INSTRUCTION, shape]))
    if system:
        body["system"] = system
    if tools:
        body["tools"] = tools
        if choice is not None:
            body["tool_choice"] = choice
    if request.temperature is not None:
        # OpenAI's range is 0-2, Anthropic's 0-1: a workflow written for one runs on the other.
        body["temperature"] = min(request.temperature, 1.0)
    if request.stream:
        body["stream"] = True  # usage arrives in message_start and message_delta
    return body, notes


def parse_message(
    request: ChatRequest, payload: dict[str, Any], rate_headers: dict[str, str], structured: bool = False
) -> ChatResponse:
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in payload.get("content") or []:
        if block.get("type") == "text":
            texts.append(block.get("text") or "")
        elif block.get("type") == "tool_use":
            calls.append(
                ToolCall(
                    id=block.get("id") or "",
                    name=block.get("name") or "",
                    arguments=json.dumps(block.get("input") or {}),
                )
            )
    finish = _FINISH.get(payload.get("stop_reason") or "", payload.get("stop_reason"))
    content = "".join(texts) or None
    if structured:
        answer = next((c for c in calls if c.name == STRUCTURED_TOOL), None)
        if answer is not None:
            content, calls, finish = answer.arguments, [c for c in calls if c is not answer], "stop"
    usage = payload.get("usage") or {}
    # Prompt tokens as the limiter counts them: cache writes and reads are input too.
    prompt = sum(usage.get(k) or 0 for k in _INPUT_TOKENS)
    return ChatResponse(
        model=payload.get("model") or request.model,
        content=content,
        tool_calls=calls,
        usage=Usage(prompt_tokens=prompt, completion_tokens=usage.get("output_tokens") or 0),
        finish_reason=finish,
        rate_headers=rate_headers,
    )


def messages_failure(status: int, content: bytes) -> Failure:
    text, error = error_body(content)
    detail = str(error.get("message") or text)
    kind = _ERROR_TYPES.get(str(error.get("type")))
    if kind is None:
        if status == 529:
            kind = FailureClass.SERVER
        elif status == 400 and "prompt is too long" in detail.lower():
            kind = FailureClass.CONTEXT_LENGTH
        else:
            kind = classify_status(status, text)
    return Failure(kind, detail)


class AnthropicMessages:
    kind = "anthropic"

    def build(self, request: ChatRequest, base_url: str, api_key: str) -> HttpCall:
        body, notes = messages_body(request)
        # The SDK's base is the API's root; a base already ending in /v1 works too.
        path = "messages" if base_url.rstrip("/").endswith("/v1") else "v1/messages"
        headers = [
            (b"x-api-key", api_key.encode()),
            (b"anthropic-version", get_settings().anthropic_version.encode()),
            *request.headers(),
        ]
        return HttpCall(path, headers, body, notes)

    def parse(
        self, request: ChatRequest, sent: HttpCall, payload: dict[str, Any], rate_headers: dict[str, str]
    ) -> ChatResponse:
        return parse_message(request, payload, rate_headers, structured=bool(sent.notes.get("structured")))

    def failure(self, status: int, content: bytes) -> Failure:
        return messages_failure(status, content)

    def decoder(self, request: ChatRequest, sent: HttpCall) -> AnthropicMessagesStream:
        structured = bool(sent.notes.get("structured"))
        return AnthropicMessagesStream(
            request,
            lambda r, payload, headers: parse_message(r, payload, headers, structured=structured),
            messages_failure,
        )
