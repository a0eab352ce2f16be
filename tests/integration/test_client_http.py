"""`switchboard-client` (clients/python) against the real HTTP API under gunicorn and real workers:
typed answers, each error as its exception, 429 retried after Retry-After, and the async client."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
import switchboard
from switchboard import AsyncClient, Client, RetryPolicy

from app.ingress import tenants
from tests.integration.conftest import new_tenant


class Counting(httpx.BaseTransport):
    """The real transport, keeping each answer's status."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.statuses: list[int] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        self.statuses.append(response.status_code)
        return response


def test_submit_wait_get_and_events(api: str, workers: object) -> None:
    tenant, token = new_tenant()
    with Client(api, token) as sb:
        assert sb.health().status == "ok"
        accepted = sb.submit("I was charged twice for invoice INV-1042", priority="high",
                             idempotency_key="ticket-8812", metadata={"ticket": 8812})
        assert accepted.status == "accepted" and not accepted.duplicate
        again = sb.submit("I was charged twice for invoice INV-1042", priority="high",
                          idempotency_key="ticket-8812", metadata={"ticket": 8812})
        assert again.id == accepted.id and again.duplicate

        view = sb.wait(accepted.id, timeout=120)
        assert isinstance(view, switchboard.RequestView) and view.finished
        assert view.status == "succeeded" and view.specialist == "billing" and view.tenant == tenant
        assert view.reply and view.tokens.total == view.tokens.prompt + view.tokens.completion > 0
        assert sb.get(accepted.id) == view
        kinds = [e.kind for e in sb.events(accepted.id)]
        assert kinds[0] == "accepted" and "succeeded" in kinds


def test_each_error_is_raised_as_its_exception(api: str) -> None:
    tenant, token = new_tenant()
    with Client(api, token) as sb:
        with pytest.raises(switchboard.InvalidRequest) as invalid:
            sb.submit("   ", priority="normal")
        assert any(p.startswith("text:") and "empty" in p for p in invalid.value.problems)
        with pytest.raises(switchboard.NotFound):
            sb.get(str(uuid.uuid4()))
        sb.submit("The export fails", idempotency_key="k-1")
        with pytest.raises(switchboard.Conflict):
            sb.submit("Something else", idempotency_key="k-1")
    with Client(api, "sbk_nobody.nothing") as stranger, pytest.raises(switchboard.Unauthorized):
        stranger.get(str(uuid.uuid4()))
    reader = tenants.create_key(tenant, scope="read").token
    with Client(api, reader) as read_only, pytest.raises(switchboard.Forbidden):
        read_only.submit("may I?")


def test_another_tenants_request_is_not_found(api: str) -> None:
    _, mine = new_tenant()
    _, theirs = new_tenant()
    with Client(api, theirs) as other, Client(api, mine) as sb:
        foreign = other.submit("The SDK throws a TypeError on import")
        with pytest.raises(switchboard.NotFound):
            sb.get(foreign.id)


def test_rate_limited_submits_are_retried_after_retry_after(quiet_api: tuple[str, str]) -> None:
    base, _ = quiet_api
    _, token = new_tenant(rpm_limit=20)
    transport = Counting()
    with Client(base, token, transport=transport) as sb:
        ids = {sb.submit(f"ticket {i}").id for i in range(3)}
    assert len(ids) == 3  # every submit went through, once
    assert 429 in transport.statuses, transport.statuses  # and the API did push back
    assert transport.statuses.count(202) == 3

    with Client(base, token, retry=RetryPolicy(attempts=1)) as impatient, pytest.raises(
        switchboard.RateLimited
    ) as limited:
        for i in range(5):
            impatient.submit(f"more {i}")
    assert limited.value.retry_after is not None and limited.value.retry_after >= 1


def test_async_client_round_trip(api: str, workers: object) -> None:
    _, token = new_tenant()

    async def main() -> switchboard.RequestView:
        async with AsyncClient(api, token) as sb:
            accepted = await sb.submit("The login page shows error 500 after SSO redirect")
            return await sb.wait(accepted.id, timeout=120)

    view = asyncio.run(main())
    assert view.status == "succeeded" and view.specialist == "technical" and view.reply

