"""The HTTP API as uvicorn serves it: the Flask app in a thread pool behind a body-limit layer.

Connections, slow or not, live on uvicorn's event loop and cost no thread; a request reaches a
thread (and the database) only once its headers and its whole body have arrived. The body is
read here, on the loop, up to SWITCHBOARD_API_MAX_BODY_BYTES: past it, with or without a
Content-Length, the answer is 413 and the connection is closed without reading the rest.
"""

from __future__ import annotations

import json
from typing import Any

from a2wsgi import WSGIMiddleware

from app.config import get_settings
from app.default_secrets import DefaultSecrets, refuse_defaults
from app.ingress.http.app import create_app
from app.ingress.http.errors import too_large
from app.ingress.http.sse import Streams

Scope = dict[str, Any]
Message = dict[str, Any]


class BodyLimit:
    """Reads each request's body before the app runs, refusing one past `max_bytes` with 413."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                await self._refuse(send)
                return
        # The app sees a plain body of known length, however it was framed on the wire.
        headers = [(k, v) for k, v in scope["headers"] if k not in (b"content-length", b"transfer-encoding")]
        headers.append((b"content-length", str(len(body)).encode()))
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                disconnect: Message = await receive()  # the client's disconnect, if it goes away
                return disconnect
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app({**scope, "headers": headers}, replay, send)

    async def _refuse(self, send: Any) -> None:
        error = too_large(self.max_bytes)
        payload = json.dumps(error.body()).encode()
        await send(
            {
                "type": "http.response.start",
                "status": error.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    # The rest of the body is never read: the connection cannot carry another request.
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def create_asgi() -> Streams:
    """`uvicorn --factory app.ingress.http.asgi:create_asgi`: one thread per concurrent request at most
    SWITCHBOARD_API_THREADS, as the database pool is sized for."""
    settings = get_settings()
    try:
        refuse_defaults("api", settings=settings)
    except DefaultSecrets as exc:
        raise SystemExit(f"switchboard: {exc}") from None
    # GET /v1/requests/{id}/stream is answered on the loop itself (app/ingress/http/sse.py): an open
    # stream holds a socket and a broker queue, never one of the threads.
    # a2wsgi types the environ as its own TypedDict, Flask as a dict: the same WSGI environ.
    wsgi = WSGIMiddleware(create_app(), workers=settings.api_threads)  # type: ignore[arg-type]
    app = BodyLimit(wsgi, settings.api_max_body_bytes)
    return Streams(app)
