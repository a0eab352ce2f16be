"""The support-ticket flow: understand and retrieve side by side, draft with tools, deliver."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.dialects.postgresql import insert

from app.config import get_settings
from app.db import Delivery
from app.inference.history import compress
from app.metrics import TOOL_CALLS
from app.specialist import ToolError
from workflows.engine import StepContext, Workflow

WORKFLOW = Workflow("support_ticket")


@WORKFLOW.step(tier="cheap", retries=2, timeout_s=60, single_shot=True)
def understand(ctx: StepContext) -> dict[str, Any]:
    response = ctx.llm(
        [
            {
                "role": "system",
                "content": "Summarise the customer's request in one sentence, naming any account e-mail, "
                "invoice id, product area and error message it mentions.",
            },
            {"role": "user", "content": ctx.request.text},
        ],
        max_tokens=120,
    )
    return {"summary": response.content or ""}


@WORKFLOW.step(retries=2, timeout_s=30)
def retrieve(ctx: StepContext) -> dict[str, Any]:
    if ctx.specialist.retrieve is None:
        return {"context": {}}
    try:
        return {"context": ctx.specialist.retrieve(ctx.tool_context(), ctx.request.text)}
    except ToolError as refused:  # e.g. no customer: the draft goes on without account context
        return {"context": {"note": str(refused)}}


@WORKFLOW.step(tier="capable", retries=1, timeout_s=300, after=("understand", "retrieve"))
def draft(ctx: StepContext) -> dict[str, Any]:
    """The agent loop: the model calls the specialist's tools until it answers, up to a step cap."""
    spec = ctx.specialist
    context = json.dumps(ctx.outputs["retrieve"]["context"], default=str)[:6000]
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": spec.system_prompt},
        {
            "role": "system",
            "content": f"Ticket summary: {ctx.outputs['understand']['summary']}\nContext from our systems: {context}",
        },
        *_history(ctx),
        {"role": "user", "content": ctx.request.text},
    ]
    tools = [tool.schema() for tool in spec.tools] or None
    used: list[dict[str, Any]] = []
    for _ in range(spec.max_tool_steps):
        response = ctx.llm(messages, tools=tools, tier=spec.model_tier)
        if not response.tool_calls:
            return {"reply": response.content or "", "tool_calls": used}
        messages.append(response.assistant_message())
        for call in response.tool_calls:
            tool = spec.tool(call.name)
            result = (
                tool.invoke(ctx.tool_context(), call.arguments)
                if tool is not None
                else {"error": f"no tool named {call.name!r}"}
            )
            ok = "error" not in result
            used.append({"tool": call.name, "ok": ok})
            # A tool name the model made up is one label value, not a new series per invention.
            TOOL_CALLS.labels(call.name if tool is not None else "unknown", "ok" if ok else "error").inc()
            messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(result, default=str)})
    # Step cap reached: ask for an answer with what the tools returned so far.
    response = ctx.llm(messages, tier=spec.model_tier)
    return {"reply": response.content or "", "tool_calls": used, "step_cap_reached": True}


def _history(ctx: StepContext) -> list[dict[str, str]]:
    settings = get_settings()

    def summarize(older: list[dict[str, str]]) -> str:
        transcript = "\n".join(f"{m['role']}: {m['content']}" for m in older)
        response = ctx.llm(
            [
                {"role": "system", "content": "Condense this support conversation into a few sentences, keeping "
                 "every account e-mail, invoice id, error message and promise made."},
                {"role": "user", "content": transcript},
            ],
            tier="cheap",
            max_tokens=200,
        )
        return response.content or ""

    return compress(
        ctx.request.history,
        budget_tokens=settings.history_token_budget,
        policy=settings.history_policy,
        summarize=summarize,
    )


@WORKFLOW.step(retries=2, timeout_s=30, after=("draft",))
def deliver(ctx: StepContext) -> dict[str, Any]:
    # One delivery per request: a redelivered task finds the row and does not send again. It is
    # written with the step's checkpoint, so "delivered" and the delivery row commit together.
    ctx.write(
        insert(Delivery)
        .values(request_id=ctx.request.id, channel="record", body=ctx.outputs["draft"]["reply"])
        .on_conflict_do_nothing(index_elements=[Delivery.request_id])
    )
    return {"delivered": True, "channel": "record"}
