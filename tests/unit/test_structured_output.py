"""Structured output helpers (schema as response_format, parsing, the repair prompt) and the
start-up warning for models with no price."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from pydantic import BaseModel, ValidationError

from app.config import reset_settings
from app.inference import structured
from app.inference.cost import configured_models, warn_unpriced
from app.inference.response import ChatResponse, Usage


class Answer(BaseModel):
    reply: str
    escalate: bool


def _said(content: str) -> ChatResponse:
    return ChatResponse(model="m", content=content, usage=Usage())


def test_response_format_is_the_models_json_schema() -> None:
    fmt = structured.response_format(Answer)
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "Answer"
    assert fmt["json_schema"]["schema"]["required"] == ["reply", "escalate"]


def test_parse_accepts_json_in_a_code_fence_and_rejects_the_rest() -> None:
    assert structured.parse(Answer, _said('```json\n{"reply": "hi", "escalate": false}\n```')) == Answer(
        reply="hi", escalate=False
    )
    with pytest.raises(ValidationError):
        structured.parse(Answer, _said('{"reply": "hi"}'))


def test_repair_prompt_names_what_was_wrong() -> None:
    bad = _said('{"reply": "hi"}')
    try:
        structured.parse(Answer, bad)
    except ValidationError as error:
        messages = structured.repair_messages([{"role": "user", "content": "q"}], bad, error)
    assert messages[1] == {"role": "assistant", "content": '{"reply": "hi"}'}
    assert messages[2]["role"] == "user" and "escalate: Field required" in messages[2]["content"]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    yield monkeypatch
    monkeypatch.undo()
    reset_settings()


def test_unpriced_models_are_named_at_start(
    env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    env.setenv("SWITCHBOARD_CHEAP_MODEL", "gpt-4o-mini")
    env.setenv("SWITCHBOARD_CAPABLE_MODEL", "sim-large")
    env.setenv("SWITCHBOARD_FALLBACK_MODELS", "sim-large=secondary/claude-sonnet-4-5|sim-small")
    reset_settings()
    from app.config import get_settings

    assert configured_models(get_settings()) == ["gpt-4o-mini", "sim-large", "claude-sonnet-4-5", "sim-small"]
    from app.ingress.http.app import create_app

    with caplog.at_level(logging.WARNING, logger="app.inference.cost"):
        create_app()  # the API warns as it starts; workers do on worker_init
    assert warn_unpriced() == ["gpt-4o-mini", "claude-sonnet-4-5"]
    assert "model 'gpt-4o-mini' has no price in SWITCHBOARD_PRICES" in caplog.text
    assert "model 'claude-sonnet-4-5' has no price" in caplog.text and "'sim-small'" not in caplog.text
