"""Submissions by task name (`switchboard.submit`): the same validation, record and publish as
`client.submit`, and anything that cannot be accepted published to `submit.dlq` with its error.

The task trusts the broker: whoever can publish to the `submit` queue names the tenant (and the
customer). Callers outside the cluster use the HTTP API, where the API key decides the tenant.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app.ingress import client
from app.orchestration.celery_app import SUBMIT_TASK, celery
from app.orchestration.topology import DEAD_LETTER_EXCHANGE, SUBMIT_QUEUE, dead_letter_queue, dlq_name

# Headers of a message in submit.dlq: why it is there and when it was put there.
ERROR_HEADER = "x-switchboard-error"
REJECTED_AT_HEADER = "x-switchboard-rejected-at"


def submit(args: tuple[Any, ...], kwargs: dict[str, Any], task_id: str) -> client.Submission:
    """Validate, record and publish one task's submission. Raises client.InvalidRequest for bad
    input (nothing written). Without an idempotency key the task's id is the key, so a redelivered
    message (its worker died after recording) returns the first request instead of a second."""
    if args:
        raise client.InvalidRequest(
            [
                (
                    f"args: {SUBMIT_TASK} takes keyword arguments only (kwargs={{'text': ..., 'tenant': ...}}), "
                    f"got {len(args)} positional"
                )
            ]
        )
    fields = dict(kwargs)
    if fields.get("idempotency_key") is None:
        fields["idempotency_key"] = f"task-{task_id}"
    return client.submit_valid(client.validate(**fields))


def dead_letter(task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any], error: str) -> None:
    """Publish the message, unchanged but for its headers, to `submit.dlq` (with confirms), where
    `switchboard dlq list/show` read its error. The caller acks the original only after this."""
    celery.send_task(
        SUBMIT_TASK,
        args=list(args),
        kwargs=kwargs,
        task_id=task_id,
        queue=dead_letter_queue(SUBMIT_QUEUE),  # type: ignore[arg-type]  # Celery takes a kombu Queue too; celery-types says str
        exchange=DEAD_LETTER_EXCHANGE.name,
        routing_key=dlq_name(SUBMIT_QUEUE),
        headers={ERROR_HEADER: error, REJECTED_AT_HEADER: datetime.now(UTC).isoformat()},
        retry=True,
        retry_policy={"max_retries": 5, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2},
    )


def resubmit(args: list[Any], kwargs: dict[str, Any]) -> str:
    """Send a dead-lettered submission to the `submit` queue again (`switchboard dlq replay`) as a
    new task: its id is new, so the old dead letter can be removed without touching a new one."""
    sent = celery.send_task(
        SUBMIT_TASK, args=args, kwargs=kwargs, queue=SUBMIT_QUEUE, routing_key=SUBMIT_QUEUE
    )
    return str(sent.id)
