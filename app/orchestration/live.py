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
sends within GATHER_S, merging the pieces of one request that queued up meanwhile into one message
(the transport already hands over the pieces that arrived together as one, see provider._stream).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from typing import Any

from kombu import Connection, Exchange

from app.broker_channel import amqp_channel
from app.config import get_settings

log = logging.getLogger(__name__)

EXCHANGE = Exchange("switchboard.live", type="direct", durable=True, auto_delete=False)
# A reader that stopped reading holds at most this many messages, and none older than the TTL.
QUEUE_ARGUMENTS = {"x-max-length": 10_000, "x-overflow": "drop-head", "x-message-ttl": 120_000}
# Deltas waiting for the sender beyond this are dropped (the broker is away): the reply still
# arrives whole from the record.
_BACKLOG = 50_000
GATHER_S = 0.02


def reader_queue_name() -> str:
    """A reader's own queue (exclusive, deleted when it goes): named here, not by the server,
    because kombu re-declares a queue by name and refuses the server's reserved `amq.` names."""
    return f"switchboard.live.reader.{uuid.uuid4().hex}"


class _Sender(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="live-sender", daemon=True)
        # A deque and an event, not a queue.Queue: appending takes no lock and wakes nobody; only
        # the first message after the sender went to sleep sets the event.
        self.pending: deque[tuple[str, dict[str, Any]]] = deque(maxlen=_BACKLOG)
        self.wake = threading.Event()

    def run(self) -> None:
        url = get_settings().broker_url.get_secret_value()
        while True:
            try:
                with Connection(url, heartbeat=0) as conn:
                    channel = amqp_channel(conn.default_channel)
                    EXCHANGE(channel).declare()
                    # pyamqp reads the socket before every publish when the server may send
                    # connection.blocked; this connection never needs to know (a blocked broker
                    # stops reading it, the sender waits, steps never do), so it skips that read.
                    if capabilities := conn.connection.client_properties.get("capabilities"):
                        capabilities["connection.blocked"] = False
                    sock = conn.connection.sock
                    while True:
                        batch = _merged(self._take())
                        # One TCP send for the batch, not one per message: each send through the
                        # kernel's TCP stack cost more CPU than building the message.
                        _cork(sock, True)
                        for key, body in batch:
                            # Transient, unconfirmed and straight to the channel (not kombu's
                            # Producer, which costs several times the CPU per message): a lost piece
                            # costs a reader some text, never the answer.
                            message = channel.prepare_message(
                                json.dumps(body, separators=(",", ":")),
                                content_type="application/json",
                                content_encoding="utf-8",
                                properties={"delivery_mode": 1, "expiration": "120000"},
                            )
                            channel.basic_publish(message, exchange=EXCHANGE.name, routing_key=key)
                        _cork(sock, False)
            except Exception as exc:  # noqa: BLE001 - the broker went away: drop what waits, reconnect
                log.warning("live replies not sent (%s); reconnecting", type(exc).__name__)
                self.pending.clear()
                time.sleep(1.0)

    def _take(self) -> list[tuple[str, dict[str, Any]]]:
        self.wake.wait()
        # Whatever else arrives in the next moment goes in the same wake-up: on this machine a
        # thread waking costs some 0.3 ms of CPU, more than the publishes it makes.
        time.sleep(GATHER_S)
        self.wake.clear()  # before taking: what is appended from now on sets it again
        batch = []
        while self.pending:
            batch.append(self.pending.popleft())
        return batch


def _cork(sock: socket.socket, on: bool) -> None:
    if hasattr(socket, "TCP_CORK"):  # Linux; elsewhere each message is its own send
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, on)


def _merged(batch: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """One request's consecutive deltas of one step in one message: fewer publishes, same text.
    Order is kept per request (each has its own routing key), not across requests."""
    by_key: dict[str, list[dict[str, Any]]] = {}
    for key, body in batch:
        bodies = by_key.setdefault(key, [])
        last = bodies[-1] if bodies else None
        if (
            last is not None
            and body["kind"] == "delta"
            and last["kind"] == "delta"
            and last["step"] == body["step"]
        ):
            bodies[-1] = {**last, "text": last["text"] + body["text"]}
        else:
            bodies.append(body)
    return [(key, body) for key, bodies in by_key.items() for body in bodies]


_lock = threading.Lock()
_sender: tuple[int, _Sender] | None = None


def publish(request_id: str, kind: str, **fields: Any) -> None:
    global _sender
    with _lock:
        if _sender is None or _sender[0] != os.getpid():
            _sender = (os.getpid(), _Sender())
            _sender[1].start()
        sender = _sender[1]
    # Past _BACKLOG waiting (the broker is away) the oldest are dropped.
    sender.pending.append((request_id, {"kind": kind, **fields}))
    if not sender.wake.is_set():
        sender.wake.set()


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
        self._began = 0.0

    def begin(self) -> None:
        if self._sent:
            publish(self.request_id, "restart", step=self.step, reason="the answer is being written again")
        self._sent = 0
        self._began = time.time()

    def delta(self, text: str) -> None:
        if self._sent:
            publish(self.request_id, "delta", step=self.step, text=text, offset=self._sent)
        else:
            # When the provider was asked for this text (epoch seconds): how long the first piece
            # took to reach a reader, provider and engine together.
            publish(self.request_id, "delta", step=self.step, text=text, offset=0, started_at=self._began)
        self._sent += len(text)
