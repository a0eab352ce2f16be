"""The streamed answers' HTTP transport against a raw socket server that answers as scripted: the
body as it arrives, one kept-alive connection per thread and origin, a connection the server
closed while idle replaced, `Connection: close` honoured, a cut body, a stalled server, bytes that
are not HTTP, an error answer's body, and TLS with the server's name verified."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator

import httpcore
import pytest
import trustme

from app.inference import stream_http

EVENTS = [b'data: {"n": %d}\n\n' % i for i in range(40)]
TIMEOUTS = stream_http.Timeouts(connect=2, read=2, write=2)


def _chunked(pieces: list[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


STREAM = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"

# What the server does on each request it reads: given the connection, answers (or not).
Answer = Callable[[socket.socket], None]


def _read_request(conn: socket.socket) -> bytes | None:
    data = b""
    while b"\r\n\r\n" not in data:
        more = conn.recv(65536)
        if not more:
            return None
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    while len(body) < length:
        body += conn.recv(65536)
    return head + b"\r\n\r\n" + body


class Server:
    def __init__(self, answers: list[Answer], tls: ssl.SSLContext | None = None) -> None:
        self.answers = answers
        self.accepted = 0
        self.requests: list[bytes] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._tls = tls
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        if self._tls is not None:
            try:
                conn = self._tls.wrap_socket(conn, server_side=True)
            except ssl.SSLError:  # the client refused the certificate
                conn.close()
                return
        with conn:
            while self.answers:
                request = _read_request(conn)
                if request is None:
                    return
                self.requests.append(request)
                self.answers.pop(0)(conn)

    def close(self) -> None:
        self._listener.close()


def _stream_answer(conn: socket.socket) -> None:
    conn.sendall(STREAM)
    for event in EVENTS:  # one chunk per event, as a provider sends a token
        conn.sendall(_chunked([event])[: -len(b"0\r\n\r\n")])
    conn.sendall(b"0\r\n\r\n")


def _post(port: int, scheme: bytes = b"http", host: str = "127.0.0.1", context: ssl.SSLContext | None = None,
          timeouts: stream_http.Timeouts = TIMEOUTS) -> Iterator[stream_http.StreamResponse]:
    return stream_http.post(
        stream_http.Origin(scheme, host, port), b"/v1/chat/completions",
        [(b"Host", f"{host}:{port}".encode()), (b"Content-Length", b"2")], b"{}", timeouts,
        context or ssl.create_default_context())


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(answers: list[Answer], tls: ssl.SSLContext | None = None) -> Server:
        servers.append(Server(answers, tls))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_a_chunk_per_event_arrives_whole_over_one_kept_alive_connection(serve: Callable[..., Server]) -> None:
    server = serve([_stream_answer, _stream_answer])
    for _ in range(2):
        with _post(server.port) as response:
            assert response.status == 200 and response.headers["content-type"] == "text/event-stream"
            assert b"".join(response.iter_body()) == b"".join(EVENTS)
    assert server.accepted == 1
    assert server.requests[0].startswith(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:")
    assert server.requests[0].endswith(b"\r\n\r\n{}")


def test_before_read_runs_only_once_what_came_has_been_handed_over(serve: Callable[..., Server]) -> None:
    def paced(conn: socket.socket) -> None:
        conn.sendall(STREAM + _chunked(EVENTS[:3])[:-5])
        time.sleep(0.3)
        conn.sendall(_chunked(EVENTS[3:]))

    server = serve([paced])
    seen: list[bytes] = []
    handed: list[int] = []  # how many pieces had been given each time it was about to wait
    with _post(server.port) as response:
        body = response.iter_body(before_read=lambda: handed.append(len(seen)))
        while (piece := next(body, None)) is not None:
            seen.append(piece)
    assert b"".join(seen) == b"".join(EVENTS)
    # The three events that came together are one piece, given before the wait for the rest.
    assert seen[0] == b"".join(EVENTS[:3]) and handed[0] == 1


def test_a_connection_the_server_closed_while_idle_is_replaced(serve: Callable[..., Server]) -> None:
    def then_close(conn: socket.socket) -> None:
        _stream_answer(conn)
        time.sleep(0.05)
        conn.shutdown(socket.SHUT_RDWR)

    server = serve([then_close, _stream_answer])
    with _post(server.port) as response:
        response.read()
    time.sleep(0.2)
    with _post(server.port) as response:
        assert response.read() == b"".join(EVENTS)
    assert server.accepted == 2


def test_connection_close_is_honoured(serve: Callable[..., Server]) -> None:
    def closing(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 5\r\n\r\nhello")

    server = serve([closing, closing])
    for _ in range(2):
        with _post(server.port) as response:
            assert response.read() == b"hello"
    assert server.accepted == 2


def test_a_cut_body_ends_the_stream_and_the_connection(serve: Callable[..., Server]) -> None:
    def cut(conn: socket.socket) -> None:
        conn.sendall(STREAM + _chunked(EVENTS[:5])[:-5])
        conn.shutdown(socket.SHUT_RDWR)

    server = serve([cut, _stream_answer])
    with _post(server.port) as response:
        assert b"".join(response.iter_body()) == b"".join(EVENTS[:5])
        assert not response.reusable
    with _post(server.port) as response:
        assert response.read() == b"".join(EVENTS)
    assert server.accepted == 2


def test_a_stalled_server_is_a_read_timeout(serve: Callable[..., Server]) -> None:
    server = serve([lambda conn: (conn.sendall(STREAM), time.sleep(3))])
    started = time.monotonic()
    with pytest.raises(httpcore.ReadTimeout), \
            _post(server.port, timeouts=stream_http.Timeouts(connect=2, read=0.3, write=2)) as response:
        response.read()
    assert time.monotonic() - started < 2.5


def test_bytes_that_are_not_http_are_a_protocol_error(serve: Callable[..., Server]) -> None:
    server = serve([lambda conn: conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")])
    with pytest.raises(httpcore.RemoteProtocolError), _post(server.port):
        pass


def test_nothing_listening_is_a_connect_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(httpcore.ConnectError), _post(port):
        pass


def test_an_error_answer_is_read_whole_and_the_connection_kept(serve: Callable[..., Server]) -> None:
    body = b'{"error": {"message": "Rate limit reached"}}'
    server = serve([lambda conn: conn.sendall(b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 2\r\n"
                                              b"content-length: %d\r\n\r\n%s" % (len(body), body)),
                    _stream_answer])
    with _post(server.port) as response:
        assert (response.status, response.headers["retry-after"], response.read()) == (429, "2", body)
    with _post(server.port) as response:
        assert response.read() == b"".join(EVENTS)
    assert server.accepted == 1


def _tls_pair() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


def test_tls_with_the_servers_name_checked(serve: Callable[..., Server]) -> None:
    server_context, client_context = _tls_pair()
    server = serve([_stream_answer, _stream_answer], tls=server_context)
    for _ in range(2):
        with _post(server.port, b"https", "localhost", client_context) as response:
            assert response.read() == b"".join(EVENTS)
    assert server.accepted == 1
    untrusted = serve([_stream_answer], tls=server_context)
    with pytest.raises(httpcore.ConnectError), _post(untrusted.port, b"https", "localhost"):
        pass  # the system's CAs do not trust this certificate


def test_a_line_break_in_a_header_is_refused_before_anything_is_sent(serve: Callable[..., Server]) -> None:
    server = serve([_stream_answer])
    with pytest.raises(httpcore.LocalProtocolError), stream_http.post(
            stream_http.Origin(b"http", "127.0.0.1", server.port), b"/v1/chat/completions",
            [(b"Authorization", b"Bearer sk-1\r\nX-Injected: 1"), (b"Content-Length", b"2")], b"{}",
            TIMEOUTS, ssl.create_default_context()):
        pass
    time.sleep(0.1)
    assert server.accepted == 0
