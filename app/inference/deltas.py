"""Where a streamed call's text goes while the model writes it (the gateway's side of streaming)."""

from __future__ import annotations

from typing import Protocol


class Deltas(Protocol):
    """`begin()` before each provider attempt of one streamed call (a retry, a fallback model),
    so text an earlier attempt sent can be announced as discarded; `delta(text)` per piece.
    `delta` runs on the process's stream pump thread (app/inference/stream_pump.py), which reads
    every streamed answer: it must return at once (hand the text over, never wait on I/O)."""

    def begin(self) -> None: ...

    def delta(self, text: str) -> None: ...
