"""Deterministic answers, a function of the conversation: a label for a classification prompt, tool calls
chosen and filled in from the user's text, a final answer quoting tool results, JSON of the asked schema;
and the token counts a reply costs."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from app.simulator.markers import BAD_JSON_MARKER, TOOL_LOOP_MARKER
from app.simulator.text import (
    WORD_RE,
    clean_text,
    content_words,
    count_matches,
    estimate_tokens,
    identifier_words,
    last_user_index,
    message_text,
    snippet,
    stable_hash,
    word_match,
)
from app.simulator.wire import ChatCompletionRequest, ChatMessage, FunctionDef, ToolDef

_EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_INVOICE_RE = re.compile(r"\bINV-\d+\b", re.IGNORECASE)
_OPTIONS_LINE_RE = re.compile(r"^\s*options\s*:\s*(.*\S)\s*$", re.IGNORECASE)
_DESCRIPTION_LINE_RE = re.compile(r"^\s*[-*]\s*([^:]+?)\s*:\s*(.*\S)\s*$")

# Real tickets rarely repeat the label name, so the two labels every demo uses
# get the words customers actually write.
_LABEL_SYNONYMS: dict[str, frozenset[str]] = {
    "billing": frozenset({"invoice", "charge", "refund", "payment", "card", "plan", "price", "subscription"}),
    "technical": frozenset(
        {"error", "bug", "api", "login", "crash", "outage", "timeout", "500", "integration", "webhook"}
    ),
}
_SYNONYM_WEIGHT = 2

KNOWN_COMPONENTS = ("api", "dashboard", "webhooks", "login", "billing", "email", "search")
_QUERY_PARAM_NAMES = frozenset({"query", "text", "question"})
_PROMPT_ROLES = frozenset({"system", "developer", "user"})


@dataclass(frozen=True)
class Reply:
    content: str | None
    tool_calls: list[dict[str, Any]]
    finish_reason: Literal["stop", "tool_calls", "length"]


@dataclass(frozen=True)
class _LabelPrompt:
    labels: list[str]
    descriptions: dict[str, str]


def _find_label_prompt(messages: Sequence[ChatMessage]) -> _LabelPrompt | None:
    prompt_texts = [message_text(m) for m in messages if m.role in _PROMPT_ROLES]
    labels: list[str] = []
    for text in prompt_texts:
        for line in text.splitlines():
            match = _OPTIONS_LINE_RE.match(line)
            if match:
                labels = [lb.strip(" .'\"`") for lb in match.group(1).split(",")]
                break
        if labels:
            break
    labels = [label for label in labels if label]
    if not labels:
        return None
    wanted = {label.lower() for label in labels}
    descriptions: dict[str, str] = {}
    for text in prompt_texts:
        for line in text.splitlines():
            match = _DESCRIPTION_LINE_RE.match(line)
            if match and match.group(1).lower() in wanted:
                descriptions.setdefault(match.group(1).lower(), match.group(2))
    return _LabelPrompt(labels, descriptions)


def _strip_prompt_lines(text: str, prompt: _LabelPrompt) -> str:
    # The options/description lines would otherwise match every label.
    wanted = {label.lower() for label in prompt.labels}
    kept = []
    for line in text.splitlines():
        if _OPTIONS_LINE_RE.match(line):
            continue
        match = _DESCRIPTION_LINE_RE.match(line)
        if match and match.group(1).lower() in wanted:
            continue
        kept.append(line)
    return "\n".join(kept)


def _classify(prompt: _LabelPrompt, user_text: str) -> str:
    text_words = content_words(_strip_prompt_lines(user_text, prompt))
    best_label, best_score = "unknown", 0
    for label in prompt.labels:
        key = label.lower()
        keywords = identifier_words(label) | content_words(prompt.descriptions.get(key, ""))
        score = count_matches(keywords, text_words)
        score += _SYNONYM_WEIGHT * count_matches(_LABEL_SYNONYMS.get(key, ()), text_words)
        # Strictly greater: ties go to the label listed first.
        if score > best_score:
            best_label, best_score = label, score
    return best_label


def _tool_match_words(text: str) -> set[str]:
    words = content_words(text)
    # "INV-42" and "a@b.com" name the entity even when the word is not written.
    if _INVOICE_RE.search(text):
        words.add("invoice")
    if _EMAIL_RE.search(text):
        words.add("email")
    return words


def _schema_type(schema: dict[str, Any]) -> str:
    declared = schema.get("type")
    if isinstance(declared, list):
        declared = next((t for t in declared if t != "null"), None)
    if isinstance(declared, str):
        return declared
    return "string" if "enum" in schema else "object"


class _Missing:
    """Sentinel: the value could not be taken from the user's text."""


_MISSING = _Missing()


def _component_from(text: str) -> str | None:
    for word in WORD_RE.findall(text.lower()):
        for component in KNOWN_COMPONENTS:
            if word_match(word, component):
                return component
    return None


def _extracted_value(name: str, schema: dict[str, Any], text: str) -> Any:
    """A value found in the text, or _MISSING."""
    lname = name.lower()
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        text_words = content_words(text)
        return next((v for v in enum if str(v).lower() in text_words), _MISSING)
    if _schema_type(schema) != "string":
        return _MISSING
    if "email" in lname:
        match = _EMAIL_RE.search(text)
        return match.group(0) if match else _MISSING
    if "invoice" in lname:
        match = _INVOICE_RE.search(text)
        return match.group(0).upper() if match else _MISSING
    if _QUERY_PARAM_NAMES & set(lname.split("_")):
        return clean_text(text)[:200]
    if "component" in lname or "service" in lname:
        return _component_from(text) or _MISSING
    return _MISSING


def _default_value(name: str, schema: dict[str, Any], text: str) -> Any:
    lname = name.lower()
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    kind = _schema_type(schema)
    if kind in ("integer", "number"):
        return 1
    if kind == "boolean":
        return False
    if kind == "array":
        return []
    if kind == "object":
        return {}
    if "component" in lname or "service" in lname:
        return "api"
    return clean_text(text)[:60]


def _tool_arguments(function: FunctionDef, text: str, forced: bool) -> dict[str, Any] | None:
    """Arguments for a call, or None when a required identifier is absent."""
    properties = function.parameters.get("properties") or {}
    required = set(function.parameters.get("required") or [])
    arguments: dict[str, Any] = {}
    for name, raw_schema in properties.items():
        schema = raw_schema if isinstance(raw_schema, dict) else {}
        value = _extracted_value(name, schema, text)
        if isinstance(value, _Missing):
            if name not in required:
                continue
            lname = name.lower()
            if ("email" in lname or "invoice" in lname) and _schema_type(schema) == "string":
                # Calling with a made-up identifier would be a hallucination;
                # a forced call still has to be made, so it gets an empty one.
                if not forced:
                    return None
                value = ""
            else:
                value = _default_value(name, schema, text)
        arguments[name] = value
    return arguments


def _forced_tool_name(tool_choice: str | dict[str, Any] | None) -> str | None:
    if isinstance(tool_choice, dict):
        function = tool_choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if isinstance(name, str):
            return name
    return None


def _choose_tools(
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
                _QUERY_PARAM_NAMES & set(p.lower().split("_")) for p in (f.parameters.get("properties") or {})
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


def _tool_call_payload(
    index: int, function: FunctionDef, arguments: dict[str, Any], text: str
) -> dict[str, Any]:
    encoded = json.dumps(arguments)
    call_id = "call_" + stable_hash(text, function.name, encoded, str(index))[:24]
    return {"id": call_id, "type": "function", "function": {"name": function.name, "arguments": encoded}}


def _tool_results(messages: Sequence[ChatMessage], after: int) -> list[tuple[str, str]]:
    names = {call.id: call.function.name for message in messages for call in (message.tool_calls or [])}
    return [
        (m.name or names.get(m.tool_call_id or "", "tool"), message_text(m))
        for m in messages[after + 1 :]
        if m.role == "tool"
    ]


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


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith(("#/$defs/", "#/definitions/")):
        schema = defs.get(ref.rsplit("/", 1)[-1], {})
    for key in ("anyOf", "oneOf"):
        options = [o for o in schema.get(key) or [] if isinstance(o, dict) and o.get("type") != "null"]
        if options:
            return _resolve(options[0], defs)
    return schema


def schema_instance(
    schema: dict[str, Any],
    text: str,
    answer: str,
    defs: dict[str, Any] | None = None,
    name: str = "",
    depth: int = 0,
) -> Any:
    """A value of the schema's shape: identifiers taken from the user's text where a property
    names one, the plain answer for free text, defaults for the rest."""
    defs = defs if defs is not None else {**schema.get("definitions", {}), **schema.get("$defs", {})}
    schema = _resolve(schema, defs)
    kind = _schema_type(schema)
    if kind == "object" and depth < 8:
        properties = schema.get("properties") or {}
        return {
            key: schema_instance(sub if isinstance(sub, dict) else {}, text, answer, defs, key, depth + 1)
            for key, sub in properties.items()
        }
    if kind == "array":
        items = schema.get("items")
        if not isinstance(items, dict):
            return []
        return [schema_instance(items, text, answer, defs, name, depth + 1)]
    found = _extracted_value(name, schema, text)
    if not isinstance(found, _Missing):
        return found
    if kind == "string" and "enum" not in schema:
        return answer
    return _default_value(name, schema, text)


def _json_reply(body: ChatCompletionRequest, reply: Reply, user_text: str) -> Reply:
    """JSON mode: the answer as one JSON object (of the schema's shape for `json_schema`), its
    identifiers read from the whole conversation's user messages, as a model reads them."""
    assert body.response_format is not None
    answer = reply.content or ""
    spec = body.response_format.json_schema or {}
    schema = spec.get("schema")
    said = clean_text("\n".join(message_text(m) for m in body.messages if m.role == "user"))
    value = schema_instance(schema, said, answer) if isinstance(schema, dict) else {"answer": answer}
    content = json.dumps(value)
    if BAD_JSON_MARKER in user_text:
        content = "Sure, here it is: " + content[: max(1, len(content) // 2)]
    return Reply(content, [], "stop")


def build_reply(body: ChatCompletionRequest) -> Reply:
    """The assistant's answer: a label, tool calls, or a final reply (as JSON in JSON mode)."""
    reply = _plain_reply(body)
    if body.json_mode and not reply.tool_calls:
        last_user = last_user_index(body.messages)
        user_text = message_text(body.messages[last_user]) if last_user is not None else ""
        return _json_reply(body, reply, user_text)
    return reply


def _plain_reply(body: ChatCompletionRequest) -> Reply:
    messages = body.messages
    last_user = last_user_index(messages)
    user_text = message_text(messages[last_user]) if last_user is not None else ""
    label_prompt = _find_label_prompt(messages)
    if label_prompt is not None:
        return _truncate(_classify(label_prompt, user_text), body)
    results = _tool_results(messages, last_user if last_user is not None else -1)
    looping = TOOL_LOOP_MARKER in user_text
    if body.tools and (not results or looping) and body.tool_choice != "none":
        chosen = _choose_tools(body.tools, "required" if looping else body.tool_choice, user_text)
        if chosen:
            calls = [_tool_call_payload(i, f, args, user_text) for i, (f, args) in enumerate(chosen)]
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
