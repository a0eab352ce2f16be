"""No configured secret leaks: a full run through the HTTP API (submit, result, events, a signed
callback, refused keys, errors), Flower with credentials and the CLI, then every log the run wrote
(each process's log under the Supervisor's log dir, the API server's included), this test's captured
output, every text and JSON column of every table, every HTTP body and `status` are scanned for
each secret: provider keys, the tenant's API key and signing secret, the signing key, Flower's
credentials."""

from __future__ import annotations

import json
import logging
import secrets
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from app.config import get_settings
from app.ingress import tenants
from app.ops.pools import ProcessSpec
from app.ops.supervisor import wait_http
from app.state import connection_scope
from tests import conftest as root
from tests.integration.conftest import run_cli
from tests.integration.test_callbacks import Receiver, receiver  # noqa: F401 - the fixture

pytestmark = pytest.mark.timeout(400)


def _record_hits(secret: str) -> list[str]:
    """Every text, varchar and JSON column of every table that contains `secret`."""
    with connection_scope() as conn:
        columns = conn.execute(text(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' "
            "AND data_type IN ('text', 'character varying', 'jsonb', 'json')")).all()
        hits = []
        for table, column in columns:
            found = conn.scalar(text(f'SELECT count(*) FROM "{table}" WHERE strpos("{column}"::text, :s) > 0'),
                                {"s": secret})
            if found:
                hits.append(f"{table}.{column}")
        return hits


def test_no_secret_reaches_logs_record_bodies_or_status(
    api: str, workers: object, supervisor: object, receiver: tuple[str, Receiver],  # noqa: F811
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    url, state = receiver
    settings = get_settings()
    flower_auth = f"ops:{secrets.token_urlsafe(16)}"
    flower_port = root._free_port()
    supervisor.start(ProcessSpec("flower", [sys.executable, "-m", "app", "flower"],  # type: ignore[attr-defined]
                                 {"SWITCHBOARD_FLOWER_BASIC_AUTH": flower_auth,
                                  "SWITCHBOARD_FLOWER_PORT": str(flower_port)}))
    created = tenants.create_tenant(f"sec-{secrets.token_hex(4)}")
    key = tenants.create_key(created.name)
    spare = tenants.create_key(created.name)
    bodies: list[str] = []

    def call(method: str, path: str, token: str | None = None, **kwargs: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = httpx.request(method, f"{api}{path}", headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]
        bodies.append(response.text + json.dumps(dict(response.headers)))
        return response

    submitted = call("POST", "/v1/requests", key.token, json={"text": "I was charged twice for INV-1042",
                                                              "callback_url": url}).json()
    deadline = time.monotonic() + 120
    while call("GET", f"/v1/requests/{submitted['id']}", key.token).json()["status"] != "succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.3)
    call("GET", f"/v1/requests/{submitted['id']}/events", key.token)
    # Refusals that carry secrets in the request: a wrong secret on a real key id, a revoked key,
    # a key pasted into the body and into the idempotency key.
    call("POST", "/v1/requests", key.token[:-4] + "AAAA", json={"text": "x"})
    call("POST", "/v1/requests", key.token, json={"text": "x", "api_key": key.token})
    call("POST", "/v1/requests", key.token, json={"text": "x", "priority": key.token})
    call("POST", "/v1/requests", key.token, content=b"{" + key.token.encode())
    tenants.revoke_key(spare.id)
    call("GET", f"/v1/requests/{submitted['id']}", spare.token)
    call("GET", "/healthz")

    deadline = time.monotonic() + 60
    while not state.calls:
        assert time.monotonic() < deadline, "no callback arrived"
        time.sleep(0.2)
    wait_http(f"http://127.0.0.1:{flower_port}/healthcheck", 60)
    assert httpx.get(f"http://127.0.0.1:{flower_port}/", timeout=10).status_code == 401
    user, password = flower_auth.split(":", 1)
    assert httpx.get(f"http://127.0.0.1:{flower_port}/workers", auth=(user, password), timeout=30).status_code == 200

    cli = [run_cli("status", submitted["id"], "--json"), run_cli("tenants", "list", "--json"),
           run_cli("pools", "--json"), run_cli("keys", "revoke", spare.id, "--json")]
    supervisor.stop("flower")  # type: ignore[attr-defined]
    time.sleep(1)  # let the processes flush their logs

    configured = {
        "provider key": [k.get_secret_value() for k in settings.provider_api_keys],
        "API key": [key.token, spare.token],
        "API key secret part": [key.token.split(".", 1)[1], spare.token.split(".", 1)[1]],
        "tenant signing secret": [created.signing_secret],
        "signing key": [settings.signing_key.get_secret_value()],
        "Flower credentials": [flower_auth, flower_auth.split(":", 1)[1]],
    }
    logs = {path.name: path.read_text(errors="replace") for path in Path(supervisor.log_dir).glob("*.log")}  # type: ignore[attr-defined]
    assert {"api.log", "router.log", "billing.log", "callbacks.log", "flower.log"} <= set(logs)
    assert "POST /v1/requests" in logs["api.log"]  # the API server's access log is among them
    out, err = capfd.readouterr()
    surfaces = {
        **{f"log {name}": body for name, body in logs.items()},
        "captured stdout/stderr": out + err,
        "captured log records": caplog.text,
        "HTTP bodies and headers": "\n".join(bodies),
        "CLI output": "\n".join(c.stdout + c.stderr for c in cli),
        "callback POSTs": "\n".join(json.dumps(h) + b.decode() for h, b in state.calls),
    }
    leaks = [f"{kind} in {where}" for kind, values in configured.items() for value in values
             for where, content in surfaces.items() if value in content]
    leaks += [f"{kind} in the record ({hit})" for kind, values in configured.items() for value in values
              for hit in _record_hits(value)]
    assert not leaks, leaks
    assert key.id in logs["api.log"]  # keys are logged, but by their id


def test_flower_refuses_to_start_without_credentials() -> None:
    result = run_cli("flower", env={"SWITCHBOARD_FLOWER_BASIC_AUTH": "", "SWITCHBOARD_DEV": "false"})
    assert result.returncode != 0 and "SWITCHBOARD_FLOWER_BASIC_AUTH" in result.stderr + result.stdout
