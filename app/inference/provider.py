"""The HTTP transport for every provider API: kept-alive connections per thread, one SSL context
per process. What is sent and how the answer reads is the adapter's (app/inference/adapters)."""

from __future__ import annotations

import functools
import json
import os
import ssl
import threading

import httpcore
import httpx

from app.config import get_settings
from app.inference.adapters import Adapter, ChatRequest, HttpCall
from app.inference.errors import FailureClass, ProviderError
from app.inference.headers import retry_after
from app.inference.response import ChatResponse, ToolCall, Usage

__all__ = ["ChatResponse", "ToolCall", "Usage", "chat"]


_local = threading.local()
_ssl_lock = threading.Lock()
_ssl_context: ssl.SSLContext | None = None

# What cannot reach the provider or broke the exchange, as opposed to an answer we did not like.
_TRANSPORT_ERRORS = (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol,
                     httpcore.ConnectionNotAvailable, OSError)


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
            ssl_context=_shared_ssl_context(), max_connections=4, max_keepalive_connections=2
        )
    return pool


@functools.lru_cache(maxsize=256)
def _endpoint(base_url: str, path: str) -> tuple[httpcore.URL, bytes]:
    """The request URL and Host header, parsed once per endpoint rather than once per call."""
    url = httpx.URL(base_url.rstrip("/") + "/" + path)
    return httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path), url.netloc


def _post_json(base_url: str, call: HttpCall) -> tuple[int, dict[str, str], bytes]:
    """POST the call's body as JSON; (status, headers with lower-case names, body). httpcore, the
    transport under httpx, without httpx's request and response models: at hundreds of calls a
    second per worker process, building those cost a third of each call's CPU."""
    url, host = _endpoint(base_url, call.path)
    content = json.dumps(call.body).encode()
    timeout = get_settings().provider_timeout_s
    response = _connections(base_url).request(
        "POST",
        url,
        headers=[(b"Host", host), *call.headers, (b"Content-Length", str(len(content)).encode())],
        content=content,
        extensions={"timeout": {"connect": 5.0, "read": timeout, "write": timeout, "pool": timeout}},
    )
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in response.headers}
    return response.status, headers, response.content


def chat(adapter: Adapter, *, base_url: str, request: ChatRequest, api_key: str, key_id: str) -> ChatResponse:
    """One exchange with the provider through its API's adapter; a failure as a ProviderError."""
    call = adapter.build(request, base_url, api_key)
    try:
        status, headers, content = _post_json(base_url, call)
    except httpcore.TimeoutException:
        raise ProviderError(
            FailureClass.TIMEOUT, f"no answer from the provider for {request.model}", key_id=key_id
        ) from None
    except _TRANSPORT_ERRORS as exc:
        raise ProviderError(
            FailureClass.CONNECTION, f"cannot reach the provider: {type(exc).__name__}", key_id=key_id
        ) from None
    rate_headers = {k: v for k, v in headers.items() if "ratelimit" in k or k.startswith("retry-after")}
    if status != 200:
        failure = adapter.failure(status, content)
        raise ProviderError(
            failure.kind,
            # Providers echo part of a rejected key back; the record and logs must never see it.
            failure.detail.replace(api_key, "[redacted]")[:300],
            status=status,
            retry_after_s=retry_after(headers),
            key_id=key_id,
        )
    try:
        payload = json.loads(content)
        return adapter.parse(request, call, payload, rate_headers)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        # A 200 that is not the API's answer (a proxy's page, a truncated body): the server's fault.
        raise ProviderError(
            FailureClass.SERVER, f"unreadable answer from the provider: {type(exc).__name__}", status=status,
            key_id=key_id,
        ) from None
