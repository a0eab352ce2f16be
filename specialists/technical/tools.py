"""The technical specialist's two tools, over its own tables: the knowledge base
(PostgreSQL full-text search over `kb_articles.search`) and the status page (`service_status`).
Both are read-only, and both are the request's tenant's: shared by its customers, never another
tenant's. Nothing here is per customer.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from app.orchestration.specialist import Tool, ToolContext, in_tenant
from app.state.session import autocommit_scope, session_scope
from specialists.technical.arguments import SearchKbArgs, ServiceStatusArgs
from specialists.technical.knowledge_base import search_articles
from specialists.technical.models import ServiceStatus
from specialists.technical.status_page import status_row


def search_kb(ctx: ToolContext, args: SearchKbArgs) -> dict[str, Any]:
    # Reads only: no transaction around them, which saves its BEGIN and COMMIT round trips.
    with autocommit_scope() as conn:
        articles = search_articles(conn, ctx.tenant, args.query, args.limit)
    if not articles:
        return {"articles": [], "note": "no knowledge-base article matches; do not cite one"}
    return {"articles": articles}


def check_service_status(ctx: ToolContext, args: ServiceStatusArgs) -> dict[str, Any]:
    with session_scope() as session:
        rows = list(session.scalars(in_tenant(select(ServiceStatus), ctx).order_by(ServiceStatus.component)))
    components = [status_row(r) for r in rows]
    if args.component is None or not args.component.strip():
        return {"components": components}
    wanted = args.component.strip().lower()
    match = next((c for c in components if c["component"] == wanted), None)
    if match is None:
        known = ", ".join(c["component"] for c in components)
        return {"error": f"no component named {wanted!r}; known components: {known}"}
    return match


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
