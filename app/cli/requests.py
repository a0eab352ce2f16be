"""`switchboard route`, `submit` and `status`: classify a text, submit a request, read one back."""

from __future__ import annotations

import argparse
import functools
import json
import sys
from typing import Any

from app.cli.output import CommandError, emit
from app.ingress import client
from app.orchestration.routing import decide


def cmd_route(args: argparse.Namespace) -> int:
    texts = (line.rstrip("\n") for line in sys.stdin) if args.text == "-" else iter([args.text])
    for text in texts:
        if not text.strip():
            if args.text == "-":
                continue
            raise CommandError("text must not be empty")
        decision = decide(text, use_llm=not args.no_llm)
        emit(
            args,
            decision,
            functools.partial(print, f"{decision.specialist}\t{decision.confidence:.2f}\t{decision.method}"),
        )
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    metadata = json.loads(args.metadata) if args.metadata else None
    submission = client.submit(
        args.text,
        tenant=args.tenant,
        customer=args.customer,
        priority=args.priority,
        idempotency_key=args.idempotency_key,
        conversation_id=args.conversation,
        metadata=metadata,
    )
    payload: dict[str, Any] = submission.model_dump(mode="json")
    if args.wait:
        try:
            payload.update(client.wait(submission.id, timeout=args.wait).model_dump(mode="json"))
        except TimeoutError as exc:
            payload.update(client.get(submission.id).model_dump(mode="json"))
            payload["wait_timed_out"] = str(exc)
    emit(args, payload, lambda: print(f"{payload['id']}\t{payload['status']}"))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    try:
        view = client.get(args.id)
    except client.RequestNotFound as exc:
        raise CommandError(str(exc), code=1) from None
    emit(args, view, lambda: print(json.dumps(view.model_dump(mode="json"), indent=2)))
    return 0
