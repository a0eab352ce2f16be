"""`AsyncClient`: the same calls as `Client`, for asyncio apps (FastAPI, Starlette, Django async views)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from switchboard._core import Calls, Flow, PollPolicy, RetryPolicy, Sleep, T
from switchboard._version import __version__
from switchboard.models import Accepted, Event, Health, Priority, RequestView


async def drive(flow: Flow[T], send: Any) -> T:
    """Run a flow with asyncio I/O: await each send, and asyncio.sleep when it asks to wait."""
    try:
        step = next(flow)
        while True:
            if isinstance(step, Sleep):
                await asyncio.sleep(step.seconds)
                step = flow.send(None)
                continue
            try:
                response = await send(step)
            except httpx.TransportError as exc:
                step = flow.throw(exc)
            else:
                step = flow.send(response)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


class AsyncClient:
    """Switchboard's HTTP API with an API key, awaited: the same methods and answers as `Client`."""

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 10.0,
                 retry: RetryPolicy | None = None, poll: PollPolicy | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._calls = Calls(base_url, api_key, timeout=timeout, retry=retry or RetryPolicy(),
                            poll=poll or PollPolicy(), user_agent=f"switchboard-client/{__version__}")
        self._http = httpx.AsyncClient(transport=transport, timeout=timeout)

    async def _run(self, flow: Flow[T]) -> T:
        return await drive(flow, self._http.send)

    async def submit(self, text: str, *, priority: Priority = "normal", idempotency_key: str | None = None,
                     customer: str | None = None, conversation_id: str | None = None,
                     metadata: dict[str, Any] | None = None, callback_url: str | None = None) -> Accepted:
        """See `Client.submit`."""
        return await self._run(self._calls.submit(
            text, priority=priority, idempotency_key=idempotency_key, customer=customer,
            conversation_id=conversation_id, metadata=metadata, callback_url=callback_url))

    async def get(self, request_id: str) -> RequestView:
        return await self._run(self._calls.get(request_id))

    async def wait(self, request_id: str, timeout: float = 60.0) -> RequestView:
        return await self._run(self._calls.wait(request_id, timeout))

    async def events(self, request_id: str) -> list[Event]:
        return (await self._run(self._calls.events(request_id))).events

    async def health(self) -> Health:
        return await self._run(self._calls.health())

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:  # never the key
        return f"AsyncClient({str(self._calls.base_url)!r})"
