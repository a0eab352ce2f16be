"""How many messages each queue holds: RabbitMQ's management API when it answers, else a passive
declare over AMQP.

The management API knows ready and unacknowledged counts and consumers; a passive declare knows
only ready messages and consumers (unacked comes back as None). Each reading says which source it
came from. The management API refreshes its figures every few seconds (RabbitMQ's
`collect_statistics_interval`, 5 s by default); a passive declare is exact at that moment.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Literal
from urllib.parse import quote, unquote, urlsplit

import httpx
from amqp.exceptions import AMQPError, NotFound
from kombu import Connection
from pydantic import BaseModel

from app.broker_channel import amqp_channel
from app.config import get_settings

Source = Literal["management", "amqp"]


class Depth(BaseModel):
    ready: int
    unacked: int | None
    consumers: int


class Depths(BaseModel):
    source: Source
    # None for a queue the broker does not have yet (no worker or `topology` declared it).
    queues: dict[str, Depth | None]


def _vhost_and_credentials(broker_url: str) -> tuple[str, str, str, str]:
    parts = urlsplit(broker_url)
    # "amqp://host:5672//" and "amqp://host:5672" both name the default vhost "/".
    path = parts.path.removeprefix("/")
    vhost = unquote(path) or "/"
    return (
        parts.hostname or "127.0.0.1",
        vhost,
        unquote(parts.username or "guest"),
        unquote(parts.password or "guest"),
    )


def from_management(names: list[str], timeout: float = 2.0) -> Depths | None:
    """None when the management API does not answer (plugin off, other port, no permission)."""
    s = get_settings()
    host, vhost, user, password = _vhost_and_credentials(s.broker_url.get_secret_value())
    base = s.rabbitmq_management_url or f"http://{host}:15672"
    url = f"{base.rstrip('/')}/api/queues/{quote(vhost, safe='')}"
    try:
        response = httpx.get(
            url,
            params={"columns": "name,messages_ready,messages_unacknowledged,consumers"},
            auth=(user, password),
            timeout=timeout,
        )
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    found = {q["name"]: q for q in response.json()}
    queues: dict[str, Depth | None] = {}
    for name in names:
        q = found.get(name)
        # A queue declared a moment ago has no statistics yet: its counts are absent, not zero.
        queues[name] = (
            None
            if q is None
            else Depth(
                ready=int(q.get("messages_ready") or 0),
                unacked=int(q.get("messages_unacknowledged") or 0),
                consumers=int(q.get("consumers") or 0),
            )
        )
    return Depths(source="management", queues=queues)


def from_amqp(names: list[str]) -> Depths:
    queues: dict[str, Depth | None] = {}
    with Connection(get_settings().broker_url.get_secret_value()) as conn:
        for name in names:
            channel = amqp_channel(conn.channel())
            try:
                ok = channel.queue_declare(queue=name, passive=True)
                # py-amqp returns a namedtuple (queue_declare_ok_t); celery-types says tuple or None.
                queues[name] = Depth(
                    ready=ok.message_count,  # type: ignore[union-attr]
                    unacked=None,
                    consumers=ok.consumer_count,  # type: ignore[union-attr]
                )
            except NotFound:
                queues[name] = None
            finally:
                # The broker closes a channel whose passive declare failed, or the connection dropped.
                with suppress(AMQPError, OSError):
                    channel.close()
    return Depths(source="amqp", queues=queues)


def depths(names: list[str]) -> Depths:
    return from_management(names) or from_amqp(names)
