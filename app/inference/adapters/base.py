"""The adapter interface: the engine's neutral call in, one provider API's HTTP exchange out.

The engine writes every call in OpenAI's chat shape (messages with `tool_calls` and `tool`
results, tools as `{"type": "function", "function": {...}}`, `tool_choice`, `response_format`).
An adapter turns that into its API's request (path, headers with the key, JSON body), its
answer into a `ChatResponse`, and its error answers into a failure class. The transport
(provider.py) and the retry policy (gateway.py) are the same for every API.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.errors import InferenceError
from app.inference.errors import FailureClass, classify_status
from app.inference.response import ChatResponse
from app.inference.sse import Event

Header = tuple[bytes, bytes]
JSON_HEADERS: list[Header] = [(b"Content-Type", b"application/json"), (b"Accept", b"application/json")]
STREAM_HEADERS: list[Header] = [(b"Content-Type", b"application/json"), (b"Accept", b"text/event-stream")]


@dataclass(frozen=True)
class ChatRequest:
    """One call as the engine asks for it, before any API's wire format."""

    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    max_tokens: int = 512
    temperature: float | None = None
    # OpenAI's forms: "auto", "none", "required" or {"type": "function", "function": {"name": ...}}.
    tool_choice: str | dict[str, Any] | None = None
    # OpenAI's forms: {"type": "json_object"} or {"type": "json_schema", "json_schema": {...}}.
    response_format: dict[str, Any] | None = None
    # Ask for the answer as Server-Sent Events (see StreamDecoder).
    stream: bool = False

    def headers(self) -> list[Header]:
        return STREAM_HEADERS if self.stream else JSON_HEADERS


@dataclass(frozen=True)
class HttpCall:
    """What to send: `path` (with any query) below the provider's base URL, headers, body."""

    path: str
    headers: list[Header]
    body: dict[str, Any]
    # What `parse` needs to remember about how the request was built.
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Failure:
    kind: FailureClass
    detail: str


class StreamFailed(InferenceError):
    """The API sent an error event in the middle of a stream."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.detail)
        self.failure = failure


class StreamDecoder(Protocol):
    """One streamed answer, read in batches of events (what one socket read brought): `feed`
    returns their text deltas in order and raises StreamFailed for an error event; `result` is
    the whole answer as `parse` would give it, or None while the API's final event has not
    arrived (the stream was cut off)."""

    def feed(self, events: list[Event]) -> list[str]: ...

    def result(self, rate_headers: dict[str, str]) -> ChatResponse | None: ...


class Adapter(Protocol):
    """One provider API. Stateless: one instance serves every thread."""

    kind: str

    def build(self, request: ChatRequest, base_url: str, api_key: str) -> HttpCall: ...

    def parse(
        self, request: ChatRequest, sent: HttpCall, payload: dict[str, Any], rate_headers: dict[str, str]
    ) -> ChatResponse: ...

    def failure(self, status: int, content: bytes) -> Failure: ...

    def decoder(self, request: ChatRequest, sent: HttpCall) -> StreamDecoder: ...


def error_body(content: bytes) -> tuple[str, dict[str, Any]]:
    """The error answer as text, and its `error` object when it is JSON (OpenAI, Azure and
    Anthropic all put one there)."""
    text = content.decode("utf-8", errors="replace")[:500]
    try:
        error = json.loads(content).get("error")
    except (ValueError, AttributeError):
        return text, {}
    return text, error if isinstance(error, dict) else {}


def openai_style_failure(status: int, content: bytes) -> Failure:
    text, error = error_body(content)
    return Failure(classify_status(status, text), str(error.get("message") or text))


def json_arguments(arguments: str) -> dict[str, Any]:
    """A tool call's arguments as an object (APIs that take them as JSON, not as a string)."""
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
