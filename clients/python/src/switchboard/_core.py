"""The client without I/O: builds each call, decides retries and polling, parses the answers.

Every call is a generator that yields an `httpx.Request` to send (and receives its response, or has
the transport's exception thrown in) or a `Sleep`; `Client` and `AsyncClient` only drive it, so the
two share every rule here.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from switchboard.errors import ServerError, ServiceUnreachable, WaitTimeout, error_for, retry_after
from switchboard.models import Accepted, EventList, Health, Priority, RequestView

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


@dataclass(frozen=True)
class Sleep:
    seconds: float


Step = httpx.Request | Sleep
Flow = Generator[Step, Any, T]


@dataclass(frozen=True)
class RetryPolicy:
    """How 429, 503 and connection failures are retried: at most `attempts` tries in all and at most
    `max_wait_s` seconds of waiting between them. A Retry-After header sets the wait; without one
    the wait doubles from `backoff_s` up to `backoff_max_s`, with jitter. An answer that asks for
    longer than the budget left is raised at once, carrying its `retry_after`."""

    attempts: int = 4
    max_wait_s: float = 30.0
    backoff_s: float = 0.5
    backoff_max_s: float = 8.0

    def backoff(self, attempt: int) -> float:
        base = min(self.backoff_s * 2 ** (attempt - 1), self.backoff_max_s)
        return random.uniform(base / 2, base)


@dataclass(frozen=True)
class PollPolicy:
    """How `wait` polls: first after `initial_s`, then 1.5 times longer each time, up to `max_s`."""

    initial_s: float = 0.2
    max_s: float = 2.0


RETRIED_STATUSES = frozenset({429, 503})
# Raised before the request reached the server, so trying again cannot run anything twice.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def exchange(request: httpx.Request, policy: RetryPolicy, *, replay_safe: bool) -> Flow[httpx.Response]:
    """Send with retries; the last answer comes back whatever its status. `replay_safe`: the request
    may be sent again after a failure in mid-flight (a GET, or a POST with an idempotency key)."""
    waited = 0.0
    for attempt in range(1, policy.attempts + 1):
        last = attempt == policy.attempts
        answer: httpx.Response | None = None
        try:
            answer = yield request
        except httpx.TransportError as exc:
            if last or not (replay_safe or isinstance(exc, _NOT_SENT)):
                what = type(exc).__name__
                raise ServiceUnreachable(f"{request.method} {request.url.path}: {what}") from exc
            delay = policy.backoff(attempt)
        else:
            if answer.status_code not in RETRIED_STATUSES or last:
                return answer
            told = retry_after(answer)
            delay = policy.backoff(attempt) if told is None else told
        if waited + delay > policy.max_wait_s:
            if answer is not None:
                return answer  # raised by the caller as RateLimited/Unavailable, with its retry_after
            raise ServiceUnreachable(f"{request.method} {request.url.path}: no answer within the retry time")
        yield Sleep(delay)
        waited += delay
    raise AssertionError("unreachable: the last attempt returns or raises")


def parse(response: httpx.Response, model: type[M]) -> M:
    if not response.is_success:
        raise error_for(response)
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise ServerError(response.status_code, "unexpected_answer",
                          f"the answer is not a {model.__name__}: {exc.error_count()} problem(s)") from None


class Calls:
    """The API's calls as flows, for one base URL and API key."""

    def __init__(self, base_url: str, api_key: str, *, timeout: float, retry: RetryPolicy, poll: PollPolicy,
                 user_agent: str) -> None:
        if not isinstance(api_key, str) or not api_key.strip():
            raise ValueError("api_key: pass the token `switchboard keys create TENANT` printed (sbk_...)")
        self.base_url = httpx.URL(base_url.rstrip("/") + "/")
        self.retry = retry
        self.poll = poll
        self._headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json",
                         "User-Agent": user_agent}
        self._timeout = httpx.Timeout(timeout).as_dict()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Request:
        headers = {**self._headers, **kwargs.pop("headers", {})}
        return httpx.Request(method, self.base_url.join(path), headers=headers,
                             extensions={"timeout": self._timeout}, **kwargs)

    def _call(self, request: httpx.Request, model: type[M], *, replay_safe: bool = True) -> Flow[M]:
        response = yield from exchange(request, self.retry, replay_safe=replay_safe)
        return parse(response, model)

    def submit(self, text: str, *, priority: Priority = "normal", idempotency_key: str | None = None,
               customer: str | None = None, conversation_id: str | None = None,
               metadata: dict[str, Any] | None = None, callback_url: str | None = None) -> Flow[Accepted]:
        body: dict[str, Any] = {"text": text, "priority": priority}
        optional = {"customer": customer, "conversation_id": conversation_id, "metadata": metadata,
                    "callback_url": callback_url}
        body.update({k: v for k, v in optional.items() if v is not None})
        # Always keyed, so a retry after a lost answer returns the first request instead of a second.
        key = idempotency_key if idempotency_key is not None else f"client-{uuid.uuid4().hex}"
        request = self._request("POST", "v1/requests", json=body, headers={"Idempotency-Key": key})
        return (yield from self._call(request, Accepted))

    def get(self, request_id: str) -> Flow[RequestView]:
        return (yield from self._call(self._request("GET", _request_path(request_id)), RequestView))

    def events(self, request_id: str) -> Flow[EventList]:
        return (yield from self._call(self._request("GET", _request_path(request_id) + "/events"), EventList))

    def health(self) -> Flow[Health]:
        # Asked once: unhealthy (503) is the answer here, not something to wait out.
        once = RetryPolicy(attempts=1)
        response = yield from exchange(self._request("GET", "healthz"), once, replay_safe=True)
        if response.status_code == 503:
            return Health.model_validate_json(response.content)
        return parse(response, Health)

    def wait(self, request_id: str, timeout: float) -> Flow[RequestView]:
        """Poll until the request finished (succeeded or dead-lettered); WaitTimeout after `timeout` s."""
        deadline = time.monotonic() + timeout
        delay = self.poll.initial_s
        while True:
            view = yield from self.get(request_id)
            if view.finished:
                return view
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(view, timeout)
            yield Sleep(min(delay, left))
            delay = min(delay * 1.5, self.poll.max_s)


def _request_path(request_id: str) -> str:
    if not isinstance(request_id, str) or not request_id:
        raise ValueError("request_id: pass the id a submit returned")
    return "v1/requests/" + quote(request_id, safe="")
