"""The technical specialist's tools and retrieval, over its own tables: the knowledge base
(PostgreSQL full-text search over `kb_articles.search`) and the status page (`service_status`).
Both are read-only, and both are the request's tenant's: shared by its customers, never another
tenant's. Nothing here is per customer.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    Select,
    String,
    bindparam,
    func,
    literal_column,
    select,
    union_all,
)

from app.orchestration.specialist import Tool, ToolContext, in_tenant
from app.state.session import autocommit_scope, session_scope
from specialists.technical.models import KbArticle, ServiceStatus

EXCERPT_CHARS = 200
OPERATIONAL = "operational"
# Enough words for a long ticket to still find its article without building a huge OR query.
MAX_FALLBACK_WORDS = 40
# In any-word mode, keep only articles ranked at least this fraction of the best one.
FALLBACK_RELATIVE_RANK = 0.5
_WORD_RE = re.compile(r"[a-z0-9]+")
_SEARCH_SYNTAX_RE = re.compile(r'"|(?:^|\s)-\w')


class SearchKbArgs(BaseModel):
    query: str = Field(
        min_length=1,
        max_length=2000,
        description="What to look for, in plain words: the symptom, error message or feature name.",
    )
    limit: int = Field(3, ge=1, le=10, description="How many articles to return (1-10).")


class ServiceStatusArgs(BaseModel):
    component: str | None = Field(
        None,
        description=(
            "One component to check (api, dashboard, webhooks, login, billing, email, search); "
            "leave empty for all of them."
        ),
    )


# --- Knowledge base ----------------------------------------------------------------------------


def _excerpt(body: str) -> str:
    text = " ".join(body.split())
    if len(text) <= EXCERPT_CHARS:
        return text
    # Cut on a word boundary so the excerpt never ends mid-word.
    cut = text[: EXCERPT_CHARS - 1].rsplit(" ", 1)[0]
    return cut.rstrip(".,;:") + "…"


def _any_word_query(text: str) -> str | None:
    """`to_tsquery` input matching any of the text's words, or None when there are no words.

    Only [a-z0-9] survive, so nothing the customer typed can be tsquery syntax.
    """
    words = list(dict.fromkeys(_WORD_RE.findall(text.lower())))[:MAX_FALLBACK_WORDS]
    return " | ".join(words) if words else None


def _ranked_statement(tsquery: ColumnElement[Any], mode: str, limit: str) -> Select[Any]:
    rank = func.ts_rank(KbArticle.search, tsquery).label("rank")
    mode_column = literal_column(f"'{mode}'", String).label("mode")
    return (
        select(mode_column, KbArticle.slug, KbArticle.title, KbArticle.body, rank)
        # The tenant's own articles only (a bound parameter: the statement is built once).
        .where(KbArticle.tenant == bindparam("tenant"), KbArticle.search.bool_op("@@")(tsquery))
        .order_by(rank.desc(), KbArticle.slug)
        .limit(bindparam(limit))
    )


# Built once: retrieval runs these for every ticket, and building them costs more CPU than running them.
_ALL_WORDS = _ranked_statement(func.websearch_to_tsquery("english", bindparam("q")), "all", "limit")
_ANY_WORD = _ranked_statement(func.to_tsquery("english", bindparam("any_q")), "any", "any_limit")
# Both rankings in one round trip: the any-word one is usually needed, and asking for it costs
# PostgreSQL less than a second round trip costs the worker.
_both = union_all(_ALL_WORDS, _ANY_WORD).subquery("ranked")
_BOTH = select(_both).order_by(_both.c.mode, _both.c.rank.desc(), _both.c.slug)


def _article(row: Row[Any]) -> dict[str, Any]:
    return {"slug": row.slug, "title": row.title, "excerpt": _excerpt(row.body)}


def _search(conn: Connection, tenant: str, query: str, limit: int) -> list[dict[str, Any]]:
    any_word = _any_word_query(query)
    if any_word is None:
        exact = conn.execute(_ALL_WORDS, {"q": query, "limit": limit, "tenant": tenant})
        return [_article(row) for row in exact]
    # An any-word hit may repeat an all-words one, so ask for enough to fill `limit` after dropping those.
    rows = conn.execute(
        _BOTH, {"q": query, "limit": limit, "any_q": any_word, "any_limit": 2 * limit, "tenant": tenant}
    ).all()
    articles = [_article(row) for row in rows if row.mode == "all"]
    if len(articles) >= limit or (articles and _SEARCH_SYNTAX_RE.search(query)):
        # A query with quotes or -exclusions meant exactly what it matched; do not widen it.
        return articles
    # websearch_to_tsquery ANDs every word, so a whole sentence rarely matches anything; ranking
    # by any word still puts the article sharing the most words first. It also tops up a short
    # all-words result with the next most relevant articles.
    any_hits = [row for row in rows if row.mode == "any"]
    if not any_hits:
        return articles
    # Any-word matching also finds articles that share one common word ("app", "key"); those
    # rank far below the real answer, and citing them would mislead.
    floor = float(any_hits[0].rank) * FALLBACK_RELATIVE_RANK
    seen = {a["slug"] for a in articles}
    extra = [_article(row) for row in any_hits if float(row.rank) >= floor and row.slug not in seen]
    return (articles + extra)[:limit]


def search_kb(ctx: ToolContext, args: SearchKbArgs) -> dict[str, Any]:
    # Reads only: no transaction around them, which saves its BEGIN and COMMIT round trips.
    with autocommit_scope() as conn:
        articles = _search(conn, ctx.tenant, args.query, args.limit)
    if not articles:
        return {"articles": [], "note": "no knowledge-base article matches; do not cite one"}
    return {"articles": articles}


# --- Status page -------------------------------------------------------------------------------


def _status_row(row: ServiceStatus | Row[str, str, str, datetime]) -> dict[str, Any]:
    return {
        "component": row.component,
        "status": row.status,
        "message": row.message,
        "updated_at": row.updated_at.isoformat() if row.updated_at else None,
    }


def check_service_status(ctx: ToolContext, args: ServiceStatusArgs) -> dict[str, Any]:
    with session_scope() as session:
        rows = list(session.scalars(in_tenant(select(ServiceStatus), ctx).order_by(ServiceStatus.component)))
    components = [_status_row(r) for r in rows]
    if args.component is None or not args.component.strip():
        return {"components": components}
    wanted = args.component.strip().lower()
    match = next((c for c in components if c["component"] == wanted), None)
    if match is None:
        known = ", ".join(c["component"] for c in components)
        return {"error": f"no component named {wanted!r}; known components: {known}"}
    return match


# --- Retrieval ---------------------------------------------------------------------------------


_INCIDENTS = (
    select(ServiceStatus.component, ServiceStatus.status, ServiceStatus.message, ServiceStatus.updated_at)
    .where(ServiceStatus.tenant == bindparam("tenant"), ServiceStatus.status != OPERATIONAL)
    .order_by(ServiceStatus.component)
)


def _incidents(conn: Connection, tenant: str) -> list[dict[str, Any]]:
    return [_status_row(r) for r in conn.execute(_INCIDENTS, {"tenant": tenant})]


def retrieve(ctx: ToolContext, text: str) -> dict[str, Any]:
    """Knowledge-base articles that match the ticket and any component not fully operational."""
    found: dict[str, Any] = {}
    # Reads only, on one connection and outside a transaction: this runs for every ticket.
    with autocommit_scope() as conn:
        articles = _search(conn, ctx.tenant, text, 3)
        incidents = _incidents(conn, ctx.tenant)
    if articles:
        found["kb_articles"] = articles
    if incidents:
        found["service_incidents"] = incidents
    return found


# --- The tools, in the order the model sees them -------------------------------------------------

TOOLS: tuple[Tool[Any], ...] = (
    Tool(
        name="search_kb",
        description=(
            "Search the knowledge base. Returns the best-matching articles (slug, title, excerpt) to "
            "cite in the reply."
        ),
        args=SearchKbArgs,
        run=search_kb,
    ),
    Tool(
        name="check_service_status",
        description=(
            "Current status-page state for one component or for all: operational, degraded or outage, "
            "with the public message."
        ),
        args=ServiceStatusArgs,
        run=check_service_status,
    ),
)
