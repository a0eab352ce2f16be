"""Classification prompts: the labels a prompt offers (an `options:` line, `- label: description`
lines) and the one the user's text matches best, as a model picking a route would."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from app.simulator.text import (
    content_words,
    count_matches,
    identifier_words,
    message_text,
)
from app.simulator.wire import ChatMessage

_OPTIONS_LINE_RE = re.compile(r"^\s*options\s*:\s*(.*\S)\s*$", re.IGNORECASE)
_DESCRIPTION_LINE_RE = re.compile(r"^\s*[-*]\s*([^:]+?)\s*:\s*(.*\S)\s*$")

# Real tickets rarely repeat the label name, so the two labels every demo uses
# get the words customers actually write.
_LABEL_SYNONYMS: dict[str, frozenset[str]] = {
    "billing": frozenset({"invoice", "charge", "refund", "payment", "card", "plan", "price", "subscription"}),
    "technical": frozenset(
        {"error", "bug", "api", "login", "crash", "outage", "timeout", "500", "integration", "webhook"}
    ),
}
_SYNONYM_WEIGHT = 2
_PROMPT_ROLES = frozenset({"system", "developer", "user"})


@dataclass(frozen=True)
class LabelPrompt:
    labels: list[str]
    descriptions: dict[str, str]


def find_label_prompt(messages: Sequence[ChatMessage]) -> LabelPrompt | None:
    prompt_texts = [message_text(m) for m in messages if m.role in _PROMPT_ROLES]
    labels: list[str] = []
    for text in prompt_texts:
        for line in text.splitlines():
            match = _OPTIONS_LINE_RE.match(line)
            if match:
                labels = [lb.strip(" .'\"`") for lb in match.group(1).split(",")]
                break
        if labels:
            break
    labels = [label for label in labels if label]
    if not labels:
        return None
    wanted = {label.lower() for label in labels}
    descriptions: dict[str, str] = {}
    for text in prompt_texts:
        for line in text.splitlines():
            match = _DESCRIPTION_LINE_RE.match(line)
            if match and match.group(1).lower() in wanted:
                descriptions.setdefault(match.group(1).lower(), match.group(2))
    return LabelPrompt(labels, descriptions)


def _strip_prompt_lines(text: str, prompt: LabelPrompt) -> str:
    # The options/description lines would otherwise match every label.
    wanted = {label.lower() for label in prompt.labels}
    kept = []
    for line in text.splitlines():
        if _OPTIONS_LINE_RE.match(line):
            continue
        match = _DESCRIPTION_LINE_RE.match(line)
        if match and match.group(1).lower() in wanted:
            continue
        kept.append(line)
    return "\n".join(kept)


def classify(prompt: LabelPrompt, user_text: str) -> str:
    text_words = content_words(_strip_prompt_lines(user_text, prompt))
    best_label, best_score = "unknown", 0
    for label in prompt.labels:
        key = label.lower()
        keywords = identifier_words(label) | content_words(prompt.descriptions.get(key, ""))
        score = count_matches(keywords, text_words)
        score += _SYNONYM_WEIGHT * count_matches(_LABEL_SYNONYMS.get(key, ()), text_words)
        # Strictly greater: ties go to the label listed first.
        if score > best_score:
            best_label, best_score = label, score
    return best_label
