"""The Flask and Django examples, end to end on real services and real workers.

Each app is driven through its own test client; the tickets go through RabbitMQ to the worker
processes and back through the PostgreSQL record.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.integration.conftest import ROOT

DJANGO_DIR = ROOT / "examples" / "django_app"
BILLING_TICKET = (
    "Hi, this is Maria Gonzalez (maria.gonzalez@example.com). Our latest invoice for the Pro plan "
    "looks higher than last month's even though we still have 4 seats. Can you explain the charges "
    "on it and tell me whether we were billed twice?"
)
# Workers run the whole workflow; allow for a cold start of the pools.
FINISH_WITHIN_S = 120


@dataclass
class Reply:
    status: int
    body: Any


@dataclass
class WebApp:
    """The same three calls for either framework's test client."""

    name: str
    post: Callable[[str, Any, dict[str, str]], Reply]
    get: Callable[[str, dict[str, str]], Reply]


def _flask() -> WebApp:
    from examples.flask_app.app import create_app

    flask_app = create_app()
    flask_app.testing = True
    http = flask_app.test_client()

    def post(path: str, body: Any, headers: dict[str, str]) -> Reply:
        resp = http.post(path, data=json.dumps(body), content_type="application/json", headers=headers)
        return Reply(resp.status_code, resp.get_json())

    def get(path: str, headers: dict[str, str]) -> Reply:
        resp = http.get(path, headers=headers)
        return Reply(resp.status_code, resp.get_json())

    return WebApp("flask", post, get)


@pytest.fixture(scope="module")
def django_ready() -> Iterator[None]:
    if str(DJANGO_DIR) not in sys.path:
        sys.path.insert(0, str(DJANGO_DIR))
    # Set only for this module: worker processes started later inherit os.environ, and Celery
    # loads Django's settings whenever DJANGO_SETTINGS_MODULE is set.
    previous = os.environ.get("DJANGO_SETTINGS_MODULE")
    os.environ["DJANGO_SETTINGS_MODULE"] = "project.settings"
    import django
    from django.test.utils import setup_test_environment, teardown_test_environment

    django.setup()
    setup_test_environment()  # lets the test client's host, "testserver", through ALLOWED_HOSTS
    yield
    teardown_test_environment()
    if previous is None:
        os.environ.pop("DJANGO_SETTINGS_MODULE", None)
    else:
        os.environ["DJANGO_SETTINGS_MODULE"] = previous


def _django() -> WebApp:
    from django.test import Client

    http = Client()

    def post(path: str, body: Any, headers: dict[str, str]) -> Reply:
        resp = http.post(path, data=json.dumps(body), content_type="application/json", headers=headers)
        return Reply(resp.status_code, resp.json())

    def get(path: str, headers: dict[str, str]) -> Reply:
        resp = http.get(path, headers=headers)
        return Reply(resp.status_code, resp.json())

    return WebApp("django", post, get)


@pytest.fixture(params=["flask", "django"])
def web(request: pytest.FixtureRequest, workers: object) -> WebApp:
    if request.param == "django":
        request.getfixturevalue("django_ready")
        return _django()
    return _flask()


def _tenant(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _count_requests() -> int:
    from sqlalchemy import func, select

    from app.db import Request, session_scope

    with session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(Request)) or 0)


def _wait_until_finished(web: WebApp, request_id: str, headers: dict[str, str]) -> Reply:
    deadline = time.monotonic() + FINISH_WITHIN_S
    while True:
        reply = web.get(f"/tickets/{request_id}/wait?timeout=5", headers)
        if reply.status == 200:
            return reply
        assert reply.status == 202, (web.name, reply)
        assert reply.body["id"] == request_id
        assert reply.body["finished_at"] is None
        assert time.monotonic() < deadline, (
            f"{web.name}: ticket still {reply.body['status']} after {FINISH_WITHIN_S}s"
        )


def test_billing_ticket_runs_to_a_reply(web: WebApp) -> None:
    tenant = _tenant("acme")
    headers = {"X-Tenant": tenant, "X-Customer": "maria.gonzalez@example.com"}
    key = f"ticket-{uuid.uuid4().hex}"

    ticket = {"text": BILLING_TICKET, "priority": "high"}
    accepted = web.post("/tickets", ticket, {**headers, "Idempotency-Key": key})
    assert accepted.status == 202, accepted
    assert set(accepted.body) == {"id", "status"}
    assert accepted.body["status"] == "accepted"
    request_id = accepted.body["id"]

    # The same idempotency key names the same ticket; nothing runs twice.
    again = web.post("/tickets", ticket, {**headers, "Idempotency-Key": key})
    assert again.status == 202, again
    assert again.body["id"] == request_id

    finished = _wait_until_finished(web, request_id, headers)
    view = finished.body
    assert view["id"] == request_id
    assert view["tenant"] == tenant and view["customer"] == "maria.gonzalez@example.com"
    assert view["priority"] == "high"
    assert view["status"] == "succeeded", view
    assert view["specialist"] == "billing", view
    reply = view["result"]["reply"]
    assert isinstance(reply, str) and reply.strip(), view["result"]
    assert view["tokens"]["total"] > 0, view["tokens"]
    assert view["tokens"]["total"] == view["tokens"]["prompt"] + view["tokens"]["completion"]
    assert view["finished_at"] is not None

    # The plain GET shows the same finished ticket.
    got = web.get(f"/tickets/{request_id}", headers)
    assert got.status == 200, got
    assert got.body["status"] == "succeeded"
    assert got.body["result"] == view["result"]


def test_empty_text_is_refused_and_nothing_is_written(web: WebApp) -> None:
    headers = {"X-Tenant": _tenant("acme"), "Idempotency-Key": f"empty-{uuid.uuid4().hex}"}
    before = _count_requests()

    refused = web.post("/tickets", {"text": "   "}, headers)
    assert refused.status == 422, refused
    assert refused.body["error"]
    assert any(p.startswith("text:") and "empty" in p for p in refused.body["problems"]), refused.body

    missing = web.post("/tickets", {"priority": "high"}, headers)
    assert missing.status == 422, missing
    assert any(p.startswith("text:") for p in missing.body["problems"]), missing.body

    bad_priority = web.post("/tickets", {"text": BILLING_TICKET, "priority": "urgent"}, headers)
    assert bad_priority.status == 422, bad_priority
    assert any(p.startswith("priority:") for p in bad_priority.body["problems"]), bad_priority.body

    assert _count_requests() == before


def test_unknown_and_other_tenants_tickets_are_not_found(web: WebApp) -> None:
    owner = {"X-Tenant": _tenant("acme")}
    other = {"X-Tenant": _tenant("globex")}

    for path in (f"/tickets/{uuid.uuid4()}", f"/tickets/{uuid.uuid4()}/wait?timeout=0"):
        missing = web.get(path, owner)
        assert missing.status == 404, (path, missing)
        assert missing.body["error"]

    accepted = web.post("/tickets", {"text": BILLING_TICKET}, owner)
    assert accepted.status == 202, accepted
    request_id = accepted.body["id"]

    assert web.get(f"/tickets/{request_id}", owner).status == 200
    for path in (f"/tickets/{request_id}", f"/tickets/{request_id}/wait?timeout=0"):
        foreign = web.get(path, other)
        assert foreign.status == 404, (path, foreign)
        assert request_id in foreign.body["error"]
        assert "tenant" not in foreign.body

    # Let the ticket finish so it does not linger into later tests.
    _wait_until_finished(web, request_id, owner)


WORKER_MODULES = ("app.tasks", "app.routing", "workflows")
IMPORT_CHECK = """
import json, sys
{setup}
import {module}
bad = sorted(m for m in sys.modules if any(m == w or m.startswith(w + ".") for w in {workers!r}))
print(json.dumps(bad))
"""


@pytest.mark.parametrize(
    ("module", "setup"),
    [
        ("examples.flask_app.app", ""),
        (
            "tickets.views",
            f"sys.path.insert(0, {str(DJANGO_DIR)!r}); import os, django; "
            "os.environ['DJANGO_SETTINGS_MODULE'] = 'project.settings'; django.setup()",
        ),
    ],
)
def test_examples_import_no_worker_code(module: str, setup: str) -> None:
    code = IMPORT_CHECK.format(setup=setup, module=module, workers=WORKER_MODULES)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [], f"{module} imported worker code"
