"""Fault scenarios on PRIVATE services: a burst of tickets through real worker processes while a
worker is killed, RabbitMQ or PostgreSQL restarts, the provider goes down, a poison ticket arrives,
or one idempotency key is submitted 20 times at once. Nothing is lost, no side effect is repeated,
no paid call is missing from the record.

The scenarios are `bench/faults.py`'s, smaller (12 tickets, a 5 s provider outage, 2 s downtimes).
They restart a RabbitMQ node and a PostgreSQL cluster of their own (`bench/private_services.py`),
never the shared ones other test runs use; each scenario gets a fresh vhost and database on them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bench.faults import Options, run_scenario
from bench.private_services import PrivateStack

pytestmark = pytest.mark.integration

OPTIONS = Options(
    tickets=12,
    outage_s=5.0,
    down_s=2.0,
    submit_rate=12.0,
    deadline_s=60.0,
    # The beat-equivalent: republish after 5 s; redispatch a request silent for 15 s.
    reconcile_every_s=1.0,
    lease_s=15.0,
    stall_s=22.0,
    # The integration suite's failure-path timings (tests/conftest.py): short backoff and breaker
    # cooldown, so a request deferred by an open breaker never looks silent for a whole lease.
    env={
        "SWITCHBOARD_RETRY_BACKOFF_S": "0.5",
        "SWITCHBOARD_RETRY_BACKOFF_MAX_S": "2",
        "SWITCHBOARD_BREAKER_COOLDOWN_S": "2",
        "SWITCHBOARD_SPECIALIST_CONCURRENCY": "8",
    },
)


# The provider outage runs on the production retry and breaker settings (2 s backoff, 15 s breaker
# cooldown): with the short ones above, failed half-open probes spend a request's attempts faster
# than a 5 s outage ends, and the scenario measures the test profile instead of Switchboard. Its
# lease is longer than the cooldown, since a request deferred by the open breaker is silent that long.
OUTAGE_OPTIONS = replace(
    OPTIONS, lease_s=30.0, stall_s=40.0, env={"SWITCHBOARD_SPECIALIST_CONCURRENCY": "8"},
)


@pytest.fixture(scope="module")
def stack() -> Any:
    with PrivateStack() as services:
        if services.pg is None and services.rabbit is None:
            pytest.skip(f"private services cannot start: {services.pg_error}; {services.rabbit_error}")
        yield services


def scenario(name: str, stack: PrivateStack, tmp_path: Path, options: Options = OPTIONS) -> dict[str, Any]:
    result = run_scenario(name, stack, options, tmp_path)
    if "skipped" in result:
        pytest.skip(result["skipped"])
    assert "error" not in result, result
    assert result["submitted"] >= OPTIONS.tickets, result
    assert result["refused_submissions"] == 0, result["refused_examples"]
    assert "error" not in result["fault"], result["fault"]
    return result


def assert_nothing_lost_or_repeated(result: dict[str, Any]) -> None:
    evidence = {k: result.get(k) for k in (
        "non_terminal", "stuck_examples", "events", "reconciler", "duplicates", "queues", "workers", "logs")}
    assert result["lost"] == 0, evidence
    assert result["duplicated_side_effects"] == 0, evidence
    assert result["others_succeeded"] == result["others"], evidence
    # Every answer the provider gave is in the record: completed, or in doubt with its estimate.
    assert result["unrecorded_llm_calls"] == 0, {**evidence, "in_doubt": result["in_doubt_llm_calls"]}


def test_kill_worker_mid_burst(stack: PrivateStack, tmp_path: Path) -> None:
    result = scenario("kill_worker", stack, tmp_path)
    assert_nothing_lost_or_repeated(result)
    assert result["refunds"] >= 1  # the refund tickets really paid (once: see duplicated_side_effects)


def test_rabbitmq_restart_mid_burst(stack: PrivateStack, tmp_path: Path) -> None:
    result = scenario("rabbitmq_restart", stack, tmp_path)
    # Submissions during the outage were accepted unpublished and the reconciler published them.
    assert result["unpublished_at_submit"] >= 1, result
    assert result["reconciler"]["republished"] >= result["unpublished_at_submit"], result
    assert_nothing_lost_or_repeated(result)


def test_postgres_restart_mid_burst(stack: PrivateStack, tmp_path: Path) -> None:
    result = scenario("postgres_restart", stack, tmp_path)
    assert_nothing_lost_or_repeated(result)


def test_provider_outage_mid_burst(stack: PrivateStack, tmp_path: Path) -> None:
    result = scenario("provider_outage", stack, tmp_path, OUTAGE_OPTIONS)
    assert result["provider_faults"].get("outage", 0) >= 1, result["provider_faults"]
    assert_nothing_lost_or_repeated(result)


def test_poison_ticket_is_dead_lettered_and_the_rest_succeed(stack: PrivateStack, tmp_path: Path) -> None:
    result = scenario("poison", stack, tmp_path)
    assert result["poison_status"] == "dead_lettered", result.get("poison_events")
    assert result["dead_lettered"] == 1
    assert_nothing_lost_or_repeated(result)


def test_idempotency_storm_runs_one_request_once(stack: PrivateStack, tmp_path: Path) -> None:
    result = scenario("idempotency_storm", stack, tmp_path)
    storm = result["storm"]
    assert storm["distinct_ids"] == 1, storm
    assert_nothing_lost_or_repeated(result)
    assert storm["status"] == "succeeded", storm
    assert storm["runs"] == 1, storm
    assert result["repaid_llm_calls"] == 0, storm
