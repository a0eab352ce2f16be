"""What a running step sees: its request, its specialist, earlier steps' outputs, and the calls it
may make (the LLM through the gateway, writes that commit with its checkpoint, parking for a person)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar, overload

from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection, Executable

from app.config import get_settings
from app.inference import ChatResponse, complete, structured
from app.orchestration import approvals, live, live_readers
from app.orchestration.approvals import Decision
from app.orchestration.specialist import Specialist, ToolContext
from app.orchestration.tiers import effective_tier
from workflows.engine.errors import AwaitingApproval, HandedOff
from workflows.engine.workflow import Step, StepRef, step_name

M = TypeVar("M", bound=BaseModel)


class Carried:
    """Step rows of one run waiting to be written with its next checkpoint (any step's, from any
    of the run's threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: list[dict[str, Any]] = []

    def add(self, row: dict[str, Any]) -> None:
        with self._lock:
            self._rows.append(row)

    def take(self) -> list[dict[str, Any]]:
        with self._lock:
            rows, self._rows = self._rows, []
        return rows


@dataclass(frozen=True)
class RequestInfo:
    id: str
    tenant: str
    text: str
    priority: str
    history: list[dict[str, str]]
    route_confidence: float | None = None
    # The verified end user the request acts for (requests.customer); tools see only their rows.
    customer: str | None = None


def _streams(mode: str, request_id: str) -> bool:
    """Whether a call that asks to stream does, under SWITCHBOARD_STREAM_REPLIES; `when_read`
    asks the broker at each such call until one streams, so a reader that arrives between an
    agent's turns gets the next one streamed."""
    if mode == "when_read":
        return live_readers.has_reader(request_id)
    return mode == "always"


@dataclass
class StepContext:
    request: RequestInfo
    specialist: Specialist
    step: Step
    outputs: dict[str, dict[str, Any]]
    # This step's answered LLM calls (their intent rows are in the record already), completed with
    # its checkpoint in one transaction.
    calls: list[dict[str, Any]] = field(default_factory=list)
    # Writes that must commit with the checkpoint or not at all (see `write`).
    writes: list[Callable[[Connection], object]] = field(default_factory=list)
    # time.monotonic() past which the step makes no further LLM call (see the module docstring).
    deadline: float = float("inf")
    # Where this step's streamed calls send their text (created on the first `stream=True` call);
    # kept across the step's attempts, so a retry announces that the text sent before is void.
    streamed: live.LiveAnswer | None = None
    # The state this step parked with (waiting for an approval), when it runs again to resume.
    parked: dict[str, Any] | None = None
    # The run's checkpoints of succeeded read-only steps, waiting for the next write (see Step.reads_only).
    carried: Carried | None = None

    @overload
    def llm(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        tier: str | None = None,
        max_tokens: int = 512,
        temperature: float | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        response_format: dict[str, Any] | None = None,
        response_model: None = None,
        stream: bool = False,
    ) -> ChatResponse: ...

    @overload
    def llm(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        tier: str | None = None,
        max_tokens: int = 512,
        temperature: float | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        response_format: dict[str, Any] | None = None,
        response_model: type[M],
        stream: bool = False,
    ) -> M: ...

    def llm(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        tier: str | None = None,
        max_tokens: int = 512,
        temperature: float | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        response_format: dict[str, Any] | None = None,
        response_model: type[M] | None = None,
        stream: bool = False,
    ) -> ChatResponse | M:
        """One LLM call through the gateway. With `response_model` (a pydantic model) the call
        asks for JSON of its schema and returns a validated instance; an invalid answer gets one
        repair prompt naming what was wrong, then fails the step (not retryable). With `stream`
        the answer's text reaches the request's stream readers while the model writes it (for the
        step's final answer; see app/orchestration/live.py); the call returns the same whole answer."""
        # Once a call of this step streamed, the rest that ask do too, without asking again.
        stream = stream and (
            self.streamed is not None or _streams(get_settings().stream_replies, self.request.id)
        )
        if stream and self.streamed is None:
            self.streamed = live.LiveAnswer(self.request.id, self.step.name)

        def call(conversation: list[dict[str, Any]], fmt: dict[str, Any] | None) -> ChatResponse:
            if time.monotonic() > self.deadline:
                raise TimeoutError(f"took longer than {self.step.timeout_s:g}s")
            return complete(
                conversation,
                tier=effective_tier(tier or self.step.tier, self.request, self.specialist.queue),
                purpose=self.step.name,
                request_id=self.request.id,
                step=self.step.name,
                tools=tools,
                max_tokens=max_tokens,
                temperature=temperature,
                tool_choice=tool_choice,
                response_format=fmt,
                cache=self.step.single_shot and not tools,
                tenant=self.request.tenant,
                record_into=self.calls,
                # The cache entry is written at once (best effort), not with the checkpoint: a
                # checkpoint whose only other write is its calls is then one self-committing
                # statement (two round trips fewer than a transaction).
                stream_to=self.streamed if stream else None,
            )

        if response_model is None:
            return call(messages, response_format)
        fmt = response_format or structured.response_format(response_model)
        response = call(messages, fmt)
        try:
            return structured.parse(response_model, response)
        except ValidationError as first:
            repaired = call(structured.repair_messages(messages, response, first), fmt)
            try:
                return structured.parse(response_model, repaired)
            except ValidationError as second:
                raise structured.InvalidStructuredOutput(
                    f"the model's answer is not a valid {response_model.__name__} after one repair: "
                    f"{second.errors()[0]['msg']}"
                ) from None

    def write(self, statement: Executable, params: dict[str, Any] | None = None) -> None:
        """Execute `statement` (with `params`, if it has bound parameters) in the transaction that
        checkpoints this step, if the step succeeds: a record of what the step did commits
        together with its checkpoint, and costs no transaction of its own. A statement built once
        at import, with its values as `params`, costs less CPU than one built for every request."""
        self.writes.append(lambda conn: conn.execute(statement, params))

    def await_approval(
        self, *, key: str, tool: str, arguments: dict[str, Any], why: str, state: dict[str, Any]
    ) -> NoReturn:
        """Park the step until a person decides on the call `key` (unique within the step, e.g. the
        model's tool-call id). The step runs again once decided, with `state` as `ctx.parked`:
        everything it needs to go on without repeating paid LLM calls."""
        raise AwaitingApproval(key=key, tool=tool, arguments=arguments, why=why, state=state)

    def decision(self, key: str) -> Decision | None:
        """A person's decision on the call `key` of this step, if one was made."""
        return approvals.decision(self.request.id, self.step.name, key)

    def handoff(self, reason: str, *, source: str = "workflow") -> NoReturn:
        """Give the request to the human queue (`needs_human`); a person's reply becomes its result."""
        raise HandedOff(reason, source)

    def output(self, step: StepRef) -> dict[str, Any]:
        """The output of `step`, one this step runs after (its Step, function or name)."""
        name = step_name(step)
        # Only a dependency's output is certain to be there: any other step may still be running.
        if name not in self.step.after or name not in self.outputs:
            raise LookupError(
                f"step {self.step.name!r} read the output of {name!r}, which is not among the steps "
                f"it runs after ({', '.join(self.step.after) or 'none'})"
            )
        return self.outputs[name]

    def tool_context(self) -> ToolContext:
        return ToolContext(
            request_id=self.request.id,
            tenant=self.request.tenant,
            step=self.step.name,
            customer=self.request.customer,
        )
