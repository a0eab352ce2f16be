"""Text helpers: token estimates, words and matching, stable hashes, key fingerprints, OpenAI-style reset
durations."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Sequence

from app.simulator.wire import ChatMessage

_MARKER_RE = re.compile(r"\[\[sim:[a-z_]+\]\]")

WORD_RE = re.compile(r"[a-z0-9]+")
_CAMEL_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")

_STOPWORDS = frozenset(
    {
        *("a", "an", "the", "and", "or", "but", "to", "of", "for", "in", "on", "at", "by", "with"),
        *("from", "as", "is", "are", "was", "were", "be", "been", "it", "its", "this", "that"),
        *("these", "those", "i", "me", "my", "we", "our", "you", "your", "he", "she", "they"),
        *("them", "their", "there", "here", "can", "could", "would", "should", "will", "do"),
        *("does", "did", "have", "has", "had", "not", "no", "so", "if", "then", "than", "about"),
        *("into", "any", "all", "some", "please", "hi", "hello", "thanks", "thank", "get", "up"),
        *("just", "also", "what", "when", "where", "which", "who", "how", "why", "am"),
    }
)


def estimate_tokens(text: str) -> int:
    """Deterministic token estimate (about four characters per token)."""
    return math.ceil(len(text) / 4)


def message_text(message: ChatMessage) -> str:
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    return "\n".join(part.text for part in message.content if part.text)


def content_words(text: str) -> set[str]:
    return {w for w in WORD_RE.findall(text.lower()) if w not in _STOPWORDS}


def identifier_words(name: str) -> set[str]:
    return content_words(_CAMEL_RE.sub(" ", name).replace("_", " ").replace("-", " "))


def word_match(a: str, b: str) -> bool:
    # Prefix match stands in for stemming: charged~charge, errors~error.
    if a == b:
        return True
    short, long_ = (a, b) if len(a) <= len(b) else (b, a)
    return len(short) >= 4 and long_.startswith(short)


def count_matches(keywords: Iterable[str], words: set[str]) -> int:
    return sum(1 for k in keywords if k in words or any(word_match(k, w) for w in words))


def clean_text(text: str) -> str:
    return " ".join(_MARKER_RE.sub(" ", text).split())


def snippet(text: str, limit: int) -> str:
    cleaned = clean_text(text)
    if len(cleaned) <= limit:
        return cleaned
    return cleaned[:limit].rstrip() + "..."


def last_user_index(messages: Sequence[ChatMessage]) -> int | None:
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].role == "user":
            return index
    return None


def stable_hash(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def key_fingerprint(api_key: str) -> str:
    """Stable, non-reversible id for a key, used in stats instead of the key."""
    return "key_" + stable_hash(api_key)[:12]


def format_reset_duration(seconds: float) -> str:
    """Format a duration the way OpenAI's ``x-ratelimit-reset-*`` headers do."""
    total_ms = math.ceil(max(0.0, seconds) * 1000)
    if total_ms == 0:
        return "0s"
    if total_ms < 1000:
        return f"{total_ms}ms"
    hours, rest_ms = divmod(total_ms, 3_600_000)
    minutes, rest_ms = divmod(rest_ms, 60_000)
    whole, frac = divmod(rest_ms, 1000)
    secs = f"{whole}" + (f".{frac:03d}".rstrip("0") if frac else "")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
