"""A workflow's steps name the steps they follow by reference, and read only those steps' outputs."""

from __future__ import annotations

from typing import Any

import pytest

from workflows import get_workflow
from workflows.engine import RequestInfo, StepContext, Workflow


def _context(flow: Workflow, step: str, outputs: dict[str, dict[str, Any]]) -> StepContext:
    request = RequestInfo("r-1", "default", "text", "normal", [])
    return StepContext(request, None, flow.steps[step], outputs)  # type: ignore[arg-type]


def test_steps_follow_steps_named_by_reference() -> None:
    flow = Workflow("refs")

    @flow.step()
    def fetch(ctx: StepContext) -> dict[str, Any]:
        return {"rows": 3}

    @flow.step(name="tally")
    def count(ctx: StepContext) -> dict[str, Any]:
        return {"n": 1}

    @flow.step(after=(fetch, count))
    def report(ctx: StepContext) -> dict[str, Any]:
        return {"rows": ctx.output(fetch)["rows"], "n": ctx.output(count)["n"]}

    assert flow.steps["report"].after == ("fetch", "tally")
    ctx = _context(flow, "report", {"fetch": {"rows": 3}, "tally": {"n": 1}})
    assert report(ctx) == {"rows": 3, "n": 1}


def test_a_step_of_another_workflow_or_a_name_it_lacks_is_refused() -> None:
    first, second = Workflow("first"), Workflow("second")

    @first.step()
    def fetch(ctx: StepContext) -> dict[str, Any]:
        return {}

    with pytest.raises(ValueError, match=r"unknown steps \['fetch'\]"):
        second.step(after=(fetch,))(lambda ctx: {})
    # Names as strings: the form flows written before references keep working in.
    assert first.step(after=("fetch",))(lambda ctx: {}).after == ("fetch",)


def test_a_step_reads_only_the_outputs_of_steps_it_runs_after() -> None:
    flow = Workflow("reads")

    @flow.step()
    def one(ctx: StepContext) -> dict[str, Any]:
        return {}

    @flow.step()
    def two(ctx: StepContext) -> dict[str, Any]:
        return {"x": ctx.output(one)}

    # `one` finished, but `two` does not run after it: side by side, it may not have.
    with pytest.raises(LookupError, match="not among the steps it runs after"):
        two(_context(flow, "two", {"one": {}}))


def test_the_support_ticket_flow_keeps_its_order() -> None:
    steps = get_workflow("support_ticket").steps
    assert {name: step.after for name, step in steps.items()} == {
        "understand": (),
        "retrieve": (),
        "draft": ("understand", "retrieve"),
        "deliver": ("draft",),
    }
