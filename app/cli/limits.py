"""`switchboard limits`: every provider rate-limit bucket, configured and learned."""

from __future__ import annotations

import argparse

from app.cli.output import emit
from app.inference.limits_report import build, render_text


def cmd_limits(args: argparse.Namespace) -> int:
    view = build()
    emit(args, view, lambda: print(render_text(view)))
    return 0
