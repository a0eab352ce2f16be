"""The OpenAI-compatible chat-completions client: one pooled httpx client per process."""

from __future__ import annotations

import logging
import os
import ssl
import threading
from typing import Any

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


# httpx logs every request at INFO; at hundreds of calls a second that drowns the workers' logs.
logging.getLogger("httpx").setLevel(logging.WARNING)

_local = threading.local()
_ssl_lock = threading.Lock()
_ssl_context: ssl.SSLContext | None = None


def _shared_ssl_context() -> ssl.SSLContext:
    """Building an SSL context loads the CA bundle (milliseconds of CPU); with a client per
    thread, hundreds of threads would each pay for it. One per process is shared by all."""
    global _ssl_context
    with _ssl_lock:
        if _ssl_context is None:
            _ssl_context = httpx.create_ssl_context()
        return _ssl_context


def http_client(base_url: str) -> httpx.Client:
    """One client per provider per thread. A single pool shared by hundreds of worker threads
    serialises them on its lock; per-thread clients keep their own kept-alive connection instead."""
    clients: dict[str, httpx.Client] | None = getattr(_local, "clients", None)
    if clients is None or getattr(_local, "pid", None) != os.getpid():
        clients = _local.clients = {}
        _local.pid = os.getpid()
    client = clients.get(base_url)
    if client is None:
        settings = get_settings()
        client = clients[base_url] = httpx.Client(
            base_url=base_url.rstrip("/") + "/",
            timeout=httpx.Timeout(settings.provider_timeout_s, connect=5.0),
            limits=httpx.Limits(max_connections=4, max_keepalive_connections=2),
            verify=_shared_ssl_context(),
        )
    return client


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
        response = http_client(base_url).post(
            "chat/completions", json=body, headers={"Authorization": f"Bearer {api_key}"}
        )
    except httpx.TimeoutException:
        raise ProviderError(FailureClass.TIMEOUT, f"no answer from the provider for {model}", key_id=key_id) from None
    except httpx.TransportError as exc:
        raise ProviderError(
            FailureClass.CONNECTION, f"cannot reach the provider: {type(exc).__name__}", key_id=key_id
        ) from None
    rate_headers = {k: v for k, v in response.headers.items() if "ratelimit" in k or k.startswith("retry-after")}
    if response.status_code != 200:
        text = response.text[:500]
        try:
            detail = response.json().get("error", {}).get("message") or text
        except ValueError:
            detail = text
        raise ProviderError(
            classify_status(response.status_code, text),
            # Providers echo part of a rejected key back; the record and logs must never see it.
            str(detail).replace(api_key, "[redacted]")[:300],
            status=response.status_code,
            retry_after_s=retry_after(response.headers),
            key_id=key_id,
        )
    payload = response.json()
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
