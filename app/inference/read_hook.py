"""httpcore's socket with a say in when it blocks: `before_read`, when set, runs each time httpcore
is about to read the socket, which is exactly when everything read so far has been handed over
(h11 asks for more bytes only once its buffer holds no whole event).

A streamed answer uses it to pass on the text it has parsed and to pace itself (provider._stream):
the moment is exact and costs no extra wake-up, where telling it from outside httpcore would take
either its private attributes or a blocking read for the next token. Wraps httpcore's public
network backend, so plain calls read through it unchanged."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterable
from typing import Any

import httpcore


class HookedStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner
        self.before_read: Callable[[], None] | None = None

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self.before_read is not None:
            self.before_read()
        return self._inner.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return HookedStream(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class HookedBackend(httpcore.SyncBackend):
    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        return HookedStream(super().connect_tcp(host, port, timeout, local_address, socket_options))
