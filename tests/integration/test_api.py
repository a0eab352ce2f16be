"""The HTTP API as `switchboard api` serves it on real services: submit to result, every error code, tenant
isolation, per-tenant limits; a refused request writes and publishes nothing."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import replace

import httpx
import pytest
from sqlalchemy import func, select

from app.ingress import tenants
from app.state import Request, session_scope
from tests import conftest as root
from tests.integration.conftest import new_tenant


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _rows(tenant: str) -> int:
    with session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(Request).where(Request.tenant == tenant)) or 0)


def _error(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    return error


def _wait(api: str, token: str, request_id: str, timeout: float = 120) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        view = httpx.get(f"{api}/v1/requests/{request_id}", headers=_auth(token), timeout=10).json()
        if view["status"] in ("succeeded", "dead_lettered") or time.monotonic() > deadline:
            return view
        time.sleep(0.3)


def test_submit_to_result_over_http(api: str, workers: object) -> None:
    tenant, token = new_tenant()
    response = httpx.post(f"{api}/v1/requests", headers={**_auth(token), "Idempotency-Key": "ticket-1"},
                          json={"text": "I was charged twice for invoice INV-1042", "priority": "high",
                                "metadata": {"ticket": 8812}}, timeout=10)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == "accepted" and not accepted["duplicate"]
    assert response.headers["Location"] == f"/v1/requests/{accepted['id']}"

    view = _wait(api, token, accepted["id"])
    assert view["status"] == "succeeded", view
    assert view["tenant"] == tenant and view["specialist"] == "billing" and view["priority"] == "high"
    assert view["result"]["reply"] and view["tokens"]["total"] > 0 and view["cost_usd"] > 0
    assert view["timings"]["end_to_end"] > 0

    events = httpx.get(f"{api}/v1/requests/{accepted['id']}/events", headers=_auth(token), timeout=10).json()
    kinds = [e["kind"] for e in events["events"]]
    assert kinds[0] == "accepted" and "routed" in kinds and kinds[-1] == "succeeded"

    again = httpx.post(f"{api}/v1/requests", headers={**_auth(token), "Idempotency-Key": "ticket-1"},
                       json={"text": "I was charged twice for invoice INV-1042", "priority": "high",
                             "metadata": {"ticket": 8812}}, timeout=10)
    assert again.status_code == 200 and again.json() == {**accepted, "status": "succeeded", "duplicate": True}
    assert _rows(tenant) == 1


def test_tenants_cannot_see_each_other(api: str) -> None:
    _, token_a = new_tenant()
    tenant_b, token_b = new_tenant()
    secret_text = f"tenant B private {uuid.uuid4()}"
    created = httpx.post(f"{api}/v1/requests", headers=_auth(token_b), json={"text": secret_text}, timeout=10).json()
    unknown = str(uuid.uuid4())
    for path in (f"/v1/requests/{created['id']}", f"/v1/requests/{created['id']}/events"):
        theirs = httpx.get(f"{api}{path}", headers=_auth(token_a), timeout=10)
        nothing = httpx.get(f"{api}{path.replace(created['id'], unknown)}", headers=_auth(token_a), timeout=10)
        _error(theirs, 404, "not_found")
        assert theirs.json() == nothing.json()  # indistinguishable from an id that does not exist
        assert secret_text not in theirs.text and tenant_b not in theirs.text
        assert httpx.get(f"{api}{path}", headers=_auth(token_b), timeout=10).status_code == 200
    # The body cannot name another tenant: the key decides.
    _error(httpx.post(f"{api}/v1/requests", headers=_auth(token_a), json={"text": "hi", "tenant": tenant_b},
                      timeout=10), 422, "invalid_request")
    assert _rows(tenant_b) == 1


def test_authentication_errors(api: str) -> None:
    tenant, token = new_tenant()
    body = {"text": "hello"}
    missing = _error(httpx.post(f"{api}/v1/requests", json=body, timeout=10), 401, "unauthenticated")
    assert "Bearer" in str(missing["message"])
    _error(httpx.post(f"{api}/v1/requests", json=body, headers=_auth(token + "x"), timeout=10), 401, "unauthenticated")
    _error(httpx.get(f"{api}/v1/requests/{uuid.uuid4()}", headers=_auth("sbk_nope.nope"), timeout=10),
           401, "unauthenticated")

    reader = tenants.create_key(tenant, scope="read")
    forbidden = _error(httpx.post(f"{api}/v1/requests", json=body, headers=_auth(reader.token), timeout=10),
                       403, "forbidden")
    assert reader.id in str(forbidden["message"]) and reader.token not in json.dumps(forbidden)

    assert tenants.revoke_key(tenants.authenticate(token).key_id)  # type: ignore[union-attr]
    _error(httpx.post(f"{api}/v1/requests", json=body, headers=_auth(token), timeout=10), 401, "unauthenticated")
    assert _rows(tenant) == 0


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        (b"not json", 400, "bad_request", None),
        (b"[1, 2]", 400, "bad_request", None),
        (b'{"text": "' + b"x" * 70_000 + b'"}', 413, "body_too_large", None),
        (json.dumps({"text": "   "}).encode(), 422, "invalid_request", "text"),
        (json.dumps({"text": "x" * 40_000}).encode(), 422, "invalid_request", "text"),
        (json.dumps({"text": "hi", "priority": "urgent"}).encode(), 422, "invalid_request", "priority"),
        (json.dumps({"text": "hi", "metadata": {"a": {"nested": 1}}}).encode(), 422, "invalid_request", "metadata"),
        (json.dumps({"text": "hi", "metadata": {"a": "x" * 5000}}).encode(), 422, "invalid_request", "metadata"),
        (json.dumps({"text": "hi", "callback_url": "file:///etc/passwd"}).encode(), 422, "invalid_request",
         "callback_url"),
        (json.dumps({"text": "hi", "callback_url": "https://evil.example/hook"}).encode(), 422, "invalid_request",
         "callback_url"),
    ],
)
def test_bad_bodies_are_refused_and_write_nothing(api: str, body: bytes, status: int, code: str,
                                                  field: str | None) -> None:
    tenant, token = new_tenant()
    response = httpx.post(f"{api}/v1/requests", content=body,
                          headers={**_auth(token), "Content-Type": "application/json"}, timeout=10)
    error = _error(response, status, code)
    if field:
        assert any(str(d).startswith(field) for d in error["details"]), error  # type: ignore[attr-defined]
    assert _rows(tenant) == 0


def test_idempotency_key_reused_for_another_request_is_a_conflict(quiet_api: tuple[str, str]) -> None:
    base, _ = quiet_api
    tenant, token = new_tenant()
    headers = {**_auth(token), "Idempotency-Key": "order-77"}
    assert httpx.post(f"{base}/v1/requests", headers=headers, json={"text": "refund please"}, timeout=10).status_code == 202
    conflict = httpx.post(f"{base}/v1/requests", headers=headers, json={"text": "something else"}, timeout=10)
    assert "new key" in str(_error(conflict, 409, "idempotency_conflict")["message"])
    _error(httpx.post(f"{base}/v1/requests", headers={**_auth(token), "Idempotency-Key": "k" * 201},
                      json={"text": "x"}, timeout=10), 422, "invalid_request")
    assert _rows(tenant) == 1


def test_requests_per_minute_limit(quiet_api: tuple[str, str]) -> None:
    base, _ = quiet_api
    tenant, token = new_tenant(rpm_limit=2)
    answers = [httpx.post(f"{base}/v1/requests", headers=_auth(token), json={"text": f"n{i}"}, timeout=10)
               for i in range(4)]
    assert answers[0].status_code == 202
    limited = [a for a in answers if a.status_code == 429]
    assert limited, [a.status_code for a in answers]
    for answer in limited:
        _error(answer, 429, "rate_limited")
        assert int(answer.headers["Retry-After"]) >= 1
    assert _rows(tenant) == 4 - len(limited)


def test_concurrent_request_cap(quiet_api: tuple[str, str]) -> None:
    """Nothing consumes the quiet vhost, so accepted requests stay unfinished and fill the cap."""
    base, _ = quiet_api
    tenant, token = new_tenant(max_concurrent=3)
    answers = [httpx.post(f"{base}/v1/requests", headers=_auth(token), json={"text": f"n{i}"}, timeout=10)
               for i in range(5)]
    assert [a.status_code for a in answers] == [202, 202, 202, 429, 429]
    assert "unfinished" in str(_error(answers[3], 429, "rate_limited")["message"])
    assert int(answers[3].headers["Retry-After"]) >= 1
    assert _rows(tenant) == 3
    # Another tenant is not affected by this one's cap.
    _, other = new_tenant(max_concurrent=3)
    assert httpx.post(f"{base}/v1/requests", headers=_auth(other), json={"text": "hi"}, timeout=10).status_code == 202


def test_unknown_paths_and_methods_answer_json(api: str) -> None:
    _error(httpx.get(f"{api}/v2/nothing", timeout=10), 404, "not_found")
    _error(httpx.delete(f"{api}/v1/requests", timeout=10), 405, "method_not_allowed")
    spec = httpx.get(f"{api}/openapi.json", timeout=10).json()
    assert spec["openapi"].startswith("3.1") and "/v1/requests" in spec["paths"]


def test_database_down_answers_503_with_retry_after(supervisor: object) -> None:
    from app.config import get_settings
    from app.ops.pools import api_spec
    from app.ops.supervisor import wait_http

    port = root._free_port()
    dead_db = f"postgresql+psycopg://postgres@127.0.0.1:{root._free_port()}/nothing"
    spec = api_spec(get_settings().model_copy(update={"api_port": port}))
    supervisor.start(replace(spec, name="api-no-db", env={**spec.env, "SWITCHBOARD_DATABASE_URL": dead_db}))  # type: ignore[attr-defined]
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/openapi.json", 60)  # served without the database
        health = httpx.get(f"{base}/healthz", timeout=20)
        assert health.status_code == 503 and health.json()["checks"] == {"database": "unavailable", "broker": "ok"}
        assert int(health.headers["Retry-After"]) >= 1
        answer = httpx.post(f"{base}/v1/requests", headers=_auth("sbk_000000000000.x"), json={"text": "hi"},
                            timeout=20)
        error = _error(answer, 503, "unavailable")
        assert int(answer.headers["Retry-After"]) >= 1 and "PostgreSQL" in str(error["message"])
        assert dead_db not in answer.text
    finally:
        supervisor.stop("api-no-db")  # type: ignore[attr-defined]
