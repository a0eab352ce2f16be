"""Anthropic's streamed Messages answer: `message_start` (model, input usage), per content block
`content_block_start` / `content_block_delta` (`text_delta`, or `input_json_delta` pieces of a
tool's input) / `content_block_stop`, `message_delta` (stop reason, output usage), then
`message_stop`; `ping` in between and `error` (e.g. overloaded_error) at any point."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from app.inference.adapters.base import ChatRequest, Failure, StreamFailed
from app.inference.response import ChatResponse
from app.inference.sse import Event


class AnthropicMessagesStream:
    def __init__(
        self,
        request: ChatRequest,
        parse: Callable[[ChatRequest, dict[str, Any], dict[str, str]], ChatResponse],
        failure: Callable[[int, bytes], Failure],
    ) -> None:
        self._request = request
        self._parse = parse
        self._failure = failure
        self._message: dict[str, Any] = {}
        self._blocks: dict[int, dict[str, Any]] = {}
        self._usage: dict[str, Any] = {}
        self._stop: str | None = None
        self._done = False

    def feed(self, events: list[Event]) -> list[str]:
        return [text for event in events if (text := self._event(event.event, event.data))]

    def _event(self, event: str, data: str) -> str | None:
        payload = json.loads(data)
        kind = payload.get("type") or event
        if kind == "error":
            # Reported like the HTTP error body it would have been: the same classification.
            raise StreamFailed(self._failure(500, data.encode()))
        if kind == "message_start":
            self._message = payload.get("message") or {}
            self._usage.update(self._message.get("usage") or {})
        elif kind == "content_block_start":
            block = dict(payload.get("content_block") or {})
            block["_json"] = []
            self._blocks[int(payload.get("index", len(self._blocks)))] = block
        elif kind == "content_block_delta":
            block = self._blocks.setdefault(
                int(payload.get("index", 0)), {"type": "text", "text": "", "_json": []}
            )
            delta = payload.get("delta") or {}
            if delta.get("type") == "text_delta":
                block["text"] = (block.get("text") or "") + delta.get("text", "")
                return delta.get("text") or None
            if delta.get("type") == "input_json_delta":
                block["_json"].append(delta.get("partial_json") or "")
        elif kind == "message_delta":
            self._stop = (payload.get("delta") or {}).get("stop_reason") or self._stop
            self._usage.update({k: v for k, v in (payload.get("usage") or {}).items() if v is not None})
        elif kind == "message_stop":
            self._done = True
        return None

    def result(self, rate_headers: dict[str, str]) -> ChatResponse | None:
        if not self._done:
            return None
        content = []
        for _, block in sorted(self._blocks.items()):
            pieces = block.pop("_json", [])
            if block.get("type") == "tool_use" and pieces:
                block["input"] = json.loads("".join(pieces))
            content.append(block)
        payload = {
            "model": self._message.get("model"),
            "content": content,
            "stop_reason": self._stop,
            "usage": self._usage,
        }
        return self._parse(self._request, payload, rate_headers)
