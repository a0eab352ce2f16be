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
from app.specialist import Specialist

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
    "tools.py": '''"""Acme's tools: read the team's own table."""

from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import text

from app.db.session import autocommit_scope
from app.specialist import Tool, ToolContext


class OrderArgs(BaseModel):
    order: str = Field(pattern=r"^SK-\\d+$", description="The order number, e.g. SK-311.")


def order_status(ctx: ToolContext, args: OrderArgs) -> dict[str, Any]:
    with autocommit_scope() as conn:
        row = conn.execute(text("SELECT model, status FROM acme_skate_orders WHERE id = :id"),
                           {"id": args.order}).first()
    return {"error": "no such order"} if row is None else {"order": args.order, "model": row.model,
                                                           "status": row.status}


TOOLS = (Tool(name="order_status", description="Look up a rocket-skate order by its number.", args=OrderArgs,
              run=order_status),)
''',
    "seed.py": '''"""Acme's reference data: a few orders."""

from sqlalchemy import text
from sqlalchemy.orm import Session


def seed(session: Session) -> dict[str, int]:
    session.execute(text("INSERT INTO acme_skate_orders (id, model, status) VALUES "
                         "('SK-311', 'Roadrunner 3', 'delivered'), ('SK-312', 'Mesa 2', 'shipped') "
                         "ON CONFLICT (id) DO NOTHING"))
    count = session.execute(text("SELECT count(*) FROM acme_skate_orders")).scalar_one()
    return {"acme_skate_orders": int(count)}
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
                    sa.Column("status", sa.String(16), nullable=False))


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
    from app import classifier, registry
    from app.config import reset_settings

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
