"""A raw socket HTTP server that answers as each test scripts it, for the streamed answers'
transport (test_stream_http) and the stream pump (test_stream_pump): it counts the connections it
accepted and keeps the requests it read."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterator

import trustme

from app.inference import stream_http

EVENTS = [b'data: {"n": %d}\n\n' % i for i in range(40)]
TIMEOUTS = stream_http.Timeouts(connect=2, read=2, write=2)


def chunked(pieces: list[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


STREAM = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"

# What the server does on each request it reads: given the connection, answers (or not).
Answer = Callable[[socket.socket], None]


def read_request(conn: socket.socket) -> bytes | None:
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
                request = read_request(conn)
                if request is None:
                    return
                self.requests.append(request)
                self.answers.pop(0)(conn)

    def close(self) -> None:
        self._listener.close()


def stream_answer(conn: socket.socket) -> None:
    conn.sendall(STREAM)
    for event in EVENTS:  # one chunk per event, as a provider sends a token
        conn.sendall(chunked([event])[: -len(b"0\r\n\r\n")])
    conn.sendall(b"0\r\n\r\n")


def post(port: int, scheme: bytes = b"http", host: str = "127.0.0.1", context: ssl.SSLContext | None = None,
          timeouts: stream_http.Timeouts = TIMEOUTS, read_headers: bool = True,
          ) -> Iterator[stream_http.StreamResponse]:
    return stream_http.post(
        stream_http.Origin(scheme, host, port), b"/v1/chat/completions",
        [(b"Host", f"{host}:{port}".encode()), (b"Content-Length", b"2")], b"{}", timeouts,
        context or ssl.create_default_context(), read_headers=read_headers)


def tls_pair() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client
