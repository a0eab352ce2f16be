"""`capacity --from-record` and `cost --from-record` measure known rows in a real PostgreSQL record."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import pytest

from tests.integration.conftest import run_cli


@pytest.fixture
def tenant(services: object) -> str:
    """A tenant with known traffic: two conversations, four succeeded turns, and noise that must not count.

    Conversation A has three succeeded turns, and a fourth that was dead-lettered (not counted); one
    request has no conversation (a one-turn conversation). Each succeeded turn made one capable call
    (2 s, 1,500 + 500 tokens, $0.01); the first also a cheap routing call (1 s, 400 + 100 tokens,
    $0.0001); the second also a cache hit (no provider time, tokens or cost).
    """
    from app.state import session_scope
    from app.state.models import Conversation, LlmCall, Request

    name = f"plan-{uuid.uuid4().hex[:8]}"
    conv = f"{name}-a"

    def call(request_id: str, tier: str, latency_ms: float, prompt: int, completion: int, cost: str,
             cache_hit: bool = False) -> LlmCall:
        return LlmCall(request_id=request_id, purpose="draft", model=f"sim-{tier}", tier=tier,
                       prompt_tokens=prompt, completion_tokens=completion, cost_usd=Decimal(cost),
                       latency_ms=latency_ms, outcome="ok", cache_hit=cache_hit)

    with session_scope() as session:
        session.add(Conversation(id=conv, tenant=name))
        session.flush()
        turns = [Request(tenant=name, text=f"turn {i}", conversation_id=conv, status="succeeded") for i in range(3)]
        single = Request(tenant=name, text="one question", status="succeeded")
        failed = Request(tenant=name, text="poison", conversation_id=conv, status="dead_lettered")
        session.add_all([*turns, single, failed])
        session.flush()
        for request in [*turns, single]:
            session.add(call(request.id, "capable", 2000, 1500, 500, "0.01"))
        session.add(call(turns[0].id, "cheap", 1000, 400, 100, "0.0001"))
        session.add(call(turns[1].id, "cheap", 0, 0, 0, "0", cache_hit=True))
        session.add(call(failed.id, "capable", 9000, 9000, 9000, "1"))
    return name


def cli_json(*args: str) -> dict:
    result = run_cli(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_capacity_takes_turns_latency_and_tokens_from_the_record(tenant: str) -> None:
    plan = cli_json("capacity", "--from-record", "--tenant", tenant, "--dau", "5000", "--concurrency", "3%",
                    "--think-seconds", "30", "--per-worker", "10")
    sample = plan["sample"]
    assert (sample["turns"], sample["conversations"]) == (4, 2)
    assert plan["inputs"]["source"] == "record"
    assert plan["inputs"]["turns"] == 2                      # 4 turns / 2 conversations
    assert plan["inputs"]["llm_seconds"] == 2.25             # (4 x 2 s + 1 s) / 4 turns; cache hit is free
    assert plan["inputs"]["tokens_per_turn"] == 2125         # (4 x 2,000 + 500) / 4
    assert plan["inputs"]["provider_calls_per_turn"] == 1.25  # 5 provider calls / 4 turns
    assert plan["conversation_seconds"] == 64.5              # 2 x (2.25 + 30)
    assert plan["active_seconds"] == 4.5
    assert plan["workers"] == 15 and plan["workers_with_headroom"] == {"low": 30, "high": 45}


def test_cost_takes_turns_tokens_and_shares_from_the_record(tenant: str) -> None:
    estimate = cli_json("cost", "--from-record", "--tenant", tenant, "--conversations", "1000")
    inputs = estimate["inputs"]
    assert (inputs["turns"], inputs["tokens_per_turn"]) == (2, 2125)
    assert estimate["tokens_per_day"] == 4_250_000             # 1,000 x 2 x 2,125
    assert inputs["output_share"] == round(2100 / 8500, 4)     # completions / all tokens
    assert inputs["cheap_share"] == round(500 / 8500, 4)       # the routing call's tokens
    recorded = next(s for s in estimate["scenarios"] if s["label"] == "as recorded")
    # $0.0401 paid for 8,500 tokens: $4.7176 per million; 4.25M tokens a day cost $20.05.
    assert recorded["usd_per_mtok"] == 4.7176
    assert recorded["usd_per_day"] == 20.05


def test_a_what_if_share_overrides_the_measured_one(tenant: str) -> None:
    estimate = cli_json("cost", "--from-record", "--tenant", tenant, "--conversations", "1000",
                        "--cheap-share", "80%")
    assert estimate["inputs"]["cheap_share"] == 0.8


def test_an_empty_scope_says_there_is_nothing_to_measure(services: object) -> None:
    result = run_cli("capacity", "--from-record", "--tenant", "nobody-here", "--dau", "10", "--concurrency", "0.1",
                     "--think-seconds", "30", "--per-worker", "10")
    assert result.returncode == 1
    assert "no succeeded request to measure in tenant=nobody-here" in result.stderr
    assert result.stdout == ""
