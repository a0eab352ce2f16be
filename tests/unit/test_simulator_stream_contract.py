"""The simulator's streamed answers against the official `openai` SDK (`stream=True`): the SDK's
own stream reader gets the text in pieces, assembles tool-call deltas, sees the usage chunk that
`stream_options.include_usage` asks for, and its accumulating helper gives the same answer as
the non-streamed call."""

from __future__ import annotations

import openai
import pytest

from app.simulator import CUT_STREAM_MARKER
from tests.unit.test_simulator_contract import TOOLS, sdk  # noqa: F401  (the fixture)

TICKET = "I was charged twice for INV-1042, what happened?"


def test_text_streams_in_pieces_with_usage_last(sdk: openai.OpenAI) -> None:  # noqa: F811
    chunks = list(sdk.chat.completions.create(
        model="sim-large", messages=[{"role": "user", "content": TICKET}], stream=True,
        stream_options={"include_usage": True}))
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    whole = sdk.chat.completions.create(model="sim-large", messages=[{"role": "user", "content": TICKET}])
    assert len(pieces) > 3 and "".join(pieces) == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens  # type: ignore[union-attr]
    assert all(c.usage is None for c in chunks[:-1])


def test_without_include_usage_no_usage_chunk(sdk: openai.OpenAI) -> None:  # noqa: F811
    chunks = list(sdk.chat.completions.create(
        model="sim-small", messages=[{"role": "user", "content": TICKET}], stream=True))
    assert chunks and all(c.usage is None and c.choices for c in chunks)


def test_tool_call_deltas_assemble_in_the_sdk(sdk: openai.OpenAI) -> None:  # noqa: F811
    messages = [{"role": "user", "content": "Please refund INV-1042, I was charged twice"}]
    with sdk.chat.completions.stream(model="sim-large", messages=messages, tools=TOOLS,  # type: ignore[arg-type]
                                     stream_options={"include_usage": True}) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    whole = sdk.chat.completions.create(model="sim-large", messages=messages, tools=TOOLS)  # type: ignore[arg-type]
    streamed_call = final.choices[0].message.tool_calls[0]  # type: ignore[index]
    whole_call = whole.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert final.choices[0].finish_reason == "tool_calls"
    assert streamed_call.function.name == whole_call.function.name == "check_refund_eligibility"
    assert streamed_call.function.arguments == whole_call.function.arguments
    assert streamed_call.id == whole_call.id


def test_stream_options_without_stream_is_refused_as_openai_does(sdk: openai.OpenAI) -> None:  # noqa: F811
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model="sim-small", messages=[{"role": "user", "content": TICKET}],
                                    stream_options={"include_usage": True})


def test_a_cut_stream_ends_without_finish_reason_then_streams_whole(sdk: openai.OpenAI) -> None:  # noqa: F811
    messages = [{"role": "user", "content": f"{TICKET} {CUT_STREAM_MARKER}"}]
    first = list(sdk.chat.completions.create(model="sim-large", messages=messages, stream=True))
    again = list(sdk.chat.completions.create(model="sim-large", messages=messages, stream=True))
    assert not any(c.choices[0].finish_reason for c in first)
    assert [c.choices[0].finish_reason for c in again if c.choices[0].finish_reason] == ["stop"]
    text = "".join(c.choices[0].delta.content or "" for c in first)
    whole = "".join(c.choices[0].delta.content or "" for c in again)
    assert text and whole.startswith(text) and len(text) < len(whole)
