"""The streamed answers' HTTP transport against a raw socket server that answers as scripted: the
body as it arrives, one kept-alive connection per thread and origin, a connection the server
closed while idle replaced, `Connection: close` honoured, a cut body, a stalled server, bytes that
are not HTTP, an error answer's body, and TLS with the server's name verified."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable

import httpcore
import pytest

from app.inference import stream_http
from tests.unit.scripted_http import EVENTS, STREAM, TIMEOUTS, Server, chunked, post, stream_answer, tls_pair


def test_a_chunk_per_event_arrives_whole_over_one_kept_alive_connection(serve: Callable[..., Server]) -> None:
    server = serve([stream_answer, stream_answer])
    for _ in range(2):
        with post(server.port) as response:
            assert response.status == 200 and response.headers["content-type"] == "text/event-stream"
            assert b"".join(response.iter_body()) == b"".join(EVENTS)
    assert server.accepted == 1
    assert server.requests[0].startswith(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:")
    assert server.requests[0].endswith(b"\r\n\r\n{}")


def test_a_connection_the_server_closed_while_idle_is_replaced(serve: Callable[..., Server]) -> None:
    def then_close(conn: socket.socket) -> None:
        stream_answer(conn)
        time.sleep(0.05)
        conn.shutdown(socket.SHUT_RDWR)

    server = serve([then_close, stream_answer])
    with post(server.port) as response:
        response.read()
    time.sleep(0.2)
    with post(server.port) as response:
        assert response.read() == b"".join(EVENTS)
    assert server.accepted == 2


def test_connection_close_is_honoured(serve: Callable[..., Server]) -> None:
    def closing(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 5\r\n\r\nhello")

    server = serve([closing, closing])
    for _ in range(2):
        with post(server.port) as response:
            assert response.read() == b"hello"
    assert server.accepted == 2


def test_a_cut_body_ends_the_stream_and_the_connection(serve: Callable[..., Server]) -> None:
    def cut(conn: socket.socket) -> None:
        conn.sendall(STREAM + chunked(EVENTS[:5])[:-5])
        conn.shutdown(socket.SHUT_RDWR)

    server = serve([cut, stream_answer])
    with post(server.port) as response:
        assert b"".join(response.iter_body()) == b"".join(EVENTS[:5])
        assert not response.reusable
    with post(server.port) as response:
        assert response.read() == b"".join(EVENTS)
    assert server.accepted == 2


def test_a_stalled_server_is_a_read_timeout(serve: Callable[..., Server]) -> None:
    server = serve([lambda conn: (conn.sendall(STREAM), time.sleep(3))])
    started = time.monotonic()
    with pytest.raises(httpcore.ReadTimeout), \
            post(server.port, timeouts=stream_http.Timeouts(connect=2, read=0.3, write=2)) as response:
        response.read()
    assert time.monotonic() - started < 2.5


def test_bytes_that_are_not_http_are_a_protocol_error(serve: Callable[..., Server]) -> None:
    server = serve([lambda conn: conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")])
    with pytest.raises(httpcore.RemoteProtocolError), post(server.port):
        pass


def test_nothing_listening_is_a_connect_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(httpcore.ConnectError), post(port):
        pass


def test_an_error_answer_is_read_whole_and_the_connection_kept(serve: Callable[..., Server]) -> None:
    body = b'{"error": {"message": "Rate limit reached"}}'
    server = serve([lambda conn: conn.sendall(b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 2\r\n"
                                              b"content-length: %d\r\n\r\n%s" % (len(body), body)),
                    stream_answer])
    with post(server.port) as response:
        assert (response.status, response.headers["retry-after"], response.read()) == (429, "2", body)
    with post(server.port) as response:
        assert response.read() == b"".join(EVENTS)
    assert server.accepted == 1


def test_tls_with_the_servers_name_checked(serve: Callable[..., Server]) -> None:
    server_context, client_context = tls_pair()
    server = serve([stream_answer, stream_answer], tls=server_context)
    for _ in range(2):
        with post(server.port, b"https", "localhost", client_context) as response:
            assert response.read() == b"".join(EVENTS)
    assert server.accepted == 1
    untrusted = serve([stream_answer], tls=server_context)
    with pytest.raises(httpcore.ConnectError), post(untrusted.port, b"https", "localhost"):
        pass  # the system's CAs do not trust this certificate


def test_a_line_break_in_a_header_is_refused_before_anything_is_sent(serve: Callable[..., Server]) -> None:
    server = serve([stream_answer])
    with pytest.raises(httpcore.LocalProtocolError), stream_http.post(
            stream_http.Origin(b"http", "127.0.0.1", server.port), b"/v1/chat/completions",
            [(b"Authorization", b"Bearer sk-1\r\nX-Injected: 1"), (b"Content-Length", b"2")], b"{}",
            TIMEOUTS, ssl.create_default_context()):
        pass
    time.sleep(0.1)
    assert server.accepted == 0
