"""A team's own specialist, written as a package into a directory outside this repository.

`acme_support` is what a team would ship: `__init__.py` with `SPECIALIST`, its tools in a module of
their own, its prompt and routing examples as files, and its own table in its own Alembic history.
Tests put the directory on PYTHONPATH (or sys.path) and name the package in SWITCHBOARD_SPECIALISTS.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

NAME = "acme_support"
TABLE = "acme_skate_orders"
# A ticket the rules send to acme_support whatever else is enabled.
TICKET = "My rocket skates from order SK-311 lost a wheel on the first run, can I get them replaced?"

FILES: dict[str, str] = {
    "__init__.py": '''"""Acme's own specialist: rocket skates, outside Switchboard's repository."""

from acme_support.seed import seed
from acme_support.tools import TOOLS
from app.orchestration.specialist import Specialist

SPECIALIST = Specialist.from_package(
    __name__,
    name="acme_support",
    description="Acme rocket skates: orders, wheels, fitting and warranty replacements.",
    tools=TOOLS,
    model_tier="cheap",
    rules=(r"\\brocket skates?\\b",),
    seed=seed,
)
''',
    "models.py": '''"""Acme's own table, on a metadata of its own: each order is one customer's."""

from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.orchestration.specialist import CustomerOwned


class AcmeBase(DeclarativeBase):
    pass


class SkateOrder(CustomerOwned, AcmeBase):
    __tablename__ = "acme_skate_orders"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    model: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
''',
    "tools.py": '''"""Acme's tools: read the team's own table, only the requesting customer's rows."""

import re
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select

from acme_support.models import SkateOrder
from app.state.session import session_scope
from app.orchestration.specialist import NOT_FOUND, Tool, ToolContext, owned

ORDER_RE = re.compile(r"\\bSK-\\d+\\b")


class OrderArgs(BaseModel):
    query: str = Field(max_length=2000, description="The customer's words naming the order, e.g. SK-311.")


def order_status(ctx: ToolContext, args: OrderArgs) -> dict[str, Any]:
    number = ORDER_RE.search(args.query)
    if number is None:
        return {"error": "name the order number, e.g. SK-311"}
    with session_scope() as session:
        order = session.scalar(owned(select(SkateOrder).where(SkateOrder.id == number.group(0)), ctx))
        if order is None:
            return {"error": f"order {number.group(0)} {NOT_FOUND}"}
        return {"order": order.id, "model": order.model, "status": order.status}


TOOLS = (Tool(name="order_status", description="Look up a rocket-skate order by its number.", args=OrderArgs,
              run=order_status),)
''',
    "seed.py": '''"""Acme's reference data: two customers' orders."""

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from acme_support.models import SkateOrder


def seed(session: Session) -> dict[str, int]:
    rows = [
        {"id": "SK-311", "model": "Roadrunner 3", "status": "delivered", "tenant": "acme",
         "customer": "wile@example.com"},
        {"id": "SK-312", "model": "Mesa 2", "status": "shipped", "tenant": "acme",
         "customer": "road@example.com"},
    ]
    session.execute(insert(SkateOrder).values(rows).on_conflict_do_nothing(index_elements=["id"]))
    return {"acme_skate_orders": int(session.scalar(select(func.count()).select_from(SkateOrder)) or 0)}
''',
    "prompt.md": "You answer Acme's rocket-skate customers. Look the order up before you promise anything.\n",
    "examples.txt": """# One routing example per line.
my rocket skates will not ignite
a wheel came off my skates after one run
where is my skate order SK-204
can I return skates that are too small
the skate boosters are louder than advertised
warranty replacement for cracked skate frame
which skate size fits a coyote
""",
    "migrations/acme_0001_orders.py": '''"""acme: skate orders

Revision ID: acme_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "acme_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("acme_skate_orders", sa.Column("id", sa.String(16), primary_key=True),
                    sa.Column("model", sa.String(64), nullable=False),
                    sa.Column("status", sa.String(16), nullable=False),
                    sa.Column("tenant", sa.String(64), nullable=False),
                    sa.Column("customer", sa.String(200), nullable=False))


def downgrade() -> None:
    op.drop_table("acme_skate_orders")
''',
}


def write_package(root: Path, name: str = NAME, files: dict[str, str] | None = None) -> Path:
    """Writes the package under `root` (renamed to `name`); returns `root`, the PYTHONPATH entry."""
    for relative, body in (files or FILES).items():
        target = root / name / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body.replace("acme_support", name))
    return root


@contextlib.contextmanager
def enabled(entries: str, path: Path | None = None) -> Iterator[None]:
    """This process sees only the specialists `entries` names (SWITCHBOARD_SPECIALISTS), with
    `path` importable, and forgets them again afterwards."""
    from app.config import reset_settings
    from app.orchestration import classifier, registry

    previous = os.environ.get("SWITCHBOARD_SPECIALISTS")
    if path is not None:
        sys.path.insert(0, str(path))
    os.environ["SWITCHBOARD_SPECIALISTS"] = entries

    def forget() -> None:
        reset_settings()
        registry.specialists.cache_clear()
        classifier.classifier.cache_clear()

    forget()
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("SWITCHBOARD_SPECIALISTS", None)
        else:
            os.environ["SWITCHBOARD_SPECIALISTS"] = previous
        if path is not None:
            sys.path.remove(str(path))
            for module in [m for m in sys.modules if any(m.split(".")[0] == p.name for p in path.iterdir())]:
                del sys.modules[module]
        forget()
