"""`switchboard capacity` and `switchboard cost` reproduce the seed's worked examples exactly."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from app.cli import main
from app.config import Settings

SEED_CAPACITY = ["--dau", "5000", "--concurrency", "3%", "--turns", "6", "--llm-seconds", "3",
                 "--think-seconds", "30", "--per-worker", "10"]
SEED_COST = ["--conversations", "10000", "--turns", "8", "--tokens-per-turn", "2000"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_capacity_reproduces_the_worked_example(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "capacity", *SEED_CAPACITY, "--json")
    plan = json.loads(out)
    assert code == 0
    assert plan["concurrent_users"] == 150
    assert plan["conversation_seconds"] == 198 and plan["conversation_minutes"] == 3.3
    assert plan["active_seconds"] == 18
    assert plan["workers"] == 15
    assert plan["workers_with_headroom"] == {"low": 30, "high": 45}
    assert plan["max_conversations_per_worker"] == 11 and plan["warnings"] == []
    assert plan["inputs"]["source"] == "flags" and plan["sample"] is None


def test_capacity_prints_each_intermediate_figure(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "capacity", *SEED_CAPACITY, "--concurrency", "0.03")
    assert code == 0
    assert "5,000 DAU x 3% = 150" in out
    assert "6 turns x (3 s LLM + 30 s think) = 198 s (3.3 min)" in out
    assert "6 x 3 s = 18 s" in out
    assert "150 / 10 = 15" in out
    assert "2-3x = 30-45 workers" in out


def test_capacity_warns_when_more_conversations_per_worker_than_fit(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "capacity", *SEED_CAPACITY, "--per-worker", "12", "--json")
    plan = json.loads(out)
    assert plan["workers"] == 13
    assert plan["warnings"] == [("12 conversations per worker is more than fit: a worker busy 18 s of every "
                                "198 s carries at most 11")]


def test_capacity_says_when_the_provider_limit_binds(capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from app.config import reset_settings

    # 150 users x 6 turns / 3.3 min = 272.7 requests/min at the peak; 200 RPM less 10% headroom is 180.
    monkeypatch.setenv("SWITCHBOARD_PROVIDER_RPM", "200")
    reset_settings()
    try:
        _, out, _ = run(capsys, "capacity", *SEED_CAPACITY, "--json")
    finally:
        monkeypatch.undo()
        reset_settings()
    provider = json.loads(out)["provider"]
    assert provider["requests_per_minute_limit"] == 180
    assert provider["binds"] is True
    assert provider["workers_the_limit_feeds"] == 9  # floor(15 x 180 / 272.7)
    assert "more workers only wait on the limiter" in provider["note"]


def test_cost_reproduces_the_worked_example(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "cost", *SEED_COST, "--json")
    estimate = json.loads(out)
    assert code == 0
    assert estimate["tokens_per_day"] == 160_000_000
    low, high = estimate["scenarios"]
    assert (low["usd_per_mtok"], low["usd_per_day"], low["usd_per_month"]) == (2.5, 400, 12_000)
    assert (high["usd_per_mtok"], high["usd_per_day"], high["usd_per_month"]) == (12.5, 2_000, 60_000)


def test_cost_prints_the_figures_as_the_seed_writes_them(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "cost", *SEED_COST)
    assert "10,000 conversations x 8 turns x 2,000 tokens = 160M" in out
    assert "$400-$2,000/day, $12,000-$60,000/month" in out


def test_cost_shows_the_cheap_tier_saving_from_the_price_table(capsys: pytest.CaptureFixture[str]) -> None:
    # sim-small is 0.15 in / 0.60 out: at 25% output that blends to $0.2625 per million tokens.
    _, out, _ = run(capsys, "cost", *SEED_COST, "--price-per-mtok", "2.50", "--cheap-share", "60%", "--json")
    estimate = json.loads(out)
    (given,) = estimate["scenarios"]
    assert estimate["cheap_usd_per_mtok"] == 0.2625
    # 160M x (0.4 x 2.50 + 0.6 x 0.2625) / 1M = 160 x 1.1575 = 185.20
    assert given["tiered_usd_per_day"] == 185.2
    assert given["saving_per_day"] == 214.8 and given["saving_per_month"] == 6444
    assert given["saving_percent"] == 53.7


def test_cost_prices_a_named_model_from_settings(capsys: pytest.CaptureFixture[str]) -> None:
    # sim-large: 2.50 in / 10.00 out; at 20% output: 0.8 x 2.50 + 0.2 x 10.00 = 4.00 per million.
    _, out, _ = run(capsys, "cost", *SEED_COST, "--model", "sim-large", "--output-share", "0.2", "--json")
    (scenario,) = json.loads(out)["scenarios"]
    assert scenario["label"] == "sim-large"
    assert scenario["usd_per_mtok"] == 4 and scenario["usd_per_day"] == 640


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["cost", *SEED_COST, "--model", "gpt-nope"], "no price for model 'gpt-nope'"),
        (["cost", "--conversations", "0", "--turns", "8", "--tokens-per-turn", "2000"],
         "--conversations: Input should be greater than 0"),
        (["cost", "--conversations", "10", "--turns", "8"], "--tokens-per-turn required"),
        (["capacity", *SEED_CAPACITY, "--concurrency", "150%"], "--concurrency: Input should be less than or equal to 1"),
        (["capacity", *SEED_CAPACITY, "--headroom", "3-2"], "the high end must not be below the low end"),
        (["capacity", *SEED_CAPACITY, "--from-record"], "--turns, --llm-seconds and --from-record both given"),
        (["capacity", *SEED_CAPACITY, "--tenant", "acme"], "--tenant only scope --from-record"),
        (["cost", *SEED_COST, "--price-per-mtok", "-1"], "--price-per-mtok: must be greater than 0"),
    ],
)
def test_bad_planning_input_is_a_clear_error(capsys: pytest.CaptureFixture[str], argv: list[str],
                                             message: str) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert message in err


def test_price_blending_uses_the_output_share() -> None:
    from app.ops.cost_estimate import blended_price

    settings = Settings(prices="m=1/5")
    assert blended_price("m", Decimal("0.5"), settings) == Decimal(3)
