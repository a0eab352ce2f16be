"""The support-ticket flow: understand and retrieve side by side, draft with tools, deliver.

The draft hands the request to the human queue when the customer asks for a person (a rule on the
text, before the agent loop) or the model calls `handoff_to_human`; a tool call that needs a
person's approval parks it until one decides."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import bindparam
from sqlalchemy.dialects.postgresql import insert

from app.config import get_settings
from app.inference.history import compress
from app.observability.metrics import TOOL_CALLS
from app.orchestration.specialist import Tool, ToolContext, ToolError
from app.state import Delivery, table_of
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


# Only reads the specialist's own tables: its checkpoint goes with the next one written.
@WORKFLOW.step(retries=2, timeout_s=30, reads_only=True)
def retrieve(ctx: StepContext) -> dict[str, Any]:
    if ctx.specialist.retrieve is None:
        return {"context": {}}
    try:
        return {"context": ctx.specialist.retrieve(ctx.tool_context(), ctx.request.text)}
    except ToolError as refused:  # e.g. no customer: the draft goes on without account context
        return {"context": {"note": str(refused)}}


# The customer asks for a person: handed over before the agent loop spends anything. Ticket text
# is hostile input, but asking for a human is a request anyone may make; it grants nothing.
WANTS_A_PERSON = re.compile(
    r"\b(?:speak|talk|chat)\s+(?:to|with)\s+(?:a\s+|an\s+|some\s+)?(?:real\s+|live\s+)?"
    r"(?:human|person|someone|representative|agent)\b"
    r"|\b(?:human|real|live)\s+(?:being|person|agent|representative)\b",
    re.IGNORECASE,
)


class HandoffArgs(BaseModel):
    reason: str = Field(
        min_length=1,
        max_length=500,
        description="Why a person should take over, e.g. the customer asked for one.",
    )


def _not_run(ctx: ToolContext, args: HandoffArgs) -> dict[str, Any]:
    raise AssertionError("handoff_to_human is handled by the draft step, never run")


# Offered to the model with every specialist's tools. Its description is kept to words tickets
# rarely use, so a model matching words (the simulator) does not reach for it by accident.
HANDOFF_TOOL = Tool(
    name="handoff_to_human",
    description="Escalate to a human, solely when explicitly asked.",
    args=HandoffArgs,
    run=_not_run,
)


@lru_cache(maxsize=64)
def _tool_schemas(tools: tuple[Tool[Any], ...]) -> tuple[dict[str, Any], ...]:
    """The `tools` entries the agent loop offers, built once per specialist's tools rather than
    copied for every draft: neither the gateway nor an adapter changes what it is given."""
    return tuple(tool.schema() for tool in (*tools, HANDOFF_TOOL))


@WORKFLOW.step(tier="capable", retries=1, timeout_s=300, after=(understand, retrieve))
def draft(ctx: StepContext) -> dict[str, Any]:
    """The agent loop: the model calls the specialist's tools until it answers, up to a step cap.

    A tool call that needs approval parks the step with the conversation so far; it resumes here
    with the decision, finishing the round of tool calls it was in, and pays no LLM call again."""
    spec = ctx.specialist
    tools = list(_tool_schemas(spec.tools))
    if ctx.parked is not None:
        messages, used, first = ctx.parked["messages"], ctx.parked["used"], ctx.parked["round"]
        _run_calls(ctx, ctx.parked["calls"], messages, used, first)
        first += 1
    else:
        if WANTS_A_PERSON.search(ctx.request.text):
            ctx.handoff("the customer asked for a person")
        context = json.dumps(ctx.output(retrieve)["context"], default=str)[:6000]
        summary = ctx.output(understand)["summary"]
        messages = [
            {"role": "system", "content": spec.system_prompt},
            {"role": "system", "content": f"Ticket summary: {summary}\nContext from our systems: {context}"},
            *_history(ctx),
            {"role": "user", "content": ctx.request.text},
        ]
        used, first = [], 0
    for round_ in range(first, spec.max_tool_steps):
        # Streamed: the turn that answers reaches a waiting reader as it is written.
        response = ctx.llm(messages, tools=tools, tier=spec.model_tier, stream=True)
        if not response.tool_calls:
            return {"reply": response.content or "", "tool_calls": used}
        messages.append(response.assistant_message())
        calls = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in response.tool_calls]
        _run_calls(ctx, calls, messages, used, round_)
    # Step cap reached: ask for an answer with what the tools returned so far.
    response = ctx.llm(messages, tier=spec.model_tier, stream=True)
    return {"reply": response.content or "", "tool_calls": used, "step_cap_reached": True}


def _run_calls(
    ctx: StepContext,
    calls: list[dict[str, str]],
    messages: list[dict[str, Any]],
    used: list[dict[str, Any]],
    round_: int,
) -> None:
    """Run one round of the model's tool calls in order, answering each in `messages`."""
    for index, call in enumerate(calls):
        tool = ctx.specialist.tool(call["name"])
        if call["name"] == HANDOFF_TOOL.name:
            args = HANDOFF_TOOL.parse(call["arguments"])
            ctx.handoff(
                args.reason if isinstance(args, HandoffArgs) else "the model asked for a person",
                source="tool",
            )
        entry: dict[str, Any] = {"tool": call["name"]}
        if tool is None:
            result: dict[str, Any] = {"error": f"no tool named {call['name']!r}"}
        else:
            result = _call_tool(
                ctx,
                tool,
                call,
                entry,
                state={"messages": messages, "used": used, "round": round_, "calls": calls[index:]},
            )
        entry["ok"] = "error" not in result
        used.append(entry)
        # A tool name the model made up is one label value, not a new series per invention.
        TOOL_CALLS.labels(
            call["name"] if tool is not None else "unknown", "ok" if entry["ok"] else "error"
        ).inc()
        messages.append(
            {"role": "tool", "tool_call_id": call["id"], "content": json.dumps(result, default=str)}
        )


def _call_tool(
    ctx: StepContext, tool: Tool[Any], call: dict[str, str], entry: dict[str, Any], state: dict[str, Any]
) -> dict[str, Any]:
    """The tool's answer, once a person approved the call if the tool says it needs it."""
    tool_ctx = ctx.tool_context()
    args = tool.parse(call["arguments"])
    if isinstance(args, dict):
        return args  # invalid arguments: the model is told why
    try:
        why = tool.needs_approval(tool_ctx, args)
    except ToolError as refused:  # e.g. no customer: nothing to approve, the tool would refuse too
        return {"error": str(refused)}
    if why is not None:
        decision = ctx.decision(call["id"])
        if decision is None:
            ctx.await_approval(
                key=call["id"], tool=tool.name, arguments=args.model_dump(mode="json"), why=why, state=state
            )
        entry["approval"] = {"approved": decision.approved, "by": decision.by}
        if not decision.approved:
            # Said plainly, so the reply the model writes next cannot claim the action was taken.
            return {
                "error": f"NOT DONE: a person declined this {tool.name} call: {decision.reason}. "
                "Tell the customer it was not done and why.",
                "declined": True,
            }
    return tool.call(tool_ctx, args)


def _history(ctx: StepContext) -> list[dict[str, str]]:
    settings = get_settings()

    def summarize(older: list[dict[str, str]]) -> str:
        transcript = "\n".join(f"{m['role']}: {m['content']}" for m in older)
        response = ctx.llm(
            [
                {
                    "role": "system",
                    "content": "Condense this support conversation into a few sentences, keeping "
                    "every account e-mail, invoice id, error message and promise made.",
                },
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


# One delivery per request: a redelivered task finds the row and does not send again. Built once
# (a Core insert on the table), its values bound per request.
_DELIVERIES = table_of(Delivery)
_DELIVER = (
    insert(_DELIVERIES)
    .values(request_id=bindparam("request_id"), channel=bindparam("channel"), body=bindparam("body"))
    .on_conflict_do_nothing(index_elements=[_DELIVERIES.c.request_id])
)


@WORKFLOW.step(retries=2, timeout_s=30, after=(draft,))
def deliver(ctx: StepContext) -> dict[str, Any]:
    # Written with the step's checkpoint, so "delivered" and the delivery row commit together.
    ctx.write(
        _DELIVER, {"request_id": ctx.request.id, "channel": "record", "body": ctx.output(draft)["reply"]}
    )
    return {"delivered": True, "channel": "record"}
