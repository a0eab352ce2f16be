"""Whether anyone is reading a request's live reply right now, asked of RabbitMQ itself.

A reader binds its own queue to `switchboard.live` with the request id as routing key
(app/orchestration/live.py). A message published there with `mandatory` on a confirm-mode
channel comes back (`basic.return`, which RabbitMQ sends before the `basic.ack`) when no queue is
bound for the key, so one confirmed publish answers the question: a round trip to the broker,
where streaming an answer nobody reads costs the worker, the provider connection and the broker
several milliseconds (SWITCHBOARD_STREAM_REPLIES=when_read). A reader that binds after the
question was asked gets that answer whole, with `done`.

Any doubt (the broker away, a slow confirm) answers yes: streaming is the behaviour without the
question, so the worst a broken probe costs is what streaming always cost.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from typing import Any

from kombu import Connection

from app.config import get_settings
from app.orchestration.live import EXCHANGE

log = logging.getLogger(__name__)

# The confirm normally takes a fraction of a millisecond; past this the answer is "stream".
CONFIRM_TIMEOUT_S = 1.0
# What a reader that is there receives: a kind its Follower ignores (live_follow.py).
PROBE_KIND = "reader_check"


class _Probe:
    """One connection and confirm-mode channel per process, used under a lock: the question is
    asked at most once per model turn that asks to stream, far too rarely to need more."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self.conn: Connection | None = None
        self.channel: Any = None
        self.returned: set[str] = set()

    def _on_return(self, exc: Exception, exchange: str, routing_key: str, message: Any) -> None:
        self.returned.add(routing_key)

    def _open(self) -> Any:
        if self.channel is None:
            conn = Connection(get_settings().broker_url.get_secret_value(), heartbeat=0)
            try:
                # pyamqp's channel: its `events` and `basic_publish_confirm` are amqp's, untyped.
                channel: Any = conn.default_channel
                EXCHANGE(channel).declare()
                channel.events["basic_return"].add(self._on_return)
            except Exception:
                conn.release()
                raise
            self.conn, self.channel = conn, channel
        return self.channel

    def close(self) -> None:
        conn, self.conn, self.channel = self.conn, None, None
        if conn is not None:
            # A broken connection is being dropped anyway: its close may fail as it likes.
            with contextlib.suppress(Exception):
                conn.release()

    def ask(self, request_id: str) -> bool:
        with self.lock:
            try:
                channel = self._open()
                self.returned.discard(request_id)
                message = channel.prepare_message(
                    '{"kind":"' + PROBE_KIND + '"}',
                    content_type="application/json",
                    content_encoding="utf-8",
                    properties={"delivery_mode": 1, "expiration": "10000"},
                )
                channel.basic_publish_confirm(
                    message,
                    exchange=EXCHANGE.name,
                    routing_key=request_id,
                    mandatory=True,
                    confirm_timeout=CONFIRM_TIMEOUT_S,
                )
                read = request_id not in self.returned
                self.returned.discard(request_id)
                return read
            except Exception as exc:  # noqa: BLE001 - any doubt: stream, as without the question
                log.warning(
                    "could not ask the broker for readers of %s (%s); streaming",
                    request_id,
                    type(exc).__name__,
                )
                self.close()
                return True


_lock = threading.Lock()
_probe: _Probe | None = None


def has_reader(request_id: str) -> bool:
    """True when a reader's queue is bound to the request's live messages (or the broker could
    not say)."""
    global _probe
    with _lock:
        if _probe is None or _probe.pid != os.getpid():
            _probe = _Probe()  # a forked child must not share its parent's socket
        probe = _probe
    return probe.ask(request_id)
