"""The Flask and Django examples as separate projects: each in a fresh venv holding only its
framework and `switchboard-client` (from its own requirements.txt), run as its own process against
the real HTTP API and real workers, and driven through its own HTTP routes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests import conftest as root
from tests.integration.conftest import ROOT, new_tenant

EXAMPLES = ROOT / "examples"
# Venvs are kept between runs (pip's cache makes a rebuild fast too), keyed by what they install.
VENV_CACHE = ROOT / ".switchboard" / "example-venvs"
BILLING_TICKET = (
    "Hi, this is Maria Gonzalez (maria.gonzalez@example.com). Our latest invoice for the Pro plan "
    "looks higher than last month's even though we still have 4 seats. Can you explain the charges "
    "on it and tell me whether we were billed twice?"
)
CUSTOMER = "maria.gonzalez@example.com"
# Workers run the whole workflow; allow for a cold start of the pools.
FINISH_WITHIN_S = 120
# What a web process that only submits must not carry.
ENGINE_MODULES = ("celery", "kombu", "sklearn", "flower", "sqlalchemy", "psycopg", "app")


def example_venv(name: str) -> Path:
    """A venv with exactly `examples/<name>/requirements.txt` installed, built once per content."""
    project = EXAMPLES / name
    key = hashlib.sha256((project / "requirements.txt").read_bytes()
                         + (ROOT / "clients" / "python" / "pyproject.toml").read_bytes()).hexdigest()[:12]
    venv = VENV_CACHE / f"{name}-{key}"
    if (venv / "READY").exists():
        return venv
    shutil.rmtree(venv, ignore_errors=True)  # a build that did not finish
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    pip = subprocess.run([python, "-m", "pip", "install", "-q", "-r", "requirements.txt"], cwd=project,
                         capture_output=True, text=True, timeout=600, env=clean_env(), check=False)
    assert pip.returncode == 0, pip.stderr[-3000:]
    (venv / "READY").write_text("")
    return venv


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a process that has nothing of the engine's: no PYTHONPATH, no settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SWITCHBOARD_", "PYTHON", "DJANGO_", "VIRTUAL_ENV"))}
    return {**env, **extra}


@dataclass
class Example:
    name: str
    base: str
    venv: Path
    api_key: str
    tenant: str


def _serve(name: str, venv: Path, port: int) -> list[str]:
    python = str(venv / "bin" / "python")
    if name == "flask_app":
        return [python, "-m", "flask", "--app", "app", "run", "--port", str(port), "--no-reload"]
    return [python, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"]


@pytest.fixture(scope="module", params=["flask_app", "django_app"])
def example(request: pytest.FixtureRequest, api: str, workers: object,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Example]:
    name = request.param
    venv = example_venv(name)
    tenant, token = new_tenant()
    port = root._free_port()
    log = tmp_path_factory.mktemp(f"{name}-log") / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(_serve(name, venv, port), cwd=EXAMPLES / name, stdout=out,
                                  stderr=subprocess.STDOUT,
                                  env=clean_env(SWITCHBOARD_URL=api, SWITCHBOARD_API_KEY=token))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/tickets/warm-up", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, f"{name} did not start: {log.read_text()}"
                time.sleep(0.3)
        yield Example(name, base, venv, token, tenant)
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_example_venv_has_only_the_client_and_its_framework(example: Example) -> None:
    probe = ("import importlib.util, json, switchboard; "
             f"print(json.dumps([[m for m in {ENGINE_MODULES!r} if importlib.util.find_spec(m)], "
             "switchboard.__file__]))")
    # From / : the Flask project's own `app` module is not on the path there, so `app` would be the engine's.
    done = subprocess.run([str(example.venv / "bin" / "python"), "-c", probe], cwd="/", capture_output=True,
                          text=True, timeout=60, env=clean_env(), check=False)
    assert done.returncode == 0, done.stderr
    importable, client_file = json.loads(done.stdout)
    assert importable == [], f"{example.name}'s venv can import {importable}"
    assert Path(client_file).is_relative_to(ROOT / "clients" / "python")


def _wait_until_finished(http: httpx.Client, request_id: str) -> dict:
    deadline = time.monotonic() + FINISH_WITHIN_S
    while True:
        reply = http.get(f"/tickets/{request_id}/wait", params={"timeout": 5})
        if reply.status_code == 200:
            return reply.json()
        assert reply.status_code == 202, reply.text
        assert reply.json()["id"] == request_id and reply.json()["finished_at"] is None
        assert time.monotonic() < deadline, f"ticket still {reply.json()['status']} after {FINISH_WITHIN_S}s"


def test_a_billing_ticket_runs_to_a_reply_through_the_example(example: Example) -> None:
    key = f"ticket-{uuid.uuid4().hex}"
    headers = {"X-Customer": CUSTOMER, "Idempotency-Key": key}
    with httpx.Client(base_url=example.base, timeout=40) as http:
        accepted = http.post("/tickets", json={"text": BILLING_TICKET, "priority": "high"}, headers=headers)
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["status"] == "accepted"
        request_id = accepted.json()["id"]
        assert accepted.headers["Location"] == f"/tickets/{request_id}"

        # The same idempotency key names the same ticket; nothing runs twice.
        again = http.post("/tickets", json={"text": BILLING_TICKET, "priority": "high"}, headers=headers)
        assert again.status_code == 200 and again.json()["id"] == request_id, again.text
        # The same key for another ticket is refused by the API, and the app says so.
        clash = http.post("/tickets", json={"text": "Something else entirely"}, headers=headers)
        assert clash.status_code == 409 and clash.json()["code"] == "idempotency_conflict", clash.text

        view = _wait_until_finished(http, request_id)
        assert view["id"] == request_id and view["tenant"] == example.tenant
        assert view["customer"] == CUSTOMER  # the app's signed-in user, carried to the request
        assert view["status"] == "succeeded" and view["specialist"] == "billing", view
        assert view["priority"] == "high"
        assert view["result"]["reply"].strip()
        assert view["tokens"]["total"] > 0

        got = http.get(f"/tickets/{request_id}")
        assert got.status_code == 200 and got.json()["result"] == view["result"]


def test_bad_input_is_refused_with_the_apis_field_problems(example: Example) -> None:
    with httpx.Client(base_url=example.base, timeout=40) as http:
        empty = http.post("/tickets", json={"text": "   "})
        assert empty.status_code == 422, empty.text
        assert any(p.startswith("text:") and "empty" in p for p in empty.json()["problems"]), empty.json()
        priority = http.post("/tickets", json={"text": BILLING_TICKET, "priority": "urgent"})
        assert priority.status_code == 422, priority.text
        assert any(p.startswith("priority:") for p in priority.json()["problems"]), priority.json()
        assert http.post("/tickets", json={"priority": "high"}).status_code == 422
        timeout = http.get(f"/tickets/{uuid.uuid4()}/wait", params={"timeout": "soon"})
        assert timeout.status_code == 422, timeout.text


def test_unknown_and_other_tenants_tickets_are_not_found(example: Example, api: str) -> None:
    with httpx.Client(base_url=example.base, timeout=40) as http:
        for path in (f"/tickets/{uuid.uuid4()}", f"/tickets/{uuid.uuid4()}/wait?timeout=0"):
            missing = http.get(path)
            assert missing.status_code == 404, (path, missing.text)
            assert missing.json()["code"] == "not_found"

        # A request of another tenant, submitted straight to the API with that tenant's key.
        _, other_key = new_tenant()
        foreign = httpx.post(f"{api}/v1/requests", json={"text": "The SDK throws a TypeError on import"},
                             headers={"Authorization": f"Bearer {other_key}"}, timeout=30)
        assert foreign.status_code == 202, foreign.text
        for path in (f"/tickets/{foreign.json()['id']}", f"/tickets/{foreign.json()['id']}/wait?timeout=0"):
            assert http.get(path).status_code == 404, path
