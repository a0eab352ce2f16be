"""OpenAI's streamed chat completion (`stream: true`, `stream_options.include_usage`): chunks of
`choices[0].delta` (content, and tool calls whose `function.arguments` arrive in pieces under
their `index`), `finish_reason`, a last chunk with `usage` and no choices, then `data: [DONE]`.
Azure OpenAI and OpenAI-compatible servers (vLLM, Ollama, LiteLLM, the simulator) send the same."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from app.inference.adapters.base import ChatRequest, Failure, StreamFailed
from app.inference.errors import classify_status
from app.inference.response import ChatResponse
from app.inference.sse import Event

# Keys of a chunk's delta that carry nothing but text (or the role, in the first chunk).
_TEXT_ONLY = {"content", "role", "refusal"}


class OpenAIChatStream:
    def __init__(
        self,
        request: ChatRequest,
        parse: Callable[[ChatRequest, dict[str, Any], dict[str, str]], ChatResponse],
    ) -> None:
        self._request = request
        self._parse = parse
        self._model: str | None = None
        self._text: list[str] = []
        self._calls: dict[int, dict[str, Any]] = {}
        self._finish: str | None = None
        self._usage: dict[str, Any] | None = None
        self._done = False

    def feed(self, events: list[Event]) -> list[str]:
        payloads = [e.data for e in events if e.data[:1] == "{" or e.data.strip() != "[DONE]"]
        self._done = self._done or len(payloads) < len(events)
        if len(payloads) == 1:
            text = self._chunk(json.loads(payloads[0]))
            return [text] if text else []
        # One parse for all that one read brought (a chunk per token, several per read): called
        # per chunk, json.loads cost more than the parsing itself. A payload that is not JSON
        # fails the whole parse, as it would alone.
        chunks = json.loads(f"[{','.join(payloads)}]") if payloads else []
        return [text for chunk in chunks if (text := self._chunk(chunk))]

    def _chunk(self, chunk: dict[str, Any]) -> str | None:
        choices = chunk.get("choices")
        if (
            choices
            and len(choices) == 1
            and "usage" not in chunk
            and "error" not in chunk
            and (delta := choices[0].get("delta")) is not None
            and delta.keys() <= _TEXT_ONLY
            and choices[0].get("index", 0) == 0
        ):
            # Nearly every chunk: one piece of text and nothing else to take from it.
            self._model = chunk.get("model") or self._model
            self._finish = choices[0].get("finish_reason") or self._finish
            content: str | None = delta.get("content")
            if content:
                self._text.append(content)
            return content or None
        if chunk.get("error"):
            # Some servers report a failure that happens mid-answer as a chunk of its own.
            error = chunk["error"] if isinstance(chunk["error"], dict) else {"message": str(chunk["error"])}
            message = str(error.get("message") or error)
            raise StreamFailed(Failure(classify_status(500, message), message))
        self._model = chunk.get("model") or self._model
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        text: str | None = None
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("content"):
                text = delta["content"]
                self._text.append(text)
            for piece in delta.get("tool_calls") or []:
                call = self._calls.setdefault(
                    int(piece.get("index", 0)), {"id": "", "name": "", "arguments": []}
                )
                function = piece.get("function") or {}
                call["id"] = piece.get("id") or call["id"]
                call["name"] = function.get("name") or call["name"]
                if function.get("arguments"):
                    call["arguments"].append(function["arguments"])
            self._finish = choice.get("finish_reason") or self._finish
        return text

    def result(self, rate_headers: dict[str, str]) -> ChatResponse | None:
        # [DONE] ends every stream; a server that closes after the finish_reason without it has
        # still sent the whole answer (its usage, if any, comes before the close).
        if not self._done and self._finish is None:
            return None
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self._text) or None}
        if self._calls:
            message["tool_calls"] = [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": "".join(c["arguments"])},
                }
                for _, c in sorted(self._calls.items())
            ]
        payload = {
            "model": self._model,
            "choices": [{"message": message, "finish_reason": self._finish}],
            "usage": self._usage,
        }
        return self._parse(self._request, payload, rate_headers)
