"""A request's live reply, from the worker writing it to whoever waits for it, over RabbitMQ.

The worker publishes small transient messages to the `switchboard.live` direct exchange with the
request id as routing key: `delta` (a piece of the streamed answer), `restart` (the text sent so
far is void: the provider call or the step is being tried again), `attempt` (a task attempt
started) and `status` (the record changed: read it). A reader binds its own exclusive,
auto-deleted queue to the request's key before it reads the record, so it misses nothing that
happens after it looked; a message nobody listens for is dropped by the exchange at no cost.
Nothing here is durable or written to PostgreSQL: what is final (status, the result) is always the
record's, the live part is a courtesy that may be lost with the broker.

Publishing never blocks a step: messages go on an in-process queue that one thread per process
sends, merging the deltas of one request that queued up behind each other into one message.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid
from typing import Any

from kombu import Connection, Exchange, Producer

from app.config import get_settings

log = logging.getLogger(__name__)

EXCHANGE = Exchange("switchboard.live", type="direct", durable=True, auto_delete=False)
# A reader that stopped reading holds at most this many messages, and none older than the TTL.
QUEUE_ARGUMENTS = {"x-max-length": 10_000, "x-overflow": "drop-head", "x-message-ttl": 120_000}
# Deltas waiting for the sender beyond this are dropped (the broker is away): the reply still
# arrives whole from the record.
_BACKLOG = 50_000


def reader_queue_name() -> str:
    """A reader's own queue (exclusive, deleted when it goes): named here, not by the server,
    because kombu re-declares a queue by name and refuses the server's reserved `amq.` names."""
    return f"switchboard.live.reader.{uuid.uuid4().hex}"


class _Sender(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="live-sender", daemon=True)
        self.pending: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue(maxsize=_BACKLOG)

    def run(self) -> None:
        url = get_settings().broker_url.get_secret_value()
        while True:
            try:
                with Connection(url, heartbeat=0) as conn:
                    producer = Producer(conn.channel(), exchange=EXCHANGE, serializer="json")
                    EXCHANGE(producer.channel).declare()
                    while True:
                        for key, body in _merged(self._take()):
                            # Transient, unconfirmed: a lost piece costs a reader some text, never the
                            # answer, and waiting for confirms would slow every step that streams.
                            producer.publish(body, routing_key=key, delivery_mode=1, expiration=120)
            except Exception as exc:  # the broker went away: drop what waits, reconnect
                log.warning("live replies not sent (%s); reconnecting", type(exc).__name__)
                while not self.pending.empty():
                    self.pending.get_nowait()
                time.sleep(1.0)

    def _take(self) -> list[tuple[str, dict[str, Any]]]:
        batch = [self.pending.get()]
        while len(batch) < 500:
            try:
                batch.append(self.pending.get_nowait())
            except queue.Empty:
                break
        return batch


def _merged(batch: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """Consecutive deltas of one request's step in one message: fewer publishes, same text."""
    out: list[tuple[str, dict[str, Any]]] = []
    for key, body in batch:
        last = out[-1] if out else None
        if (last is not None and last[0] == key and body["kind"] == "delta" and last[1]["kind"] == "delta"
                and last[1]["step"] == body["step"]):
            out[-1] = (key, {**last[1], "text": last[1]["text"] + body["text"]})
        else:
            out.append((key, body))
    return out


_lock = threading.Lock()
_sender: tuple[int, _Sender] | None = None


def publish(request_id: str, kind: str, **fields: Any) -> None:
    global _sender
    with _lock:
        if _sender is None or _sender[0] != os.getpid():
            _sender = (os.getpid(), _Sender())
            _sender[1].start()
        sender = _sender[1]
    try:
        sender.pending.put_nowait((request_id, {"kind": kind, **fields}))
    except queue.Full:
        pass


def attempt_started(request_id: str, attempt: int) -> None:
    publish(request_id, "attempt", attempt=attempt)


def status_changed(request_id: str) -> None:
    publish(request_id, "status")


class LiveAnswer:
    """The Deltas (app/inference/deltas.py) of one request's step: each piece as a `delta`, and a
    `restart` before the first piece of a new provider attempt when an earlier one sent text (a
    retried call, a retried step, or an agent turn that ended in tool calls after some text)."""

    def __init__(self, request_id: str, step: str) -> None:
        self.request_id = request_id
        self.step = step
        self._sent = 0  # characters of the current attempt's text sent

    def begin(self) -> None:
        if self._sent:
            publish(self.request_id, "restart", step=self.step, reason="the answer is being written again")
        self._sent = 0

    def delta(self, text: str) -> None:
        publish(self.request_id, "delta", step=self.step, text=text, offset=self._sent)
        self._sent += len(text)
