"""The OpenAI-compatible chat-completions client: kept-alive connections per thread, one SSL
context per process."""

from __future__ import annotations

import functools
import json
import os
import ssl
import threading
from typing import Any

import httpcore
import httpx
from pydantic import BaseModel, Field

from app.config import get_settings
from app.inference.errors import FailureClass, ProviderError, classify_status
from app.inference.headers import retry_after


class ToolCall(BaseModel):
    id: str
    name: str
    arguments: str


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class ChatResponse(BaseModel):
    model: str
    content: str | None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    usage: Usage
    finish_reason: str | None = None
    # Rate-limit headers as the provider sent them, for adaptive limiting.
    rate_headers: dict[str, str] = Field(default_factory=dict)

    def assistant_message(self) -> dict[str, Any]:
        """The message to append to the conversation when the agent loop continues."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in self.tool_calls
            ]
        return message


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


@functools.lru_cache(maxsize=64)
def _endpoint(base_url: str, path: str) -> tuple[httpcore.URL, bytes]:
    """The request URL and Host header, parsed once per endpoint rather than once per call."""
    url = httpx.URL(base_url.rstrip("/") + "/" + path)
    return httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path), url.netloc


def _post_json(base_url: str, path: str, body: dict[str, Any], api_key: str
               ) -> tuple[int, dict[str, str], bytes]:
    """POST `body` as JSON; (status, headers with lower-case names, body). httpcore, the transport
    under httpx, without httpx's request and response models: at hundreds of calls a second per
    worker process, building those cost a third of each call's CPU."""
    url, host = _endpoint(base_url, path)
    content = json.dumps(body).encode()
    timeout = get_settings().provider_timeout_s
    response = _connections(base_url).request(
        "POST",
        url,
        headers=[
            (b"Host", host),
            (b"Authorization", f"Bearer {api_key}".encode()),
            (b"Content-Type", b"application/json"),
            (b"Accept", b"application/json"),
            (b"Content-Length", str(len(content)).encode()),
        ],
        content=content,
        extensions={"timeout": {"connect": 5.0, "read": timeout, "write": timeout, "pool": timeout}},
    )
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in response.headers}
    return response.status, headers, response.content


def chat(
    *,
    base_url: str,
    model: str,
    messages: list[dict[str, Any]],
    api_key: str,
    key_id: str,
    tools: list[dict[str, Any]] | None = None,
    max_tokens: int = 512,
) -> ChatResponse:
    body: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": max_tokens}
    if tools:
        body["tools"] = tools
    try:
        status, headers, content = _post_json(base_url, "chat/completions", body, api_key)
    except httpcore.TimeoutException:
        raise ProviderError(FailureClass.TIMEOUT, f"no answer from the provider for {model}", key_id=key_id) from None
    except _TRANSPORT_ERRORS as exc:
        raise ProviderError(
            FailureClass.CONNECTION, f"cannot reach the provider: {type(exc).__name__}", key_id=key_id
        ) from None
    rate_headers = {k: v for k, v in headers.items() if "ratelimit" in k or k.startswith("retry-after")}
    if status != 200:
        text = content.decode("utf-8", errors="replace")[:500]
        try:
            detail = json.loads(content).get("error", {}).get("message") or text
        except (ValueError, AttributeError):
            detail = text
        raise ProviderError(
            classify_status(status, text),
            # Providers echo part of a rejected key back; the record and logs must never see it.
            str(detail).replace(api_key, "[redacted]")[:300],
            status=status,
            retry_after_s=retry_after(headers),
            key_id=key_id,
        )
    payload = json.loads(content)
    choice = payload["choices"][0]
    message = choice.get("message") or {}
    calls = [
        ToolCall(id=c["id"], name=c["function"]["name"], arguments=c["function"].get("arguments") or "{}")
        for c in message.get("tool_calls") or []
    ]
    usage = payload.get("usage") or {}
    return ChatResponse(
        model=payload.get("model", model),
        content=message.get("content"),
        tool_calls=calls,
        usage=Usage(
            prompt_tokens=usage.get("prompt_tokens", 0), completion_tokens=usage.get("completion_tokens", 0)
        ),
        finish_reason=choice.get("finish_reason"),
        rate_headers=rate_headers,
    )
