"""Delivery callbacks to a real HTTP receiver on this machine (allow-listed in tests/conftest.py):
signed with the tenant's secret, retried with backoff after a failure, every attempt recorded, and
one success delivered once even when the callback task runs again."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from sqlalchemy import select

from app.ingress import tenants
from app.orchestration.callbacks import SIGNATURE_HEADER
from app.orchestration.celery_app import CALLBACK_TASK, celery
from app.orchestration.topology import CALLBACK_QUEUE
from app.state import Callback, CallbackAttempt, session_scope
from tests import conftest as root


class Receiver:
    def __init__(self, fail_first: int) -> None:
        self.fail_first = fail_first
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()


@pytest.fixture
def receiver() -> Iterator[tuple[str, Receiver]]:
    state = Receiver(fail_first=1)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with state.lock:
                state.calls.append((dict(self.headers), body))
                failing = len(state.calls) <= state.fail_first
            self.send_response(500 if failing else 204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", root._free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/switchboard", state
    server.shutdown()


def _attempts(request_id: str) -> list[CallbackAttempt]:
    with session_scope() as session:
        return list(session.scalars(select(CallbackAttempt).where(CallbackAttempt.request_id == request_id)
                                    .order_by(CallbackAttempt.id)))


def test_result_is_posted_signed_retried_and_delivered_once(api: str, workers: object,
                                                            receiver: tuple[str, Receiver]) -> None:
    url, state = receiver
    created = tenants.create_tenant(f"cb-{time.monotonic_ns() % 10**9}")
    token = tenants.create_key(created.name).token
    answer = httpx.post(f"{api}/v1/requests", headers={"Authorization": f"Bearer {token}"},
                        json={"text": "I was charged twice for invoice INV-1042", "callback_url": url}, timeout=10)
    assert answer.status_code == 202, answer.text
    request_id = answer.json()["id"]

    deadline = time.monotonic() + 120
    while len(state.calls) < 2:
        assert time.monotonic() < deadline, f"receiver got {len(state.calls)} call(s)"
        time.sleep(0.2)

    headers, body = state.calls[-1]
    payload = json.loads(body)
    assert payload["id"] == request_id and payload["status"] == "succeeded" and payload["result"]["reply"]
    assert headers["X-Switchboard-Delivery"] == request_id and headers["X-Switchboard-Attempt"] == "2"
    stamp, signature = (part.split("=", 1)[1] for part in headers[SIGNATURE_HEADER].split(","))
    expected = hmac.new(created.signing_secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(signature, expected)
    assert created.signing_secret not in json.dumps(headers) + body.decode()

    deadline = time.monotonic() + 30
    while [a.status_code for a in _attempts(request_id)] != [500, 204]:
        assert time.monotonic() < deadline, [(a.status_code, a.error) for a in _attempts(request_id)]
        time.sleep(0.2)
    with session_scope() as session:
        callback = session.get(Callback, request_id)
        assert callback is not None and callback.status == "delivered" and callback.attempts == 2

    # A duplicate callback message (a redelivery, an operator's replay) sends nothing more.
    for _ in range(3):
        celery.send_task(CALLBACK_TASK, args=[request_id], queue=CALLBACK_QUEUE, routing_key=CALLBACK_QUEUE)
    time.sleep(3)
    assert len(state.calls) == 2 and len(_attempts(request_id)) == 2


def test_reconciler_sends_a_callback_whose_task_was_lost(workers: object, receiver: tuple[str, Receiver]) -> None:
    """A worker that died between finishing the request and sending the callback task leaves a
    pending callback with no attempt; the reconciler's sweep sends it."""
    from app.ingress import client
    from app.orchestration.callbacks import resend_pending

    url, state = receiver
    state.fail_first = 0
    created = tenants.create_tenant(f"cb-{time.monotonic_ns() % 10**9}")
    view = client.wait(client.submit("I was charged twice for invoice INV-1042", tenant=created.name).id, timeout=120)
    assert view.status == "succeeded"
    with session_scope() as session:  # the state that lost task leaves behind
        session.add(Callback(request_id=view.id, url=url))
    assert resend_pending(min_age_s=0) >= 1
    deadline = time.monotonic() + 60
    while not state.calls:
        assert time.monotonic() < deadline, "the swept callback was not delivered"
        time.sleep(0.2)
    assert json.loads(state.calls[0][1])["id"] == view.id
    while [a.status_code for a in _attempts(view.id)] != [204]:  # recorded once the answer is committed
        assert time.monotonic() < deadline, [(a.status_code, a.error) for a in _attempts(view.id)]
        time.sleep(0.2)
