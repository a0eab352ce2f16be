"""Budgets on the session's real workers and the simulated provider: a tenant's daily budget holds
under 20 concurrent requests, a runaway agent loop stops at its request's ceiling, and a call whose
process died before completing it stays in the record, in doubt, until its completion or forever."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Row, func, select, text

from app.inference import budget
from app.inference.call_log import DAY_SHARDS, shard_of, write_calls
from app.ingress import client, tenants
from app.orchestration.reconciler import mark_in_doubt
from app.state import LlmCall, Request, TenantSpend, get_engine, session_scope
from tests.integration.conftest import METRICS_PORTS, new_tenant, run_cli, wait_all

TICKET = "Our export job fails with a 502 error on the orders endpoint (job {}, run {})"
LOOP = "Our export job fails with a 502 error on the orders endpoint [[sim:tool_loop]] (loop {})"


def _calls(ids: list[str]) -> list[LlmCall]:
    with session_scope() as session:
        return list(session.scalars(select(LlmCall).where(LlmCall.request_id.in_(ids)).order_by(LlmCall.id)))


def _day(tenant: str) -> Row[tuple[Decimal, Decimal]]:
    """The tenant's day: its shards summed (spent_usd, reserved_usd)."""
    with session_scope() as session:
        return session.execute(
            select(func.sum(TenantSpend.spent_usd).label("spent_usd"),
                   func.sum(TenantSpend.reserved_usd).label("reserved_usd"))
            .where(TenantSpend.tenant == tenant)
        ).one()


def test_twenty_concurrent_requests_cannot_overspend_their_tenants_daily_budget(workers: object) -> None:
    tenant, _ = new_tenant()
    daily = Decimal("0.003")  # about half of the twenty requests' worth
    listed = run_cli("tenants", "update", tenant, "--daily-budget-usd", str(daily), "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["daily_budget_usd"] == float(daily)

    with ThreadPoolExecutor(20) as pool:
        ids = list(pool.map(lambda i: client.submit(TICKET.format(i, tenant), tenant=tenant).id, range(20)))
    statuses = wait_all(ids)

    calls = _calls(ids)
    spent = sum((c.cost_usd for c in calls), Decimal(0))
    # The documented bound: the day's shards are checked together, and a reservation can miss only
    # those being made on the other shards at the same moment, one each at most.
    largest_reservation = max(c.estimated_cost_usd for c in calls)
    assert spent <= daily + (DAY_SHARDS - 1) * largest_reservation, (spent, largest_reservation)
    assert not [c for c in calls if c.outcome in ("in_flight", "in_doubt")]
    refused = [i for i, s in statuses.items() if s != "succeeded"]
    assert refused and len(refused) < 20, statuses  # some ran, the budget stopped the rest
    for rid in refused:
        view = json.loads(run_cli("status", rid, "--json").stdout)
        assert view["status"] == "dead_lettered", view
        assert view["error"].startswith("budget_exhausted: tenant "), view["error"]
        assert view["attempts"] == 1  # not retried: another attempt would be refused the same way
    # The day's row agrees with the record, and no reservation outlives its call.
    day = _day(tenant)
    assert day.spent_usd == spent and day.reserved_usd == 0
    with session_scope() as session:
        assert session.scalar(select(func.sum(Request.reserved_usd)).where(Request.id.in_(ids))) == 0
    # The capable tier's reservation never fit what was left: every draft moved to the cheap tier.
    assert {c.tier for c in calls if c.step == "draft"} == {"cheap"}

    today = json.loads(run_cli("tenants", "list", "--json").stdout)
    [mine] = [t for t in today if t["name"] == tenant]
    assert mine["spend_today"]["spent_usd"] == float(spent)
    assert mine["spend_today"]["daily_budget_usd"] == float(daily)
    # The router's metrics: today's spend of all tenants together (no tenant label by default).
    spend = {s.labels["state"]: s.value for family in text_string_to_metric_families(
        httpx.get(f"http://127.0.0.1:{METRICS_PORTS['router']}/metrics", timeout=10).text)
        for s in family.samples if s.name == "switchboard_llm_spend_today_usd"}
    assert set(spend) == {"spent", "in_flight", "in_doubt"} and spend["spent"] >= float(spent), spend


def test_a_runaway_agent_loop_stops_at_its_requests_ceiling(workers: object) -> None:
    capped, _ = new_tenant()
    ceiling = Decimal("0.0015")
    tenants.update_budgets(capped, request_usd=ceiling)
    free, _ = new_tenant()

    unbounded = client.submit(LOOP.format(free), tenant=free).id
    bounded = client.submit(LOOP.format(capped), tenant=capped).id
    statuses = wait_all([unbounded, bounded])

    # Without a ceiling only the step cap ends the loop: five tool rounds and a last answer.
    assert statuses[unbounded] == "succeeded"
    assert client.get(unbounded).result is not None
    loose = [c for c in _calls([unbounded]) if c.step == "draft"]
    assert len(loose) == 6, [c.outcome for c in loose]

    assert statuses[bounded] == "dead_lettered"
    view = json.loads(run_cli("status", bounded, "--json").stdout)
    assert view["error"].startswith("budget_exhausted: the request's budget of $0.0015"), view["error"]
    assert view["budget"]["ceiling_usd"] == float(ceiling)
    assert view["budget"]["reserved_usd"] == 0
    drafts = [c for c in _calls([bounded]) if c.step == "draft"]
    assert 2 <= len(drafts) < 6, [(c.tier, c.outcome) for c in drafts]  # it looped, then stopped
    assert {c.tier for c in drafts} == {"cheap"}  # the capable tier never fit what was left
    assert Decimal(str(view["budget"]["spent_usd"])) <= ceiling
    assert view["cost_usd"] == view["budget"]["spent_usd"]


@pytest.mark.parametrize("daily", [Decimal(5), Decimal(0)], ids=["daily_budget", "no_daily_budget"])
def test_a_call_whose_process_died_is_counted_in_doubt_and_completes_once(
    services: object, daily: Decimal
) -> None:
    tenant, _ = new_tenant()
    tenants.update_budgets(tenant, daily_usd=daily)
    with session_scope() as session:
        request = Request(tenant=tenant, text="in doubt")
        session.add(request)
        session.flush()
        rid = request.id
    amount = budget.estimate("sim-large", 400, 512)
    # What a worker does before calling the provider; it then dies before completing the call.
    call_id = budget.open_call(budget.Intent(rid, "draft", "draft", "provider.test", "sim-large", "capable",
                                             "key-x", 912, amount, 0.0, 0))
    assert mark_in_doubt(lease_s=3600) == 0  # still inside its lease: a live process may complete it
    # Past a short lease instead of an older created_at: the call's UTC day stays the one it
    # reserved on, whatever the time of day the test runs at.
    time.sleep(1.5)
    assert mark_in_doubt(lease_s=1) >= 1
    assert [c.outcome for c in _calls([rid])] == ["in_doubt"]

    view = client.get(rid)
    assert view.budget is not None and view.budget.in_doubt_usd == float(amount)
    assert view.budget.reserved_usd == float(amount) and view.cost_usd == 0
    # Held against the tenant's day while it is unfinished, where there is a daily budget to check
    # it against; without one the day holds nothing, and the views count the call all the same.
    assert (_day(tenant).reserved_usd or 0) == (amount if daily else 0)
    report = json.loads(run_cli("report", "--since", "3h", "--json").stdout)
    assert report["in_doubt"]["calls"] >= 1 and report["in_doubt"]["usd"] >= float(amount)
    [day] = [d for d in report["spend_by_tenant_day"] if d["tenant"] == tenant]
    assert (day["in_doubt_usd"], day["in_doubt_calls"], day["in_flight_usd"]) == (float(amount), 1, 0.0)

    # The process was only slow: its completion still lands, and a second one changes nothing.
    row = {"call_id": call_id, "request_id": rid, "step": "draft", "purpose": "draft",
           "provider": "provider.test", "model": "sim-large", "tier": "capable", "key_id": "key-x",
           "prompt_tokens": 400, "completion_tokens": 50, "cost_usd": budget.charge("sim-large", 400, 50),
           "charged_usd": budget.charge("sim-large", 400, 50), "latency_ms": 80.0, "limiter_wait_ms": 0.0,
           "retries": 0, "cache_hit": False, "outcome": "ok", "error": None}
    for _ in range(2):
        with session_scope() as session:
            write_calls(session.connection(), [row])
    view = client.get(rid)
    assert view.cost_usd == float(row["cost_usd"]) and view.tokens["total"] == 450
    assert view.budget is not None and (view.budget.reserved_usd, view.budget.in_doubt_usd) == (0, 0)
    day_row = _day(tenant)
    assert (day_row.spent_usd, day_row.reserved_usd) == (row["cost_usd"], 0)
    assert len(_calls([rid])) == 1


def _requests_on_shards(tenant: str, shards: list[int]) -> list[str]:
    """New requests of the tenant whose ids hash to the given day shards, in that order."""
    ids: list[str] = []
    with session_scope() as session:
        while len(ids) < len(shards):
            rid = str(uuid.uuid4())
            if session.scalar(text(f"SELECT {shard_of(':id')}"), {"id": rid}) == shards[len(ids)]:
                session.add(Request(id=rid, tenant=tenant, text="shards"))
                ids.append(rid)
    return ids


def test_a_reservation_that_waited_for_its_shard_counts_what_the_other_shards_took_meanwhile(
    services: object,
) -> None:
    tenant, _ = new_tenant()
    amount = budget.estimate("sim-large", 400, 512)
    tenants.update_budgets(tenant, daily_usd=Decimal("0.015"))  # two such calls fit, three do not
    first, second, other = _requests_on_shards(tenant, [0, 0, 1])

    def intent(rid: str) -> budget.Intent:
        return budget.Intent(rid, "draft", "draft", "p", "sim-large", "capable", None, 912, amount, 0.0, 0)

    # The first call's reservation is made and not yet committed: it holds shard 0's lock.
    with get_engine().connect() as holder:
        holder.execute(budget._OPEN, {**intent(first).__dict__, "request_default": 0, "daily_default": 0})
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(budget.open_call, intent(second))  # waits for shard 0
            for _ in range(100):
                with session_scope() as session:
                    if session.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
                                           "wait_event_type = 'Lock' AND query LIKE '%switchboard_reserve_day%'")):
                        break
                time.sleep(0.05)
            budget.open_call(intent(other))  # shard 1, committed while the second call waits
            holder.commit()
            # The waiting call's check reads the day after its shard is free, so it sees both.
            with pytest.raises(budget.BudgetExhausted, match="daily budget"):
                waiting.result(timeout=30)
    day = _day(tenant)
    assert (day.spent_usd, day.reserved_usd) == (0, 2 * amount)
    assert len([c for c in _calls([first, second, other]) if c.outcome == "in_flight"]) == 2


def test_tenants_update_refuses_bad_budgets_and_changes_nothing(services: object) -> None:
    tenant, _ = new_tenant()
    for args, message in [
        (["nosuch-tenant", "--daily-budget-usd", "1"], "no tenant 'nosuch-tenant'"),
        ([tenant, "--daily-budget-usd", "-1"], "must be 0 (no limit) or a positive amount"),
        ([tenant, "--request-budget-usd", "lots"], None),  # argparse: not a number
        ([tenant], "nothing to change"),
    ]:
        result = run_cli("tenants", "update", *args, "--json")
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        if message:
            assert message in json.loads(result.stdout)["error"], result.stdout
    [view] = [t for t in tenants.list_tenants() if t.name == tenant]
    assert (view.daily_budget_usd, view.request_budget_usd) == (None, None)

    result = run_cli("tenants", "update", tenant, "--request-budget-usd", "0.25", "--json")
    assert json.loads(result.stdout)["request_budget_usd"] == 0.25
    result = run_cli("tenants", "update", tenant, "--request-budget-usd", "none", "--daily-budget-usd", "0",
                     "--json")
    updated = json.loads(result.stdout)
    assert (updated["request_budget_usd"], updated["daily_budget_usd"]) == (None, 0)
