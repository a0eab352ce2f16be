"""Routing without services: rules, the classifier on unseen phrasing, and the fallback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.orchestration.routing import decide

EVAL = [json.loads(line) for line in (Path(__file__).parents[1] / "data" / "routing_eval.jsonl").read_text().splitlines()
        if line.strip()]


def test_routes_unseen_tickets_correctly_without_an_llm() -> None:
    right = sum(decide(item["text"], use_llm=False).specialist == item["specialist"] for item in EVAL)
    assert len(EVAL) >= 80
    assert right / len(EVAL) >= 0.9, f"{right}/{len(EVAL)} routed correctly"


def test_classifier_is_confident_on_most_unseen_tickets() -> None:
    # The LLM is the exception: most tickets must be routed locally.
    local = [decide(item["text"], use_llm=False).method for item in EVAL]
    assert local.count("classifier") + local.count("rule") >= 0.7 * len(EVAL)


def test_a_rule_routes_before_the_classifier() -> None:
    decision = decide("INV-2231", use_llm=False)
    assert (decision.specialist, decision.method, decision.confidence) == ("billing", "rule", 1.0)


def test_unsure_without_llm_goes_to_the_configured_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.config import reset_settings

    monkeypatch.setenv("SWITCHBOARD_ROUTER_CONFIDENCE_THRESHOLD", "0.999")
    monkeypatch.setenv("SWITCHBOARD_FALLBACK_SPECIALIST", "billing")
    reset_settings()
    try:
        decision = decide("hello, is anyone there?", use_llm=False)
    finally:
        monkeypatch.undo()
        reset_settings()
    assert (decision.specialist, decision.method) == ("billing", "fallback")


def test_follow_up_stays_with_its_specialist_unless_the_topic_clearly_changed() -> None:
    assert decide("and the other one?", current_specialist="billing", use_llm=False).method == "conversation"
    moved = decide("The API returns 502 Bad Gateway on every call to /v2/orders", current_specialist="billing",
                   use_llm=False)
    assert moved.specialist == "technical"


def test_the_check_before_the_llm_runs_first_and_can_stop_the_call(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.orchestration import routing

    asked: list[str] = []
    monkeypatch.setattr(routing, "_ask_llm", lambda text, request_id, tenant: asked.append(text) or "billing")

    def refuse() -> None:
        raise PermissionError("not this tenant's request")

    with pytest.raises(PermissionError):
        decide("hello, is anyone there?", before_llm=refuse)
    assert asked == []
    # A confident local decision never needs the check (the router's hot path makes no read).
    assert decide("INV-2231", before_llm=refuse).method == "rule"
    assert decide("hello, is anyone there?", before_llm=lambda: None).method == "llm"
    assert asked == ["hello, is anyone there?"]
