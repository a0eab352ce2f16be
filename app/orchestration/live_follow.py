"""What a reader of a request's stream is shown: the record's final facts and the live messages of
app/orchestration/live.py merged into one sequence of events (`status`, `delta`, `restart`, `done`).

The order of reading makes it complete: the reader binds its queue first, then reads the record.
A request already finished is shown as its record (`status`, then `done`); otherwise every change
after that read arrives as a message. A reader that connects while a step is streaming gets the
rest of that step's text only (each `delta` carries its `offset` in the answer, so it can tell it
missed the start); the whole answer is always in `done`, which carries the record's result.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from app.state.models import TERMINAL

EventKind = Literal["status", "delta", "restart", "done"]


class StreamEvent(BaseModel):
    event: EventKind
    data: dict[str, Any]

    def sse(self) -> bytes:
        return f"event: {self.event}\ndata: {self.model_dump_json(include={'data'})[8:-1]}\n\n".encode()


class Follower:
    """Feed it record views (`record`) and channel messages (`message`); it returns the events to
    show. `wants_record` says a message asked for the record to be read again."""

    def __init__(self) -> None:
        self.status: str | None = None
        self.attempts: int | None = None
        self.finished = False
        self.wants_record = False
        self._shown = False  # text shown since the last restart

    def record(self, view: Any) -> list[StreamEvent]:
        self.wants_record = False
        events: list[StreamEvent] = []
        if (view.status, view.attempts) != (self.status, self.attempts):
            self.status, self.attempts = view.status, view.attempts
            events.append(
                StreamEvent(event="status", data={"status": view.status, "attempts": view.attempts})
            )
        if view.status in TERMINAL:
            self.finished = True
            events.append(StreamEvent(event="done", data=view.model_dump(mode="json")))
        return events

    def message(self, body: dict[str, Any]) -> list[StreamEvent]:
        kind = body.get("kind")
        if kind == "delta" and not self.finished:
            self._shown = True
            data = {"step": body.get("step"), "text": body.get("text", ""), "offset": body.get("offset", 0)}
            if "started_at" in body:
                data["started_at"] = body["started_at"]
            return [StreamEvent(event="delta", data=data)]
        if kind in ("restart", "attempt"):
            events = []
            if self._shown:
                reason = body.get("reason") or f"attempt {body.get('attempt')} of the request started"
                events.append(StreamEvent(event="restart", data={"step": body.get("step"), "reason": reason}))
            self._shown = False
            if kind == "attempt":
                self.wants_record = True
            return events
        if kind == "status":
            self.wants_record = True
        return []
