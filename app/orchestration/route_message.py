"""What the client's route message carries besides the request id.

Its own module, so the client (which must stay light: no classifier, no provider code) and the
router share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RoutingInputs:
    """What the router needs of a request. The client's route message carries them (the
    `routing` argument of switchboard.route), so the router need not read the row first: they
    never change after acceptance, and the decision's own conditional write finds out whether
    the request is still waiting to be routed."""

    text: str
    tenant: str
    priority: str
    conversation_id: str | None = None

    def message(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "tenant": self.tenant,
            "priority": self.priority,
            "conversation_id": self.conversation_id,
        }

    @classmethod
    def of(cls, message: dict[str, Any]) -> RoutingInputs:
        conversation_id = message.get("conversation_id")
        return cls(
            str(message["text"]),
            str(message["tenant"]),
            str(message["priority"]),
            None if conversation_id is None else str(conversation_id),
        )
