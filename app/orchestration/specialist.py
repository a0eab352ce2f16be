"""What a specialist is: the contract every specialist module or package fills in.

A specialist module (under `specialists/` or in a team's own package, listed in
SWITCHBOARD_SPECIALISTS) defines one module-level `SPECIALIST = Specialist(...)`. Its queue,
dead-letter queue, Celery task, worker pool line, routing and metrics port all follow from that
object (see app/orchestration/registry.py); a package can keep its prompt and routing examples as files beside its
code (`Specialist.from_package`), and its own tables in its own Alembic history (`migrations`).

Authority: a tool or `retrieve` acts for the request's tenant and customer (`ToolContext`), and
reads and changes only rows they own. Business tables say whose a row is with the `TenantOwned` /
`CustomerOwned` columns, and `in_tenant()` / `owned()` add the predicate to a query, so the safe
query is the short one. The ticket's text is hostile input: an e-mail or id it names is never a
reason to read a row.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import String
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.sql import Select

from app.errors import OrchestrationError

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
# Queues the engine's own pools consume: no specialist may take these names.
ROUTER_QUEUE = "router"
CALLBACK_QUEUE = "callbacks"
SUBMIT_QUEUE = "submit"
ENGINE_QUEUES = (ROUTER_QUEUE, CALLBACK_QUEUE, SUBMIT_QUEUE)

ArgsT = TypeVar("ArgsT", bound=BaseModel)
SelectT = TypeVar("SelectT", bound=Select[Any])
# What a tool answers for a row the customer does not own, word for word what it answers for a row
# that does not exist: a different answer would tell the model (and the ticket's writer) it exists.
NOT_FOUND = "not found for this customer"


@cache
def _openai_schema(name: str, description: str, args: type[BaseModel]) -> dict[str, Any]:
    # Generating a JSON schema costs milliseconds, and the agent loop sends every tool's schema
    # with every call.
    params = args.model_json_schema()
    params.pop("title", None)
    return {"type": "function", "function": {"name": name, "description": description, "parameters": params}}


class ToolError(OrchestrationError):
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
            raise ToolError(
                "this request carries no verified customer, so no account data can be read or "
                "changed; ask the customer to sign in and write again"
            )
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

    def call(self, ctx: ToolContext, args: ArgsT) -> dict[str, Any]:
        """Run with validated arguments; a refusal (ToolError) goes back to the model as an error."""
        try:
            return self.run(ctx, args)
        except ToolError as exc:
            return {"error": str(exc)}

    def invoke(self, ctx: ToolContext, raw_arguments: str) -> dict[str, Any]:
        """Validate the model's arguments and run; bad arguments go back to the model as an error."""
        args = self.parse(raw_arguments)
        return args if isinstance(args, dict) else self.call(ctx, args)


@dataclass(frozen=True)
class TenantSettingDef:
    """A per-tenant setting a specialist reads (app/orchestration/tenant_settings.py stores the overrides)."""

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
    # Reads context for the draft before the agent loop starts (the workflow's "retrieve" step);
    # like a tool, only rows of ctx's tenant and customer, whatever the text names.
    retrieve: Callable[[ToolContext, str], dict[str, Any]] | None = None
    workflow: str = "support_ticket"
    max_tool_steps: int = 5
    concurrency: int | None = None
    # Per-tenant settings its tools read: a default here, overrides with `switchboard settings set`.
    tenant_settings: tuple[TenantSettingDef, ...] = ()
    # Where undecidable requests go when SWITCHBOARD_FALLBACK_SPECIALIST is unset (at most one).
    fallback: bool = False
    # A directory of Alembic revisions for this specialist's own tables (its own history and
    # version table, `alembic_version_<name>`), applied by `switchboard migrate` when it is enabled.
    migrations: Path | None = None
    # Loads this specialist's demo or reference data; `switchboard seed` runs it. Idempotent.
    seed: Callable[[Session], dict[str, int]] | None = None
    compiled_rules: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not NAME_PATTERN.match(self.name):
            raise ValueError(
                f"specialist name {self.name!r} must be lowercase letters, digits or '_' (max 40), "
                "starting with a letter: it becomes a queue and task name"
            )
        if self.name in ENGINE_QUEUES:
            raise ValueError(f"specialist name {self.name!r} is taken by the engine's own queue")
        if self.migrations is not None and not Path(self.migrations).is_dir():
            raise ValueError(f"specialist {self.name!r}: no migrations directory {self.migrations}")
        if len(self.routing_examples) < 5:
            raise ValueError(f"specialist {self.name!r} needs at least 5 routing examples to be routable")
        for setting in self.tenant_settings:
            if not setting.name.startswith(f"{self.name}."):
                raise ValueError(
                    f"specialist {self.name!r}: setting {setting.name!r} must start with "
                    f"'{self.name}.' so specialists' settings never collide"
                )
        object.__setattr__(self, "compiled_rules", tuple(re.compile(r, re.IGNORECASE) for r in self.rules))

    @property
    def queue(self) -> str:
        return self.name

    @property
    def task_name(self) -> str:
        return f"switchboard.specialist.{self.name}"

    def tool(self, name: str) -> Tool[Any] | None:
        return next((t for t in self.tools if t.name == name), None)

    @classmethod
    def from_package(
        cls,
        package: str,
        *,
        prompt: str = "prompt.md",
        examples: str = "examples.txt",
        migrations: str | None = "migrations",
        **fields: Any,
    ) -> Specialist:
        """A specialist whose prompt, routing examples and migrations are files in `package`
        (pass `__name__` from its `__init__.py`): the system prompt from `prompt`, the routing
        examples from `examples` (one per line; blank lines and `#` comments skipped), and, when
        the package has a `migrations` directory, its Alembic revisions. Other fields as usual."""
        fields.setdefault("system_prompt", package_text(package, prompt))
        fields.setdefault("routing_examples", package_lines(package, examples))
        if migrations is not None and "migrations" not in fields:
            found = resources.files(package) / migrations
            if found.is_dir():
                fields["migrations"] = Path(str(found))
        return cls(**fields)


def package_text(package: str, name: str) -> str:
    """A text file shipped inside `package` (a prompt, a template), read through importlib.resources."""
    found = resources.files(package) / name
    if not found.is_file():
        raise ValueError(f"package {package!r} has no file {name!r} (looked in {found})")
    return found.read_text(encoding="utf-8").strip()


def package_lines(package: str, name: str) -> tuple[str, ...]:
    """The non-blank, non-comment lines of a text file inside `package` (routing examples)."""
    lines = (line.strip() for line in package_text(package, name).splitlines())
    return tuple(line for line in lines if line and not line.startswith("#"))


def package_rows(package: str, name: str) -> list[dict[str, str]]:
    """The rows of a CSV file inside `package` (its first line names the columns): seed data kept
    as data, beside the specialist that owns it."""
    return list(csv.DictReader(io.StringIO(package_text(package, name))))
