"""What a specialist is: the contract every module under specialists/ fills in.

A specialist module defines one module-level `SPECIALIST = Specialist(...)`. Its queue, dead-letter
queue, Celery task, worker pool line and routing all follow from that object (see app/registry.py).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")

ArgsT = TypeVar("ArgsT", bound=BaseModel)


@lru_cache(maxsize=None)
def _openai_schema(name: str, description: str, args: type[BaseModel]) -> dict[str, Any]:
    # Generating a JSON schema costs milliseconds, and the agent loop sends every tool's schema
    # with every call.
    params = args.model_json_schema()
    params.pop("title", None)
    return {"type": "function", "function": {"name": name, "description": description, "parameters": params}}


@dataclass(frozen=True)
class ToolContext:
    """Who is calling a tool; side-effecting tools key their idempotency on request_id and step."""

    request_id: str
    tenant: str
    step: str


@dataclass(frozen=True)
class Tool(Generic[ArgsT]):
    name: str
    description: str
    args: type[ArgsT]
    run: Callable[[ToolContext, ArgsT], dict[str, Any]]
    # A side-effecting tool must be idempotent by (request, step): a redelivered task calls it again.
    side_effect: bool = False
    # Whether a call needs a person's approval before it runs: the reason it does (shown to the
    # approver), or None to run it at once. Decided in code from the validated arguments and the
    # caller's context, never by the model.
    approval: Callable[[ToolContext, ArgsT], str | None] | None = None

    def schema(self) -> dict[str, Any]:
        """The OpenAI `tools` entry for this tool (a fresh copy; the JSON schema is built once)."""
        return copy.deepcopy(_openai_schema(self.name, self.description, self.args))

    def parse(self, raw_arguments: str) -> ArgsT | dict[str, Any]:
        """The model's arguments validated, or the error to hand back to the model."""
        try:
            return self.args.model_validate(json.loads(raw_arguments or "{}"))
        except (ValueError, ValidationError) as exc:
            return {"error": f"invalid arguments for {self.name}: {exc}"}

    def needs_approval(self, ctx: ToolContext, args: ArgsT) -> str | None:
        return self.approval(ctx, args) if self.approval is not None else None

    def invoke(self, ctx: ToolContext, raw_arguments: str) -> dict[str, Any]:
        """Validate the model's arguments and run; bad arguments go back to the model as an error."""
        args = self.parse(raw_arguments)
        return args if isinstance(args, dict) else self.run(ctx, args)


@dataclass(frozen=True)
class TenantSettingDef:
    """A per-tenant setting a specialist reads (app/tenant_settings.py stores the overrides)."""

    # Prefixed with the specialist's name, e.g. "billing.refund_approval_above_usd".
    name: str
    description: str
    default: Any
    # Turns a stored or typed value into the one the specialist uses; raises ValueError if invalid.
    parse: Callable[[Any], Any] = lambda value: value


@dataclass(frozen=True)
class Specialist:
    name: str
    # One line; the router's LLM fallback chooses between specialists by these.
    description: str
    system_prompt: str
    routing_examples: tuple[str, ...]
    tools: tuple[Tool[Any], ...] = ()
    model_tier: str = "capable"
    # Regular expressions (case-insensitive) that route here without the classifier.
    rules: tuple[str, ...] = ()
    # Reads context for the draft before the agent loop starts (the workflow's "retrieve" step).
    retrieve: Callable[[ToolContext, str], dict[str, Any]] | None = None
    workflow: str = "support_ticket"
    max_tool_steps: int = 5
    concurrency: int | None = None
    # Per-tenant settings its tools read: a default here, overrides with `switchboard settings set`.
    tenant_settings: tuple[TenantSettingDef, ...] = ()
    compiled_rules: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not NAME_PATTERN.match(self.name):
            raise ValueError(
                f"specialist name {self.name!r} must be lowercase letters, digits or '_' (max 40), "
                "starting with a letter: it becomes a queue and task name"
            )
        if len(self.routing_examples) < 5:
            raise ValueError(f"specialist {self.name!r} needs at least 5 routing examples to be routable")
        for setting in self.tenant_settings:
            if not setting.name.startswith(f"{self.name}."):
                raise ValueError(f"specialist {self.name!r}: setting {setting.name!r} must start with "
                                 f"'{self.name}.' so specialists' settings never collide")
        object.__setattr__(self, "compiled_rules", tuple(re.compile(r, re.IGNORECASE) for r in self.rules))

    @property
    def queue(self) -> str:
        return self.name

    @property
    def task_name(self) -> str:
        return f"switchboard.specialist.{self.name}"

    def tool(self, name: str) -> Tool[Any] | None:
        return next((t for t in self.tools if t.name == name), None)
