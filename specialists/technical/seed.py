"""The technical specialist's demo data: knowledge-base articles and the status page (`switchboard seed`).

The data are files beside this module: one Markdown file per article in data/kb/ (`NN-slug.md`,
its first line `# Title`, then the body; NN keeps their order) and the status page in
data/service_status.csv.

`seed()` is idempotent: articles are keyed on their tenant and slug, status rows on their tenant
and component, so re-running it duplicates nothing. Every row belongs to the `default` tenant.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.orchestration.specialist import package_rows
from specialists import DEMO_TENANT
from specialists.technical.models import KbArticle, ServiceStatus

_PACKAGE = __name__.rpartition(".")[0]
_ARTICLE_FILE = re.compile(r"^\d+-(?P<slug>[a-z0-9-]+)\.md$")


@cache
def kb_articles() -> tuple[tuple[str, str, str], ...]:
    """(slug, title, body) of each article in data/kb/, in the order of their file names."""
    found = []
    for path in sorted((resources.files(_PACKAGE) / "data" / "kb").iterdir(), key=lambda p: p.name):
        named = _ARTICLE_FILE.match(path.name)
        if named is None:
            continue
        heading, _, body = path.read_text(encoding="utf-8").partition("\n\n")
        if not heading.startswith("# "):
            raise ValueError(f"knowledge-base article {path.name} must start with a '# Title' line")
        found.append((named["slug"], heading[2:].strip(), body.strip("\n")))
    return tuple(found)


@cache
def service_status() -> tuple[tuple[str, str, str], ...]:
    """(component, status, message) of each status-page component (data/service_status.csv)."""
    rows = package_rows(_PACKAGE, "data/service_status.csv")
    return tuple((r["component"], r["status"], r["message"]) for r in rows)


# --- Seeding -----------------------------------------------------------------------------------


def _seed_kb(session: Session) -> None:
    rows = [
        {"tenant": DEMO_TENANT, "slug": slug, "title": title, "body": body}
        for slug, title, body in kb_articles()
    ]
    stmt = insert(KbArticle).values(rows)
    # Edited article text reaches an existing database; an unchanged article is not rewritten.
    stmt = stmt.on_conflict_do_update(
        index_elements=["tenant", "slug"],
        set_={"title": stmt.excluded.title, "body": stmt.excluded.body},
        where=(KbArticle.title != stmt.excluded.title) | (KbArticle.body != stmt.excluded.body),
    )
    session.execute(stmt)


def _seed_status(session: Session) -> None:
    rows = [
        {"tenant": DEMO_TENANT, "component": c, "status": s, "message": m} for c, s, m in service_status()
    ]
    # Do nothing on conflict: an operator who resolved the incident during a demo keeps that state.
    session.execute(
        insert(ServiceStatus).values(rows).on_conflict_do_nothing(index_elements=["tenant", "component"])
    )


def seed(session: Session) -> dict[str, int]:
    """Insert the articles and status rows that are missing; the row count of each table."""
    _seed_kb(session)
    _seed_status(session)
    session.flush()
    return {
        "kb_articles": int(session.scalar(select(func.count()).select_from(KbArticle)) or 0),
        "service_status": int(session.scalar(select(func.count()).select_from(ServiceStatus)) or 0),
    }
