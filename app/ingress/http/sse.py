"""`GET /v1/requests/{id}/stream`: a request's reply as Server-Sent Events, served on the ASGI
server's event loop in front of the Flask app.

A stream is a socket, an asyncio task and an exclusive auto-deleted RabbitMQ queue bound to the
request's key on `switchboard.live` (app/orchestration/live.py); it holds no thread and no database connection
while it waits. The key and the record are read in the default executor's threads, briefly, with
the same tenant check as the other reads (another tenant's request is 404). Events: `status`
(from the record), `delta` (text as the model writes it), `restart` (the text so far is void),
`done` (the record's final view); a `: keep-alive` comment every SWITCHBOARD_STREAM_KEEPALIVE_S.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

import aio_pika

from app.config import get_settings
from app.ingress import client
from app.ingress.http.auth import principal_for
from app.ingress.http.errors import ApiError, api_error
from app.ingress.http.openapi import REQUEST_ID
from app.orchestration.live import EXCHANGE, QUEUE_ARGUMENTS, reader_queue_name
from app.orchestration.live_follow import Follower, StreamEvent

log = logging.getLogger("switchboard.api")
_PATH = re.compile(r"^/v1/requests/([^/]+)/stream$")
_ID = re.compile(REQUEST_ID)

Scope = dict[str, Any]


class Streams:
    """ASGI: the stream endpoint here, every other request passed to `app`."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.open = 0
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._connecting = asyncio.Lock()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        match = _PATH.match(scope.get("path", "")) if scope["type"] == "http" else None
        if match is None or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        try:
            await self._stream(scope, receive, send, match.group(1))
        except Exception as exc:
            error = api_error(exc)
            if error is None:
                log.exception("unexpected error on GET %s", scope.get("path"))
                error = ApiError(500, "unexpected error; it has been logged; retry later")
            await _answer(send, error)

    async def _broker(self) -> aio_pika.abc.AbstractRobustConnection:
        async with self._connecting:
            if self._connection is None or self._connection.is_closed:
                url = get_settings().broker_url.get_secret_value()
                self._connection = await aio_pika.connect_robust(url)
            return self._connection

    async def _stream(self, scope: Scope, receive: Any, send: Any, request_id: str) -> None:
        settings = get_settings()
        headers = dict(scope["headers"])
        authorization = headers.get(b"authorization", b"").decode("latin-1")
        principal = await asyncio.to_thread(principal_for, authorization)
        if not _ID.match(request_id):
            raise client.RequestNotFound(request_id)
        if self.open >= settings.stream_max_open:
            raise ApiError(
                503,
                f"this server has {self.open} streams open, its limit "
                "(SWITCHBOARD_STREAM_MAX_OPEN); retry later or poll GET /v1/requests/{id}",
                retry_after_s=5,
            )
        try:
            channel = await (await self._broker()).channel()
        except Exception as exc:  # noqa: BLE001 - whatever opening a channel raises, the client gets a 503 to retry
            log.warning("stream %s: broker unavailable (%s)", request_id, type(exc).__name__)
            raise ApiError(
                503, "the broker (RabbitMQ) is unavailable; retry later", retry_after_s=5
            ) from None
        self.open += 1
        try:
            arrived: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
            exchange = await channel.declare_exchange(
                EXCHANGE.name, aio_pika.ExchangeType.DIRECT, durable=True
            )
            queue = await channel.declare_queue(
                reader_queue_name(), exclusive=True, auto_delete=True, arguments=QUEUE_ARGUMENTS
            )
            # Bound before the record is read: nothing that happens after the read is missed.
            await queue.bind(exchange, routing_key=request_id)

            async def take(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                arrived.put_nowait(json.loads(message.body))

            await queue.consume(take, no_ack=True)
            await self._follow(send, receive, request_id, principal.tenant, arrived)
        finally:
            self.open -= 1
            try:
                await channel.close()  # the exclusive queue goes with it
            except Exception:  # noqa: BLE001, S110 - the broker went away: its queue went with it
                pass

    async def _follow(
        self, send: Any, receive: Any, request_id: str, tenant: str, arrived: asyncio.Queue[dict[str, Any]]
    ) -> None:
        settings = get_settings()

        def read() -> Any:
            return client.get(request_id, tenant=tenant, estimate=False)

        follower = Follower()
        first = follower.record(await asyncio.to_thread(read))  # another tenant's: RequestNotFound, 404
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache"),
                    # Proxies (nginx) would otherwise hold the pieces back until the response ends.
                    (b"x-accel-buffering", b"no"),
                ],
            }
        )
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            await _send_events(send, first)
            loop = asyncio.get_running_loop()
            polled = loop.time()
            while not follower.finished and not gone.done():
                getter = asyncio.ensure_future(arrived.get())
                done, _ = await asyncio.wait(
                    {getter, gone}, timeout=settings.stream_keepalive_s, return_when=asyncio.FIRST_COMPLETED
                )
                if getter not in done:
                    getter.cancel()
                    if gone.done():
                        return
                    await send({"type": "http.response.body", "body": b": keep-alive\n\n", "more_body": True})
                else:
                    events = follower.message(getter.result())
                    while not arrived.empty() and not follower.wants_record:
                        events += follower.message(arrived.get_nowait())
                    await _send_events(send, events)
                # The record is read when a message says it changed, and now and then regardless
                # (a status the workers do not announce, such as routed, or a lost message).
                if follower.wants_record or loop.time() - polled >= settings.stream_poll_s:
                    polled = loop.time()
                    await _send_events(send, follower.record(await asyncio.to_thread(read)))
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            gone.cancel()


async def _send_events(send: Any, events: list[StreamEvent]) -> None:
    if events:
        body = b"".join(e.sse() for e in events)
        await send({"type": "http.response.body", "body": body, "more_body": True})


async def _disconnected(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _answer(send: Any, error: ApiError) -> None:
    payload = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers().items()]
    try:
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
    except Exception:  # noqa: BLE001, S110 - the response had started: the stream is cut, which the client sees
        pass
