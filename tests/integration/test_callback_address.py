"""A callback connects to the address that passed the private-address check, and only to it: a name
that resolves to a public address when checked and to 127.0.0.1 a moment later (DNS rebinding)
cannot make the POST reach this machine. Over TLS the request still names the host: SNI and the
certificate are checked against it, not against the address.

The delivery runs for real (PostgreSQL record, `callbacks.deliver`, httpx, a receiver on a real
socket); only the name lookup is faked, by patching `socket.getaddrinfo` in this test process,
and connections to the one public address are refused on the way out (this machine has no route).
"""

from __future__ import annotations

import socket
import ssl
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import trustme
from sqlalchemy import func, select, update

from app.config import reset_settings
from app.ingress import client, tenants
from app.orchestration import callbacks
from app.state import CallbackAttempt, Request, Status, session_scope

PUBLIC = "93.184.216.34"  # a global address: passes the check


class Receiver:
    def __init__(self, server: ThreadingHTTPServer) -> None:
        self.server = server
        self.port = server.server_address[1]
        self.hosts: list[str] = []


def _serve(ssl_context: ssl.SSLContext | None = None) -> Receiver:
    hosts: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            hosts.append(self.headers["Host"])
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if ssl_context is not None:
        server.socket = ssl_context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    receiver = Receiver(server)
    receiver.hosts = hosts
    return receiver


@pytest.fixture
def callback_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    yield monkeypatch
    monkeypatch.undo()
    reset_settings()


def _succeeded_with_callback(url: str) -> str:
    """A request of a new tenant, succeeded, whose callback is pending (no worker involved)."""
    name = f"cb-{uuid.uuid4().hex[:10]}"
    tenants.create_tenant(name)
    submission = client.accept(client.validate(text="Where is my invoice?", tenant=name, callback_url=url))
    with session_scope() as session:
        session.execute(update(Request).where(Request.id == submission.id)
                        .values(status=Status.SUCCEEDED, finished_at=func.now(), result={"reply": "here"}))
    return submission.id


def _last_error(request_id: str) -> str:
    with session_scope() as session:
        return str(session.scalars(select(CallbackAttempt.error).where(CallbackAttempt.request_id == request_id)
                                   .order_by(CallbackAttempt.id.desc())).first())


def _fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> list[str]:
    """Each lookup of a name in `answers` gets its next answer (the last one repeats)."""
    real = socket.getaddrinfo
    lookups: list[str] = []

    def getaddrinfo(host: object, port: object, *args: object, **kwargs: object) -> list[tuple]:
        if host in answers:
            lookups.append(str(host))
            seen = lookups.count(str(host))
            address = answers[str(host)][min(seen, len(answers[str(host)])) - 1]
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]
        return real(host, port, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return lookups


def test_the_post_goes_to_the_checked_address_not_to_a_second_lookup(
        services: object, callback_settings: pytest.MonkeyPatch) -> None:
    receiver = _serve()
    try:
        callback_settings.setenv("SWITCHBOARD_CALLBACK_ALLOWED_HOSTS", "hooks.example.com")
        callback_settings.setenv("SWITCHBOARD_CALLBACK_ALLOW_PRIVATE", "false")
        reset_settings()
        request_id = _succeeded_with_callback(f"http://hooks.example.com:{receiver.port}/hooks/switchboard")
        lookups = _fake_dns(callback_settings, {"hooks.example.com": [PUBLIC, "127.0.0.1"]})
        real_connect = socket.create_connection
        connected: list[str] = []

        def create_connection(address: tuple[str, int], *args: object, **kwargs: object) -> socket.socket:
            connected.append(address[0])
            if address[0] == PUBLIC:
                raise ConnectionRefusedError(111, "no route from this machine")
            return real_connect(address, *args, **kwargs)  # type: ignore[arg-type]

        callback_settings.setattr(socket, "create_connection", create_connection)

        delivery = callbacks.deliver(request_id)

        assert receiver.hosts == [], "the callback reached 127.0.0.1 through a second lookup"
        assert lookups == ["hooks.example.com"], "the name was looked up again after the check"
        assert connected == [PUBLIC]
        assert delivery.outcome == "retry" and "ConnectError" in _last_error(request_id)
    finally:
        receiver.server.shutdown()


def test_https_callbacks_name_the_host_in_sni_and_verify_its_certificate(
        services: object, callback_settings: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("hooks.example.com").configure_cert(server_context)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    receiver = _serve(server_context)
    try:
        callback_settings.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))  # httpx trusts this CA
        callback_settings.setenv("SWITCHBOARD_CALLBACK_ALLOWED_HOSTS", "hooks.example.com,other.example.com")
        reset_settings()  # loopback stays allowed (tests/conftest.py): the receiver is on this machine
        good = _succeeded_with_callback(f"https://hooks.example.com:{receiver.port}/hooks/switchboard")
        wrong = _succeeded_with_callback(f"https://other.example.com:{receiver.port}/hooks/switchboard")
        _fake_dns(callback_settings, {"hooks.example.com": ["127.0.0.1"], "other.example.com": ["127.0.0.1"]})

        assert callbacks.deliver(good).outcome == "delivered"
        assert receiver.hosts == [f"hooks.example.com:{receiver.port}"]
        # Same address, but the certificate is not for this name: verified against the name, refused.
        assert callbacks.deliver(wrong).outcome == "retry"
        assert "CERTIFICATE_VERIFY_FAILED" in _last_error(wrong) or "certificate" in _last_error(wrong).lower()
        assert receiver.hosts == [f"hooks.example.com:{receiver.port}"]
    finally:
        receiver.server.shutdown()
