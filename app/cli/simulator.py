"""`switchboard simulator`: the simulated OpenAI-compatible provider (the `demo` extra, checked before this loads)."""

from __future__ import annotations

import argparse

from app.simulator import main as simulator_main


def cmd_simulator(args: argparse.Namespace) -> int:
    return simulator_main(args.simulator_args)
