"""The stream pump (one thread reading every streamed body) against the raw socket server of
tests/unit/scripted_http.py: the body handed over whole with the connection kept for the next request, the
first text at once and the rest paced, many streams at once, a stall, a cut, bytes that are not
HTTP, a consumer that raises, TLS records read together, an error answer, and no answer at all."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpcore
import pytest

from app.inference import stream_http, stream_pump
from tests.unit.scripted_http import EVENTS, STREAM, Server, chunked, post, stream_answer, tls_pair


class Consumer:
    """Records each piece it is given and when, and the thread it ran on."""

    def __init__(self, says_text: bool = True) -> None:
        self.pieces: list[bytes] = []
        self.at: list[float] = []
        self.threads: set[str] = set()
        self.says_text = says_text

    def __call__(self, body: bytes) -> bool:
        self.pieces.append(body)
        self.at.append(time.monotonic())
        self.threads.add(threading.current_thread().name)
        return self.says_text


def _pumped(port: int, consumer: Consumer, interval: float = 0.3, read_timeout: float = 2.0,
            scheme: bytes = b"http", host: str = "127.0.0.1", context: ssl.SSLContext | None = None,
            read_headers: bool = False) -> stream_http.StreamResponse:
    """The provider's way: the request sent on this thread, the response read by the pump."""
    timeouts = stream_http.Timeouts(connect=2, read=read_timeout, write=2)
    with post(port, scheme, host, context, timeouts, read_headers) as response:
        stream_pump.pump(response, consumer, interval)
    return response


def test_the_body_is_handed_over_whole_on_the_pumps_thread_and_the_connection_kept(
        serve: Callable[..., Server]) -> None:
    server = serve([stream_answer, stream_answer, stream_answer, stream_answer])
    for read_headers in (False, True, False):  # the headers read by the pump, or already in
        consumer = Consumer()
        response = _pumped(server.port, consumer, read_headers=read_headers)
        assert b"".join(consumer.pieces) == b"".join(EVENTS) and response.complete
        assert response.status == 200 and response.headers["content-type"] == "text/event-stream"
        assert consumer.threads <= {"stream-pump", threading.current_thread().name}
    # The socket the pump read went back to blocking reads with timeouts for the thread's next use.
    with post(server.port) as response:
        assert response.read() == b"".join(EVENTS)
    assert server.accepted == 1


def test_the_first_text_passes_at_once_and_the_rest_is_paced(serve: Callable[..., Server]) -> None:
    def slow(conn: socket.socket) -> None:
        conn.sendall(STREAM)
        time.sleep(0.2)
        for event in EVENTS:  # 40 events over about 1.2 s
            conn.sendall(chunked([event])[:-5])
            time.sleep(0.03)
        conn.sendall(b"0\r\n\r\n")

    server = serve([slow, slow])
    started = time.monotonic()
    paced = Consumer()
    _pumped(server.port, paced, interval=0.3)
    assert b"".join(paced.pieces) == b"".join(EVENTS)
    assert paced.at[0] - started < 0.35  # the first event, 0.2 s in: not held back
    # After the first piece, at most one read per 0.3 s (a piece per event would be 40).
    assert len(paced.pieces) <= 7
    assert all(b - a >= 0.29 for a, b in zip(paced.at[1:], paced.at[2:]))
    unpaced = Consumer()
    _pumped(server.port, unpaced, interval=0)
    assert b"".join(unpaced.pieces) == b"".join(EVENTS) and len(unpaced.pieces) > 10


def test_a_stream_without_text_is_read_as_it_comes(serve: Callable[..., Server]) -> None:
    """Until its first text (a tool call's arguments, say), nothing paces a stream."""

    def slow(conn: socket.socket) -> None:
        conn.sendall(STREAM)
        for event in EVENTS[:10]:
            time.sleep(0.1)
            conn.sendall(chunked([event])[:-5])
        conn.sendall(b"0\r\n\r\n")

    consumer = Consumer(says_text=False)
    _pumped(serve([slow]).port, consumer, interval=0.5)
    assert b"".join(consumer.pieces) == b"".join(EVENTS[:10]) and len(consumer.pieces) >= 8


def test_many_streams_at_once_each_get_their_own_body(serve: Callable[..., Server]) -> None:
    servers = [serve([stream_answer]) for _ in range(50)]
    consumers = [Consumer() for _ in servers]
    with ThreadPoolExecutor(50) as pool:
        list(pool.map(lambda i: _pumped(servers[i].port, consumers[i], interval=0.05), range(50)))
    assert all(b"".join(c.pieces) == b"".join(EVENTS) for c in consumers)


def test_a_stalled_stream_is_a_read_timeout_on_the_calling_thread(serve: Callable[..., Server]) -> None:
    server = serve([lambda conn: (conn.sendall(STREAM + chunked(EVENTS[:2])[:-5]), time.sleep(3))])
    started = time.monotonic()
    with pytest.raises(httpcore.ReadTimeout):
        _pumped(server.port, Consumer(), read_timeout=0.4)
    assert time.monotonic() - started < 2.0


def test_a_cut_body_ends_the_pump_and_the_connection(serve: Callable[..., Server]) -> None:
    def cut(conn: socket.socket) -> None:
        conn.sendall(STREAM + chunked(EVENTS[:5])[:-5])
        time.sleep(0.1)
        conn.shutdown(socket.SHUT_RDWR)

    server = serve([cut, stream_answer])
    consumer = Consumer()
    response = _pumped(server.port, consumer)
    assert b"".join(consumer.pieces) == b"".join(EVENTS[:5])
    assert not response.complete and not response.reusable
    consumer = Consumer()
    _pumped(server.port, consumer)
    assert b"".join(consumer.pieces) == b"".join(EVENTS) and server.accepted == 2


def test_bytes_that_are_not_http_mid_body_are_a_protocol_error(serve: Callable[..., Server]) -> None:
    def garbled(conn: socket.socket) -> None:
        conn.sendall(STREAM + chunked(EVENTS[:2])[:-5])
        time.sleep(0.1)
        conn.sendall(b"zz not a chunk size\r\n")

    with pytest.raises(httpcore.RemoteProtocolError):
        _pumped(serve([garbled]).port, Consumer())


def test_what_the_consumer_raises_is_raised_on_the_calling_thread_and_the_pump_goes_on(
        serve: Callable[..., Server]) -> None:
    def late(conn: socket.socket) -> None:
        conn.sendall(STREAM)
        time.sleep(0.1)  # after the headers: read by the pump, not with them
        conn.sendall(chunked(EVENTS))

    class Refusing(Consumer):
        def __call__(self, body: bytes) -> bool:
            raise ValueError("not an event")

    server = serve([late, stream_answer])
    with pytest.raises(ValueError, match="not an event"):
        _pumped(server.port, Refusing())
    consumer = Consumer()
    _pumped(server.port, consumer)
    assert b"".join(consumer.pieces) == b"".join(EVENTS)


def test_tls_records_that_came_together_are_one_read(serve: Callable[..., Server]) -> None:
    """A TLS record per event, as a provider sends one per token: a paced stream must not get one
    record per interval (40 records would take 12 s at 0.3 s)."""
    server_context, client_context = tls_pair()
    server = serve([stream_answer, stream_answer], tls=server_context)
    for _ in range(2):
        consumer, started = Consumer(), time.monotonic()
        _pumped(server.port, consumer, interval=0.3, scheme=b"https", host="localhost", context=client_context)
        assert b"".join(consumer.pieces) == b"".join(EVENTS)
        assert time.monotonic() - started < 2.0 and len(consumer.pieces) <= 4
    assert server.accepted == 1


def test_an_error_answer_is_kept_whole_for_the_caller_and_never_consumed(serve: Callable[..., Server]) -> None:
    body = b'{"error": {"message": "Rate limit reached"}}'

    def refused(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 2\r\ncontent-length: %d\r\n\r\n" % len(body))
        time.sleep(0.1)
        conn.sendall(body)

    server = serve([refused, stream_answer])
    consumer = Consumer()
    response = _pumped(server.port, consumer)
    assert (response.status, response.headers["retry-after"], b"".join(response.error_body)) == (429, "2", body)
    assert consumer.pieces == []
    _pumped(server.port, consumer)
    assert b"".join(consumer.pieces) == b"".join(EVENTS) and server.accepted == 1


def test_a_server_that_closes_before_answering_is_a_protocol_error(serve: Callable[..., Server]) -> None:
    server = serve([lambda conn: conn.shutdown(socket.SHUT_RDWR)])
    with pytest.raises(httpcore.RemoteProtocolError, match="without a response"):
        _pumped(server.port, Consumer())
