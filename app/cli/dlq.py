"""`switchboard dlq list|show|replay|purge`: dead letters, from the record and the dead-letter queues."""

from __future__ import annotations

import argparse
import json
import sys

from app.cli.output import CommandError, emit
from app.ops import dlq


def cmd_dlq(args: argparse.Namespace) -> int:
    if args.dlq_command == "list":
        items = dlq.dead_letters()
        emit(
            args,
            [i.model_dump(mode="json") for i in items],
            lambda: [
                print(
                    f"{i.id}\t{i.queue}\tattempts={i.attempts}\t"
                    f"{'' if i.in_record else '(broker only) '}{i.error}"
                )
                for i in items
            ],
        )
    elif args.dlq_command == "show":
        try:
            detail = dlq.show(args.id)
        except LookupError as exc:
            raise CommandError(str(exc), code=1) from None
        emit(args, detail, lambda: print(json.dumps(detail.model_dump(mode="json"), indent=2)))
    elif args.dlq_command == "purge":
        target = args.queue or "every dead-letter queue"
        if not args.yes:
            if not sys.stdin.isatty():
                raise CommandError(f"purging {target} cannot be undone: pass --yes to confirm")
            if input(f"Purge {target}? Messages are deleted for good. Type 'purge' to confirm: ") != "purge":
                raise CommandError("not purged", code=1)
        try:
            purged = dlq.purge(args.queue)
        except LookupError as exc:
            raise CommandError(str(exc)) from None
        emit(args, {"purged": purged}, lambda: print(f"purged {sum(purged.values())} message(s)"))
    else:
        if not args.all and not args.id:
            raise CommandError("name a request id to replay, or --all")
        try:
            replayed = dlq.replay_all() if args.all else {args.id: dlq.replay(args.id)}
        except LookupError as exc:
            raise CommandError(str(exc), code=1) from None
        emit(
            args,
            {"replayed": [{"id": k, "queue": v} for k, v in replayed.items()]},
            lambda: print(f"replayed {len(replayed)} request(s)"),
        )
    return 0
