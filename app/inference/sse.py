"""Server-Sent Events read incrementally: bytes as they arrive in, whole events out (WHATWG rules:
`event:`/`data:` fields, several `data:` lines joined by newlines, comments and `id:`/`retry:`
ignored, CR, LF or CRLF line ends)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    event: str
    data: str


class EventReader:
    """Feed it chunks in any split; it yields each event once its blank line has arrived."""

    def __init__(self) -> None:
        self._buffer = b""
        self._event = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> Iterator[Event]:
        self._buffer += chunk
        while True:
            cut = _line_end(self._buffer)
            if cut is None:
                return
            end, skip = cut
            line = self._buffer[:end].decode("utf-8", errors="replace")
            self._buffer = self._buffer[end + skip :]
            if not line:
                if self._data or self._event:
                    yield Event(self._event or "message", "\n".join(self._data))
                self._event, self._data = "", []
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                self._event = value
            elif name == "data":
                self._data.append(value)


def _line_end(buffer: bytes) -> tuple[int, int] | None:
    """(where the first line ends, how many bytes its end takes) once it is complete. A CR at the
    very end may be the first half of a CRLF split over two chunks, so it waits for more."""
    lf, cr = buffer.find(b"\n"), buffer.find(b"\r")
    if cr == -1 or (lf != -1 and lf < cr):
        return None if lf == -1 else (lf, 1)
    if cr + 1 == len(buffer):
        return None
    return cr, 2 if buffer[cr + 1 : cr + 2] == b"\n" else 1


def events(chunks: Iterable[bytes]) -> Iterator[Event]:
    reader = EventReader()
    for chunk in chunks:
        yield from reader.feed(chunk)
