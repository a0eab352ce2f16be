"""Client CPU, wall time and database round trips per limiter reservation and reconcile.

`python bench/limiter_cpu.py [--n N] [--buckets 2|4] [--json]` on a scratch database. A
reservation draws on a call's buckets at every level (key RPM/TPM and model RPM/TPM: four buckets,
what a limited call of the gateway reserves; `--buckets 2`: the key's two only, what a call
reserved before limit levels), against limits far from binding so nothing sleeps. Round trips count every
statement plus BEGIN and COMMIT (none on an autocommit connection).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _harness as h


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--buckets", type=int, choices=[2, 4], default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with h.scratch_database(f"bench_limiter_{uuid.uuid4().hex[:8]}") as url:
        os.environ["SWITCHBOARD_DATABASE_URL"] = url
        result = _measure(args)
        from app.state import dispose_engine

        dispose_engine()  # before the database is dropped
    print(json.dumps(result) if args.json else result)
    return 0


def _measure(args: argparse.Namespace) -> dict[str, object]:
    from sqlalchemy import Connection, event

    from app.inference.limiter import Candidate, Demand, PostgresLimiter
    from app.ops.migrate import upgrade
    from app.state.session import get_engine

    upgrade()
    counted = [0]

    def statement(*_: object) -> None:
        counted[0] += 1

    def transaction_edge(conn: Connection, *_: object) -> None:
        # On an autocommit connection SQLAlchemy still fires these, but nothing is sent.
        if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
            counted[0] += 1

    event.listen(get_engine(), "before_cursor_execute", statement)
    for name in ("begin", "commit", "rollback"):
        event.listen(get_engine(), name, transaction_edge)
    tag = uuid.uuid4().hex[:6]
    demands = (
        Demand.of(f"key:bench/{tag}/rpm", 1, 10**9, 0.1),
        Demand.of(f"key:bench/{tag}/tpm", 100, 10**12, 0.1, tokens=True),
        Demand.of(f"model:bench/{tag}/m/rpm", 1, 10**9, 0.1),
        Demand.of(f"model:bench/{tag}/m/tpm", 100, 10**12, 0.1, tokens=True),
    )[: args.buckets]
    limiter, candidates = PostgresLimiter(), [Candidate("k", demands)]
    for _ in range(50):
        reservation = limiter.reserve(candidates, 1e9)

    def measure(fn) -> dict[str, float]:
        counted[0] = 0
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(args.n):
            fn()
        return {"cpu_us": round((time.process_time() - cpu) / args.n * 1e6),
                "wall_us": round((time.perf_counter() - wall) / args.n * 1e6),
                "round_trips": counted[0] / args.n}

    return {"buckets": len(demands), "reserve": measure(lambda: limiter.reserve(candidates, 1e9)),
            "reconcile": measure(lambda: limiter.reconcile(reservation, 50))}


if __name__ == "__main__":
    raise SystemExit(main())
