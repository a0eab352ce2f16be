"""The client against httpx.MockTransport: answers, typed errors, retries, idempotency keys, wait."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import switchboard
from switchboard import AsyncClient, Client, PollPolicy, RetryPolicy

BASE = "http://sb.test"
KEY = "sbk_abc.secret"
VIEW = {
    "id": "0b7a6a8e-0000-4000-8000-000000000001", "tenant": "acme", "status": "succeeded",
    "priority": "high", "specialist": "billing", "route_confidence": 0.9, "route_method": "rule",
    "attempts": 1, "result": {"reply": "Refunded.", "tool_calls": []}, "error": None,
    "tokens": {"prompt": 10, "completion": 5, "total": 15}, "cost_usd": 0.001,
    "timings": {"end_to_end": 1.5}, "accepted_at": "2026-01-01T00:00:00Z",
    "started_at": "2026-01-01T00:00:01Z", "finished_at": "2026-01-01T00:00:02Z",
    "queue_position": None, "estimated_wait_s": None, "estimated_start": None,
    "some_future_field": 1,
}


def error(status: int, code: str, details: list[str] | None = None,
          retry_after: str | None = None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return httpx.Response(status, json={"error": {"code": code, "message": f"{code} happened",
                                                  "details": details or []}}, headers=headers)


Answer = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler answering from a script, one answer per request, keeping the requests."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer(request) if callable(answer) else answer


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waits: list[float] = []
    monkeypatch.setattr("switchboard.client.time.sleep", waits.append)

    async def no_wait(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr("switchboard.async_client.asyncio.sleep", no_wait)
    return waits


def sync_client(handler: Recorder, **kwargs: Any) -> Client:
    return Client(BASE, KEY, transport=httpx.MockTransport(handler), **kwargs)


def test_submit_sends_the_body_key_and_idempotency_key() -> None:
    handler = Recorder(httpx.Response(202, json={"id": VIEW["id"], "status": "accepted", "duplicate": False}))
    with sync_client(handler) as sb:
        accepted = sb.submit("charged twice", priority="high", idempotency_key="ticket-1", customer="cust-9",
                             metadata={"order": 4711})
    assert accepted == switchboard.Accepted(id=VIEW["id"], status="accepted", duplicate=False)
    (sent,) = handler.requests
    assert (sent.method, str(sent.url)) == ("POST", f"{BASE}/v1/requests")
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert sent.headers["Idempotency-Key"] == "ticket-1"
    assert sent.headers["User-Agent"] == f"switchboard-client/{switchboard.__version__}"
    assert json.loads(sent.content) == {"text": "charged twice", "priority": "high", "customer": "cust-9",
                                        "metadata": {"order": 4711}}


def test_a_submit_without_a_key_gets_one_so_its_retries_cannot_run_twice(slept: list[float]) -> None:
    handler = Recorder(httpx.ReadTimeout("lost"), httpx.Response(200, json={"id": "x", "status": "accepted",
                                                                             "duplicate": True}))
    with sync_client(handler) as sb:
        assert sb.submit("hello").duplicate
    first, second = handler.requests
    assert first.headers["Idempotency-Key"].startswith("client-")
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]


def test_get_parses_a_typed_view_and_ignores_fields_it_does_not_know() -> None:
    with sync_client(Recorder(httpx.Response(200, json=VIEW))) as sb:
        view = sb.get(VIEW["id"])
    assert view.finished and view.reply == "Refunded."
    assert view.tokens.total == 15 and view.specialist == "billing"
    assert view.finished_at is not None and view.finished_at.year == 2026


@pytest.mark.parametrize(("status", "code", "kind"), [
    (400, "bad_request", switchboard.BadRequest),
    (401, "unauthenticated", switchboard.Unauthorized),
    (403, "forbidden", switchboard.Forbidden),
    (404, "not_found", switchboard.NotFound),
    (409, "idempotency_conflict", switchboard.Conflict),
    (413, "body_too_large", switchboard.BadRequest),
    (500, "internal_error", switchboard.ServerError),
])
def test_each_error_is_its_own_exception(status: int, code: str, kind: type[Exception]) -> None:
    with sync_client(Recorder(error(status, code))) as sb, pytest.raises(kind) as raised:
        sb.get("some-id")
    assert isinstance(raised.value, switchboard.APIError)
    assert (raised.value.status, raised.value.code) == (status, code)
    assert KEY not in str(raised.value)


def test_invalid_request_names_each_field_and_is_not_retried() -> None:
    handler = Recorder(error(422, "invalid_request", ["text: must not be empty", "priority: bad"]))
    with sync_client(handler) as sb, pytest.raises(switchboard.InvalidRequest) as raised:
        sb.submit(" ")
    assert raised.value.problems == ["text: must not be empty", "priority: bad"]
    assert len(handler.requests) == 1


def test_429_and_503_are_retried_after_retry_after(slept: list[float]) -> None:
    handler = Recorder(error(429, "rate_limited", retry_after="2"),
                       error(503, "unavailable", retry_after="1"),
                       httpx.Response(200, json=VIEW))
    with sync_client(handler) as sb:
        assert sb.get(VIEW["id"]).status == "succeeded"
    assert slept == [2.0, 1.0]
    assert len(handler.requests) == 3


def test_retries_stop_after_the_attempts_allowed(slept: list[float]) -> None:
    handler = Recorder(error(503, "unavailable", retry_after="1"))
    with sync_client(handler, retry=RetryPolicy(attempts=3)) as sb:
        with pytest.raises(switchboard.Unavailable) as raised:
            sb.get("id")
    assert len(handler.requests) == 3 and slept == [1.0, 1.0]
    assert raised.value.retry_after == 1.0


def test_a_retry_after_past_the_time_budget_is_raised_at_once(slept: list[float]) -> None:
    handler = Recorder(error(429, "rate_limited", retry_after="120"))
    with sync_client(handler, retry=RetryPolicy(max_wait_s=30)) as sb:
        with pytest.raises(switchboard.RateLimited) as raised:
            sb.submit("hi")
    assert len(handler.requests) == 1 and slept == []
    assert raised.value.retry_after == 120.0


def test_overloaded_is_an_unavailable_with_its_own_code(slept: list[float]) -> None:
    handler = Recorder(error(503, "overloaded", retry_after="5"))
    with sync_client(handler, retry=RetryPolicy(attempts=1)) as sb:
        with pytest.raises(switchboard.Overloaded) as raised:
            sb.submit("hi", priority="low")
    assert isinstance(raised.value, switchboard.Unavailable) and raised.value.retry_after == 5.0


def test_connection_failures_are_retried_then_raised(slept: list[float]) -> None:
    handler = Recorder(httpx.ConnectError("refused"))
    with sync_client(handler, retry=RetryPolicy(attempts=3, backoff_s=0.1)) as sb:
        with pytest.raises(switchboard.ServiceUnreachable):
            sb.get("id")
    assert len(handler.requests) == 3 and len(slept) == 2 and all(0 < s <= 0.2 for s in slept)


def test_wait_polls_with_growing_intervals_until_finished(slept: list[float]) -> None:
    running = httpx.Response(200, json={**VIEW, "status": "running", "finished_at": None, "result": None})
    handler = Recorder(running, running, running, httpx.Response(200, json=VIEW))
    with sync_client(handler, poll=PollPolicy(initial_s=0.2, max_s=0.4)) as sb:
        view = sb.wait(VIEW["id"], timeout=60)
    assert view.status == "succeeded" and len(handler.requests) == 4
    assert slept == pytest.approx([0.2, 0.3, 0.4])


def test_wait_raises_wait_timeout_with_the_last_view() -> None:
    running = httpx.Response(200, json={**VIEW, "status": "routed", "finished_at": None})
    with sync_client(Recorder(running)) as sb, pytest.raises(switchboard.WaitTimeout) as raised:
        sb.wait(VIEW["id"], timeout=0)
    assert raised.value.view.status == "routed"
    assert isinstance(raised.value, TimeoutError)


def test_events_and_health() -> None:
    events = {"events": [{"at": "2026-01-01T00:00:00Z", "kind": "accepted", "detail": {"priority": "high"}}]}
    unhealthy = {"status": "unavailable", "checks": {"database": "ok", "broker": "unavailable"}}
    handler = Recorder(httpx.Response(200, json=events), httpx.Response(503, json=unhealthy))
    with sync_client(handler) as sb:
        assert [e.kind for e in sb.events("id")] == ["accepted"]
        assert sb.health().checks["broker"] == "unavailable"
    assert str(handler.requests[0].url) == f"{BASE}/v1/requests/id/events"
    assert len(handler.requests) == 2  # an unhealthy answer is not retried


def test_ids_are_escaped_into_the_path() -> None:
    handler = Recorder(error(404, "not_found"))
    with sync_client(handler) as sb, pytest.raises(switchboard.NotFound):
        sb.get("../healthz")
    assert handler.requests[0].url.raw_path == b"/v1/requests/..%2Fhealthz"


def test_the_key_is_never_in_the_repr_and_an_empty_key_is_refused() -> None:
    assert KEY not in repr(Client(BASE, KEY))
    with pytest.raises(ValueError):
        Client(BASE, "")


def test_async_client_shares_the_same_rules(slept: list[float]) -> None:
    handler = Recorder(error(429, "rate_limited", retry_after="1"),
                       httpx.Response(202, json={"id": VIEW["id"], "status": "accepted"}),
                       httpx.Response(200, json={**VIEW, "status": "running", "finished_at": None}),
                       httpx.Response(200, json=VIEW), error(404, "not_found"))

    async def main() -> None:
        async with AsyncClient(BASE, KEY, transport=httpx.MockTransport(handler)) as sb:
            accepted = await sb.submit("charged twice", idempotency_key="k1")
            view = await sb.wait(accepted.id, timeout=60)
            assert view.reply == "Refunded."
            with pytest.raises(switchboard.NotFound):
                await sb.get("nope")

    asyncio.run(main())
    assert slept[0] == 1.0 and len(handler.requests) == 5
    assert handler.requests[1].headers["Idempotency-Key"] == "k1"


def test_the_public_surface() -> None:
    assert set(switchboard.__all__) <= set(dir(switchboard))
    expected = {"Client", "AsyncClient", "RequestView", "InvalidRequest", "RateLimited", "__version__"}
    assert expected <= set(switchboard.__all__)
