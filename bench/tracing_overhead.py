"""What tracing costs per LLM call: the gateway's span, a step's span and the attributes it sets,
around a call that does nothing, with tracing off (no OTEL_* variable: the API's no-op) and on
(the SDK, batching to an OTLP/HTTP endpoint on this machine that takes nothing), against the bare
call measured in the same run.

    .venv/bin/python bench/tracing_overhead.py [--calls N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_MEASURE = r"""
import json, sys, time
from decimal import Decimal
from app.observability import tracing

kind = sys.argv[1]
calls = int(sys.argv[2])
print(json.dumps({"recording": tracing.setup("router")}), file=sys.stderr)
row = {"model": "gpt-4o-mini", "provider": "api.example.com", "prompt_tokens": 120, "completion_tokens": 40,
       "cost_usd": Decimal("0.000042"), "latency_ms": 800.0, "limiter_wait_ms": 3.0, "cache_hit": False,
       "retries": 0, "outcome": "ok"}

def bare(messages, *, tier, purpose, step, request_id):
    return None

@tracing.llm_call
def traced(messages, *, tier, purpose, step, request_id):
    tracing.record_call(row, "openai")

def one_bare():
    bare([], tier="cheap", purpose="understand", step="understand", request_id="r")

def one_traced():
    with tracing.step_span("understand", 1, "r"):
        traced([], tier="cheap", purpose="understand", step="understand", request_id="r")
        tracing.log_ids()

fn = one_traced if kind == "traced" else one_bare
for _ in range(1000):
    fn()
started = time.perf_counter()
for _ in range(calls):
    fn()
print(json.dumps({"us_per_call": (time.perf_counter() - started) / calls * 1e6}))
"""


def measure(kind: str, calls: int, env: dict[str, str]) -> float:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    run = subprocess.run([sys.executable, "-c", _MEASURE, kind, str(calls)], capture_output=True, text=True,
                         cwd=REPO, env={**clean, **env}, check=True, timeout=600)
    return float(json.loads(run.stdout.splitlines()[-1])["us_per_call"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--json", action="store_true", help="one JSON document on one line")
    args = parser.parse_args()
    # Port 9 (discard) on loopback: nothing listens, so exports fail fast in the batch thread.
    on = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_BSP_MAX_QUEUE_SIZE": "2048"}
    baseline = measure("bare", args.calls, {})
    off = measure("traced", args.calls, {})
    recording = measure("traced", args.calls, on)
    result = {
        "bare_us": round(baseline, 2),
        "tracing_off_us": round(off, 2), "tracing_off_ratio": round(off / baseline, 1),
        "tracing_on_us": round(recording, 2), "tracing_on_ratio": round(recording / baseline, 1),
        # Against an LLM call of 500 ms, what a step's and a call's spans add.
        "off_share_of_500ms_call": f"{off / 500_000:.6%}",
        "on_share_of_500ms_call": f"{recording / 500_000:.6%}",
    }
    print(json.dumps(result, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
