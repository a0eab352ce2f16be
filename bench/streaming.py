"""What streaming costs and adds: time to first delta at the HTTP API against the provider's own
time to first token, and worker CPU per request streamed against not streamed.

`python bench/streaming.py --json [--tickets N] [--latency S] [--rounds R]`

On a scratch vhost and database: the simulated provider (latency S spread over its chunks, a
share before the first token), router and technical workers (technical concurrency N), and the
HTTP API (uvicorn, one process). Three kinds of phase, all in this run (plain and streamed R
times each, alternating):

1. provider: N concurrent streamed calls straight to the simulator; the time from asking to the
   first piece of text is the provider's own time to first token (TTFT).
2. plain: N tickets with SWITCHBOARD_STREAM_REPLIES=false (the provider called without
   streaming, as before), submitted and read as in 3 (their readers get status and done only);
   the technical worker's CPU per request.
3. streamed: N tickets submitted over the HTTP API, each read by its own
   GET /v1/requests/{id}/stream (N readers at once);
   the time from the moment the worker asked the provider for the answer (`started_at` of the
   first delta) to that delta reaching the reader is the API's time to first delta; the worker's
   CPU per request again.

Last line: {"provider_ttft_ms": {p50, p95}, "api_ttfd_ms": {p50, p95}, "engine_adds_p95_ms",
"worker_cpu_ms_per_request": {plain, streamed}, "cpu_ratio", ...}.
Targets: engine_adds_p95_ms <= 100, cpu_ratio <= 1.10.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _harness as h

TEXT = "The export page crashes with error 500 when I open it (ticket {n})"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _summary(values: list[float]) -> dict[str, float]:
    return {"p50": round(_pct(values, 0.5) * 1000, 1), "p95": round(_pct(values, 0.95) * 1000, 1),
            "mean": round(statistics.fmean(values) * 1000, 1), "n": len(values)}


def _provider_ttft(base: str, n: int) -> list[float]:
    from app.inference import provider
    from app.inference.adapters import ChatRequest, adapter_for

    def one(i: int) -> float:
        started, first = time.perf_counter(), []

        def seen(_text: str) -> None:
            if not first:
                first.append(time.perf_counter() - started)

        provider.chat(adapter_for("openai"), base_url=base, api_key="sk-switchboard-dev", key_id="bench",
                      request=ChatRequest("sim-large", [{"role": "user", "content": TEXT.format(n=i)}]),
                      on_delta=seen)
        return first[0]

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def _settled_cpu(pid: int, timeout: float = 15.0) -> float:
    """The worker's CPU seconds once it has gone quiet. Its N tasks end within moments of each
    other, and what each does after its reader saw `done` (acknowledging, the last record and
    metrics writes) is a tail of CPU that, read while it runs, falls in one phase or the next by
    chance. (It is not what moves the rounds most: they still differ by up to 0.3 with this.)"""
    deadline, last = time.monotonic() + timeout, h.proc_cpu(pid)
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = h.proc_cpu(pid)
        if now - last < 0.005:  # an idle worker's own heartbeat and timers: a few ms a second
            return now
        last = now
    return last


async def _read(api: str, token: str, request_id: str, client: Any) -> dict[str, Any]:
    import httpx

    from app.inference.sse import EventReader

    reader, first, deltas, kinds = EventReader(), None, 0, []
    try:
        async with client.stream("GET", f"{api}/v1/requests/{request_id}/stream",
                                 headers={"Authorization": f"Bearer {token}"}) as response:
            async for chunk in response.aiter_raw():
                now = time.time()
                for event in reader.feed(chunk):
                    kinds.append(event.event)
                    if event.event == "delta":
                        deltas += 1
                        data = json.loads(event.data)
                        if first is None and "started_at" in data:
                            first = now - data["started_at"]
    except httpx.TransportError as exc:  # counted and printed, not the end of the run
        h.log(f"stream of {request_id} broke off: {type(exc).__name__}")
        return {"ttfd": first, "deltas": deltas, "done": False, "broken": True}
    return {"ttfd": first, "deltas": deltas, "done": kinds[-1:] == ["done"]}


async def _streamed_phase(api: str, token: str, n: int, prefix: str) -> list[dict[str, Any]]:
    import httpx

    async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=120),
                                 limits=httpx.Limits(max_connections=2 * n)) as client:
        async def ticket(i: int) -> dict[str, Any]:
            response = await client.post(f"{api}/v1/requests", headers={"Authorization": f"Bearer {token}"},
                                         json={"text": TEXT.format(n=f"{prefix}{i}")})
            response.raise_for_status()
            return await _read(api, token, response.json()["id"], client)

        return list(await asyncio.gather(*(ticket(i) for i in range(n))))


def run(args: argparse.Namespace) -> dict[str, Any]:
    run_id = h.run_id()
    n = args.tickets
    with contextlib.ExitStack() as stack:
        sb = h.scratch_switchboard(stack, f"stream-{run_id}", {
            "SWITCHBOARD_PROVIDER_RPM": "0",
            "SWITCHBOARD_TECHNICAL_CONCURRENCY": str(n),
            "SWITCHBOARD_ROUTER_CONCURRENCY": "16",
        })
        from app.config import get_settings
        from app.ingress import tenants
        from app.ops.pools import api_spec, pool_specs, simulator_spec
        from app.ops.supervisor import Supervisor, wait_for_workers

        log_dir = Path(".switchboard") / f"bench-streaming-{run_id}"
        probe_dir = log_dir / "probes"
        probe_dir.mkdir(parents=True, exist_ok=True)
        supervisor = stack.enter_context(Supervisor(log_dir, env=h.child_env({**sb.env, "BENCH_PROBE_DIR": str(probe_dir)}),
                                                    restart=False))
        supervisor.start(simulator_spec(None, "--latency-ms", str(int(args.latency * 1000)), "--rpm", "0",
                                        "--tpm", "0"))
        base = f"http://127.0.0.1:{sb.simulator_port}"
        h.wait_http(f"{base}/healthz")
        port = h.free_port()
        spec = api_spec(get_settings().model_copy(update={"api_port": port, "api_workers": 1}))
        supervisor.start(replace(spec, env={**spec.env, "SWITCHBOARD_API_PORT": str(port)}))
        api = f"http://127.0.0.1:{port}"
        h.wait_http(f"{api}/healthz", 60)
        tenants.create_tenant("bench", rpm_limit=100_000, max_concurrent=10_000)
        token = tenants.create_key("bench").token
        specs = {s.name: s for s in pool_specs(queues=["router", "technical"])}
        supervisor.start(specs["router"])

        h.log(f"provider: {n} concurrent streamed calls straight to the simulator")
        _provider_ttft(f"{base}/v1", n)  # warm-up: connections and the simulator's first requests
        provider_ttft = _provider_ttft(f"{base}/v1", n)

        cpu: dict[str, list[float]] = {"plain": [], "streamed": []}
        counts: dict[str, dict[str, float]] = {"plain": {}, "streamed": {}}
        reads: list[dict[str, Any]] = []
        # Alternating rounds, the order reversed every other round (plain, streamed, streamed,
        # plain, ...), so a change in the machine's load during the run weighs on both sides alike.
        order = [p for r in range(args.rounds) for p in (("plain", "streamed") if r % 2 == 0 else ("streamed", "plain"))]
        for number, phase in enumerate(order):
            tech = specs["technical"]
            streaming = "true" if phase == "streamed" else "false"
            role = f"technical.{number}"
            proc = supervisor.start(replace(tech, argv=h.probed(tech.argv, role),
                                            env={**tech.env, "SWITCHBOARD_STREAM_REPLIES": streaming}))
            wait_for_workers(["router", "technical"], timeout=120)
            # Warmed by a full phase of its own kind first: the pool's N threads, each with its
            # kept-alive provider connection, exist before the measured phase, as in a worker that
            # has been running, instead of being started inside it.
            asyncio.run(_streamed_phase(api, token, n, f"warm-{number}-"))
            before, counted = _settled_cpu(proc.pid), h.read_probes(probe_dir).get(role, {})
            h.log(f"{phase} (phase {number + 1} of {len(order)}): {n} tickets")
            # Both kinds alike: submitted over the HTTP API and read by their own stream reader
            # (a reply not streamed gives its reader status and done only), so the worker's CPU
            # differs by streaming alone, not by who submits or reads.
            got = asyncio.run(_streamed_phase(api, token, n, f"{phase[0]}{number}-"))
            if phase == "streamed":
                reads += got
            cpu[phase].append((_settled_cpu(proc.pid) - before) / n)
            time.sleep(0.5)  # the probe writes its counters every 0.25 s
            after = h.read_probes(probe_dir).get(role, {})
            for key, value in after.items():
                counts[phase][key] = counts[phase].get(key, 0) + (value - counted.get(key, 0)) / (n * args.rounds)
            supervisor.stop(tech.name)
        ttfd = [r["ttfd"] for r in reads if r["ttfd"] is not None]
        provider_s, api_s = _summary(provider_ttft), _summary(ttfd)
        return {
            "tickets": n,
            "latency_s": args.latency,
            "provider_ttft_ms": provider_s,
            "api_ttfd_ms": api_s,
            "engine_adds_p50_ms": round(api_s["p50"] - provider_s["p50"], 1),
            "engine_adds_p95_ms": round(api_s["p95"] - provider_s["p95"], 1),
            "streams_with_deltas": sum(1 for r in reads if r["deltas"] >= 2),
            "streams_done": sum(1 for r in reads if r["done"]),
            "worker_cpu_ms_per_request": {k: round(statistics.fmean(v) * 1000, 2) for k, v in cpu.items()},
            "cpu_ratio": round(statistics.fmean(cpu["streamed"]) / statistics.fmean(cpu["plain"]), 3),
            # Each round's own ratio (streamed / plain of the same round): how much the load moved.
            "cpu_ratio_per_round": [round(st / pl, 3) for st, pl in zip(cpu["streamed"], cpu["plain"], strict=True)],
            # What the worker did per request on each side (the probe's counters: statements,
            # commits, checkouts, AMQP publishes, HTTP requests, threads started): where a CPU
            # difference comes from.
            "worker_per_request": {k: {c: round(v, 2) for c, v in sorted(d.items())} for k, d in counts.items()},
            "streams_broken": sum(1 for r in reads if r.get("broken")),
            "rounds": args.rounds,
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "targets": {"engine_adds_p95_ms": 100, "cpu_ratio": 1.10},
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=100, help="concurrent tickets per phase")
    parser.add_argument("--latency", type=float, default=2.0, help="provider latency per call in seconds")
    parser.add_argument("--rounds", type=int, default=2, help="plain and streamed phases each, alternating")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    h.install_signal_handlers()
    result = run(args)
    h.print_result(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
