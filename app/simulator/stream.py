"""The simulated provider's streamed answers: OpenAI's chat-completion chunks as Server-Sent
Events, with the call's latency spread over them (a share before the first token, the rest evenly
between the pieces), a usage chunk when `stream_options.include_usage` asks for it, then
`data: [DONE]`. A stream told to be cut off ends half-way without its final event."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

# Share of the call's latency before the first token; real providers spend most of a short
# answer's time before it (prompt processing) and the rest on generation.
FIRST_TOKEN_SHARE = 0.3
# Pieces of text per answer at most; longer answers get longer pieces.
MAX_PIECES = 40
_PIECE = re.compile(r"\S+\s*|\s+")


def pieces(text: str) -> list[str]:
    """The text in word-sized pieces (at most MAX_PIECES), which join back to the same text."""
    words = _PIECE.findall(text)
    if not words:
        return []
    per = -(-len(words) // MAX_PIECES)
    return ["".join(words[i : i + per]) for i in range(0, len(words), per)]


def _frame(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


async def chunks(
    model: str,
    content: str | None,
    tool_calls: list[dict[str, Any]],
    finish_reason: str,
    usage: dict[str, int] | None,
    delay_s: float,
    *,
    cut: bool = False,
) -> AsyncIterator[bytes]:
    ident, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _frame(
            {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_switchboard_sim",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
        )

    deltas: list[dict[str, Any]] = [{"content": p} for p in pieces(content or "")]
    for index, call in enumerate(tool_calls):
        arguments = call["function"]["arguments"]
        half = len(arguments) // 2
        deltas.append(
            {
                "tool_calls": [
                    {
                        "index": index,
                        "id": call["id"],
                        "type": "function",
                        "function": {"name": call["function"]["name"], "arguments": ""},
                    }
                ]
            }
        )
        deltas += [
            {"tool_calls": [{"index": index, "function": {"arguments": part}}]}
            for part in (arguments[:half], arguments[half:])
            if part
        ]
    await asyncio.sleep(delay_s * FIRST_TOKEN_SHARE)
    yield chunk({"role": "assistant", "content": "", "refusal": None})
    gap = delay_s * (1 - FIRST_TOKEN_SHARE) / max(1, len(deltas))
    for number, delta in enumerate(deltas):
        if cut and number >= max(1, len(deltas) // 2):
            return  # the connection drops: no finish_reason, no usage, no [DONE]
        if number:
            await asyncio.sleep(gap)
        yield chunk(delta)
    yield chunk({}, finish_reason)
    if usage is not None:
        yield _frame(
            {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_switchboard_sim",
                "choices": [],
                "usage": usage,
            }
        )
    yield _frame("[DONE]")
