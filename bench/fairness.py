"""Fair share under a burst, through the HTTP API: one tenant posts a burst of N billing tickets at
once, another tenant posts a few right after. Measured from the record, with fair share on and then
off (SWITCHBOARD_FAIR_SHARE=0, first in first out at equal priority):

- `others_last_finished_s`: burst start until the other tenant's last request finished;
- `burst_drained_s`: burst start until the burst's last request finished;
- `others_e2e_max_s`: the other tenant's slowest request, its submit to its result;
  `others_e2e_ratio` = that with fair share / without;
- `burst_done_before_others`: how many of the burst had finished when the other tenant's last did;
- `submit_ms_p50` / `_p95`: the API's answer time for the burst's POSTs (8 callers at once).

`python bench/fairness.py --json [--burst N] [--others M] [--latency S] [--concurrency C]`
Last line: one JSON object {"fair_share_on": {...}, "fair_share_off": {...}, "others_e2e_ratio"}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _harness as h


def _phase(args: argparse.Namespace, *, fair: bool) -> dict[str, Any]:
    run_id = h.run_id()
    with contextlib.ExitStack() as stack:
        sb = h.scratch_switchboard(stack, f"fair-{run_id}", {
            "SWITCHBOARD_FAIR_SHARE": "8" if fair else "0",
            "SWITCHBOARD_SPECIALIST_CONCURRENCY": str(args.concurrency),
        })
        import httpx

        from app.config import get_settings
        from app.ingress import client, tenants
        from app.ops.pools import api_spec, pool_specs, simulator_spec
        from app.ops.supervisor import Supervisor, wait_for_workers

        supervisor = stack.enter_context(Supervisor(Path(".switchboard") / f"bench-fair-{run_id}",
                                                    env=h.child_env(sb.env), restart=False))
        supervisor.start(simulator_spec(None, "--latency-ms", str(int(args.latency * 1000))))
        h.wait_http(f"http://127.0.0.1:{sb.simulator_port}/healthz")
        for spec in pool_specs(queues=["router", "billing"]):
            supervisor.start(spec)
        port = h.free_port()
        spec = api_spec(get_settings().model_copy(update={"api_port": port}))
        supervisor.start(replace(spec, env={**spec.env, "SWITCHBOARD_API_PORT": str(port)}))
        api = f"http://127.0.0.1:{port}"
        h.wait_http(f"{api}/healthz", 60)
        wait_for_workers(["router", "billing"], timeout=120)

        tenants.create_tenant("noisy", rpm_limit=100_000, max_concurrent=100_000)
        tenants.create_tenant("quiet")
        noisy, quiet = tenants.create_key("noisy").token, tenants.create_key("quiet").token
        latencies: list[float] = []

        def post(token: str, text: str) -> str:
            started = time.perf_counter()
            answer = httpx.post(f"{api}/v1/requests", headers={"Authorization": f"Bearer {token}"},
                                json={"text": text}, timeout=60)
            latencies.append((time.perf_counter() - started) * 1000)
            answer.raise_for_status()
            return str(answer.json()["id"])

        h.log(f"fair share {'on' if fair else 'off'}: burst of {args.burst}, then {args.others} from another tenant")
        with ThreadPoolExecutor(8) as pool:
            burst = list(pool.map(lambda i: post(noisy, f"Please refund the duplicate charge on INV-{5000 + i}"),
                                  range(args.burst)))
        burst_latencies = list(latencies)
        others = [post(quiet, f"Why was I charged twice for invoice INV-{6000 + i}?") for i in range(args.others)]
        views = {rid: client.wait(rid, timeout=args.deadline_s) for rid in burst + others}
        start = min(v.accepted_at for v in views.values())
        others_last = max(views[r].finished_at for r in others)  # type: ignore[type-var]
        burst_last = max(views[r].finished_at for r in burst)  # type: ignore[type-var]
        return {
            "burst": args.burst,
            "others": args.others,
            "succeeded": sum(v.status == "succeeded" for v in views.values()),
            "others_last_finished_s": round((others_last - start).total_seconds(), 2),
            "burst_drained_s": round((burst_last - start).total_seconds(), 2),
            # Each of the other tenant's requests from its own submit to its result.
            "others_e2e_max_s": round(max(views[r].timings["end_to_end"] or 0.0 for r in others), 2),
            "burst_e2e_p50_s": round(statistics.median(views[r].timings["end_to_end"] or 0.0 for r in burst), 2),
            "burst_done_before_others": sum(1 for r in burst if views[r].finished_at <= others_last),  # type: ignore[operator]
            "submit_ms_p50": round(statistics.median(burst_latencies), 1),
            "submit_ms_p95": round(statistics.quantiles(burst_latencies, n=20)[-1], 1),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--others", type=int, default=5)
    parser.add_argument("--latency", type=float, default=0.3, help="simulated provider latency per call (s)")
    parser.add_argument("--concurrency", type=int, default=8, help="billing pool threads")
    parser.add_argument("--deadline-s", type=float, default=600)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    h.install_signal_handlers()
    on = _phase(args, fair=True)
    off = _phase(args, fair=False)
    result = {
        "fair_share_on": on,
        "fair_share_off": off,
        # The other tenant's worst submit-to-result time with fair share against without.
        "others_e2e_ratio": round(on["others_e2e_max_s"] / off["others_e2e_max_s"], 3),
    }
    if not args.json:
        for name, phase in (("on", on), ("off", off)):
            print(f"fair share {name}: other tenant's slowest request took {phase['others_e2e_max_s']}s, done at "
                  f"{phase['others_last_finished_s']}s "
                  f"({phase['burst_done_before_others']}/{phase['burst']} of the burst done by then); "
                  f"burst drained at {phase['burst_drained_s']}s")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
