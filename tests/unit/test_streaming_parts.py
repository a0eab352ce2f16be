"""Streaming's parts without services: the SSE reader over any split of the bytes, each API's
stream decoder on recorded bodies (text, tool-call argument deltas, usage, a stream cut off, an
error event), the transport against the simulator, the reader's event merging and the sender's
merging of deltas."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import uvicorn

from app.inference import provider
from app.inference.adapters import ChatRequest, adapter_for
from app.inference.adapters.base import HttpCall, StreamFailed
from app.inference.errors import FailureClass, ProviderError
from app.inference.sse import EventReader, events
from app.orchestration import live
from app.orchestration.live_follow import Follower
from app.simulator import CUT_STREAM_MARKER, SimulatorConfig, create_app
from app.simulator.stream import pieces

RECORDED = Path(__file__).resolve().parents[1] / "data" / "streams"


def _recorded(name: str) -> bytes:
    return (RECORDED / name).read_bytes()


# As OpenAI sends them: a role chunk, two parallel tool calls whose arguments arrive in pieces
# under their index, the finish_reason, the usage chunk (include_usage), [DONE].
OPENAI_TOOLS = _recorded("openai_tool_calls.sse")

OPENAI_TEXT = _recorded("openai_text.sse")

# As Anthropic's Messages API streams: text, then a tool_use block whose input arrives as
# input_json_delta pieces, pings, the stop reason and output usage in message_delta.
ANTHROPIC_TOOLS = _recorded("anthropic_tool_use.sse")

ANTHROPIC_OVERLOADED = _recorded("anthropic_overloaded.sse")


def _decode(kind: str, body: bytes, request: ChatRequest,
            split: int | None = None) -> tuple[list[str], object]:
    adapter = adapter_for(kind)
    sent = adapter.build(request, "https://api.example/v1", "k")
    decoder = adapter.decoder(request, sent)
    chunks = [body] if split is None else [body[i:i + split] for i in range(0, len(body), split)]
    reader = EventReader()
    texts = [t for chunk in chunks for t in decoder.feed(reader.feed(chunk))]
    return texts, decoder.result({})


REQUEST = ChatRequest("gpt-4o-mini", [{"role": "user", "content": "refund INV-1042"}], stream=True)


def test_sse_reader_gives_the_same_events_for_any_split() -> None:
    whole = list(events([ANTHROPIC_TOOLS]))
    assert [e.event for e in whole][:3] == ["message_start", "content_block_start", "ping"]
    for split in (1, 2, 7, 64):
        parts = (ANTHROPIC_TOOLS[i:i + split] for i in range(0, len(ANTHROPIC_TOOLS), split))
        assert list(events(parts)) == whole
    crlf = ANTHROPIC_TOOLS.replace(b"\n", b"\r\n")
    assert list(events(crlf[i:i + 1] for i in range(len(crlf)))) == whole


def test_sse_reader_joins_data_lines_and_skips_comments() -> None:
    reader = EventReader()
    got = list(reader.feed(b": keep-alive\n\nevent: delta\ndata: one\ndata: two\nid: 7\n\ndata: x"))
    assert [(e.event, e.data) for e in got] == [("delta", "one\ntwo")]
    assert [(e.event, e.data) for e in reader.feed(b"\n\n")] == [("message", "x")]


@pytest.mark.parametrize("split", [None, 3, 50])
def test_openai_tool_call_deltas_assemble(split: int | None) -> None:
    texts, answer = _decode("openai", OPENAI_TOOLS, REQUEST, split)
    assert texts == [] and answer is not None
    assert [(c.id, c.name, json.loads(c.arguments)) for c in answer.tool_calls] == [  # type: ignore[attr-defined]
        ("call_a", "lookup_invoice", {"invoice_id": "INV-1042"}),
        ("call_b", "account_status", {"email": "a@b.c"}),
    ]
    assert answer.finish_reason == "tool_calls" and answer.content is None  # type: ignore[attr-defined]
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (81, 37)  # type: ignore[attr-defined]
    assert answer.model == "gpt-4o-mini-2024-07-18"  # type: ignore[attr-defined]


def test_openai_text_deltas_and_a_cut_off_stream() -> None:
    texts, answer = _decode("openai", OPENAI_TEXT, REQUEST)
    assert texts == ["Your refund", " is on its way."]
    assert answer.content == "Your refund is on its way."  # type: ignore[attr-defined]
    assert answer.finish_reason == "stop"  # type: ignore[attr-defined]
    cut = OPENAI_TEXT[:OPENAI_TEXT.index(b'"finish_reason":"stop"')]
    cut = cut[:cut.rindex(b"data: ")]
    texts, answer = _decode("openai", cut, REQUEST)
    assert texts == ["Your refund", " is on its way."] and answer is None  # never the partial text


def test_openai_and_azure_ask_for_usage_in_the_stream() -> None:
    for kind in ("openai", "azure"):
        call = adapter_for(kind).build(REQUEST, "https://api.example/v1", "k")
        assert call.body["stream"] is True and call.body["stream_options"] == {"include_usage": True}
        assert (b"Accept", b"text/event-stream") in call.headers
    assert "stream" not in adapter_for("openai").build(ChatRequest("m", REQUEST.messages), "x", "k").body


def test_anthropic_events_assemble_text_tool_input_and_usage() -> None:
    request = ChatRequest("claude-sonnet-4-5", REQUEST.messages, stream=True)
    assert adapter_for("anthropic").build(request, "https://api.anthropic.com", "k").body["stream"] is True
    for split in (None, 5):
        texts, answer = _decode("anthropic", ANTHROPIC_TOOLS, request, split)
        assert texts == ["Let me check", " that invoice."]
        assert answer.content == "Let me check that invoice."  # type: ignore[attr-defined]
        assert [(c.id, c.name, json.loads(c.arguments)) for c in answer.tool_calls] == [  # type: ignore[attr-defined]
            ("toolu_1", "lookup_invoice", {"invoice_id": "INV-1042"})]
        assert answer.finish_reason == "tool_calls"  # type: ignore[attr-defined]
        assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (482, 89)  # type: ignore[attr-defined]
    _, cut = _decode("anthropic", ANTHROPIC_TOOLS[:ANTHROPIC_TOOLS.index(b"event: message_delta")], request)
    assert cut is None


def test_anthropic_error_event_is_its_failure_class() -> None:
    request = ChatRequest("claude-haiku-4-5", REQUEST.messages, stream=True)
    with pytest.raises(StreamFailed) as failed:
        _decode("anthropic", ANTHROPIC_OVERLOADED, request)
    assert failed.value.failure.kind is FailureClass.SERVER


@pytest.fixture(scope="module")
def simulator() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(SimulatorConfig(port=port, latency_ms=200)),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    thread.join(timeout=10)


def _chat(base: str, text: str, got: list[str]) -> provider.ChatResponse:
    return provider.chat(adapter_for("openai"), base_url=base, api_key="k", key_id="key-1",
                         on_delta=got.append,
                         request=ChatRequest("sim-large", [{"role": "user", "content": text}]))


def test_transport_streams_from_the_simulator_in_few_pieces(simulator: str) -> None:
    got: list[str] = []
    streamed = _chat(simulator, "I was charged twice for INV-1042", got)
    plain = provider.chat(adapter_for("openai"), base_url=simulator, api_key="k", key_id="key-1",
                          request=ChatRequest("sim-large", [{"role": "user",
                                                             "content": "I was charged twice for INV-1042"}]))
    assert "".join(got) == streamed.content == plain.content
    # The first piece is passed on alone, at once; then each read interval (0.3 s; this answer's
    # generation takes 0.14 s when the machine is idle) passes on what gathered as one delta,
    # not as the provider's one chunk per piece.
    provider_chunks = pieces(plain.content or "")
    assert got[0] == provider_chunks[0]
    assert 2 <= len(got) <= len(provider_chunks) // 3
    assert streamed.usage == plain.usage and streamed.usage.completion_tokens > 0
    again: list[str] = []
    _chat(simulator, "I was charged twice for INV-1042", again)
    assert again == got


def test_a_cut_stream_is_a_retryable_failure_never_the_partial_text(simulator: str) -> None:
    got: list[str] = []
    with pytest.raises(ProviderError) as failed:
        _chat(simulator, f"Where is my refund? {CUT_STREAM_MARKER}", got)
    assert failed.value.kind is FailureClass.CONNECTION and failed.value.retryable and got
    retried: list[str] = []
    answer = _chat(simulator, f"Where is my refund? {CUT_STREAM_MARKER}", retried)
    assert answer.content == "".join(retried) and answer.content != "".join(got)


def test_simulator_pieces_join_back_and_stay_few() -> None:
    text = " ".join(f"word{i}" for i in range(500)) + "."
    parts = pieces(text)
    assert "".join(parts) == text and len(parts) <= 40
    assert pieces("") == [] and pieces("one") == ["one"]


def _view(status: str, attempts: int = 1) -> SimpleNamespace:
    return SimpleNamespace(status=status, attempts=attempts,
                           model_dump=lambda mode: {"status": status, "result": {"reply": "whole"}})


def test_follower_merges_record_and_messages() -> None:
    follower = Follower()
    assert [e.event for e in follower.record(_view("running"))] == ["status"]
    assert follower.record(_view("running")) == []  # nothing new
    assert follower.message({"kind": "restart", "step": "draft"}) == []  # nothing shown to void yet
    shown = follower.message({"kind": "delta", "step": "draft", "text": "Hel", "offset": 0})
    assert shown[0].data["text"] == "Hel"
    restart = follower.message({"kind": "restart", "step": "draft", "reason": "retried"})
    assert [(e.event, e.data["reason"]) for e in restart] == [("restart", "retried")]
    follower.message({"kind": "delta", "step": "draft", "text": "Hello", "offset": 0})
    assert [e.event for e in follower.message({"kind": "attempt", "attempt": 2})] == ["restart"]
    assert follower.wants_record
    assert follower.message({"kind": "status"}) == [] and follower.wants_record
    done = follower.record(_view("succeeded", 2))
    assert [e.event for e in done] == ["status", "done"] and follower.finished
    assert done[-1].data["result"] == {"reply": "whole"}
    assert follower.message({"kind": "delta", "step": "draft", "text": "late", "offset": 5}) == []


def test_late_reader_of_a_finished_request_gets_status_then_done() -> None:
    events_ = Follower().record(_view("dead_lettered", 3))
    assert [e.event for e in events_] == ["status", "done"]
    assert events_[0].sse().startswith(b"event: status\ndata: {")


def test_sender_merges_consecutive_deltas_of_one_step() -> None:
    batch = [("r1", {"kind": "delta", "step": "draft", "text": "a", "offset": 0}),
             ("r1", {"kind": "delta", "step": "draft", "text": "b", "offset": 1}),
             ("r2", {"kind": "delta", "step": "draft", "text": "x", "offset": 0}),
             ("r1", {"kind": "delta", "step": "draft", "text": "c", "offset": 2}),
             ("r1", {"kind": "restart", "step": "draft"}),
             ("r1", {"kind": "delta", "step": "draft", "text": "d", "offset": 0})]
    assert [(k, b["kind"], b.get("text"), b.get("offset")) for k, b in live._merged(batch)] == [
        ("r1", "delta", "abc", 0), ("r1", "restart", None, None), ("r1", "delta", "d", 0),
        ("r2", "delta", "x", 0)]


def test_http_call_notes_reach_the_anthropic_decoder() -> None:
    request = ChatRequest("claude-haiku-4-5", REQUEST.messages, stream=True,
                          response_format={"type": "json_schema", "json_schema": {"name": "T", "schema": {}}})
    sent = adapter_for("anthropic").build(request, "https://api.anthropic.com", "k")
    assert isinstance(sent, HttpCall) and sent.notes["structured"]
    body = (b'event: message_start\ndata: {"type":"message_start","message":{"model":"m","usage":{}}}\n\n'
            b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":'
            b'{"type":"tool_use","id":"t","name":"structured_output","input":{}}}\n\n'
            b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":'
            b'{"type":"input_json_delta","partial_json":"{\\"a\\": 1}"}}\n\n'
            b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"tool_use"},'
            b'"usage":{"output_tokens":3}}\n\nevent: message_stop\ndata: {"type":"message_stop"}\n\n')
    _, answer = _decode("anthropic", body, request)
    assert json.loads(answer.content) == {"a": 1} and answer.tool_calls == []  # type: ignore[attr-defined]
