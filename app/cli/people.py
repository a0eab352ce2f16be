"""`switchboard approvals`, `inbox` and `reply`: what a person decides or answers for a waiting request."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from app.cli.arguments import person
from app.cli.output import CommandError, emit
from app.ingress import client
from app.orchestration import approvals, handoffs
from app.state import transitions as record


def as_person(act: Callable[[], Any]) -> Any:
    """A person's action on a request: an unknown id exits 1, one not in the needed status 2."""
    try:
        return act()
    except client.RequestNotFound as exc:
        raise CommandError(str(exc), code=1) from None
    except (record.NotWaiting, ValueError) as exc:
        raise CommandError(str(exc)) from None


def cmd_approvals(args: argparse.Namespace) -> int:
    if args.approvals_command == "list":
        items = approvals.pending(args.tenant)
        emit(
            args,
            [i.model_dump(mode="json") for i in items],
            lambda: [
                print(
                    f"{i.request_id}\t{i.tenant}\t{i.tool}\t{json.dumps(i.arguments)}"
                    f"\tdeadline={i.deadline:%Y-%m-%d %H:%M}\t{i.why}"
                )
                for i in items
            ],
        )
        return 0
    view = as_person(
        lambda: approvals.decide(
            args.id, approve=args.approvals_command == "approve", by=person(args), reason=args.reason
        )
    )
    emit(args, view, lambda: print(f"{view.request_id}\t{view.tool}\t{view.decision} by {view.decided_by}"))
    return 0


def cmd_inbox(args: argparse.Namespace) -> int:
    items = handoffs.inbox(args.tenant)

    def table() -> None:
        for i in items:
            late = "  PAST SLA" if i.sla_breached else ""
            print(
                f"{i.id}\t{i.tenant}\twaiting {i.waiting_s:.0f}s of {i.sla_s:.0f}s{late}"
                f"\t{i.source}: {i.reason}"
            )
            print(f"    {' '.join(i.text.split())[:200]}")

    emit(args, [i.model_dump(mode="json") for i in items], table)
    return 0


def cmd_reply(args: argparse.Namespace) -> int:
    answer = as_person(lambda: handoffs.reply(args.id, args.text, by=person(args)))
    emit(args, answer, lambda: print(f"{answer['id']}\t{answer['status']}"))
    return 0
