"""Simulated OpenAI-compatible LLM provider.

It stands in for a real provider in the demo, tests and benchmarks. The engine
talks to it with the same httpx code it uses for real providers, so it speaks
the real chat-completions wire format, including the error bodies and
``x-ratelimit-*`` headers a client has to react to.

Answers are deterministic functions of the conversation so the engine's agent
loop (classify -> call tools -> answer) really runs. Rate limits, latency,
errors, timeouts and outages are what make it behave like a real provider.

Run it with ``python -m app.simulator --port 8765``.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import hashlib
import json
import math
import random
import re
import sys
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.extras import unavailable

try:  # the `demo` extra: only the demo, the tests and benchmarks run the simulated provider
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route
except ModuleNotFoundError as exc:
    raise unavailable("demo", "the simulated provider (app.simulator)", exc) from exc

from app.simulator import stream as simulator_stream

__all__ = [
    "ChatCompletionRequest",
    "FaultUpdate",
    "SimulatorConfig",
    "build_reply",
    "create_app",
    "estimate_tokens",
    "format_reset_duration",
    "key_fingerprint",
    "main",
]

WINDOW_S = 60.0
MAX_RECORDED_PROMPTS = 20_000
# OpenAI always sends the x-ratelimit-* headers; when a limit is off we
# advertise a huge one so header-driven clients never throttle themselves.
UNLIMITED = 1_000_000_000

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
_MARKER_RE = re.compile(r"\[\[sim:[a-z_]+\]\]")

_WORD_RE = re.compile(r"[a-z0-9]+")
_EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_INVOICE_RE = re.compile(r"\bINV-\d+\b", re.IGNORECASE)
_OPTIONS_LINE_RE = re.compile(r"^\s*options\s*:\s*(.*\S)\s*$", re.IGNORECASE)
_DESCRIPTION_LINE_RE = re.compile(r"^\s*[-*]\s*([^:]+?)\s*:\s*(.*\S)\s*$")
_CAMEL_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")

_STOPWORDS = frozenset(
    {
        *("a", "an", "the", "and", "or", "but", "to", "of", "for", "in", "on", "at", "by", "with"),
        *("from", "as", "is", "are", "was", "were", "be", "been", "it", "its", "this", "that"),
        *("these", "those", "i", "me", "my", "we", "our", "you", "your", "he", "she", "they"),
        *("them", "their", "there", "here", "can", "could", "would", "should", "will", "do"),
        *("does", "did", "have", "has", "had", "not", "no", "so", "if", "then", "than", "about"),
        *("into", "any", "all", "some", "please", "hi", "hello", "thanks", "thank", "get", "up"),
        *("just", "also", "what", "when", "where", "which", "who", "how", "why", "am"),
    }
)

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

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]
_PROMPT_ROLES = frozenset({"system", "developer", "user"})


# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def parse_model_limits(value: Any) -> Any:
    """`model=RPM/TPM,...` (TPM may be left out) -> {model: (rpm, tpm)}; other values unchanged."""
    if not isinstance(value, str):
        return value
    table: dict[str, tuple[int, int]] = {}
    for item in filter(None, (p.strip() for p in value.split(","))):
        model, _, rest = item.partition("=")
        parts = rest.split("/")
        try:
            rpm, tpm = int(parts[0] or 0), int(parts[1]) if len(parts) > 1 and parts[1] else 0
        except ValueError:
            raise ValueError(f"model limit {item!r} must look like model=RPM/TPM") from None
        if not model.strip() or len(parts) > 2:
            raise ValueError(f"model limit {item!r} must look like model=RPM/TPM")
        table[model.strip()] = (rpm, tpm)
    return table


ModelLimits = Annotated[dict[str, tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]]], NoDecode]


class SimulatorConfig(BaseSettings):
    """Start-up configuration; every field can come from ``SWITCHBOARD_SIM_<NAME>``."""

    # NoDecode: list env vars are comma separated, not JSON, so shells stay simple.
    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_SIM_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535)
    models: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["sim-small", "sim-large"])
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Per key and model: every model gets its own budget (OpenAI's per-model limits).
    rpm: int = Field(default=0, ge=0)
    tpm: int = Field(default=0, ge=0)
    # Per key, across all models together (an account or key limit); 0: none.
    account_rpm: int = Field(default=0, ge=0)
    account_tpm: int = Field(default=0, ge=0)
    # Per key and model, for the models named ("model=RPM/TPM,..."), instead of rpm/tpm.
    model_limits: ModelLimits = Field(default_factory=dict)
    latency_ms: float = Field(default=0.0, ge=0)
    latency_jitter_ms: float = Field(default=0.0, ge=0)
    error_rate: float = Field(default=0.0, ge=0, le=1)
    timeout_rate: float = Field(default=0.0, ge=0, le=1)
    timeout_sleep_s: float = Field(default=120.0, ge=0)
    slow_marker_s: float = Field(default=5.0, ge=0)
    # Test aid (tests/integration/test_gateway.py): length of the RPM/TPM sliding window. Real
    # providers count per minute; a short window gives short retry-after values, so "wait as
    # told, then succeed" can be tested in seconds.
    rate_window_s: float = Field(default=WINDOW_S, gt=0)
    # Test aid (tests/integration/test_authority.py): keep every prompt received, for
    # `GET /admin/prompts`, so a test can check what the engine sent a provider. Also switched on
    # and off live with `POST /admin/prompts {"record": true}`.
    record_prompts: bool = False
    seed: int = 7

    @field_validator("models", "api_keys", mode="before")
    @classmethod
    def _parse_csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("model_limits", mode="before")
    @classmethod
    def _parse_model_limits(cls, value: Any) -> Any:
        return parse_model_limits(value)


class FaultUpdate(BaseModel):
    """Body of ``POST /admin/faults``; only the fields sent are changed."""

    # Forbid unknown fields: a typo must not silently leave a fault switched off.
    model_config = ConfigDict(extra="forbid")

    error_rate: float | None = Field(default=None, ge=0, le=1)
    timeout_rate: float | None = Field(default=None, ge=0, le=1)
    timeout_sleep_s: float | None = Field(default=None, ge=0)
    outage_seconds: float | None = Field(default=None, ge=0)
    latency_ms: float | None = Field(default=None, ge=0)
    latency_jitter_ms: float | None = Field(default=None, ge=0)
    rpm: int | None = Field(default=None, ge=0)
    tpm: int | None = Field(default=None, ge=0)
    account_rpm: int | None = Field(default=None, ge=0)
    account_tpm: int | None = Field(default=None, ge=0)
    # Replaces the whole table: {"model": [rpm, tpm]} or "model=RPM/TPM,...".
    model_limits: ModelLimits | None = None

    @field_validator("model_limits", mode="before")
    @classmethod
    def _parse_model_limits(cls, value: Any) -> Any:
        return parse_model_limits(value)


class PromptRecording(BaseModel):
    """Body of ``POST /admin/prompts``: start recording prompts afresh (true) or stop (false)."""

    model_config = ConfigDict(extra="forbid")

    record: bool


class RuntimeSettings(BaseModel):
    """The part of the configuration that ``/admin/faults`` may change live."""

    model_config = ConfigDict(validate_assignment=True)

    error_rate: float
    timeout_rate: float
    timeout_sleep_s: float
    latency_ms: float
    latency_jitter_ms: float
    rpm: int
    tpm: int
    account_rpm: int
    account_tpm: int
    model_limits: dict[str, tuple[int, int]]
    slow_marker_s: float

    def levels(self, key_id: str, model: str) -> list[Level]:
        """Every limit a request of this key and model must fit, account level first."""
        rpm, tpm = self.model_limits.get(model, (self.rpm, self.tpm))
        return [
            Level("account", (key_id, "*"), self.account_rpm, self.account_tpm),
            Level("model", (key_id, model), rpm, tpm),
        ]


# --------------------------------------------------------------------------
# Request models (OpenAI chat-completions wire format)
# --------------------------------------------------------------------------


class _Lenient(BaseModel):
    # Clients send many fields we do not model (seed, logprobs, user, ...).
    model_config = ConfigDict(extra="ignore")


class ContentPart(_Lenient):
    type: str
    text: str | None = None


class FunctionCall(_Lenient):
    name: str
    arguments: str = ""


class ToolCall(_Lenient):
    id: str
    type: str = "function"
    function: FunctionCall


class ChatMessage(_Lenient):
    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class FunctionDef(_Lenient):
    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=dict)


class ToolDef(_Lenient):
    type: str = "function"
    function: FunctionDef


class ResponseFormat(_Lenient):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


class ChatCompletionRequest(_Lenient):
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    tools: list[ToolDef] | None = None
    tool_choice: str | dict[str, Any] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    response_format: ResponseFormat | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None

    @property
    def json_mode(self) -> bool:
        return self.response_format is not None and self.response_format.type != "text"


# --------------------------------------------------------------------------
# Text helpers
# --------------------------------------------------------------------------


def estimate_tokens(text: str) -> int:
    """Deterministic token estimate (about four characters per token)."""
    return math.ceil(len(text) / 4)


def message_text(message: ChatMessage) -> str:
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    return "\n".join(part.text for part in message.content if part.text)


def _words(text: str) -> set[str]:
    return {w for w in _WORD_RE.findall(text.lower()) if w not in _STOPWORDS}


def _identifier_words(name: str) -> set[str]:
    return _words(_CAMEL_RE.sub(" ", name).replace("_", " ").replace("-", " "))


def _word_match(a: str, b: str) -> bool:
    # Prefix match stands in for stemming: charged~charge, errors~error.
    if a == b:
        return True
    short, long_ = (a, b) if len(a) <= len(b) else (b, a)
    return len(short) >= 4 and long_.startswith(short)


def _count_matches(keywords: Iterable[str], words: set[str]) -> int:
    return sum(1 for k in keywords if k in words or any(_word_match(k, w) for w in words))


def _clean(text: str) -> str:
    return " ".join(_MARKER_RE.sub(" ", text).split())


def _snippet(text: str, limit: int) -> str:
    cleaned = _clean(text)
    if len(cleaned) <= limit:
        return cleaned
    return cleaned[:limit].rstrip() + "..."


def _last_user_index(messages: Sequence[ChatMessage]) -> int | None:
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].role == "user":
            return index
    return None


def _stable_hash(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def key_fingerprint(api_key: str) -> str:
    """Stable, non-reversible id for a key, used in stats instead of the key."""
    return "key_" + _stable_hash(api_key)[:12]


def format_reset_duration(seconds: float) -> str:
    """Format a duration the way OpenAI's ``x-ratelimit-reset-*`` headers do."""
    total_ms = math.ceil(max(0.0, seconds) * 1000)
    if total_ms == 0:
        return "0s"
    if total_ms < 1000:
        return f"{total_ms}ms"
    hours, rest_ms = divmod(total_ms, 3_600_000)
    minutes, rest_ms = divmod(rest_ms, 60_000)
    whole, frac = divmod(rest_ms, 1000)
    secs = f"{whole}" + (f".{frac:03d}".rstrip("0") if frac else "")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


# --------------------------------------------------------------------------
# Deterministic answers
# --------------------------------------------------------------------------


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
    text_words = _words(_strip_prompt_lines(user_text, prompt))
    best_label, best_score = "unknown", 0
    for label in prompt.labels:
        key = label.lower()
        keywords = _identifier_words(label) | _words(prompt.descriptions.get(key, ""))
        score = _count_matches(keywords, text_words)
        score += _SYNONYM_WEIGHT * _count_matches(_LABEL_SYNONYMS.get(key, ()), text_words)
        # Strictly greater: ties go to the label listed first.
        if score > best_score:
            best_label, best_score = label, score
    return best_label


def _tool_match_words(text: str) -> set[str]:
    words = _words(text)
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
    for word in _WORD_RE.findall(text.lower()):
        for component in KNOWN_COMPONENTS:
            if _word_match(word, component):
                return component
    return None


def _extracted_value(name: str, schema: dict[str, Any], text: str) -> Any:
    """A value found in the text, or _MISSING."""
    lname = name.lower()
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        text_words = _words(text)
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
        return _clean(text)[:200]
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
    return _clean(text)[:60]


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
        (_count_matches(_identifier_words(f.name) | _words(f.description), words), -i, f)
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
    call_id = "call_" + _stable_hash(text, function.name, encoded, str(index))[:24]
    return {"id": call_id, "type": "function", "function": {"name": function.name, "arguments": encoded}}


def _tool_results(messages: Sequence[ChatMessage], after: int) -> list[tuple[str, str]]:
    names = {call.id: call.function.name for message in messages for call in (message.tool_calls or [])}
    return [
        (m.name or names.get(m.tool_call_id or "", "tool"), message_text(m))
        for m in messages[after + 1 :]
        if m.role == "tool"
    ]


def _final_answer(results: Sequence[tuple[str, str]], user_text: str) -> str:
    quote = _snippet(user_text, 60)
    parts = [f"Thanks for reaching out about '{quote}'." if quote else "Thanks for reaching out."]
    if results:
        found = "; ".join(f"{name} returned {_snippet(content, 80)}" for name, content in results)
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
    said = _clean("\n".join(message_text(m) for m in body.messages if m.role == "user"))
    value = schema_instance(schema, said, answer) if isinstance(schema, dict) else {"answer": answer}
    content = json.dumps(value)
    if BAD_JSON_MARKER in user_text:
        content = "Sure, here it is: " + content[: max(1, len(content) // 2)]
    return Reply(content, [], "stop")


def build_reply(body: ChatCompletionRequest) -> Reply:
    """The assistant's answer: a label, tool calls, or a final reply (as JSON in JSON mode)."""
    reply = _plain_reply(body)
    if body.json_mode and not reply.tool_calls:
        last_user = _last_user_index(body.messages)
        user_text = message_text(body.messages[last_user]) if last_user is not None else ""
        return _json_reply(body, reply, user_text)
    return reply


def _plain_reply(body: ChatCompletionRequest) -> Reply:
    messages = body.messages
    last_user = _last_user_index(messages)
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


# --------------------------------------------------------------------------
# Rate limiting
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class RateLimitSnapshot:
    limit_requests: int
    remaining_requests: int
    reset_requests_s: float
    limit_tokens: int
    remaining_tokens: int
    reset_tokens_s: float

    def headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit-requests": str(self.limit_requests),
            "x-ratelimit-remaining-requests": str(self.remaining_requests),
            "x-ratelimit-reset-requests": format_reset_duration(self.reset_requests_s),
            "x-ratelimit-limit-tokens": str(self.limit_tokens),
            "x-ratelimit-remaining-tokens": str(self.remaining_tokens),
            "x-ratelimit-reset-tokens": format_reset_duration(self.reset_tokens_s),
        }


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    snapshot: RateLimitSnapshot
    limit_type: Literal["requests", "tokens"] | None = None
    retry_after_s: float = 0.0
    limit: int = 0
    used: int = 0
    level: str | None = None  # which level refused: "account" or "model"


@dataclass(frozen=True)
class Level:
    """One limit a request must fit: per key across models ("account") or per key and model."""

    name: str
    bucket: tuple[str, str]
    rpm: int
    tpm: int


@dataclass
class _Window:
    events: deque[tuple[float, int]] = field(default_factory=deque)
    tokens: int = 0


class SlidingWindowLimiter:
    """RPM/TPM over a sliding 60 s window of admitted requests, per bucket.

    A bucket is (key fingerprint, model), like OpenAI's per-model limits, or
    (key fingerprint, "*") for a limit on the key across models. A request is
    admitted only if it fits every level, and then counts in each.
    Check-and-record happens without an await in between, so concurrent
    requests on the single event loop cannot both take the last slot.
    """

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self._window_s = window_s
        self._windows: dict[tuple[str, str], _Window] = {}

    def clear(self) -> None:
        self._windows.clear()

    def _window(self, bucket: tuple[str, str], now: float) -> _Window:
        window = self._windows.setdefault(bucket, _Window())
        while window.events and window.events[0][0] <= now - self._window_s:
            _, tokens = window.events.popleft()
            window.tokens -= tokens
        return window

    def snapshot(self, bucket: tuple[str, str], rpm: int, tpm: int, now: float) -> RateLimitSnapshot:
        window = self._window(bucket, now)
        # Reset = when the oldest counted request leaves the window, i.e. the
        # next moment capacity grows; that is what a waiting client needs.
        reset = window.events[0][0] + self._window_s - now if window.events else 0.0
        return RateLimitSnapshot(
            limit_requests=rpm or UNLIMITED,
            remaining_requests=max(0, rpm - len(window.events)) if rpm else UNLIMITED,
            reset_requests_s=reset,
            limit_tokens=tpm or UNLIMITED,
            remaining_tokens=max(0, tpm - window.tokens) if tpm else UNLIMITED,
            reset_tokens_s=reset,
        )

    def snapshot_levels(self, levels: Sequence[Level], now: float) -> RateLimitSnapshot:
        """The headers of the tightest limit (requests and tokens each), as OpenAI reports the
        limit that binds; a level without a limit reports none."""
        shots = [(lv, self.snapshot(lv.bucket, lv.rpm, lv.tpm, now)) for lv in levels]
        requests = min(shots, key=lambda s: (s[1].limit_requests, s[1].remaining_requests))[1]
        tokens = min(shots, key=lambda s: (s[1].limit_tokens, s[1].remaining_tokens))[1]
        return RateLimitSnapshot(
            requests.limit_requests,
            requests.remaining_requests,
            requests.reset_requests_s,
            tokens.limit_tokens,
            tokens.remaining_tokens,
            tokens.reset_tokens_s,
        )

    def acquire_levels(self, levels: Sequence[Level], tokens: int, now: float) -> RateDecision:
        """Admit only if every level has room; then the request counts at every level."""
        for level in levels:
            decision = self.check(level.bucket, tokens, level.rpm, level.tpm, now)
            if decision is not None:
                return RateDecision(
                    False,
                    self.snapshot_levels(levels, now),
                    decision.limit_type,
                    decision.retry_after_s,
                    decision.limit,
                    decision.used,
                    level.name,
                )
        for level in levels:
            window = self._window(level.bucket, now)
            window.events.append((now, tokens))
            window.tokens += tokens
        return RateDecision(True, self.snapshot_levels(levels, now))

    def check(
        self, bucket: tuple[str, str], tokens: int, rpm: int, tpm: int, now: float
    ) -> RateDecision | None:
        """The refusal if this bucket has no room, else None (nothing recorded)."""
        decision = self._decide(bucket, tokens, rpm, tpm, now)
        return None if decision.allowed else decision

    def acquire(self, bucket: tuple[str, str], tokens: int, rpm: int, tpm: int, now: float) -> RateDecision:
        decision = self._decide(bucket, tokens, rpm, tpm, now)
        if decision.allowed:
            window = self._window(bucket, now)
            window.events.append((now, tokens))
            window.tokens += tokens
            return RateDecision(True, self.snapshot(bucket, rpm, tpm, now))
        return decision

    def _decide(self, bucket: tuple[str, str], tokens: int, rpm: int, tpm: int, now: float) -> RateDecision:
        window = self._window(bucket, now)
        if rpm and len(window.events) >= rpm:
            # Enough of the oldest requests must expire to free one slot.
            oldest_needed = window.events[len(window.events) - rpm][0]
            return RateDecision(
                False,
                self.snapshot(bucket, rpm, tpm, now),
                "requests",
                oldest_needed + self._window_s - now,
                rpm,
                len(window.events),
            )
        if tpm and window.tokens + tokens > tpm:
            return RateDecision(
                False,
                self.snapshot(bucket, rpm, tpm, now),
                "tokens",
                self._token_retry(window, tokens, tpm, now),
                tpm,
                window.tokens,
            )
        return RateDecision(True, self.snapshot(bucket, rpm, tpm, now))

    def _token_retry(self, window: _Window, tokens: int, tpm: int, now: float) -> float:
        if tokens > tpm:
            return self._window_s  # never fits; like OpenAI, still a 429
        freed = 0
        for admitted_at, used in window.events:
            freed += used
            if window.tokens - freed + tokens <= tpm:
                return admitted_at + self._window_s - now
        return self._window_s


# --------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------


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


# --------------------------------------------------------------------------
# Simulator state
# --------------------------------------------------------------------------


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


# --------------------------------------------------------------------------
# HTTP layer
# --------------------------------------------------------------------------


def _error(
    status: int,
    message: str,
    error_type: str,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


_SERVER_ERRORS = {
    500: "The server had an error while processing your request. Sorry about that!",
    502: "Bad gateway.",
    503: "The server is overloaded or not ready yet.",
}


def _server_error(status: int, headers: dict[str, str]) -> JSONResponse:
    return _error(status, _SERVER_ERRORS.get(status, "Server error."), "server_error", headers=headers)


def _bearer_key(request: Request) -> str:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _unauthorized(key: str) -> JSONResponse:
    # Never echo the key back: error bodies end up in client logs.
    message = "Incorrect API key provided." if key else "You didn't provide an API key."
    return _error(401, message, "invalid_request_error", "invalid_api_key")


def _validation_error(exc: ValidationError) -> JSONResponse:
    first = exc.errors()[0]
    param = ".".join(str(part) for part in first.get("loc", ()))
    message = f"Invalid value for '{param}': {first.get('msg')}"
    return _error(400, message, "invalid_request_error", param=param or None)


def _rate_limited(decision: RateDecision, model: str) -> JSONResponse:
    kind = decision.limit_type or "requests"
    unit = "requests per min (RPM)" if kind == "requests" else "tokens per min (TPM)"
    wait = decision.retry_after_s
    scope = "your key across models" if decision.level == "account" else model
    message = (
        f"Rate limit reached for {scope} on {unit}: Limit {decision.limit}, "
        f"Used {decision.used}. Please try again in {format_reset_duration(wait)}."
    )
    headers = decision.snapshot.headers()
    headers["retry-after"] = str(max(1, math.ceil(wait)))
    headers["retry-after-ms"] = str(max(1, math.ceil(wait * 1000)))
    body = {"error": {"message": message, "type": kind, "param": None, "code": "rate_limit_exceeded"}}
    return JSONResponse(body, status_code=429, headers=headers)


def _completion_body(
    body: ChatCompletionRequest, reply: Reply, prompt: int, completion: int
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content, "refusal": None}
    if reply.tool_calls:
        message["tool_calls"] = reply.tool_calls
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.model,
        "system_fingerprint": "fp_switchboard_sim",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish_reason}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


async def _wait_for_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _sleep_unless_disconnected(request: Request, seconds: float) -> bool:
    """Sleep; return True if the client went away first.

    A client that timed out should not keep counting as in flight for the
    rest of a 120 s simulated hang.
    """
    if seconds <= 0:
        return False
    sleeper = asyncio.ensure_future(asyncio.sleep(seconds))
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        done, _ = await asyncio.wait({sleeper, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Also on cancellation (server shutdown), so no task outlives the request.
        sleeper.cancel()
        watcher.cancel()
    return watcher in done and sleeper not in done


async def _parse_body(request: Request) -> ChatCompletionRequest | JSONResponse:
    try:
        payload = await request.json()
    except ValueError:
        return _error(400, "We could not parse the JSON body of your request.", "invalid_request_error")
    try:
        body = ChatCompletionRequest.model_validate(payload)
    except ValidationError as exc:
        return _validation_error(exc)
    if body.stream_options is not None and not body.stream:
        message = "The 'stream_options' parameter is only allowed when 'stream' is enabled."
        return _error(400, message, "invalid_request_error", None, "stream_options")
    fmt = body.response_format
    if fmt is not None and fmt.type == "json_schema" and not (fmt.json_schema or {}).get("name"):
        message = "Missing required parameter: 'response_format.json_schema.name'."
        return _error(400, message, "invalid_request_error", "missing_required_parameter", "response_format")
    if (
        fmt is not None
        and fmt.type == "json_object"
        and not any("json" in message_text(m).lower() for m in body.messages)
    ):
        # OpenAI's own rule for JSON mode, so a prompt that would fail there fails here first.
        message = (
            "'messages' must contain the word 'json' in some form, to use 'response_format' of type "
            "'json_object'."
        )
        return _error(400, message, "invalid_request_error", None, "messages")
    return body


async def _complete(request: Request, sim: Simulator) -> Response:
    key = _bearer_key(request)
    if not sim.key_allowed(key):
        return _unauthorized(key)
    key_id = key_fingerprint(key)
    sim.stats.by_key[key_id] += 1
    parsed = await _parse_body(request)
    if isinstance(parsed, JSONResponse):
        return parsed
    body = parsed
    sim.record(body)
    sim.stats.by_model[body.model] += 1
    levels = sim.settings.levels(key_id, body.model)
    now = sim.clock()
    headers = sim.limiter.snapshot_levels(levels, now).headers()

    user_text = "\n".join(message_text(m) for m in body.messages if m.role == "user")
    # Markers and outages act before the limiter, like a gateway failing
    # before quota is charged, so poison requests fail the same way every time.
    if BAD_REQUEST_MARKER in user_text:
        sim.stats.faults["bad_request_marker"] += 1
        message = "The simulator was told to reject this request."
        return _error(400, message, "invalid_request_error", headers=headers)
    if CONTEXT_LENGTH_MARKER in user_text:  # test aid, see CONTEXT_LENGTH_MARKER
        sim.stats.faults["context_length_marker"] += 1
        message = (
            "This model's maximum context length is 8192 tokens. However, your messages resulted in "
            f"{prompt_tokens(body) + 8192} tokens. Please reduce the length of the messages."
        )
        return _error(400, message, "invalid_request_error", "context_length_exceeded", "messages", headers)
    if FAIL_MARKER in user_text:
        sim.stats.faults["fail_marker"] += 1
        return _server_error(500, headers)
    if sim.outage_until > now:
        sim.stats.faults["outage"] += 1
        return _server_error(503, headers)

    reply = build_reply(body)
    prompt, completion = prompt_tokens(body), completion_tokens(reply)
    decision = sim.limiter.acquire_levels(levels, prompt + completion, now)
    if not decision.allowed:
        sim.stats.rate_limited_by_type[decision.limit_type or "requests"] += 1
        sim.stats.rate_limited_by_level[decision.level or "model"] += 1
        return _rate_limited(decision, body.model)

    fault = sim.draw_fault(slow=SLOW_MARKER in user_text)
    if fault.timeout:
        sim.stats.faults["timeout"] += 1
    if body.stream and fault.error_status is None and not fault.timeout:
        return _streamed(sim, body, reply, prompt, completion, fault.delay_s, user_text, now, headers)
    if await _sleep_unless_disconnected(request, fault.delay_s):
        sim.stats.client_disconnects += 1
        return Response(status_code=499)  # nginx's "client closed request"; never sent
    headers = sim.limiter.snapshot_levels(levels, sim.clock()).headers()
    if fault.error_status is not None:
        sim.stats.faults["error"] += 1
        return _server_error(fault.error_status, headers)

    sim.stats.accepted.add(now)
    sim.stats.accepted_by_model.setdefault(body.model, AcceptedWindow()).add(now)
    sim.stats.prompt_tokens += prompt
    sim.stats.completion_tokens += completion
    headers["x-request-id"] = f"req_{uuid.uuid4().hex[:24]}"
    return JSONResponse(_completion_body(body, reply, prompt, completion), headers=headers)


def _streamed(
    sim: Simulator,
    body: ChatCompletionRequest,
    reply: Reply,
    prompt: int,
    completion: int,
    delay_s: float,
    user_text: str,
    now: float,
    headers: dict[str, str],
) -> Response:
    """The answer as OpenAI's SSE chunks, the latency spread over them (app/simulator/stream.py)."""
    cut = False
    if CUT_STREAM_MARKER in user_text:
        said = (json.dumps(m.model_dump(mode="json"), sort_keys=True) for m in body.messages)
        conversation = _stable_hash(*said)
        cut = conversation not in sim.cut_streams
        sim.cut_streams.add(conversation)
    if cut:
        sim.stats.faults["cut_stream"] += 1
    else:
        sim.stats.accepted.add(now)
        sim.stats.prompt_tokens += prompt
        sim.stats.completion_tokens += completion
    usage = (
        {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        if (body.stream_options or {}).get("include_usage")
        else None
    )
    headers = {**headers, "x-request-id": f"req_{uuid.uuid4().hex[:24]}", "cache-control": "no-cache"}
    return StreamingResponse(
        simulator_stream.chunks(
            body.model, reply.content, reply.tool_calls, reply.finish_reason, usage, delay_s, cut=cut
        ),
        media_type="text/event-stream",
        headers=headers,
    )


async def chat_completions(request: Request) -> Response:
    sim: Simulator = request.app.state.simulator
    sim.stats.enter()
    status = 500
    try:
        response = await _complete(request, sim)
        status = response.status_code
        return response
    finally:
        sim.stats.leave(status)


async def list_models(request: Request) -> Response:
    sim: Simulator = request.app.state.simulator
    key = _bearer_key(request)
    if not sim.key_allowed(key):
        return _unauthorized(key)
    data = [
        {"id": model, "object": "model", "created": 0, "owned_by": "switchboard-sim"}
        for model in sim.config.models
    ]
    return JSONResponse({"object": "list", "data": data})


async def healthz(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def admin_stats(request: Request) -> Response:
    return JSONResponse(request.app.state.simulator.stats.as_dict())


async def admin_reset(request: Request) -> Response:
    sim: Simulator = request.app.state.simulator
    sim.reset()
    return JSONResponse(sim.stats.as_dict())


AdminT = TypeVar("AdminT", bound=BaseModel)


async def _admin_body(request: Request, model: type[AdminT]) -> AdminT | JSONResponse:
    try:
        payload = await request.json()
    except ValueError:
        return _error(400, "We could not parse the JSON body of your request.", "invalid_request_error")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        return _validation_error(exc)


async def admin_faults(request: Request) -> Response:
    sim: Simulator = request.app.state.simulator
    if request.method == "POST":
        update = await _admin_body(request, FaultUpdate)
        if isinstance(update, JSONResponse):
            return update
        sim.apply_faults(update)
    return JSONResponse(sim.fault_view())


async def admin_prompts(request: Request) -> Response:
    """GET: the prompts recorded so far. POST {"record": bool}: start recording afresh, or stop."""
    sim: Simulator = request.app.state.simulator
    if request.method == "POST":
        recording = await _admin_body(request, PromptRecording)
        if isinstance(recording, JSONResponse):
            return recording
        sim.prompts = deque(maxlen=MAX_RECORDED_PROMPTS) if recording.record else None
    prompts = list(sim.prompts) if sim.prompts is not None else []
    return JSONResponse({"recording": sim.prompts is not None, "prompts": prompts})


def create_app(config: SimulatorConfig, *, clock: Callable[[], float] = time.monotonic) -> Starlette:
    """Build the ASGI app; ``clock`` is injectable so tests can move time."""
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/admin/stats", admin_stats, methods=["GET"]),
            Route("/admin/reset", admin_reset, methods=["POST"]),
            Route("/admin/faults", admin_faults, methods=["GET", "POST"]),
            Route("/admin/prompts", admin_prompts, methods=["GET", "POST"]),
        ]
    )
    app.state.simulator = Simulator(config, clock)
    return app


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def _arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app.simulator",
        description="Simulated OpenAI-compatible LLM provider (flags override SWITCHBOARD_SIM_* env vars).",
    )
    # default=None everywhere so only flags actually given override the env.
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--models", help="comma separated model names")
    parser.add_argument("--api-keys", dest="api_keys", help="comma separated accepted keys (empty: any key)")
    parser.add_argument("--rpm", type=int, help="per key and model")
    parser.add_argument("--tpm", type=int, help="per key and model")
    parser.add_argument("--account-rpm", dest="account_rpm", type=int, help="per key, across all models")
    parser.add_argument("--account-tpm", dest="account_tpm", type=int, help="per key, across all models")
    parser.add_argument("--model-limits", dest="model_limits", help="model=RPM/TPM,... per key and model")
    parser.add_argument("--latency-ms", dest="latency_ms", type=float)
    parser.add_argument("--latency-jitter-ms", dest="latency_jitter_ms", type=float)
    parser.add_argument("--error-rate", dest="error_rate", type=float)
    parser.add_argument("--timeout-rate", dest="timeout_rate", type=float)
    # Test aid: a short rate-limit window gives short retry-after values (see SimulatorConfig).
    parser.add_argument("--rate-window-s", dest="rate_window_s", type=float)
    parser.add_argument("--seed", type=int)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _arg_parser()
    args = parser.parse_args(argv)
    overrides = {name: value for name, value in vars(args).items() if value is not None}
    try:
        config = SimulatorConfig(**overrides)
    except ValidationError as exc:
        print(f"invalid simulator configuration: {exc}", file=sys.stderr)
        return 2
    # Key count only: key values must never reach a log.
    print(
        f"switchboard simulator on http://{config.host}:{config.port} "
        f"models={','.join(config.models)} keys_configured={len(config.api_keys)} "
        f"rpm={config.rpm} tpm={config.tpm} account_rpm={config.account_rpm} "
        f"account_tpm={config.account_tpm} model_limits={config.model_limits} latency_ms={config.latency_ms}",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(
        create_app(config),
        host=config.host,
        port=config.port,
        log_level="warning",
        access_log=False,
        workers=1,
        limit_concurrency=None,
        backlog=2048,
        # Simulated 120 s hangs must not hold up Ctrl-C.
        timeout_graceful_shutdown=1,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
