"""What a specialist is: the contract every module under specialists/ fills in.

A specialist module defines one module-level `SPECIALIST = Specialist(...)`. Its queue, dead-letter
queue, Celery task, worker pool line and routing all follow from that object (see app/registry.py).

Authority: a tool or `retrieve` acts for the request's tenant and customer (`ToolContext`), and
reads and changes only rows they own. Business tables say whose a row is with the `TenantOwned` /
`CustomerOwned` columns, and `in_tenant()` / `owned()` add the predicate to a query, so the safe
query is the short one. The ticket's text is hostile input: an e-mail or id it names is never a
reason to read a row.
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
from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql import Select

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")

ArgsT = TypeVar("ArgsT", bound=BaseModel)
SelectT = TypeVar("SelectT", bound=Select[Any])
# What a tool answers for a row the customer does not own, word for word what it answers for a row
# that does not exist: a different answer would tell the model (and the ticket's writer) it exists.
NOT_FOUND = "not found for this customer"


@lru_cache(maxsize=None)
def _openai_schema(name: str, description: str, args: type[BaseModel]) -> dict[str, Any]:
    # Generating a JSON schema costs milliseconds, and the agent loop sends every tool's schema
    # with every call.
    params = args.model_json_schema()
    params.pop("title", None)
    return {"type": "function", "function": {"name": name, "description": description, "parameters": params}}


class ToolError(Exception):
    """A tool refuses (no customer, a row not found for this customer, ...): the message goes back to
    the model as the tool's result, `{"error": message}`, and the step goes on."""


@dataclass(frozen=True)
class ToolContext:
    """Who is calling a tool: the request's tenant and its verified customer (the calling app's id of
    the end user it authenticated; None when it named none). Side-effecting tools key their
    idempotency on request_id and step."""

    request_id: str
    tenant: str
    step: str
    customer: str | None = None

    def require_customer(self) -> str:
        """The request's customer, or a ToolError when the request has none: account tools refuse
        rather than guess whose account the ticket means."""
        if self.customer is None:
            raise ToolError("this request carries no verified customer, so no account data can be read or "
                            "changed; ask the customer to sign in and write again")
        return self.customer


class TenantOwned:
    """Columns of a business row that belongs to a tenant (shared by its customers, e.g. its docs)."""

    tenant: Mapped[str] = mapped_column(String(64))


class CustomerOwned(TenantOwned):
    """Columns of a business row that belongs to one customer of one tenant (an account, an invoice)."""

    customer: Mapped[str] = mapped_column(String(200))


def _entities(stmt: Select[Any], kind: type) -> list[Any]:
    found = []
    for description in stmt.column_descriptions:
        entity = description.get("entity")
        if isinstance(entity, type) and issubclass(entity, kind) and entity not in found:
            found.append(entity)
    if not found:
        raise TypeError(f"the query selects no {kind.__name__} table: nothing to scope it by")
    return found


def in_tenant(stmt: SelectT, ctx: ToolContext) -> SelectT:
    """`stmt` restricted to rows of the request's tenant (every TenantOwned entity it selects)."""
    for entity in _entities(stmt, TenantOwned):
        stmt = stmt.where(entity.tenant == ctx.tenant)
    return stmt


def owned(stmt: SelectT, ctx: ToolContext) -> SelectT:
    """`stmt` restricted to rows of the request's tenant and customer (every CustomerOwned entity it
    selects); a ToolError when the request has no customer."""
    customer = ctx.require_customer()
    for entity in _entities(stmt, CustomerOwned):
        stmt = stmt.where(entity.tenant == ctx.tenant, entity.customer == customer)
    return stmt


@dataclass(frozen=True)
class Tool(Generic[ArgsT]):
    name: str
    description: str
    args: type[ArgsT]
    run: Callable[[ToolContext, ArgsT], dict[str, Any]]
    # A side-effecting tool must be idempotent by (request, step): a redelivered task calls it again.
    side_effect: bool = False

    def schema(self) -> dict[str, Any]:
        """The OpenAI `tools` entry for this tool (a fresh copy; the JSON schema is built once)."""
        return copy.deepcopy(_openai_schema(self.name, self.description, self.args))

    def invoke(self, ctx: ToolContext, raw_arguments: str) -> dict[str, Any]:
        """Validate the model's arguments and run; bad arguments go back to the model as an error."""
        try:
            args = self.args.model_validate(json.loads(raw_arguments or "{}"))
        except (ValueError, ValidationError) as exc:
            return {"error": f"invalid arguments for {self.name}: {exc}"}
        try:
            return self.run(ctx, args)
        except ToolError as exc:
            return {"error": str(exc)}


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
    # Reads context for the draft before the agent loop starts (the workflow's "retrieve" step);
    # like a tool, only rows of ctx's tenant and customer, whatever the text names.
    retrieve: Callable[[ToolContext, str], dict[str, Any]] | None = None
    workflow: str = "support_ticket"
    max_tool_steps: int = 5
    concurrency: int | None = None
    compiled_rules: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not NAME_PATTERN.match(self.name):
            raise ValueError(
                f"specialist name {self.name!r} must be lowercase letters, digits or '_' (max 40), "
                "starting with a letter: it becomes a queue and task name"
            )
        if len(self.routing_examples) < 5:
            raise ValueError(f"specialist {self.name!r} needs at least 5 routing examples to be routable")
        object.__setattr__(self, "compiled_rules", tuple(re.compile(r, re.IGNORECASE) for r in self.rules))

    @property
    def queue(self) -> str:
        return self.name

    @property
    def task_name(self) -> str:
        return f"switchboard.specialist.{self.name}"

    def tool(self, name: str) -> Tool[Any] | None:
        return next((t for t in self.tools if t.name == name), None)
