"""`switchboard workers up`, `api` and `flower`: the long-running processes, each refusing development secrets."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from app.cli.output import CommandError
from app.config import reset_settings
from app.default_secrets import DefaultSecrets, refuse_defaults
from app.observability.flower import run_flower
from app.ops.fleet import Fleet
from app.ops.pools import api_argv
from app.ops.supervisor import Supervisor
from app.orchestration.topology import CALLBACK_QUEUE, work_queue_names


def dev_mode(args: argparse.Namespace) -> None:
    """`--dev`: this process and every process it starts accept the development secrets."""

    if getattr(args, "dev", False):
        os.environ["SWITCHBOARD_DEV"] = "true"
        reset_settings()


def refuse_default_secrets(*roles: str) -> None:
    """Exit 78 (EX_CONFIG) when a role would run on the development secrets outside dev mode."""
    try:
        for role in roles:
            refuse_defaults(role)
    except DefaultSecrets as exc:
        raise CommandError(str(exc), code=78) from None


def cmd_workers(args: argparse.Namespace) -> int:
    unknown = [q for q in args.queues or [] if q not in work_queue_names()]
    if unknown:
        raise CommandError(f"unknown queue(s) {', '.join(unknown)}; known: {', '.join(work_queue_names())}")
    dev_mode(args)
    queues = args.queues or work_queue_names()
    refuse_default_secrets(
        *(["worker"] if set(queues) - {CALLBACK_QUEUE} else []),
        *(["callbacks"] if CALLBACK_QUEUE in queues else []),
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    supervisor = Supervisor(Path(args.log_dir))
    fleet = Fleet(supervisor, args.queues or work_queue_names())
    try:
        fleet.start()
        for queue in fleet.queues:
            print(f"started {queue} pool (logs: {supervisor.log_path(queue)})", flush=True)
        # Applies `switchboard scale` / autoscaler targets and heartbeats; crashed processes are
        # restarted by the supervisor's own watcher.
        while not stop.wait(1.0):
            try:
                for change in fleet.reconcile():
                    print(f"scaled {change}", flush=True)
            except Exception as exc:  # noqa: BLE001 - the database or broker blinked: try again next second
                print(f"could not apply pool targets: {exc}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        # Also on an unexpected error: no pool outlives its supervisor.
        print(
            "stopping pools (warm shutdown: running tasks finish; Ctrl-C again to kill them, "
            "their messages go back to the queues)...",
            flush=True,
        )
        try:
            fleet.stop()
        except KeyboardInterrupt:
            supervisor.kill()
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    dev_mode(args)
    refuse_default_secrets("api")  # here, once, rather than in each server process it would start
    argv = api_argv()
    os.execv(argv[0], argv)  # replaces this process: nothing after it runs


def cmd_flower(args: argparse.Namespace) -> int:
    return run_flower(dev=args.dev)
