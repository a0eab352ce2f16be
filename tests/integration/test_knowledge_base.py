"""The technical specialist's knowledge-base search, against the seeded articles in PostgreSQL."""

from __future__ import annotations

from app.orchestration.specialist import ToolContext
from specialists.technical.arguments import SearchKbArgs
from specialists.technical.tools import search_kb

# The seeded articles are the default tenant's.
CTX = ToolContext(request_id="00000000-0000-0000-0000-000000000000", tenant="default", step="draft")


def slugs(query: str, limit: int = 3, ctx: ToolContext = CTX) -> list[str]:
    return [a["slug"] for a in search_kb(ctx, SearchKbArgs(query=query, limit=limit))["articles"]]


def test_a_whole_sentence_finds_its_article_first(services: object) -> None:
    # No article holds every word of the sentence: ranking by any word still puts the right one first.
    found = slugs("Our webhook deliveries keep failing and we never get them retried, what is going on?")
    assert found[0] == "webhook-retries"
    assert slugs("rotate our api key")[0] == "rotating-api-keys"


def test_search_syntax_is_taken_at_its_word(services: object) -> None:
    # A quoted phrase that matches is not widened to articles sharing one of its words.
    assert slugs('"webhook signatures"') == ["webhook-signatures"]
    # An exclusion keeps the excluded article out.
    assert "webhook-signatures" not in slugs("webhook -signatures")


def test_no_match_says_so_rather_than_returning_a_weak_guess(services: object) -> None:
    answer = search_kb(CTX, SearchKbArgs(query="zzzz qqqq"))
    assert answer["articles"] == [] and "do not cite" in answer["note"]


def test_limit_is_respected_and_results_do_not_repeat(services: object) -> None:
    for limit in (1, 2, 5):
        found = slugs("webhook api errors and timeouts", limit)
        assert 0 < len(found) <= limit and len(set(found)) == len(found)


def test_another_tenant_never_sees_these_articles(services: object) -> None:
    other = ToolContext(request_id=CTX.request_id, tenant="someone-else", step="draft")
    assert slugs("rotate our api key")
    assert slugs("rotate our api key", ctx=other) == []
