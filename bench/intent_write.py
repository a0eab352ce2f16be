"""What writing every LLM call's intent before the call costs, per call, against the write it adds to.

    python bench/intent_write.py --json [--calls 2000]

In a scratch database: N calls of one request, each written as the gateway writes them now (the
intent row with its budget reservation, one statement before the call; its completion with the
step's checkpoint), against the baseline measured in the same run: the same rows inserted by the
checkpoint alone, as before intent rows existed. Client CPU is this process's (Python, SQLAlchemy,
psycopg); server time is the statements' wall time less client CPU, a rough figure on a shared
machine. Last line: {"calls", "intent_cpu_ms_per_call", "baseline_cpu_ms_per_call", ...}.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _harness as h


def _row(call_id: int | None, request_id: str) -> dict[str, object]:
    return {"call_id": call_id, "request_id": request_id, "step": "draft", "purpose": "draft",
            "provider": "bench", "model": "sim-large", "tier": "capable", "key_id": "key-bench",
            "prompt_tokens": 600, "completion_tokens": 60, "cost_usd": Decimal("0.0021"),
            "charged_usd": Decimal("0.0021"), "latency_ms": 100.0, "limiter_wait_ms": 0.0, "retries": 0,
            "cache_hit": False, "outcome": "ok", "error": None}


def measure(calls: int, per_step: int) -> dict[str, object]:
    from app.inference import budget
    from app.inference.call_log import write_calls
    from app.state import Request, connection_scope, session_scope

    with session_scope() as session:
        request = Request(tenant="bench", text="intent write bench")
        session.add(request)
        session.flush()
        rid = request.id
    intent = budget.Intent(rid, "draft", "draft", "bench", "sim-large", "capable", "key-bench", 1112,
                           budget.estimate("sim-large", 600, 512), 0.0, 0)

    def baseline() -> None:  # the checkpoint inserts the step's calls
        for _ in range(calls // per_step):
            with connection_scope() as conn:
                write_calls(conn, [_row(None, rid) for _ in range(per_step)])

    def with_intents() -> None:  # an intent per call, the checkpoint completes them
        for _ in range(calls // per_step):
            ids = [budget.open_call(intent) for _ in range(per_step)]
            with connection_scope() as conn:
                write_calls(conn, [_row(i, rid) for i in ids])

    figures: dict[str, object] = {"calls": calls, "calls_per_checkpoint": per_step}
    baseline()  # warm: statement caches, pool
    for name, run in (("baseline", baseline), ("intent", with_intents), ("baseline2", baseline),
                      ("intent2", with_intents)):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        run()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        figures[f"{name}_cpu_ms_per_call"] = round(cpu * 1000 / calls, 4)
        figures[f"{name}_wall_ms_per_call"] = round(wall * 1000 / calls, 4)
    base = (figures["baseline_cpu_ms_per_call"] + figures["baseline2_cpu_ms_per_call"]) / 2  # type: ignore[operator]
    mine = (figures["intent_cpu_ms_per_call"] + figures["intent2_cpu_ms_per_call"]) / 2  # type: ignore[operator]
    figures["baseline_cpu_ms_per_call"], figures["intent_cpu_ms_per_call"] = round(base, 4), round(mine, 4)
    figures["added_cpu_ms_per_call"] = round(mine - base, 4)
    figures["cpu_ratio"] = round(mine / base, 3) if base else None
    for name in ("baseline2", "intent2"):
        figures.pop(f"{name}_cpu_ms_per_call")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--per-checkpoint", type=int, default=2, help="calls per step checkpoint")
    args = parser.parse_args()
    with h.scratch_database(f"sb_intent_{h.run_id()}") as url:
        os.environ["SWITCHBOARD_DATABASE_URL"] = url
        from app.config import reset_settings
        from app.ops.migrate import upgrade
        from app.state import dispose_engine

        reset_settings()
        upgrade(url)
        try:
            result = measure(args.calls, args.per_checkpoint)
        finally:
            dispose_engine()
    h.print_result(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
