"""The simulator against the official `openai` SDK: what the SDK sends (tools, tool_choice,
temperature, max_completion_tokens, response_format) it accepts, and what it answers the SDK
parses: tool calls, JSON mode, JSON schemas as pydantic models, and OpenAI-shaped errors.
(`stream=True` belongs to the streaming issue.)"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import openai
import pytest
import uvicorn
from pydantic import BaseModel

from app.simulator import BAD_JSON_MARKER, SimulatorConfig, create_app

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "check_refund_eligibility",
            "description": "Check whether an invoice can be refunded",
            "parameters": {
                "type": "object",
                "properties": {"invoice_id": {"type": "string"}},
                "required": ["invoice_id"],
            },
        },
    }
]


class Ticket(BaseModel):
    class Invoice(BaseModel):
        invoice_id: str
        amount_usd: float | None

    summary: str
    category: str
    invoice: Invoice
    tags: list[str]
    urgent: bool


@pytest.fixture(scope="module")
def sdk() -> Iterator[openai.OpenAI]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(SimulatorConfig(port=port)), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "simulator did not start"
        time.sleep(0.05)
    try:
        yield openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-contract", max_retries=0)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_chat_completion_with_tools_returns_a_tool_call_the_sdk_parses(sdk: openai.OpenAI) -> None:
    first = sdk.chat.completions.create(
        model="sim-large",
        messages=[{"role": "user", "content": "Please refund INV-1042, I was charged twice"}],
        tools=TOOLS,
        tool_choice="auto",
        temperature=0.3,
        max_completion_tokens=200,  # type: ignore[arg-type]
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert call.type == "function" and call.function.name == "check_refund_eligibility"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"invoice_id": "INV-1042"}  # type: ignore[union-attr]
    assert first.usage is not None and first.usage.prompt_tokens > 0

    final = sdk.chat.completions.create(
        model="sim-large",
        tools=TOOLS,
        messages=[  # type: ignore[arg-type, list-item]
            {"role": "user", "content": "Please refund INV-1042, I was charged twice"},
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": '{"eligible": true}'},
        ],
    )
    assert final.choices[0].finish_reason == "stop"
    assert "check_refund_eligibility returned" in (final.choices[0].message.content or "")


def test_forced_tool_choice(sdk: openai.OpenAI) -> None:
    answer = sdk.chat.completions.create(
        model="sim-small",
        messages=[{"role": "user", "content": "hello there"}],
        tools=TOOLS,  # type: ignore[arg-type]
        tool_choice={"type": "function", "function": {"name": "check_refund_eligibility"}},
    )
    assert answer.choices[0].message.tool_calls[0].function.name == "check_refund_eligibility"  # type: ignore[index, union-attr]


def test_json_mode_answers_one_json_object(sdk: openai.OpenAI) -> None:
    answer = sdk.chat.completions.create(
        model="sim-small",
        response_format={"type": "json_object"},
        messages=[
            {"role": "system", "content": "Answer in JSON."},
            {"role": "user", "content": "Is INV-7 paid?"},
        ],
    )
    assert isinstance(json.loads(answer.choices[0].message.content or ""), dict)


def test_json_mode_without_the_word_json_is_refused_as_openai_does(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="must contain the word 'json'"):
        sdk.chat.completions.create(
            model="sim-small",
            response_format={"type": "json_object"},
            messages=[{"role": "user", "content": "Is INV-7 paid?"}],
        )


def test_json_schema_answer_parses_into_the_pydantic_model(sdk: openai.OpenAI) -> None:
    text = "Urgent: jane@example.com was charged twice on INV-1042"
    parsed = sdk.chat.completions.parse(
        model="sim-large", response_format=Ticket, messages=[{"role": "user", "content": text}]
    )
    ticket = parsed.choices[0].message.parsed
    assert isinstance(ticket, Ticket)
    assert ticket.invoice.invoice_id == "INV-1042"
    assert ticket.summary and isinstance(ticket.tags, list)


def test_bad_json_marker_gives_invalid_json_once(sdk: openai.OpenAI) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "Ticket", "schema": Ticket.model_json_schema()}}
    broken = sdk.chat.completions.create(
        model="sim-small",
        response_format=fmt,  # type: ignore[arg-type]
        messages=[{"role": "user", "content": f"INV-1 {BAD_JSON_MARKER}"}],
    )
    with pytest.raises(ValueError):
        json.loads(broken.choices[0].message.content or "")
    repaired = sdk.chat.completions.create(
        model="sim-small",
        response_format=fmt,  # type: ignore[arg-type]
        messages=[
            {"role": "user", "content": f"INV-1 {BAD_JSON_MARKER}"},
            {"role": "assistant", "content": broken.choices[0].message.content},
            {"role": "user", "content": "Reply again with valid JSON."},
        ],
    )
    Ticket.model_validate_json(repaired.choices[0].message.content or "")


def test_errors_are_the_sdks_exceptions(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(
            model="sim-small", messages=[{"role": "user", "content": "[[sim:bad_request]]"}]
        )
    with pytest.raises(openai.InternalServerError):
        sdk.chat.completions.create(model="sim-small", messages=[{"role": "user", "content": "[[sim:fail]]"}])
