"""`switchboard pools`, `scale`, `autoscale` and `procfile`: the worker pools per queue and their size."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.cli.output import CommandError, emit
from app.ops import autoscaler
from app.ops.pools import procfile
from app.ops.queue_status import pools
from app.ops.scale import ScaleError, scale


def cmd_pools(args: argparse.Namespace) -> int:
    views = pools()

    def dash(value: object) -> object:
        return "-" if value is None else value

    def table() -> None:
        print(f"depth from: {views[0].depth_source if views else '-'}")
        print(
            f"{'queue':<18}{'ready':>7}{'unacked':>9}{'consumers':>11}{'workers':>9}{'concurrency':>13}"
            f"{'in flight':>11}{'waiting':>9}{'oldest s':>10}"
        )
        for v in views:
            print(
                f"{v.queue:<18}{dash(v.ready):>7}{dash(v.unacked):>9}{dash(v.consumers):>11}{len(v.workers):>9}"
                f"{v.concurrency:>13}{v.in_flight:>11}{dash(v.waiting):>9}{dash(v.oldest_waiting_s):>10}"
            )
            for w in v.workers:
                print(f"  {w.name:<40} concurrency {dash(w.concurrency)}, running {w.active}")

    emit(args, [v.model_dump(mode="json") for v in views], table)
    return 0


def cmd_scale(args: argparse.Namespace) -> int:
    try:
        report = scale(args.queue, args.n)
    except ScaleError as exc:
        raise CommandError(str(exc)) from None

    def human() -> None:
        print(
            f"{report.queue}: concurrency {report.before} -> {report.after} over "
            f"{report.processes_before} -> {report.processes_after} process(es) (via {report.via})"
        )
        for c in report.changes:
            print(
                f"  {c.name}: {'not running' if c.before is None else c.before} -> "
                f"{'stopped' if c.after is None else c.after}"
            )

    emit(args, report, human)
    return 0


def cmd_autoscale(args: argparse.Namespace) -> int:
    def line(d: autoscaler.Decision) -> str:
        return f"{d.queue}: {d.action} {d.current} -> {d.applied} ({d.reason})"

    def show(d: autoscaler.Decision) -> None:
        emit(args, d, lambda: print(line(d), flush=True))

    try:
        if args.once:
            decisions = autoscaler.run_once(args.queues or None)

            def table() -> None:
                for d in decisions:
                    print(line(d))

            emit(args, [d.model_dump(mode="json") for d in decisions], table)
        else:
            # One JSON document per decision with --json, as the loop decides.
            autoscaler.run(args.queues or None, args.interval, report=show)
    except ScaleError as exc:
        raise CommandError(str(exc)) from None
    except KeyboardInterrupt:
        pass
    return 0


def cmd_procfile(args: argparse.Namespace) -> int:
    text = procfile()
    if args.write:
        Path("Procfile").write_text(text)
    else:
        sys.stdout.write(text)
    return 0
