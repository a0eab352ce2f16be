"""Knowledge-base search: PostgreSQL full-text search over the tenant's `kb_articles.search`, all
words first, topped up by the articles sharing the most words when a whole sentence matches
nothing."""

from __future__ import annotations

import re
from typing import Any

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

from specialists.technical.models import KbArticle

EXCERPT_CHARS = 200
# Enough words for a long ticket to still find its article without building a huge OR query.
MAX_FALLBACK_WORDS = 40
# In any-word mode, keep only articles ranked at least this fraction of the best one.
FALLBACK_RELATIVE_RANK = 0.5
_WORD_RE = re.compile(r"[a-z0-9]+")
_SEARCH_SYNTAX_RE = re.compile(r'"|(?:^|\s)-\w')


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


def search_articles(conn: Connection, tenant: str, query: str, limit: int) -> list[dict[str, Any]]:
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
