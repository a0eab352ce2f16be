"""The CLI's reporting commands print one JSON document with the documented keys."""

from __future__ import annotations

import json

from tests.integration.conftest import run_cli


def test_route_classifies_without_enqueuing(services: object) -> None:
    result = run_cli("route", "I need a copy of my receipt for March", "--json")
    assert result.returncode == 0, result.stderr
    decision = json.loads(result.stdout)
    assert decision["specialist"] == "billing"
    assert set(decision) == {"specialist", "confidence", "method"}
    assert 0.0 <= decision["confidence"] <= 1.0


def test_route_reads_one_text_per_line_from_stdin(services: object) -> None:
    result = run_cli("route", "-", "--json", "--no-llm",
                     stdin="Refund the duplicate charge\n\nThe SDK throws a TypeError on import\n")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["specialist"] for d in lines] == ["billing", "technical"]


def test_submit_wait_and_status_report_the_same_request(workers: object) -> None:
    submitted = run_cli("submit", "The login page shows error 500 after SSO redirect", "--wait", "60", "--json")
    assert submitted.returncode == 0, submitted.stderr
    body = json.loads(submitted.stdout)
    assert body["status"] == "succeeded"

    status = run_cli("status", body["id"], "--json")
    view = json.loads(status.stdout)
    assert {"id", "status", "specialist", "attempts", "result", "error", "tokens", "cost_usd", "timings"} <= set(view)
    assert view["id"] == body["id"] and view["specialist"] == "technical"


def test_status_of_unknown_request_is_a_clear_error(services: object) -> None:
    result = run_cli("status", "no-such-request", "--json")
    assert result.returncode == 1
    assert "no request" in json.loads(result.stdout)["error"]


def test_dlq_list_is_json(services: object) -> None:
    result = run_cli("dlq", "list", "--json")
    assert result.returncode == 0, result.stderr
    assert isinstance(json.loads(result.stdout), list)


def test_pools_shows_every_queue_its_workers_and_dead_letter_depth(workers: object) -> None:
    result = run_cli("pools", "--json")
    assert result.returncode == 0, result.stderr
    views = {v["queue"]: v for v in json.loads(result.stdout)}
    assert {"router", "billing", "technical", "router.dlq", "billing.dlq", "technical.dlq"} <= set(views)
    technical = views["technical"]
    assert technical["consumers"] >= 1 and technical["concurrency"] == 8
    assert [w["name"].split("@")[0] for w in technical["workers"]] == ["technical"]
    assert views["billing.dlq"]["dead_letter"] and views["billing.dlq"]["workers"] == []
    assert isinstance(views["billing.dlq"]["ready"], int)
