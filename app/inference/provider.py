"""The HTTP exchange with every provider API: kept-alive connections per thread, one SSL context
per process, plain calls over httpcore and streamed answers over stream_http, read as
Server-Sent Events while they arrive. What is sent and how the answer reads is the adapter's
(app/inference/adapters)."""

from __future__ import annotations

import functools
import json
import os
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx

from app.config import get_settings
from app.inference import stream_http, stream_pump
from app.inference.adapters import Adapter, ChatRequest, HttpCall
from app.inference.adapters.base import StreamFailed
from app.inference.errors import FailureClass, ProviderError
from app.inference.headers import retry_after
from app.inference.response import ChatResponse, ToolCall, Usage
from app.inference.sse import EventReader

__all__ = ["ChatResponse", "ToolCall", "Usage", "chat"]


_local = threading.local()
_ssl_lock = threading.Lock()
_ssl_context: ssl.SSLContext | None = None
_DEFAULT_PORTS = {b"http": 80, b"https": 443}

# What cannot reach the provider or broke the exchange, as opposed to an answer we did not like.
_TRANSPORT_ERRORS = (
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
    httpcore.ConnectionNotAvailable,
    OSError,
)


def _shared_ssl_context() -> ssl.SSLContext:
    """Building an SSL context loads the CA bundle (milliseconds of CPU); with a pool per thread,
    hundreds of threads would each pay for it. One per process is shared by all."""
    global _ssl_context
    with _ssl_lock:
        if _ssl_context is None:
            _ssl_context = httpx.create_ssl_context()
        return _ssl_context


def _connections(base_url: str) -> httpcore.ConnectionPool:
    """One connection pool per provider per thread. A single pool shared by hundreds of worker
    threads serialises them on its lock; per-thread pools keep their own kept-alive connection."""
    pools: dict[str, httpcore.ConnectionPool] | None = getattr(_local, "pools", None)
    if pools is None or getattr(_local, "pid", None) != os.getpid():
        pools = _local.pools = {}
        _local.pid = os.getpid()
    pool = pools.get(base_url)
    if pool is None:
        pool = pools[base_url] = httpcore.ConnectionPool(
            ssl_context=_shared_ssl_context(),
            max_connections=4,
            max_keepalive_connections=2,
        )
    return pool


@functools.lru_cache(maxsize=256)
def _endpoint(base_url: str, path: str) -> tuple[httpcore.URL, bytes]:
    """The request URL and Host header, parsed once per endpoint rather than once per call."""
    url = httpx.URL(base_url.rstrip("/") + "/" + path)
    return httpcore.URL(
        scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
    ), url.netloc


def _request_args(base_url: str, call: HttpCall) -> tuple[httpcore.URL, dict[str, Any]]:
    url, host = _endpoint(base_url, call.path)
    content = json.dumps(call.body).encode()
    timeout = get_settings().provider_timeout_s
    return url, {
        "headers": [(b"Host", host), *call.headers, (b"Content-Length", str(len(content)).encode())],
        "content": content,
        # For a stream, `read` bounds each wait for the next piece, not the whole answer.
        "extensions": {"timeout": {"connect": 5.0, "read": timeout, "write": timeout, "pool": timeout}},
    }


def _header_dict(response: httpcore.Response) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in response.headers}


def _post_json(base_url: str, call: HttpCall) -> tuple[int, dict[str, str], bytes]:
    """POST the call's body as JSON; (status, headers with lower-case names, body). httpcore, the
    transport under httpx, without httpx's request and response models: at hundreds of calls a
    second per worker process, building those cost a third of each call's CPU."""
    url, args = _request_args(base_url, call)
    response = _connections(base_url).request("POST", url, **args)
    return response.status, _header_dict(response), response.content


@contextmanager
def _transport_errors(request: ChatRequest, key_id: str) -> Iterator[None]:
    try:
        yield
    except httpcore.TimeoutException:
        raise ProviderError(
            FailureClass.TIMEOUT, f"no answer from the provider for {request.model}", key_id=key_id
        ) from None
    except _TRANSPORT_ERRORS as exc:
        raise ProviderError(
            FailureClass.CONNECTION, f"cannot reach the provider: {type(exc).__name__}", key_id=key_id
        ) from None


def _refused(
    adapter: Adapter, status: int, headers: dict[str, str], content: bytes, api_key: str, key_id: str
) -> ProviderError:
    failure = adapter.failure(status, content)
    return ProviderError(
        failure.kind,
        # Providers echo part of a rejected key back; the record and logs must never see it.
        failure.detail.replace(api_key, "[redacted]")[:300],
        status=status,
        retry_after_s=retry_after(headers),
        key_id=key_id,
    )


def _rate_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if "ratelimit" in k or k.startswith("retry-after")}


def chat(
    adapter: Adapter,
    *,
    base_url: str,
    request: ChatRequest,
    api_key: str,
    key_id: str,
    on_delta: Callable[[str], None] | None = None,
) -> ChatResponse:
    """One exchange with the provider through its API's adapter; a failure as a ProviderError.
    With `on_delta` the answer is streamed: each piece of text is passed to it as it arrives, and
    the whole answer is still what is returned."""
    if on_delta is not None:
        return _stream(adapter, base_url, request, api_key, key_id, on_delta)
    call = adapter.build(request, base_url, api_key)
    with _transport_errors(request, key_id):
        status, headers, content = _post_json(base_url, call)
    if status != 200:
        raise _refused(adapter, status, headers, content, api_key, key_id)
    try:
        payload = json.loads(content)
        return adapter.parse(request, call, payload, _rate_headers(headers))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        # A 200 that is not the API's answer (a proxy's page, a truncated body): the server's fault.
        raise ProviderError(
            FailureClass.SERVER,
            f"unreadable answer from the provider: {type(exc).__name__}",
            status=status,
            key_id=key_id,
        ) from None


def _stream(
    adapter: Adapter,
    base_url: str,
    request: ChatRequest,
    api_key: str,
    key_id: str,
    on_delta: Callable[[str], None],
) -> ChatResponse:
    """The streamed exchange over the thread's kept-alive connection. An answer is only what the
    API's final event closes: a stream cut off before it is a retryable failure, and the text
    received until then is never returned (the caller was told each piece as a delta only).

    A provider sends a chunk per token, and waking a worker thread for each costs more CPU than
    the whole rest of the call. So the body is read by the process's one stream pump thread
    (stream_pump), which passes the text parsed from each read to `on_delta` as one piece, reads a
    stream at most every SWITCHBOARD_STREAM_READ_INTERVAL_S once its first piece was passed on,
    and wakes this thread once, when the answer (or an error answer) has ended."""
    if not request.stream:
        request = ChatRequest(**{**request.__dict__, "stream": True})
    call = adapter.build(request, base_url, api_key)
    url, args = _request_args(base_url, call)
    timeout = args["extensions"]["timeout"]
    origin = stream_http.Origin(url.scheme, url.host.decode("ascii"), url.port or _DEFAULT_PORTS[url.scheme])
    decoder = adapter.decoder(request, call)
    reader = EventReader()

    def consume(body: bytes) -> bool:
        """All one socket read brought (a chunk per token, several per read), parsed as one; its
        text passed on as one piece. Runs on the pump's thread."""
        pieces = decoder.feed(reader.feed(body))
        if pieces:
            on_delta(pieces[0] if len(pieces) == 1 else "".join(pieces))
        return bool(pieces)

    with (
        _transport_errors(request, key_id),
        stream_http.post(
            origin,
            url.target,
            args["headers"],
            args["content"],
            stream_http.Timeouts(timeout["connect"], timeout["read"], timeout["write"]),
            _shared_ssl_context(),
            read_headers=False,  # the pump reads them: this thread waits once, for the whole answer
        ) as response,
    ):
        try:
            stream_pump.pump(response, consume, get_settings().stream_read_interval_s)
            if response.status == 200:
                answer = decoder.result(_rate_headers(response.headers))
        except StreamFailed as failed:
            detail = failed.failure.detail.replace(api_key, "[redacted]")[:300]
            raise ProviderError(failed.failure.kind, detail, status=200, key_id=key_id) from None
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise ProviderError(
                FailureClass.SERVER,
                f"unreadable event in the provider's stream: {type(exc).__name__}",
                status=200,
                key_id=key_id,
            ) from None
        if response.status != 200:
            error_body = b"".join(response.error_body)
            raise _refused(adapter, response.status, response.headers, error_body, api_key, key_id)
    if answer is None:
        raise ProviderError(
            FailureClass.CONNECTION,
            "the provider's stream ended before its final event",
            status=200,
            key_id=key_id,
        )
    return answer
