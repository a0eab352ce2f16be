"""`switchboard topology`: declare the exchanges, queues and dead-letter queues on the broker."""

from __future__ import annotations

import argparse

from kombu import Connection

from app.cli.output import CommandError, emit
from app.config import get_settings
from app.orchestration.topology import TopologyError, declare


def cmd_topology(args: argparse.Namespace) -> int:
    with Connection(get_settings().broker_url.get_secret_value()) as conn:
        try:
            declared = declare(conn)
        except TopologyError as exc:
            raise CommandError(str(exc), code=78) from None
    emit(args, {"declared": declared}, lambda: print("declared: " + ", ".join(declared)))
    return 0
