"""A streamed call through provider.chat against the scripted server (tests/unit/scripted_http.py),
as the stream pump reads it: the text as deltas and the whole answer returned, a refusal with its
class, its Retry-After and the key kept out of the message, and a stream cut off before its end."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable

import pytest

from app.inference import provider
from app.inference.adapters import ChatRequest, adapter_for
from app.inference.errors import FailureClass, ProviderError
from tests.unit.scripted_http import STREAM, Server, chunked

KEY = "sk-scripted-0123456789abcdef"
WORDS = ["The ", "export ", "works ", "again."]


def _event(delta: dict[str, object], finish: str | None = None) -> bytes:
    chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def _answer(cut: bool = False) -> Callable[[socket.socket], None]:
    def answer(conn: socket.socket) -> None:
        conn.sendall(STREAM)
        events = [_event({"role": "assistant", "content": ""})] + [_event({"content": w}) for w in WORDS]
        for number, event in enumerate(events):
            if cut and number == 3:
                conn.shutdown(socket.SHUT_RDWR)
                return
            time.sleep(0.05)
            conn.sendall(chunked([event])[:-5])
        usage = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
                 "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}}
        tail = _event({}, "stop") + b"data: " + json.dumps(usage).encode() + b"\n\ndata: [DONE]\n\n"
        conn.sendall(chunked([tail]))

    return answer


def _chat(port: int, deltas: list[str]) -> object:
    return provider.chat(adapter_for("openai"), base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, key_id="k1",
                         request=ChatRequest("m", [{"role": "user", "content": "hi"}]), on_delta=deltas.append)


def test_the_text_arrives_as_deltas_and_the_whole_answer_is_returned(serve: Callable[..., Server]) -> None:
    server = serve([_answer(), _answer()])
    for _ in range(2):
        deltas: list[str] = []
        response = _chat(server.port, deltas)
        assert "".join(deltas) == "".join(WORDS) == response.content  # type: ignore[attr-defined]
        assert response.usage.prompt_tokens == 12  # type: ignore[attr-defined]
    assert server.accepted == 1
    assert b'"stream":true' in server.requests[0].replace(b" ", b"")


def test_a_refusal_keeps_its_class_and_retry_after_and_never_the_key(serve: Callable[..., Server]) -> None:
    body = json.dumps({"error": {"message": f"Rate limit reached for key {KEY}", "type": "requests",
                                 "code": "rate_limit_exceeded"}}).encode()
    server = serve([lambda conn: conn.sendall(b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 7\r\n"
                                              b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                                              % (len(body), body))])
    deltas: list[str] = []
    with pytest.raises(ProviderError) as refused:
        _chat(server.port, deltas)
    assert refused.value.kind is FailureClass.RATE_LIMITED and refused.value.retry_after_s == 7
    assert "Rate limit reached" in str(refused.value)  # the body was read, and redacted
    assert refused.value.status == 429 and KEY not in str(refused.value) and deltas == []


def test_a_stream_cut_off_is_a_retryable_connection_failure_never_an_answer(serve: Callable[..., Server]) -> None:
    server = serve([_answer(cut=True)])
    deltas: list[str] = []
    with pytest.raises(ProviderError) as cut:
        _chat(server.port, deltas)
    assert cut.value.kind is FailureClass.CONNECTION and "".join(deltas) == "".join(WORDS[:2])
