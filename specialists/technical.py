"""Technical specialist: API errors, integrations, login and SSO, imports/exports, the apps.

Its tools read the knowledge base (PostgreSQL full-text search over `kb_articles.search`) and the
status page (`service_status`). Both are read-only, and both are the request's tenant's: shared by
its customers, never another tenant's. Nothing here is per customer.
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
    bindparam,
    func,
    literal_column,
    select,
    union_all,
)

from app.db.models import KbArticle, ServiceStatus
from app.db.session import autocommit_scope, session_scope
from app.specialist import Specialist, Tool, ToolContext, in_tenant

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
    mode_column = literal_column(f"'{mode}'").label("mode")
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


# --- The specialist ----------------------------------------------------------------------------

SYSTEM_PROMPT = """\
You are a technical support engineer for a software product with a web dashboard, a REST API \
(api.example.com), webhooks, SDKs, mobile apps and integrations such as Slack and Zapier. \
Customers who write to you are often blocked; your job is to unblock them or get exactly what \
engineering needs to.

How you work
- Check the status page first when the symptom could be on our side (errors, timeouts, webhooks, \
login, slow pages, email): use check_service_status. If a component is degraded or down, say so in \
your first sentence and quote the status message. Never promise a fix time or an ETA that is not \
on the status page; point to status.example.com for updates instead.
- Search the knowledge base with search_kb and cite the articles you rely on by title and slug, \
for example "Verifying webhook signatures (kb: webhook-signatures)". Do not cite an article you have \
not seen in a tool result or in the retrieved context, and do not invent settings, endpoints or \
error codes.
- When the cause is not clear, ask for what is missing to reproduce it, in one short list: the \
steps taken, what they expected and what happened, the exact error message or HTTP status, the \
request ID (X-Request-Id response header), the time with time zone, and the SDK, browser, OS or \
app version. Ask only for what you do not already have.
- Give concrete steps the customer can take now (a setting to check, a header to send, a retry \
policy) before explaining background.

Safety
- Never ask for passwords, one-time codes, recovery codes or full API keys. If a customer pastes a \
secret key, tell them to rotate it now under Settings > Developers > API keys.
- Do not disable security features (2FA, SSO enforcement) on someone's behalf; identity checks for \
account recovery go through the documented recovery flow.
- Questions about charges, invoices or refunds belong to billing: answer the technical part and \
say the billing team will follow up on the rest.

Tone
Calm, precise and friendly. Short paragraphs, numbered steps for procedures, code or headers in \
backticks. Admit what you do not know yet and say what happens next. Write in the customer's \
language.
"""

ROUTING_EXAMPLES: tuple[str, ...] = (
    "Our API calls started returning 500 Internal Server Error about an hour ago.",
    "Webhooks stopped firing for new orders since yesterday evening. Nothing in the delivery log.",
    "I can't log in with SSO, Okta says the SAML response is invalid.",
    "Getting 429 Too Many Requests from the API even though we're well under the limit.",
    "The Python SDK throws ConnectionResetError on every request after upgrading to 3.2.",
    "I lost my phone and can't get past the two-factor screen. How do I get back in?",
    "Dashboard takes 30+ seconds to load the reports page, it used to be instant.",
    "CSV import fails with 'unexpected column: Phone Number' but the column is in the template.",
    "The Slack integration stopped posting notifications to our #alerts channel.",
    "Our Zapier zap fails at the trigger step with 'authentication expired'.",
    "Data export has been stuck on 'preparing' for two days.",
    "The iOS app crashes as soon as I open a project. iPhone 14, latest version.",
    "How do I rotate our API key without downtime?",
    "We set up a CNAME for our custom domain but it still shows a certificate error.",
    "Emails sent from the platform are landing in our customers' spam folders.",
    "requests to /v2/contacts time out after 30s, is something down?",
    "The webhook signature check fails on our side, the HMAC never matches.",
    "Pagination seems broken: the next cursor returns the same page again.",
    "I reset my password but the reset link says it has expired.",
    "Android app shows a blank white screen after login.",
    "We get 401 Unauthorized with a key that worked fine yesterday.",
    "Is there a way to bulk import users from a spreadsheet? My file keeps getting rejected.",
    "the api returns 400 bad request 'invalid date format' - what format do you expect?",
    "Our SAML certificate expires next week, how do we upload the new one without locking everyone out?",
    "Exported CSV has garbled characters in names with accents (é, ü).",
    "Is the search down? Nothing returns results in the dashboard.",
    "npm install of your JS SDK fails with a peer dependency error on React 18.",
    "Webhook deliveries show 'timeout' in the logs but our endpoint responds in 200ms.",
    "we keep getting logged out every few minutes in Chrome",
    "Getting this stack trace from the Node SDK: TypeError: Cannot read properties of undefined "
    "(reading 'id')",
    "How do I verify our sending domain with SPF and DKIM records?",
    "Our team can't access the dashboard, it says 502 Bad Gateway.",
    "The 2FA codes from Google Authenticator are always rejected as invalid.",
    "Can you increase our API rate limit? We're running a migration this weekend.",
    "Zapier doesn't show the 'New Contact' trigger anymore.",
    "Charts on the analytics page are empty since this morning, data is there in exports.",
    "The mobile app won't sync offline changes when I get back online.",
    "What does error code E1042 mean? It shows up when saving a form.",
    "Our developer left and we need to revoke his API keys and see what they accessed.",
    "The custom domain DNS check has been 'pending' for 48 hours.",
    "Webhook retries are flooding our server, how do we turn them off for a while?",
    "New users don't receive the invitation email. Checked spam already.",
    "Slack app asks to reauthorize every day.",
    "Uploading a 40MB CSV gives 413 Payload Too Large.",
    "The GET /v1/invoices endpoint returns an empty list but the dashboard shows data. "
    "Are we calling it wrong?",
    "How can I report a crash from the Android app? It happens every time I attach a photo.",
    "After enabling SSO enforcement, our contractors without Okta accounts are locked out.",
    "api key rotation: will the old key keep working for a grace period?",
    "Everything is really slow today, pages take forever.",
    "Our integration test suite fails with SSL: CERTIFICATE_VERIFY_FAILED when calling your sandbox.",
    "Password reset emails never arrive for users on our Outlook domain.",
    "Bulk update endpoint returns 207 with some items failing, how do I find out which ones?",
    "Is there an official Go SDK, or should we call the REST API directly?",
    "The dashboard shows 'Something went wrong' whenever I filter by date.",
    "webhook events arrive out of order, contact.updated before contact.created",
    "The export to Google Sheets integration gives permission denied.",
    "Our Jenkins job that calls the API gets intermittent connection timeouts at night.",
    "The browser console shows CORS errors when we call the API from our frontend.",
    "How do I recover my account if I no longer have access to my authenticator app or backup codes?",
    "Login page just spins forever after I enter my email.",
    "Someone on our team bulk-deleted contacts by accident. Can you restore them?",
    "Our Salesforce integration stopped syncing deals on Tuesday.",
    "Drag and drop on the board view doesn't work in Safari.",
    "The API ignores the sort parameter and returns records in random order.",
    "Can I use OAuth instead of API keys for a public app?",
    "Push notifications in the mobile app arrive hours late.",
    "Our admin changed roles and now half the team can't see the shared projects.",
    "Long text fields get truncated after saving.",
    "How do we allowlist your IP addresses on our firewall for webhooks?",
    "Timestamps in the activity feed are an hour off since the clocks changed.",
    "We need to restrict API keys to specific IP addresses. Is that supported?",
)

SPECIALIST = Specialist(
    name="technical",
    description=(
        "Product and API problems: errors, outages and slowness, webhooks, login/SSO/2FA, SDKs, "
        "integrations, imports and exports, custom domains, email delivery, mobile apps."
    ),
    system_prompt=SYSTEM_PROMPT,
    routing_examples=ROUTING_EXAMPLES,
    tools=(
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
    ),
    model_tier="capable",
    # Conservative: an HTTP error status or a stack trace is a technical ticket whatever else it says.
    rules=(r"\b[45]\d\d error\b", r"\bstack ?trace\b", r"\btraceback\b"),
    retrieve=retrieve,
)
