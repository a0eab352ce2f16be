"""The README's main job: the demo accounts for every ticket and stops what it started."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.conftest import run_cli


def test_demo_accounts_for_every_ticket(services: object) -> None:
    result = run_cli("demo", "--tickets", "30", "--json")

    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["submitted"] == 31  # 30 tickets and the poison one
    # A refund above the approval limit waits for a person: accounted for, not finished.
    finished = summary["succeeded"] + summary["dead_lettered"] + summary["waiting_on_person"]
    assert finished == summary["submitted"]
    assert summary["unaccounted"] == 0
    assert summary["poison_status"] == "dead_lettered"
    assert summary["dead_lettered"] == 1
    assert summary["routing_accuracy"] >= 0.9
    assert summary["tokens"] > 0 and summary["cost_usd"] > 0
    # It ends with the report: the bottleneck named, the HTML page written.
    assert summary["bottleneck"]["verdict"] in {"queue-bound", "LLM-bound", "rate-limit-bound", "database-bound",
                                                "compute-bound"}
    page = Path(summary["report_html"])
    assert page.is_file() and "<svg" in page.read_text()
