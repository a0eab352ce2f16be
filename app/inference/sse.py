"""Server-Sent Events read incrementally: bytes as they arrive in, whole events out (WHATWG rules:
`event:`/`data:` fields, several `data:` lines joined by newlines, comments and `id:`/`retry:`
ignored, CR, LF or CRLF line ends).

A provider sends a chunk per token, so this runs tens of times per streamed call on a worker
thread that shares its core with hundreds of others: each chunk's complete lines are decoded and
split at once, rather than cut one line at a time."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    event: str
    data: str


class EventReader:
    """Feed it chunks in any split; it gives each event once its blank line has arrived."""

    def __init__(self) -> None:
        self._buffer = b""
        self._event = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[Event]:
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" in buffer:
            lines, self._buffer = _split_any(buffer)
        else:
            # LF only, as every provider sends it: the last piece is the start of a line to come.
            # Cutting at LF bytes never splits a UTF-8 character.
            cut = buffer.rfind(b"\n")
            if cut == -1:
                self._buffer = buffer
                return []
            lines = buffer[:cut].decode("utf-8", errors="replace").split("\n")
            self._buffer = buffer[cut + 1 :]
        out: list[Event] = []
        for line in lines:
            if not line:
                if self._data or self._event:
                    out.append(Event(self._event or "message", "\n".join(self._data)))
                self._event, self._data = "", []
            elif line.startswith("data:"):
                self._data.append(line[5:].removeprefix(" "))
            elif line[0] != ":":
                name, _, value = line.partition(":")
                if name == "event":
                    self._event = value.removeprefix(" ")
                elif name == "data":  # `data` with no colon: an empty data line
                    self._data.append(value)
        return out


def _split_any(buffer: bytes) -> tuple[list[str], bytes]:
    """The complete lines in `buffer` whatever their ends (CR, LF, CRLF), and what is left. A CR
    at the very end may be the first half of a CRLF split over two chunks, so it waits for more."""
    lines: list[str] = []
    while True:
        lf, cr = buffer.find(b"\n"), buffer.find(b"\r")
        if cr == -1 or (lf != -1 and lf < cr):
            if lf == -1:
                return lines, buffer
            end, skip = lf, 1
        elif cr + 1 == len(buffer):
            return lines, buffer
        else:
            end, skip = cr, 2 if buffer[cr + 1 : cr + 2] == b"\n" else 1
        lines.append(buffer[:end].decode("utf-8", errors="replace"))
        buffer = buffer[end + skip :]


def events(chunks: Iterable[bytes]) -> Iterator[Event]:
    reader = EventReader()
    for chunk in chunks:
        yield from reader.feed(chunk)
