"""The technical specialist's knowledge-base search, against the seeded articles in PostgreSQL."""

from __future__ import annotations

from specialists.technical.tools import SearchKbArgs, search_kb


def slugs(query: str, limit: int = 3) -> list[str]:
    return [a["slug"] for a in search_kb(None, SearchKbArgs(query=query, limit=limit))["articles"]]  # type: ignore[arg-type]


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
    answer = search_kb(None, SearchKbArgs(query="zzzz qqqq"))  # type: ignore[arg-type]
    assert answer["articles"] == [] and "do not cite" in answer["note"]


def test_limit_is_respected_and_results_do_not_repeat(services: object) -> None:
    for limit in (1, 2, 5):
        found = slugs("webhook api errors and timeouts", limit)
        assert 0 < len(found) <= limit and len(set(found)) == len(found)
