"""`switchboard seed`: each enabled specialist's own data, each in a transaction of its own.

The engine has no seed of its own: demo data belongs to the specialists whose tools read it, so a
database with only a team's specialist enabled gets only that team's data.
"""

from __future__ import annotations

from app.db.session import session_scope
from app.registry import specialists


def seed_enabled() -> dict[str, dict[str, int]]:
    """Rows per table after seeding, by specialist (those without a seed are left out)."""
    found: dict[str, dict[str, int]] = {}
    for spec in specialists().values():
        if spec.seed is not None:
            with session_scope() as session:
                found[spec.name] = spec.seed(session)
    return found
