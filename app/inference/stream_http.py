"""HTTP/1.1 for streamed answers, framed by httptools (llhttp, the C parser under uvicorn).

A provider sends its stream as one HTTP chunk per token. Through httpcore each chunk is an h11
event handed up through four generator layers: in the worker, most of the CPU that streaming
costs over not streaming (bench/stream_cpu.py). llhttp parses everything one socket read brought
in one call and gives the body in as many callbacks, so a read costs the same whether it holds one
chunk or fifty. Plain calls stay on httpcore (provider._post_json).

Per thread and origin one kept-alive connection, as httpcore's per-thread pools keep for plain
calls: a thread streams one answer at a time. A connection is reused only after a response read to
its end that did not ask to close, and only if the server has not closed it meanwhile. The socket
itself is httpcore's public network backend (connect, TLS, timeouts, the idle check), so its
failures are httpcore's exception classes and the provider maps both transports' in one place.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpcore
import httptools

_local = threading.local()

_READ_SIZE = 65536
_BACKEND = httpcore.SyncBackend()


@dataclass(frozen=True)
class Origin:
    scheme: bytes
    host: str
    port: int


@dataclass(frozen=True)
class Timeouts:
    connect: float
    read: float
    write: float


class _Message:
    """httptools' callbacks for one response: status, headers, and the body as it arrives."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.headers: dict[str, str] = {}
        self.headers_done = False
        self.status = 0
        self.keep_alive = False
        self.body: list[bytes] = []
        self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.headers_done = True
        self.status = self.parser.get_status_code()
        # llhttp knows it from the version and `Connection` here; after the message it has reset.
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True


def _idle() -> dict[Origin, httpcore.NetworkStream]:
    idle: dict[Origin, httpcore.NetworkStream] | None = getattr(_local, "idle", None)
    if idle is None or getattr(_local, "pid", None) != os.getpid():
        # A forked child must not share its parent's sockets.
        idle = _local.idle = {}
        _local.pid = os.getpid()
    return idle


def _connect(origin: Origin, timeouts: Timeouts, ssl_context: ssl.SSLContext) -> httpcore.NetworkStream:
    stream = _BACKEND.connect_tcp(origin.host, origin.port, timeout=timeouts.connect)
    if origin.scheme == b"https":
        try:
            stream = stream.start_tls(ssl_context, server_hostname=origin.host, timeout=timeouts.connect)
        except Exception:
            stream.close()
            raise
    return stream


def _request_bytes(target: bytes, headers: list[tuple[bytes, bytes]], content: bytes) -> bytes:
    lines = [b"POST " + target + b" HTTP/1.1"]
    lines += [name + b": " + value for name, value in headers]
    if any(b"\r" in line or b"\n" in line for line in lines):
        # As h11 refuses them: a line break in a header (a pasted key, say) would start another.
        raise httpcore.LocalProtocolError("a request header or target holds a line break")
    return b"\r\n".join(lines) + b"\r\n\r\n" + content


def no_response() -> httpcore.RemoteProtocolError:
    return httpcore.RemoteProtocolError("the provider closed the connection without a response")


class StreamResponse:
    """A response whose headers have arrived; its body is read as it comes."""

    def __init__(self, stream: httpcore.NetworkStream, message: _Message, read_timeout: float) -> None:
        self._stream = stream
        self.read_timeout = read_timeout  # seconds without a byte before a read fails
        self._parser = message.parser
        self._message = message
        self.headers = message.headers
        self.closed = False  # the server closed the connection
        self.error_body: list[bytes] = []  # an error answer's body, as stream_pump read it

    def _receive(self) -> bool:
        """One blocking socket read into the parser; False when the server closed the connection."""
        data = self._stream.read(_READ_SIZE, self.read_timeout)
        if not data:
            self.closed = True
            return False
        self._parse(data)
        return True

    def _parse(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            raise httpcore.RemoteProtocolError(
                f"unreadable HTTP from the provider: {type(exc).__name__}"
            ) from None

    def feed(self, data: bytes) -> bytes:
        """Parse bytes that stream_pump read from the socket; the body they held."""
        self._parse(data)
        return self.take_body()

    def take_body(self) -> bytes:
        """The body parsed and not yet taken."""
        body = self._message.body
        if not body:
            return b""
        piece = body[0] if len(body) == 1 else b"".join(body)
        body.clear()
        return piece

    @property
    def status(self) -> int:
        """The status code, once the headers are in (0 before)."""
        return self._message.status

    @property
    def headers_done(self) -> bool:
        return self._message.headers_done

    @property
    def complete(self) -> bool:
        return self._message.complete

    @property
    def socket(self) -> socket.socket:
        """The connection's socket (an SSLSocket over TLS), for stream_pump to read."""
        sock: socket.socket = self._stream.get_extra_info("socket")
        return sock

    def iter_body(self) -> Iterator[bytes]:
        """The body as it arrives, one piece per socket read, read on this thread."""
        while True:
            if piece := self.take_body():
                yield piece
            if self.complete:
                return
            # A close before the end is the end of what there is: a stream cut off mid-way is the
            # decoder's to tell (its final event has not arrived).
            if not self._receive():
                return

    def read(self) -> bytes:
        return b"".join(self.iter_body())

    @property
    def reusable(self) -> bool:
        return self._message.complete and self._message.keep_alive


@contextmanager
def post(
    origin: Origin,
    target: bytes,
    headers: list[tuple[bytes, bytes]],
    content: bytes,
    timeouts: Timeouts,
    ssl_context: ssl.SSLContext,
    *,
    read_headers: bool = True,
) -> Iterator[StreamResponse]:
    """POST and give the response once its headers are in (with `read_headers=False`, once the
    request is sent: stream_pump reads the rest); the connection goes back to the thread's idle
    slot afterwards only if the response was read to its end and may be kept."""
    request = _request_bytes(target, headers, content)
    idle = _idle()
    stream = idle.pop(origin, None)
    if stream is not None and stream.get_extra_info("is_readable"):
        # Readable while idle: the server closed it (or sent what nobody asked for).
        stream.close()
        stream = None
    if stream is None:
        stream = _connect(origin, timeouts, ssl_context)
    response: StreamResponse | None = None
    try:
        stream.write(request, timeouts.write)
        message = _Message()
        response = StreamResponse(stream, message, timeouts.read)
        while read_headers and not message.headers_done:
            if not response._receive():
                raise no_response()
        yield response
    finally:
        if response is not None and response.reusable and origin not in idle:
            idle[origin] = stream
        else:
            stream.close()
