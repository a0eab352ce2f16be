"""Rate-limit headers, cache keys, history compression and tier upgrades."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from app.inference import budget
from app.inference.cache import MemoryCache, cache_key
from app.inference.headers import exhausted_for, parse_duration, retry_after
from app.inference.history import compress
from app.inference.provider import ChatResponse, Usage
from app.orchestration.tiers import effective_tier


@pytest.mark.parametrize(("text", "seconds"), [("1s", 1), ("6m0s", 360), ("850ms", 0.85), ("8.64s", 8.64),
                                               ("1h2m3s", 3723), ("20", 20), ("soon", None)])
def test_openai_reset_durations(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_exhausted_limits_pause_until_reset_openai_and_anthropic() -> None:
    assert exhausted_for({"x-ratelimit-remaining-requests": "3", "x-ratelimit-reset-requests": "2s"}) is None
    assert exhausted_for({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s",
                          "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "6m0s"}) == 360
    now = datetime(2026, 1, 1, tzinfo=UTC)
    reset = (now + timedelta(seconds=12)).isoformat().replace("+00:00", "Z")
    assert exhausted_for({"anthropic-ratelimit-requests-remaining": "0",
                          "anthropic-ratelimit-requests-reset": reset}, now) == pytest.approx(12)


def test_retry_after_prefers_milliseconds() -> None:
    assert retry_after({"retry-after": "2", "retry-after-ms": "1500"}) == 1.5
    assert retry_after({"retry-after": "7"}) == 7


def test_cache_key_ignores_whitespace_but_not_content_model_or_tools() -> None:
    base = cache_key("m", [{"role": "user", "content": "Reset my  password\n"}], None, 100)
    assert base == cache_key("m", [{"role": "user", "content": " Reset my password"}], None, 100)
    assert base != cache_key("m", [{"role": "user", "content": "Reset my passwords"}], None, 100)
    assert base != cache_key("other", [{"role": "user", "content": "Reset my password"}], None, 100)
    assert base != cache_key("m", [{"role": "user", "content": "Reset my password"}], [{"type": "function"}], 100)
    # One tenant's answer is never another's.
    acme = cache_key("m", [{"role": "user", "content": "Reset my password"}], None, 100, tenant="acme")
    assert acme not in (base, cache_key("m", [{"role": "user", "content": "Reset my password"}], None, 100,
                                        tenant="globex"))


def test_memory_cache_expires() -> None:
    now = [0.0]
    cache = MemoryCache(lambda: now[0])
    response = ChatResponse(model="m", content="hi", usage=Usage(prompt_tokens=1, completion_tokens=1))
    cache.put("k", response, ttl_s=10)
    assert cache.get("k") == response
    now[0] = 10.0
    assert cache.get("k") is None


def _turns(n: int) -> list[dict[str, str]]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "word " * 50} for i in range(n)]


def test_history_within_budget_is_unchanged() -> None:
    history = _turns(2)
    assert compress(history, budget_tokens=10_000, policy="summarize", summarize=lambda m: "x") is history


def test_truncate_keeps_the_newest_turns_within_budget() -> None:
    kept = compress(_turns(40), budget_tokens=500, policy="truncate")
    assert kept[-1]["content"].startswith("turn 39") and len(kept) < 40
    assert sum(len(m["content"]) for m in kept) / 4 <= 250


def test_summarize_condenses_older_turns_into_one_note() -> None:
    seen: list[int] = []
    result = compress(_turns(40), budget_tokens=500, policy="summarize",
                      summarize=lambda older: seen.append(len(older)) or "they asked about refunds")
    assert result[0] == {"role": "system", "content": "Summary of the earlier conversation: they asked about refunds"}
    assert seen[0] + len(result) - 1 == 40


@dataclass
class Req:
    priority: str = "normal"
    text: str = "short"
    route_confidence: float | None = 0.9


@pytest.mark.parametrize(("request_", "tier"), [
    (Req(), "cheap"),
    (Req(priority="high"), "capable"),
    (Req(text="x" * 5000), "capable"),
    (Req(route_confidence=0.3), "capable"),
])
def test_cheap_steps_are_upgraded_by_rule(request_: Req, tier: str) -> None:
    assert effective_tier("cheap", request_) == tier
    assert effective_tier("capable", request_) == "capable"


def test_budget_estimates_round_up_and_an_unpriced_model_costs_the_dearest_price() -> None:
    # sim-large: $2.50 in / $10.00 out per million tokens (the default table).
    assert budget.estimate("sim-large", 1000, 500) == Decimal("0.007500")
    assert budget.estimate("sim-small", 1, 1) == Decimal("0.000001")  # 0.00000075 rounded up
    assert budget.charge("sim-small", 1000, 100) == Decimal("0.000210")
    # No price: counted at the highest input and output prices in the table, never at $0.
    assert budget.price("someone-elses-model") == (Decimal("2.50"), Decimal("10.00"))
    assert budget.charge("someone-elses-model", 1000, 500) == budget.charge("sim-large", 1000, 500)


def test_a_request_near_its_ceiling_moves_to_the_cheap_tier() -> None:
    budget._note_share("r-below", 0.8, ((Decimal("0.7"), Decimal(1)), (Decimal(5), Decimal(0))))
    assert budget.tier_for("r-below", "capable") == "capable"
    budget._note_share("r-near", 0.8, ((Decimal("0.1"), Decimal(1)), (Decimal(8), Decimal(10))))
    assert budget.tier_for("r-near", "capable") == "cheap"
    assert budget.tier_for(None, "capable") == "capable"
    refusal = budget.BudgetExhausted("request", Decimal("0.05"), Decimal("0.048"), Decimal("0.009"), "acme")
    assert str(refusal).startswith("budget_exhausted: the request's budget of $0.0500 is spent")
