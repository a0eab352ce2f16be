"""Streaming a reply to its reader on real services: the support-ticket draft streamed from the
simulated provider, through the worker and RabbitMQ, out of GET /v1/requests/{id}/stream (uvicorn)
and app.ingress.client.stream; a late reader, a stream cut off and retried, another tenant's key."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from app.inference.sse import EventReader
from app.ingress import client
from tests.integration.conftest import new_tenant


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _submit(api: str, token: str, text: str) -> str:
    response = httpx.post(f"{api}/v1/requests", headers=_auth(token), json={"text": text}, timeout=10)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _read_stream(api: str, token: str, request_id: str) -> list[tuple[int, str, dict[str, Any]]]:
    """(which network read it came in, event, data) for each event, until the server ends it."""
    reader, events = EventReader(), []
    with httpx.stream("GET", f"{api}/v1/requests/{request_id}/stream", headers=_auth(token),
                      timeout=httpx.Timeout(10, read=60)) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for number, chunk in enumerate(response.iter_raw()):
            events += [(number, e.event, json.loads(e.data)) for e in reader.feed(chunk)]
    return events


def test_reply_arrives_in_pieces_before_done(api: str, workers: object,
                                             provider_latency: Callable[[int], None]) -> None:
    provider_latency(2000)  # each call's 2 s spread over its chunks
    _, token = new_tenant()
    request_id = _submit(api, token, "I was charged twice for invoice INV-1042, please refund the duplicate")
    events = _read_stream(api, token, request_id)
    kinds = [kind for _, kind, _ in events]
    assert kinds[0] == "status" and kinds[-1] == "done" and kinds.count("done") == 1
    deltas = [(number, data) for number, kind, data in events if kind == "delta"]
    assert len(deltas) >= 2, kinds
    # The pieces came in separate network reads, before the end: the reply arrived as written.
    assert len({number for number, _ in deltas}) >= 2
    assert max(number for number, _ in deltas) < events[-1][0] or len({n for n, _ in deltas}) > 1
    done = events[-1][2]
    view = client.get(request_id)
    assert done["status"] == "succeeded" and done["result"] == view.result
    if "restart" not in kinds:
        assert "".join(d["text"] for _, d in deltas) == done["result"]["reply"]
    assert [d["step"] for _, d in deltas] == ["draft"] * len(deltas)


def test_late_reader_gets_what_is_final(api: str, workers: object) -> None:
    tenant, token = new_tenant()
    request_id = _submit(api, token, "My invoice INV-1042 shows the wrong amount")
    view = client.wait(request_id, timeout=120)
    assert view.status == "succeeded"
    events = _read_stream(api, token, request_id)
    assert [kind for _, kind, _ in events] == ["status", "done"]
    assert events[0][2]["status"] == "succeeded"
    assert events[1][2]["result"] == view.result and events[1][2]["id"] == request_id
    # The in-cluster client's iterator says the same.
    streamed = list(client.stream(request_id, tenant=tenant, timeout=30))
    assert [e.event for e in streamed] == ["status", "done"] and streamed[-1].data["result"] == view.result


def test_stream_cut_off_is_retried_and_says_it_restarted(api: str, workers: object,
                                                         provider_latency: Callable[[int], None]) -> None:
    provider_latency(1000)
    _, token = new_tenant()
    # The simulator cuts the first stream of this conversation half-way (no final event); the
    # gateway retries the call, and the reader is told to drop the half it was shown.
    request_id = _submit(api, token, "The export page crashes with error 500 [[sim:cut_stream]]")
    events = _read_stream(api, token, request_id)
    kinds = [kind for _, kind, _ in events]
    assert "restart" in kinds, kinds
    restart = kinds.index("restart")
    assert "delta" in kinds[:restart] and "delta" in kinds[restart:]
    done = events[-1][2]
    assert kinds[-1] == "done" and done["status"] == "succeeded"
    after = "".join(data["text"] for _, kind, data in events[restart:] if kind == "delta")
    before = "".join(data["text"] for _, kind, data in events[:restart] if kind == "delta")
    # The answer is the retried stream's whole text, never the cut-off half.
    assert after == done["result"]["reply"] and before != done["result"]["reply"]
    assert done["result"] == client.get(request_id).result


def test_in_cluster_client_streams_deltas(workers: object, provider_latency: Callable[[int], None]) -> None:
    provider_latency(1000)
    sub = client.submit("The export page crashes with error 500 when I open it", tenant="default")
    events = list(client.stream(sub.id, timeout=120))
    kinds = [e.event for e in events]
    assert kinds[-1] == "done" and "delta" in kinds and kinds.index("delta") < kinds.index("done")
    assert events[-1].data["result"] == client.get(sub.id).result


def test_app_client_iterates_the_stream(api: str, workers: object,
                                        provider_latency: Callable[[int], None]) -> None:
    import switchboard

    provider_latency(1000)
    _, token = new_tenant()
    _, stranger = new_tenant()
    with switchboard.Client(api, token) as app_client:
        accepted = app_client.submit("The export page crashes with error 500 when I open it")
        streamed = list(app_client.stream(accepted.id))
        view = app_client.get(accepted.id)
    kinds = [e.event for e in streamed]
    assert kinds[-1] == "done" and "delta" in kinds and kinds.index("delta") < kinds.index("done")
    assert "".join(e.text for e in streamed) == view.result["reply"] == streamed[-1].data["result"]["reply"]
    with switchboard.Client(api, stranger) as other, pytest.raises(switchboard.NotFound):
        list(other.stream(accepted.id))


def test_another_tenants_key_gets_404(api: str, workers: object) -> None:
    _, owner = new_tenant()
    _, stranger = new_tenant()
    request_id = _submit(api, owner, "Where is my invoice INV-1042?")
    response = httpx.get(f"{api}/v1/requests/{request_id}/stream", headers=_auth(stranger), timeout=10)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert httpx.get(f"{api}/v1/requests/{request_id}/stream", timeout=10).status_code == 401
    unknown = httpx.get(f"{api}/v1/requests/not-an-id/stream", headers=_auth(owner), timeout=10)
    assert unknown.status_code == 404
