"""Keeps a conversation's history within a token budget, so long conversations don't grow cost
without bound: older turns are dropped (truncate) or condensed into one note (summarize)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal


def estimate_tokens(text: str) -> int:
    # About four characters a token for English; the limiter reconciles with real usage anyway.
    return max(1, (len(text) + 3) // 4)


def _tokens(messages: list[dict[str, str]]) -> int:
    return sum(estimate_tokens(m.get("content") or "") + 4 for m in messages)


def compress(
    history: list[dict[str, str]],
    *,
    budget_tokens: int,
    policy: Literal["truncate", "summarize"],
    summarize: Callable[[list[dict[str, str]]], str] | None = None,
) -> list[dict[str, str]]:
    """The newest turns that fit half the budget, preceded by a summary of the rest (summarize)
    or by nothing (truncate). History within budget is returned unchanged."""
    if _tokens(history) <= budget_tokens:
        return history
    kept: list[dict[str, str]] = []
    for message in reversed(history):
        if _tokens([message, *kept]) > budget_tokens // 2:
            break
        kept.insert(0, message)
    older = history[: len(history) - len(kept)]
    if policy == "truncate" or summarize is None or not older:
        return kept
    summary = summarize(older)
    return [{"role": "system", "content": f"Summary of the earlier conversation: {summary}"}, *kept]
