"""What the technical specialist looks up before the model writes: the knowledge-base articles that
match the ticket and every component not fully operational."""

from __future__ import annotations

from typing import Any

from app.orchestration.specialist import ToolContext
from app.state.session import autocommit_scope
from specialists.technical.knowledge_base import search_articles
from specialists.technical.status_page import open_incidents


def retrieve(ctx: ToolContext, text: str) -> dict[str, Any]:
    """Knowledge-base articles that match the ticket and any component not fully operational."""
    found: dict[str, Any] = {}
    # Reads only, on one connection and outside a transaction: this runs for every ticket.
    with autocommit_scope() as conn:
        articles = search_articles(conn, ctx.tenant, text, 3)
        incidents = open_incidents(conn, ctx.tenant)
    if articles:
        found["kb_articles"] = articles
    if incidents:
        found["service_incidents"] = incidents
    return found
