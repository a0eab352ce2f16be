"""Where a streamed call's text goes while the model writes it (the gateway's side of streaming)."""

from __future__ import annotations

from typing import Protocol


class Deltas(Protocol):
    """`begin()` before each provider attempt of one streamed call (a retry, a fallback model),
    so text an earlier attempt sent can be announced as discarded; `delta(text)` per piece."""

    def begin(self) -> None: ...

    def delta(self, text: str) -> None: ...
