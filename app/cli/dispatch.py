"""Runs a parsed command: tracing, the extras it needs, its module loaded by name, and the exit code.

A command's module is imported here, when it runs, not by the parser: each imports what its command
uses at its top, so `switchboard procfile` never loads Flower's, the API's or the simulator's parts,
and a command whose extra is missing says which `pip install` brings it before its import would fail.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Any

from app.cli.output import CommandError
from app.extras import MissingExtra, require
from app.ingress.client import InvalidRequest, Overloaded
from app.observability import tracing
from app.ops.preflight import ServiceUnavailable
from app.orchestration.registry import RegistryError


def handler(args: argparse.Namespace) -> Any:
    """The function `args.handler` ("module:function" in app/cli/) names, after checking its extras."""
    for extra, purpose in args.needs:
        require(extra, purpose)
    module, _, function = args.handler.partition(":")
    return getattr(importlib.import_module(f"app.cli.{module}"), function)


def run(args: argparse.Namespace) -> int:
    tracing.setup("client")  # submits, replays and re-publishes carry the request's trace
    tracing.continue_from_environment()  # a calling script's TRACEPARENT
    try:
        return int(handler(args)(args))
    except (CommandError, InvalidRequest, Overloaded, ServiceUnavailable, MissingExtra, RegistryError) as exc:
        code = (
            exc.code if isinstance(exc, CommandError) else (3 if isinstance(exc, ServiceUnavailable) else 2)
        )
        payload: dict[str, Any] = {"error": str(exc)}
        if isinstance(exc, Overloaded):
            code = 75  # EX_TEMPFAIL: try again later
            payload.update(
                overloaded=True,
                queue=exc.queue,
                estimated_wait_s=exc.estimated_wait_s,
                retry_after_s=exc.retry_after_s,
            )
        if getattr(args, "json", False):
            print(json.dumps(payload))
        print(f"switchboard: error: {exc}", file=sys.stderr)
        return code
