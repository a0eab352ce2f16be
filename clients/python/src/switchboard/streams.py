"""`GET /v1/requests/{id}/stream` read as Server-Sent Events: typed events, one at a time."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class StreamEvent(BaseModel):
    """`status` (the record's status), `delta` (a piece of the reply's text), `restart` (drop the
    text shown so far), `done` (the final view: its `result` is the answer)."""

    model_config = ConfigDict(extra="allow")

    event: Literal["status", "delta", "restart", "done"] | str
    data: dict[str, Any]

    @property
    def text(self) -> str:
        return str(self.data.get("text", "")) if self.event == "delta" else ""


def events(lines: Iterable[str]) -> Iterator[StreamEvent]:
    """Events from the response's lines (comments such as keep-alives skipped)."""
    kind, data = "", []
    for line in lines:
        if not line:
            if data:
                yield StreamEvent(event=kind or "message", data=json.loads("\n".join(data)))
            kind, data = "", []
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
