"""The HTTP API, as `switchboard api` serves it, under hostile clients: slow clients that trickle
their headers, JSON nested past the depth limit and chunked bodies past the size limit. Each
answers what the API documents (or keeps serving everyone else), never a 500 or a hang."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from app.config import get_settings
from tests.integration.conftest import new_tenant

# Not a speed target: on the threaded gunicorn of before, these requests never answered while the
# slow clients kept trickling; any server that keeps serving answers in milliseconds.
PATIENCE_S = 10.0


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _trickle(address: tuple[str, int], stop: threading.Event, opened: list[socket.socket]) -> None:
    """A slowloris client: a request line, then one header line every 2 s, never the blank line."""
    sock = socket.create_connection(address, timeout=5)
    opened.append(sock)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    n = 0
    while not stop.wait(2.0):
        try:
            sock.sendall(f"X-Slow-{n}: {n}\r\n".encode())
        except OSError:
            return  # the server may close a slow client: that is allowed
        n += 1


@pytest.fixture
def slow_clients(api: str) -> Iterator[int]:
    """Twice as many trickling connections as the API has request threads, open for the test."""
    parts = urlsplit(api)
    count = 2 * get_settings().api_threads
    stop, opened = threading.Event(), []
    address = (parts.hostname, parts.port)
    threads = [threading.Thread(target=_trickle, args=(address, stop, opened), daemon=True)
               for _ in range(count)]
    for t in threads:
        t.start()
    time.sleep(3.0)  # every slow client is connected and has sent more than its first line
    try:
        yield count
    finally:
        stop.set()
        for sock in opened:
            sock.close()
        for t in threads:
            t.join(5)


def test_slow_clients_do_not_stop_health_checks_or_other_clients(api: str, slow_clients: int) -> None:
    _, token = new_tenant()
    with httpx.Client(base_url=api, timeout=PATIENCE_S) as client:
        created = client.post("/v1/requests", headers=_auth(token), json={"text": "my invoice is wrong"})
        assert created.status_code == 202, created.text
        health = client.get("/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        view = client.get(f"/v1/requests/{created.json()['id']}", headers=_auth(token))
        assert view.status_code == 200 and view.json()["id"] == created.json()["id"]


def _post(api: str, token: str, content: str) -> httpx.Response:
    return httpx.post(f"{api}/v1/requests", headers={**_auth(token), "Content-Type": "application/json"},
                      content=content, timeout=PATIENCE_S)


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code
    return str(error["message"])


def test_json_nested_past_the_depth_limit_answers_400(api: str) -> None:
    _, token = new_tenant()
    # Well inside the size limit, and far deeper than Python's recursion limit.
    deep = '{"text": "hi", "metadata": {"a": ' + "[" * 20_000 + "]" * 20_000 + "}}"
    assert len(deep) < get_settings().api_max_body_bytes
    message = _error(_post(api, token, deep), 400, "bad_request")
    limit = get_settings().api_max_json_depth
    assert f"nested deeper than {limit}" in message
    just_past = '{"text": "hi", "metadata": {"a": ' + "[" * (limit - 1) + "]" * (limit - 1) + "}}"
    _error(_post(api, token, just_past), 400, "bad_request")
    # Nesting within the limit is not refused for its depth: the metadata rules judge it (422).
    within = '{"text": "hi", "metadata": {"a": ' + "[" * (limit - 3) + "]" * (limit - 3) + "}}"
    _error(_post(api, token, within), 422, "invalid_request")


def _chunks(total: int, size: int = 16 * 1024) -> Iterator[bytes]:
    yield b'{"text": "'
    sent = 0
    while sent < total:
        yield b"a" * size
        sent += size
    yield b'"}'


def test_chunked_body_past_the_size_limit_answers_413(api: str) -> None:
    _, token = new_tenant()
    limit = get_settings().api_max_body_bytes
    # A generator body goes out with Transfer-Encoding: chunked and no Content-Length.
    response = httpx.post(f"{api}/v1/requests", headers={**_auth(token), "Content-Type": "application/json"},
                          content=_chunks(4 * limit), timeout=PATIENCE_S)
    assert "content-length" not in response.request.headers
    assert _error(response, 413, "body_too_large").startswith("the body is larger than")


def test_chunked_body_within_the_limit_is_accepted(api: str) -> None:
    _, token = new_tenant()
    body = json.dumps({"text": "chunked, and small enough"}).encode()
    response = httpx.post(f"{api}/v1/requests", headers={**_auth(token), "Content-Type": "application/json"},
                          content=iter([body[:10], body[10:]]), timeout=PATIENCE_S)
    assert "content-length" not in response.request.headers
    assert response.status_code == 202, response.text


def test_a_huge_chunked_body_is_refused_without_being_read(api: str) -> None:
    """The server answers 413 and closes once the limit is passed; it does not read 64 MiB first."""
    _, token = new_tenant()
    parts = urlsplit(api)
    with socket.create_connection((parts.hostname, parts.port), timeout=PATIENCE_S) as sock:
        sock.sendall(f"POST /v1/requests HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                     "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        chunk = b"a" * 65536
        sent, answer = 0, b""
        try:
            while sent < 64 * 1024 * 1024 and not answer:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sent += len(chunk)
                sock.setblocking(False)
                try:
                    answer = sock.recv(65536)
                except BlockingIOError:
                    pass
                sock.setblocking(True)
        except OSError:
            pass  # the server closed the connection after answering
        sock.settimeout(PATIENCE_S)
        while b"\r\n\r\n" not in answer:
            more = sock.recv(65536)
            if not more:
                break
            answer += more
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 8 * 1024 * 1024, f"the server read {sent} bytes before answering"
