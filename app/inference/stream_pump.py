"""One thread per process reads the body of every streamed answer, so that a worker thread waiting
for one wakes once, when the answer has ended, instead of once per piece of text.

Why: in a worker running a hundred tasks, each thread's wake-up costs CPU of its own (the GIL
handed over among busy threads, caches refilled): about 0.3 ms each, measured in bench/streaming.py
as the worker's extra CPU per streamed request falling from 1.9-2.1 ms to 1.1 ms when the read
interval went from 0.3 s to 1.0 s (three reads fewer per draft). This thread reads whichever sockets
have data in one wake-up and passes each one's text on from there, and it wakes at most once per
GATHER_S: what arrives meanwhile, on any stream, waits for the same wake-up.

Pacing, per stream: its socket is read as data comes until its first text has been passed on, so
the first piece reaches a reader without delay; after that at most once per `interval`, and what
arrived meanwhile is one piece.

The calling thread connects and sends the request (stream_http.post), then waits; here the
response is read, headers and body, and the socket is never closed: the calling thread keeps the
connection for reuse once the answer was read to its end. A failure reading it (a timeout, a
reset, bytes that are not HTTP) and whatever `consume` raises are raised again on the calling
thread.
"""

from __future__ import annotations

import os
import selectors
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import httpcore

from app.inference import stream_http
from app.inference.stream_http import StreamResponse

# The shortest time between two wake-ups of the pump: arrivals on any stream within it are read in
# one. It is also the most a first piece of text can wait (the engine adds <= 100 ms at p95 is the
# target of bench/streaming.py).
GATHER_S = 0.02
_READ_SIZE = 65536


@dataclass(eq=False)
class _Stream:
    response: StreamResponse
    sock: socket.socket
    consume: Callable[[bytes], bool]
    interval: float
    begun: bool
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    watched: bool = False  # registered with the selector
    due: float = 0.0  # paced: not read before this (time.monotonic())
    deadline: float = 0.0  # no byte by then: a read timeout


class _Pump(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="stream-pump", daemon=True)
        self._selector = selectors.DefaultSelector()
        # A new stream wakes the selector through this pair; a full buffer means one is pending.
        self._wake_in, self._wake_out = socket.socketpair()
        self._wake_in.setblocking(False)
        self._wake_out.setblocking(False)
        self._selector.register(self._wake_in, selectors.EVENT_READ, None)
        self._incoming: deque[_Stream] = deque()
        self._streams: set[_Stream] = set()
        self._paced: list[_Stream] = []

    def add(self, stream: _Stream) -> None:
        self._incoming.append(stream)
        try:
            self._wake_out.send(b"\0")
        except BlockingIOError:
            pass

    def run(self) -> None:
        while True:
            try:
                self._turn()
            except BaseException as exc:  # noqa: BLE001 - a fault here must not leave a waiter hanging
                for stream in [*self._streams, *self._incoming]:
                    self._finish(stream, exc)
                self._incoming.clear()

    def _turn(self) -> None:
        now = time.monotonic()
        while self._incoming:
            stream = self._incoming.popleft()
            self._streams.add(stream)
            stream.deadline = now + stream.response.read_timeout
            # Read at once: the SSL object may hold decrypted bytes already, which select can't see.
            self._read(stream, now)
        for stream in [s for s in self._paced if s.due <= now]:
            self._paced.remove(stream)
            self._read(stream, now)  # what came while it waited, without a select first
        for stream in [s for s in self._streams if s.watched and s.deadline <= now]:
            self._finish(stream, httpcore.ReadTimeout("the provider's stream went quiet"))
        wake_at = [s.due for s in self._paced] + [s.deadline for s in self._streams if s.watched]
        timeout = max(0.0, min(wake_at) - now) if wake_at else None
        events = self._selector.select(timeout)
        now = time.monotonic()
        for key, _ in events:
            if key.data is None:
                self._drain_wake()
            else:
                self._read(key.data, now)
        if events:
            time.sleep(GATHER_S)

    def _drain_wake(self) -> None:
        try:
            while self._wake_in.recv(4096):
                pass
        except BlockingIOError:
            pass

    def _watch(self, stream: _Stream) -> None:
        if not stream.watched:
            self._selector.register(stream.sock, selectors.EVENT_READ, stream)
            stream.watched = True

    def _unwatch(self, stream: _Stream) -> None:
        if stream.watched:
            self._selector.unregister(stream.sock)
            stream.watched = False

    def _finish(self, stream: _Stream, error: BaseException | None) -> None:
        self._unwatch(stream)
        self._streams.discard(stream)
        if stream in self._paced:
            self._paced.remove(stream)
        stream.error = error
        stream.done.set()

    def _read(self, stream: _Stream, now: float) -> None:
        try:
            body = self._receive(stream)
            if body is None:  # nothing yet
                self._watch(stream)
                return
            stream.deadline = now + stream.response.read_timeout
            text = _deliver(stream.response, stream.consume, body)
        except Exception as exc:  # noqa: BLE001 - raised again on the calling thread
            self._finish(stream, exc)
            return
        if stream.response.complete or stream.response.closed:
            closed_early = stream.response.closed and not stream.response.headers_done
            self._finish(stream, stream_http.no_response() if closed_early else None)
        elif text and stream.begun and stream.interval > 0:
            self._unwatch(stream)
            stream.due = now + stream.interval
            self._paced.append(stream)
        else:
            stream.begun = stream.begun or text
            self._watch(stream)

    @staticmethod
    def _receive(stream: _Stream) -> bytes | None:
        """The body bytes that were waiting (b"" if the server closed), None if nothing had come.
        Over TLS everything waiting is read: one recv gives one TLS record, a provider sends a
        record per token, and the records behind it wait unseen until the stream's next read."""
        sock, received, tls = stream.sock, b"", isinstance(stream.sock, ssl.SSLSocket)
        while True:
            try:
                data = sock.recv(_READ_SIZE)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return received if received or stream.response.complete else None
            except OSError as exc:
                raise httpcore.ReadError(f"reading the provider's stream: {type(exc).__name__}") from None
            if not data:
                stream.response.closed = True
                return received
            received += stream.response.feed(data)
            if stream.response.complete or not tls:
                return received


def _deliver(response: StreamResponse, consume: Callable[[bytes], bool], body: bytes) -> bool:
    """An answer's body to `consume`; an error answer's is kept whole for the caller."""
    if not body:
        return False
    if response.status == 200:
        return consume(body)
    response.error_body.append(body)
    return False


_lock = threading.Lock()
_pump: tuple[int, _Pump] | None = None


def _the_pump() -> _Pump:
    global _pump
    with _lock:
        if _pump is None or _pump[0] != os.getpid() or not _pump[1].is_alive():
            # A forked child has no copy of its parent's thread.
            _pump = (os.getpid(), _Pump())
            _pump[1].start()
        return _pump[1]


def pump(response: StreamResponse, consume: Callable[[bytes], bool], interval: float) -> None:
    """Read `response` (its headers too, if they have not come yet) on the pump's thread and hand
    a 200 answer's body, as it arrives, to `consume` (which says whether it passed text on); an
    error answer's body is kept whole in `response.error_body`. Return once the body has ended,
    whole or cut off (the caller's decoder tells which), or raise what went wrong (a read timeout
    after `response.read_timeout` without a byte)."""
    begun = _deliver(response, consume, response.take_body())  # what came with the headers
    if response.complete:
        return
    sock = response.socket
    sock.setblocking(False)  # httpcore sets its timeout again at the connection's next use
    stream = _Stream(response, sock, consume, interval, begun)
    pump_thread = _the_pump()
    pump_thread.add(stream)
    # One wake-up at the end; the check now and then is for a pump that died with the stream in it.
    while not stream.done.wait(max(response.read_timeout, 1.0) + 5.0):
        if not pump_thread.is_alive():
            raise httpcore.ReadError("the stream pump stopped")
    if stream.error is not None:
        raise stream.error
