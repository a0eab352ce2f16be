"""`Client`: the blocking client, for Flask, Django and scripts."""

from __future__ import annotations

import time
from typing import Any

import httpx

from switchboard._core import Calls, Flow, PollPolicy, RetryPolicy, Sleep, T
from switchboard._version import __version__
from switchboard.models import Accepted, Event, Health, Priority, RequestView


def drive(flow: Flow[T], send: Any) -> T:
    """Run a flow with blocking I/O: send what it asks to send, sleep when it asks to wait."""
    try:
        step = next(flow)
        while True:
            if isinstance(step, Sleep):
                time.sleep(step.seconds)
                step = flow.send(None)
                continue
            try:
                response = send(step)
            except httpx.TransportError as exc:
                step = flow.throw(exc)
            else:
                step = flow.send(response)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


class Client:
    """Switchboard's HTTP API with an API key: `submit`, `get`, `wait`, `events`, `health`.

    One instance is safe to share between threads (it keeps one pooled httpx.Client); close it
    with `close()` or use it as a context manager.
    """

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 10.0,
                 retry: RetryPolicy | None = None, poll: PollPolicy | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._calls = Calls(base_url, api_key, timeout=timeout, retry=retry or RetryPolicy(),
                            poll=poll or PollPolicy(), user_agent=f"switchboard-client/{__version__}")
        self._http = httpx.Client(transport=transport, timeout=timeout)

    def _run(self, flow: Flow[T]) -> T:
        return drive(flow, self._http.send)

    def submit(self, text: str, *, priority: Priority = "normal", idempotency_key: str | None = None,
               customer: str | None = None, conversation_id: str | None = None,
               metadata: dict[str, Any] | None = None, callback_url: str | None = None) -> Accepted:
        """Submit a request for the key's tenant. A repeated `idempotency_key` returns the first request
        (`duplicate=True`) and runs nothing again; the same key with a different body raises Conflict."""
        return self._run(self._calls.submit(
            text, priority=priority, idempotency_key=idempotency_key, customer=customer,
            conversation_id=conversation_id, metadata=metadata, callback_url=callback_url))

    def get(self, request_id: str) -> RequestView:
        """The request now; NotFound for an unknown id or another tenant's request."""
        return self._run(self._calls.get(request_id))

    def wait(self, request_id: str, timeout: float = 60.0) -> RequestView:
        """Poll until the request succeeded or was dead-lettered; WaitTimeout after `timeout` seconds."""
        return self._run(self._calls.wait(request_id, timeout))

    def events(self, request_id: str) -> list[Event]:
        """The request's event log, oldest first."""
        return self._run(self._calls.events(request_id)).events

    def health(self) -> Health:
        """Whether the API's database and broker answer."""
        return self._run(self._calls.health())

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __repr__(self) -> str:  # never the key
        return f"Client({str(self._calls.base_url)!r})"
