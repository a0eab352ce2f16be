"""How a step stops early: failing (`StepError`) or waiting for a person (`Suspended`)."""

from __future__ import annotations

from typing import Any


class Suspended(Exception):
    """A step stopped to wait for a person. Its state is checkpointed with the request's new
    status in one transaction; the task then ends (its message acked, no worker slot held)."""


class AwaitingApproval(Suspended):
    """A tool call needs a person's approval: the step parks with `state` and resumes from it."""

    def __init__(
        self, *, key: str, tool: str, arguments: dict[str, Any], why: str, state: dict[str, Any]
    ) -> None:
        super().__init__(f"{tool} needs approval: {why}")
        self.key, self.tool, self.arguments, self.why, self.state = key, tool, arguments, why, state


class HandedOff(Suspended):
    """The step gave the request to the human queue."""

    def __init__(self, reason: str, source: str) -> None:
        super().__init__(f"handed to a person: {reason}")
        self.reason, self.source = reason, source


class StepError(Exception):
    """A step failed. `transient` says whether running the task again may succeed."""

    def __init__(self, step: str, message: str, *, transient: bool) -> None:
        super().__init__(f"step {step!r} failed: {message}")
        self.step = step
        self.transient = transient
