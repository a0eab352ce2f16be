"""The messages RabbitMQ holds in the dead-letter queues, read without taking them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from kombu import Connection
from pydantic import BaseModel

from app.broker_channel import amqp_channel
from app.config import get_settings
from app.orchestration.celery_app import ROUTE_TASK, SUBMIT_TASK

# Messages looked at per dead-letter queue when listing those the record does not know.
PEEK_LIMIT = 1000


def _decode(body: bytes | str) -> tuple[list[Any], dict[str, Any]]:
    """A Celery (protocol 2, JSON) message body's args and kwargs; empty for anything else."""
    try:
        args, kwargs = json.loads(body)[:2]
    except (ValueError, TypeError, KeyError):
        return [], {}
    return (args if isinstance(args, list) else []), (kwargs if isinstance(kwargs, dict) else {})


class BrokerMessage(BaseModel):
    """One message in a dead-letter queue, as RabbitMQ holds it."""

    dlq: str
    task: str | None
    task_id: str | None
    args: list[Any]
    kwargs: dict[str, Any]
    headers: dict[str, Any]

    @property
    def request_id(self) -> str | None:
        """The request a route or specialist message names (a submission names none yet)."""
        if self.task == SUBMIT_TASK or not self.args or not isinstance(self.args[0], str):
            return None
        return self.args[0]

    @property
    def routed_for(self) -> str | None:
        """The tenant a route message's routing inputs name, if it carries them."""
        routing = self.args[1] if len(self.args) > 1 and self.task == ROUTE_TASK else None
        tenant = routing.get("tenant") if isinstance(routing, dict) else None
        return tenant if isinstance(tenant, str) else None

    @property
    def id(self) -> str:
        return self.request_id or self.task_id or "?"


def _held(channel: Any, queue: str, limit: int) -> Iterator[Any]:
    """Each message of `queue`, held unacked on `channel` (closing the channel returns every one
    not acked, in order, so looking loses nothing)."""
    for _ in range(limit):
        message = channel.basic_get(queue=queue, no_ack=False)
        if message is None:
            return
        yield message


def _message(queue: str, message: Any) -> BrokerMessage:
    headers = dict(message.properties.get("application_headers") or {})
    args, kwargs = _decode(message.body)
    return BrokerMessage(
        dlq=queue,
        task=headers.get("task"),
        task_id=headers.get("id"),
        args=args,
        kwargs=kwargs,
        headers=_plain(headers),
    )


def peek(queues: list[str], limit: int = PEEK_LIMIT) -> list[BrokerMessage]:
    """The messages in these dead-letter queues, left where they are."""
    found: list[BrokerMessage] = []
    with Connection(get_settings().broker_url.get_secret_value()) as conn:
        for queue in queues:
            channel = amqp_channel(conn.channel())
            try:
                found += [_message(queue, message) for message in _held(channel, queue, limit)]
            finally:
                channel.close()
    return found


def _plain(headers: dict[str, Any]) -> dict[str, Any]:
    # x-death holds AMQP tables and timestamps: made JSON-friendly for `dlq show --json`.
    plain: dict[str, Any] = json.loads(json.dumps(headers, default=str))
    return plain


def remove_messages(queue: str, request_ids: set[str]) -> int:
    """Ack the DLQ messages of these requests (or task ids, for messages naming no request); every
    other message goes back untouched."""
    removed = 0
    with Connection(get_settings().broker_url.get_secret_value()) as conn:
        channel = amqp_channel(conn.channel())
        try:
            for message in _held(channel, queue, 100_000):
                if _message(queue, message).id in request_ids:
                    channel.basic_ack(message.delivery_tag)
                    removed += 1
        finally:
            # Closing the channel returns every message we looked at but did not ack.
            channel.close()
    return removed
