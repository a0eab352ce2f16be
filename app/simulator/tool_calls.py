"""Which tools the simulated model calls and with what arguments: the tools whose names and
descriptions match the user's words (at most two), a forced or required call, never a made-up
identifier; and the tool results a conversation already holds."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from app.simulator.extraction import (
    EMAIL_RE,
    INVOICE_RE,
    QUERY_PARAM_NAMES,
    Missing,
    default_value,
    extracted_value,
    schema_type,
)
from app.simulator.text import (
    content_words,
    count_matches,
    identifier_words,
    message_text,
    stable_hash,
)
from app.simulator.wire import ChatMessage, FunctionDef, ToolDef


def _tool_match_words(text: str) -> set[str]:
    words = content_words(text)
    # "INV-42" and "a@b.com" name the entity even when the word is not written.
    if INVOICE_RE.search(text):
        words.add("invoice")
    if EMAIL_RE.search(text):
        words.add("email")
    return words


def _tool_arguments(function: FunctionDef, text: str, forced: bool) -> dict[str, Any] | None:
    """Arguments for a call, or None when a required identifier is absent."""
    properties = function.parameters.get("properties") or {}
    required = set(function.parameters.get("required") or [])
    arguments: dict[str, Any] = {}
    for name, raw_schema in properties.items():
        schema = raw_schema if isinstance(raw_schema, dict) else {}
        value = extracted_value(name, schema, text)
        if isinstance(value, Missing):
            if name not in required:
                continue
            lname = name.lower()
            if ("email" in lname or "invoice" in lname) and schema_type(schema) == "string":
                # Calling with a made-up identifier would be a hallucination;
                # a forced call still has to be made, so it gets an empty one.
                if not forced:
                    return None
                value = ""
            else:
                value = default_value(name, schema, text)
        arguments[name] = value
    return arguments


def _forced_tool_name(tool_choice: str | dict[str, Any] | None) -> str | None:
    if isinstance(tool_choice, dict):
        function = tool_choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if isinstance(name, str):
            return name
    return None


def choose_tools(
    tools: Sequence[ToolDef], tool_choice: str | dict[str, Any] | None, text: str
) -> list[tuple[FunctionDef, dict[str, Any]]]:
    functions = [t.function for t in tools if t.type == "function"]
    forced = _forced_tool_name(tool_choice)
    if forced is not None:
        for function in functions:
            if function.name == forced:
                return [(function, _tool_arguments(function, text, forced=True) or {})]
    words = _tool_match_words(text)
    scored = [
        (count_matches(identifier_words(f.name) | content_words(f.description), words), -i, f)
        for i, f in enumerate(functions)
    ]
    ranked = [f for score, _, f in sorted(scored, key=lambda s: s[:2], reverse=True) if score > 0]
    if not ranked:
        # Like a real model that is unsure, reach for a search tool (one taking free text).
        ranked = [
            f
            for f in functions
            if any(
                QUERY_PARAM_NAMES & set(p.lower().split("_")) for p in (f.parameters.get("properties") or {})
            )
        ][:1]
    if tool_choice == "required":
        # The API promises at least one call, so fall back to the remaining tools.
        ranked += [f for f in functions if f not in ranked]
    chosen: list[tuple[FunctionDef, dict[str, Any]]] = []
    for function in ranked:
        arguments = _tool_arguments(function, text, forced=False)
        if arguments is not None:
            chosen.append((function, arguments))
        if len(chosen) == 2:
            break
    return chosen


def tool_call_payload(
    index: int, function: FunctionDef, arguments: dict[str, Any], text: str
) -> dict[str, Any]:
    encoded = json.dumps(arguments)
    call_id = "call_" + stable_hash(text, function.name, encoded, str(index))[:24]
    return {"id": call_id, "type": "function", "function": {"name": function.name, "arguments": encoded}}


def tool_results(messages: Sequence[ChatMessage], after: int) -> list[tuple[str, str]]:
    names = {call.id: call.function.name for message in messages for call in (message.tool_calls or [])}
    return [
        (m.name or names.get(m.tool_call_id or "", "tool"), message_text(m))
        for m in messages[after + 1 :]
        if m.role == "tool"
    ]
