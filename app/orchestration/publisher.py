"""Confirmed publishes of Switchboard's own task messages on kept channels.

The two publishes every request makes (client -> router, router -> specialist) are Celery protocol-2
messages, built by Celery (`app.amqp.as_task_v2`) exactly as `send_task` builds them, so any Celery
worker runs them. What is left out is `send_task`'s per-message work that these two never need:
routing lookups, option merging, the producer pool, kombu's entity copying for `maybe_declare`
and its retry wrappers; measured, that was more than half of a confirmed send_task's CPU. Celery's before/after_task_publish signals are still sent, so
trace context travels in the headers as before (app/observability/tracing.py).

Each channel is in confirm mode: `publish` returns only once RabbitMQ has taken the message,
or raises. Channels are kept in a small pool shared by the process's threads (a py-amqp
connection is not safe to use from two threads at once); a channel whose connection failed is
dropped, and the publish is tried again on a new one as Celery's retry policy would.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from celery import signals
from kombu import Connection, Producer
from kombu.transport.pyamqp import Transport
from kombu.utils.json import dumps
from kombu.utils.uuid import uuid

from app.broker_channel import amqp_channel
from app.orchestration.celery_app import celery
from app.orchestration.topology import SUBMIT_QUEUE, submit_queue, work_queue

log = logging.getLogger(__name__)

# Like send_task's retry policy for the client: three tries over about a second, then the caller
# decides (the client leaves the request to the reconciler; a task retries).
RETRY_SLEEPS_S = (0.2, 0.7)
# What the broker or the network raises (worth a new connection and another try), not a bug.
_BROKER_TROUBLE: tuple[type[BaseException], ...] = (
    OSError,
    *Transport.connection_errors,
    *Transport.channel_errors,
)


@dataclass
class _Channel:
    connection: Connection
    channel: Any  # py-amqp's Channel, in confirm mode
    producer: Producer
    url: str
    declared: set[str] = field(default_factory=set)


class Publisher:
    """A pool of confirm-mode channels to the broker Celery is configured with (its URL is read at
    each publish, so `use_broker` moves the next publish to the new broker)."""

    def __init__(self, limit: int = 10) -> None:
        self._limit = limit
        self._idle: queue.LifoQueue[_Channel] = queue.LifoQueue()
        self._lock = threading.Lock()
        self._open = 0  # channels of this process, idle or in use
        self._pid = os.getpid()

    def publish(
        self,
        name: str,
        args: list[Any],
        queue_name: str,
        priority: int,
        *,
        argsrepr: str | None = None,
        **kwargs: Any,
    ) -> str:
        """Send task `name` to `queue_name` and wait for the broker's confirm; the message id.
        `argsrepr`: what the message's headers show of `args` (Celery's repr of them by default)."""
        task_id = uuid()
        parent = celery.current_worker_task  # as send_task: a task's messages name it as parent
        root_id = parent_id = None
        if parent is not None and parent.request.id:
            root_id, parent_id = parent.request.root_id or parent.request.id, parent.request.id
        message = celery.amqp.as_task_v2(
            task_id,
            name,
            args=tuple(args),
            kwargs=kwargs,
            root_id=root_id,
            parent_id=parent_id,
            ignore_result=bool(celery.conf.task_ignore_result),
            argsrepr=argsrepr,
        )
        headers, properties, body = message.headers, message.properties, message.body
        signals.before_task_publish.send(
            sender=name,
            body=body,
            exchange="",
            routing_key=queue_name,
            declare=[],
            headers=headers,
            properties=properties,
            retry_policy=None,
        )
        payload = dumps(body)
        for attempt in range(len(RETRY_SLEEPS_S) + 1):
            kept = None
            try:
                kept = self._acquire()
                self._declare(kept, queue_name)
                # The default exchange, routing key = queue name: what send_task does for a direct
                # queue. The body is serialized already (content_type given), and in confirm mode
                # this returns once the broker has the message.
                kept.producer.publish(
                    payload,
                    routing_key=queue_name,
                    priority=priority,
                    content_type="application/json",
                    content_encoding="utf-8",
                    headers=headers,
                    delivery_mode=2,
                    retry=False,
                    **properties,
                )
            except Exception as exc:
                if kept is not None:
                    self._discard(kept)  # its connection or channel may be broken: never reused
                if not isinstance(exc, _BROKER_TROUBLE):
                    raise
                # The broker restarted or the network dropped: the idle channels opened before
                # are as dead as this one, so the next try opens a new connection.
                self._discard_idle()
                if attempt == len(RETRY_SLEEPS_S):
                    raise
                time.sleep(RETRY_SLEEPS_S[attempt])
                continue
            self._release(kept)
            break
        signals.after_task_publish.send(
            sender=name, body=body, headers=headers, exchange="", routing_key=queue_name
        )
        return task_id

    def _acquire(self) -> _Channel:
        url = str(celery.conf.broker_url)
        if self._pid != os.getpid():  # a forked child: the parent's sockets are not ours
            with self._lock:
                self._idle, self._open, self._pid = queue.LifoQueue(), 0, os.getpid()
        while True:
            try:
                kept = self._idle.get_nowait()
            except queue.Empty:
                with self._lock:
                    opening = self._open < self._limit
                    if opening:
                        self._open += 1
                if opening:
                    return self._connect(url)
                try:  # every channel is in use: wait for one, re-checking now and then
                    kept = self._idle.get(timeout=0.5)
                except queue.Empty:
                    continue
            if kept.url == url:
                return kept
            self._discard(kept)  # opened before the broker URL changed

    def _connect(self, url: str) -> _Channel:
        connection = Connection(url, transport_options={"confirm_publish": True}, connect_timeout=4)
        try:
            # One try (kombu's connect() retries once, 2 s later): the caller's retries decide,
            # and a broker that stays down leaves the request to the reconciler in about a second.
            connection.ensure_connection(max_retries=0, reraise_as_library_errors=False)
            channel = amqp_channel(connection.channel())
            return _Channel(connection, channel, Producer(channel, auto_declare=False), url)
        except BaseException:
            connection.release()
            with self._lock:
                self._open -= 1
            raise

    @staticmethod
    def _declare(kept: _Channel, queue_name: str) -> None:
        # As send_task's maybe_declare: once per connection, so a message published before any
        # worker declared the topology still finds its queue (the default exchange would drop it,
        # and confirm it all the same).
        if queue_name not in kept.declared:
            declared = submit_queue() if queue_name == SUBMIT_QUEUE else work_queue(queue_name)
            declared(kept.channel).declare()
            kept.declared.add(queue_name)

    def _release(self, kept: _Channel) -> None:
        self._idle.put(kept)

    def _discard_idle(self) -> None:
        while True:
            try:
                self._discard(self._idle.get_nowait())
            except queue.Empty:
                return

    def _discard(self, kept: _Channel) -> None:
        _close(kept)
        with self._lock:
            self._open -= 1


def _close(kept: _Channel) -> None:
    # Without the closing handshake: the connection may be dead, and a close would wait for it.
    try:
        kept.connection.collect()
    except Exception:
        log.debug("closing a broker channel failed", exc_info=True)


publisher = Publisher(limit=int(celery.conf.broker_pool_limit or 10))


def publish(
    name: str, args: list[Any], queue_name: str, priority: int, *, argsrepr: str | None = None, **kwargs: Any
) -> str:
    """Publish task `name` with `args` (and `kwargs`) to `queue_name`, confirmed; the message id."""
    return publisher.publish(name, args, queue_name, priority, argsrepr=argsrepr, **kwargs)
