"""Several processes hammering one PostgreSQL limiter never admit more than the limit in any window."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

from tests.integration.conftest import ROOT
from app.simulator import max_in_window

HAMMER = """
import json, sys
from app.inference.limiter import KeyLimits, PostgresLimiter, Rate
host, model, n, tokens = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
keys = [KeyLimits("key-a", Rate.from_limit(60, 0.1), Rate.from_limit(20000, 0.1))]
limiter = PostgresLimiter()
starts = [limiter.reserve(host, model, keys, tokens, max_wait_s=1e9).start for _ in range(n)]
print(json.dumps(starts))
"""


def test_four_processes_share_one_budget(services: object) -> None:
    model = f"limit-{uuid.uuid4().hex[:6]}"
    # Reserving (not sleeping) lets the test check hours of schedule in a second: a slot's start
    # is exactly when `acquire` lets the call go.
    workers = [
        subprocess.Popen([sys.executable, "-c", HAMMER, "provider.test", model, "60", "150"],
                         stdout=subprocess.PIPE, text=True, cwd=ROOT, env=os.environ.copy())
        for _ in range(4)
    ]
    starts: list[float] = []
    for worker in workers:
        out, _ = worker.communicate(timeout=120)
        assert worker.returncode == 0
        starts += json.loads(out)

    assert len(starts) == 240 and len(set(starts)) == 240  # every reservation got its own slot
    assert max_in_window(sorted(starts), 60.0) <= 60  # requests per minute
    # tokens per minute: each reservation holds 150 tokens against 20,000 a minute
    assert max_in_window(sorted(starts), 60.0) * 150 <= 20_000
    # No idling either: 240 calls at 54 a minute (60 less 10% headroom) take about 4.4 minutes.
    span = max(starts) - min(starts)
    assert 240 / 54 * 60 * 0.95 <= span <= 240 / 54 * 60 * 1.02
