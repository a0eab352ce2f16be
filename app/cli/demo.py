"""`switchboard demo`: the Monday-morning surge on this machine's services, and `--stop`."""

from __future__ import annotations

import argparse

from app.extras import require
from app.ops.demo import run_demo, stop_demo


def cmd_demo(args: argparse.Namespace) -> int:
    if not args.stop:
        require("demo", "switchboard demo")
        require("flower", "switchboard demo (it starts Flower)")
        require("classifier", "switchboard demo (its router classifies locally)")

    if args.stop:
        return stop_demo()
    return run_demo(
        tickets=args.tickets, keep_running=args.keep_running, as_json=args.json, rpm=args.rpm, tpm=args.tpm
    )
