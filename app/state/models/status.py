"""Request statuses: the values `requests.status` may hold and the sets the engine tests them against."""

from __future__ import annotations

import enum


class Status(enum.StrEnum):
    ACCEPTED = "accepted"
    ROUTED = "routed"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    # An attempt failed and a retry is scheduled; the request is not finished.
    FAILED = "failed"
    DEAD_LETTERED = "dead_lettered"
    # A tool call needs a person's approval: parked at its step, holding no worker slot.
    AWAITING_APPROVAL = "awaiting_approval"
    # Handed to the human queue; a person's reply finishes it.
    NEEDS_HUMAN = "needs_human"


TERMINAL = frozenset({Status.SUCCEEDED, Status.DEAD_LETTERED})
# Not finished, but waiting on a person rather than on a worker.
WAITING_ON_PERSON = frozenset({Status.AWAITING_APPROVAL, Status.NEEDS_HUMAN})
# The table's CHECK constraint (ck_requests_status), in the order migrations wrote it.
STATUS_CHECK = (
    "status IN ('accepted','routed','running','succeeded','failed','dead_lettered',"
    "'awaiting_approval','needs_human')"
)
