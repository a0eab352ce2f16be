"""`switchboard ...`, one module per command group (as Celery's `celery/bin/`).

`parser.py` holds every command's flags and names the module that runs it; `dispatch.py` loads
that module when the command runs; `output.py` is the `--json` contract and CommandError;
`arguments.py` the flag types. The groups: migrate (migrate, seed), requests (route, submit,
status), dlq, pools (pools, scale, autoscale, procfile), limits, report, topology, reconcile,
people (approvals, inbox, reply), tenants (tenants, keys, settings), planning (capacity, cost),
manifests, serve (workers up, api, flower), simulator, demo.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.cli.output import CommandError
from app.cli.parser import build_parser

__all__ = ["CommandError", "build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Deferred: `--help` and a wrong flag exit above without loading the engine (broker, database, tracing).
    from app.cli.dispatch import run  # noqa: PLC0415

    return run(args)
