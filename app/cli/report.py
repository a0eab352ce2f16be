"""`switchboard report`: per-stage latency, throughput, tokens, cost and the bottleneck (text, JSON, HTML)."""

from __future__ import annotations

import argparse
from pathlib import Path

from app.cli.output import CommandError, emit
from app.observability.report import build, parse_since, render_text
from app.observability.report_html import render_html


def cmd_report(args: argparse.Namespace) -> int:
    try:
        since = parse_since(args.since)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    report = build(since)
    if args.html:
        path = Path(args.html)
        try:
            path.write_text(render_html(report), encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot write {path}: {exc.strerror}") from None
    payload = report.model_dump(mode="json")
    if args.html:
        payload["html"] = str(Path(args.html).resolve())

    def human() -> None:
        print(render_text(report))
        if args.html:
            print(f"  HTML report: {payload['html']}")

    emit(args, payload, human)
    return 0
