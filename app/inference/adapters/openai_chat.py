"""OpenAI-compatible `/chat/completions` (OpenAI, vLLM, Ollama, LiteLLM, the simulator): the
engine's own call shape, so the body is the call; `Authorization: Bearer` carries the key."""

from __future__ import annotations

from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Any

from app.config import get_settings
from app.inference.adapters.base import ChatRequest, Failure, HttpCall, openai_style_failure
from app.inference.adapters.openai_stream import OpenAIChatStream
from app.inference.response import ChatResponse, ToolCall, Usage


@lru_cache(maxsize=256)
def _takes_max_completion_tokens(model: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatchcase(model, p) for p in patterns)


def token_limit_name(model: str) -> str:
    """Newer OpenAI models (o-series, gpt-5) refuse `max_tokens` and want
    `max_completion_tokens`; most OpenAI-compatible servers know only the old name."""
    patterns = tuple(get_settings().max_completion_tokens_models)
    return "max_completion_tokens" if _takes_max_completion_tokens(model, patterns) else "max_tokens"


def chat_body(request: ChatRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": request.model,
        "messages": request.messages,
        token_limit_name(request.model): request.max_tokens,
    }
    if request.tools:
        body["tools"] = request.tools
        if request.tool_choice is not None:
            body["tool_choice"] = request.tool_choice
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.response_format is not None:
        body["response_format"] = request.response_format
    if request.stream:
        # Without include_usage a stream carries no token counts, and the limiter and the record
        # need them.
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def parse_chat(request: ChatRequest, payload: dict[str, Any], rate_headers: dict[str, str]) -> ChatResponse:
    choice = payload["choices"][0]
    message = choice.get("message") or {}
    calls = [
        ToolCall(id=c["id"], name=c["function"]["name"], arguments=c["function"].get("arguments") or "{}")
        for c in message.get("tool_calls") or []
    ]
    usage = payload.get("usage") or {}
    return ChatResponse(
        model=payload.get("model") or request.model,
        content=message.get("content"),
        tool_calls=calls,
        usage=Usage(
            prompt_tokens=usage.get("prompt_tokens") or 0,
            completion_tokens=usage.get("completion_tokens") or 0,
        ),
        finish_reason=choice.get("finish_reason"),
        rate_headers=rate_headers,
    )


class OpenAIChat:
    kind = "openai"

    def build(self, request: ChatRequest, base_url: str, api_key: str) -> HttpCall:
        headers = [(b"Authorization", f"Bearer {api_key}".encode()), *request.headers()]
        return HttpCall("chat/completions", headers, chat_body(request))

    def parse(
        self, request: ChatRequest, sent: HttpCall, payload: dict[str, Any], rate_headers: dict[str, str]
    ) -> ChatResponse:
        return parse_chat(request, payload, rate_headers)

    def failure(self, status: int, content: bytes) -> Failure:
        return openai_style_failure(status, content)

    def decoder(self, request: ChatRequest, sent: HttpCall) -> OpenAIChatStream:
        return OpenAIChatStream(request, parse_chat)
