"""`switchboard seed`: each enabled specialist's own data.

The engine has no seed of its own: demo data belongs to the specialists whose tools read it, so a
database with only a team's specialist enabled gets only that team's data.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.orchestration.registry import specialists
from app.state.session import session_scope


def seed_enabled(session: Session | None = None) -> dict[str, dict[str, int]]:
    """Rows per table after seeding, by specialist (those without a seed are left out). Each seed
    runs in a transaction of its own, or all in `session` when the caller passes one."""
    found: dict[str, dict[str, int]] = {}
    for spec in specialists().values():
        if spec.seed is None:
            continue
        if session is not None:
            found[spec.name] = spec.seed(session)
            continue
        with session_scope() as own:
            found[spec.name] = spec.seed(own)
    return found
