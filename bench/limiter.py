"""Reservations per second on one hot bucket set from many processes, per limiter backend.

`python bench/limiter.py --json [--processes 8] [--seconds 4] [--rounds 3] [--backends postgres,redis]`

Every process reserves, in a loop, the same four buckets a limited gateway call draws on (the key's
RPM and TPM, the model group's RPM and TPM), so every reservation of the fleet contends for the same
rows (keys). The limits are far from binding, so nothing sleeps: what is measured is how many
all-or-nothing multi-level reservations the backend serialises per second. Backends alternate
round by round in the same run, so load from other jobs hits them alike; each backend's figure is
its median round.

A second phase checks the guarantee the speed must not cost: the same processes reserve with
`max_wait_s=0` against a binding limit (300 requests/min, headroom 0) for `--seconds`; the fleet
may be admitted at most the burst plus what the rate allows in that time (`cap_ok`), once with no
headroom (a burst of one) and once with 20% (a burst of 300, so leases are taken).

Backends: `postgres` (the default; the bucket's commit is asynchronous, app/inference/limiter.py),
`postgres-lease` (the same, each process reserving `--lease` calls' worth per round trip:
SWITCHBOARD_LIMITER_LEASE, app/inference/limiter_lease.py), `postgres-sync` (the same statement with
a synchronous commit: what the default was), `redis` (SWITCHBOARD_LIMITER_BACKEND=redis,
app/inference/limiter_redis.py).
Last line: {"reservations_per_s" (the first backend's), "backend", "processes", "backends": {...}}.
Target: >= 2,000/s from 8 processes.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _harness as h

DATABASE: list[str] = []  # the scratch database's name, once made
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def _limiter(backend: str) -> Any:
    from app.inference.limiter import PostgresLimiter
    from app.inference.limiter_lease import LeasingLimiter

    if backend == "postgres-lease":
        return LeasingLimiter(PostgresLimiter(), int(os.environ.get("BENCH_LEASE", "8")))
    if backend == "postgres":
        return PostgresLimiter()
    if backend == "postgres-sync":
        return PostgresLimiter(synchronous_commit=True)
    if backend == "redis":
        from app.inference.limiter_redis import RedisLimiter

        return RedisLimiter(REDIS_URL, prefix=f"bench-{os.environ['BENCH_TAG']}:")
    raise SystemExit(f"unknown backend {backend!r}")


def _demands(tag: str, limit: float | None, headroom: float) -> tuple[Any, ...]:
    from app.inference.limiter import Demand

    big = 10**9
    return (
        Demand.of(f"key:bench/{tag}/rpm", 1, limit or big, headroom),
        Demand.of(f"key:bench/{tag}/tpm", 100, big * 1000, headroom, tokens=True),
        Demand.of(f"model:bench/{tag}/m/rpm", 1, big, headroom),
        Demand.of(f"model:bench/{tag}/m/tpm", 100, big * 1000, headroom, tokens=True),
    )


def _worker(
    backend: str, tag: str, cap: float | None, headroom: float, seconds: float, ready: Any, go: Any, out: Any
) -> None:
    from app.inference.limiter import Candidate, WaitTooLong

    os.environ["BENCH_TAG"] = tag
    limiter = _limiter(backend)
    candidates = [Candidate("k", _demands(tag, cap, headroom))]
    with contextlib.suppress(WaitTooLong):
        limiter.reserve(candidates, 0.0)  # connect (and create the rows) first
    ready.put(os.getpid())
    go.wait()
    done = refused = 0
    cpu = time.process_time()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            limiter.reserve(candidates, 1e9 if cap is None else 0.0)
            done += 1
        except WaitTooLong:
            refused += 1
    out.put((done, refused, time.process_time() - cpu))


def _server_cpu(database: str) -> dict[str, float]:
    """CPU seconds so far of this database's PostgreSQL backends, Redis, and the whole machine."""
    import psutil

    snap = h.cpu_snapshot({}, (database,))
    snap["redis"] = sum(
        p.info["cpu_times"].user + p.info["cpu_times"].system
        for p in psutil.process_iter(["name", "cpu_times"])
        if (p.info["name"] or "").startswith("redis-server") and p.info["cpu_times"]
    )
    return snap


def _round(
    backend: str, processes: int, seconds: float, cap: float | None, headroom: float = 0.1
) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    tag = uuid.uuid4().hex[:8]
    args = (backend, tag, cap, headroom, seconds, ready, go, out)
    procs = [ctx.Process(target=_worker, args=args) for _ in range(processes)]
    for p in procs:
        p.start()
    try:
        # Spawned children take a while to import the app on a loaded machine; all start together.
        for _ in procs:
            ready.get(timeout=300)
        before = _server_cpu(DATABASE[0])
        go.set()
        return_ = [out.get(timeout=seconds + 120) for _ in procs]
        used = h.delta(_server_cpu(DATABASE[0]), before)
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
    done = sum(d for d, _, _ in return_)
    per = 1e6 / max(done, 1)
    return {
        "done": done,
        "refused": sum(r for _, r, _ in return_),
        # CPU per reservation: the reserving processes, the database's backends, Redis.
        "client_cpu_us": round(sum(c for _, _, c in return_) * per),
        "postgres_cpu_us": round(used["postgres"] * per),
        "redis_cpu_us": round(used["redis"] * per),
        "machine_busy_cores": round(used["machine_busy"] / seconds, 2),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from app.inference.limiter_lease import LEASE_TTL_S

    backends = args.backends.split(",")
    load_before = [round(x, 2) for x in os.getloadavg()]
    rounds: dict[str, list[dict[str, float]]] = {b: [] for b in backends}
    alone: dict[str, float] = {}
    for b in backends:
        # One process alone: a round trip at a time, no contention for the rows.
        alone[b] = _round(b, 1, args.seconds, None)["done"] / args.seconds
        h.log(f"1 process {b}: {alone[b]:.0f} reservations/s")
    for r in range(args.rounds):
        for b in backends if r % 2 == 0 else list(reversed(backends)):
            found = _round(b, args.processes, args.seconds, None)
            rounds[b].append(found)
            h.log(f"round {r + 1} {b}: {found['done'] / args.seconds:.0f} reservations/s {found}")
    caps: dict[str, dict[str, Any]] = {}
    for b in backends:
        caps[b] = {}
        # Headroom 0 (a burst of one: no lease can be taken), then 20% (a burst of 300 requests,
        # leases of the full size).
        for cap_rpm, headroom in ((300.0, 0.0), (3000.0, 0.2)):
            found = _round(b, args.processes, args.seconds, cap_rpm, headroom)
            effective, burst = cap_rpm * (1 - headroom), max(1.0, cap_rpm * headroom / 2)
            # A leased unit may be used up to the lease's TTL after its slot.
            late = LEASE_TTL_S if b.endswith("-lease") else 0.0
            # Burst plus the rate over the phase (and the TTL), plus one slot for the edge.
            allowed = burst + effective / 60 * (args.seconds + late) + 1
            caps[b][f"cap_{cap_rpm:g}rpm_headroom_{headroom:g}"] = {
                "admitted": found["done"],
                "allowed": round(allowed, 1),
                "ok": found["done"] <= allowed,
            }
            h.log(f"cap {b} {cap_rpm:g}/min headroom {headroom:g}: {found['done']} admitted "
                  f"(at most {allowed:.0f}), {found['refused']} refused")
        caps[b]["cap_ok"] = all(c["ok"] for c in caps[b].values())
    per_backend = {}
    for b, found in rounds.items():
        median = sorted(found, key=lambda f: f["done"])[len(found) // 2]
        per_backend[b] = {
            "reservations_per_s": round(median["done"] / args.seconds),
            "rounds": [round(f["done"] / args.seconds) for f in found],
            "one_process_per_s": round(alone[b]),
            **{k: v for k, v in median.items() if k not in ("done", "refused")},
            **caps[b],
        }
    first = backends[0]
    return {
        "processes": args.processes,
        "seconds_per_round": args.seconds,
        "cores": os.cpu_count(),
        "load_avg_before": load_before,
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "backends": per_backend,
        "cap_ok": all(c["cap_ok"] for c in caps.values()),
        "backend": first,
        "reservations_per_s": per_backend[first]["reservations_per_s"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="postgres,postgres-lease,postgres-sync,redis")
    parser.add_argument("--lease", type=int, default=8, help="calls' worth per lease, postgres-lease")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    os.environ["BENCH_LEASE"] = str(args.lease)  # spawned workers inherit it
    h.install_signal_handlers()
    DATABASE.append(f"bench_limiter_{uuid.uuid4().hex[:8]}")
    with h.scratch_database(DATABASE[0]) as url:
        os.environ["SWITCHBOARD_DATABASE_URL"] = url
        from app.ops.migrate import upgrade

        upgrade()
        result = run(args)
        from app.state import dispose_engine

        dispose_engine()  # before the database is dropped
    h.print_result(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
