"""Values read from the user's text for a property of a JSON schema (an e-mail, an invoice id, a
component, free text), or a default of the property's type: what the simulated model puts in tool
arguments and JSON answers."""

from __future__ import annotations

import re
from typing import Any

from app.simulator.text import (
    WORD_RE,
    clean_text,
    content_words,
    word_match,
)

EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
INVOICE_RE = re.compile(r"\bINV-\d+\b", re.IGNORECASE)

KNOWN_COMPONENTS = ("api", "dashboard", "webhooks", "login", "billing", "email", "search")
QUERY_PARAM_NAMES = frozenset({"query", "text", "question"})


def schema_type(schema: dict[str, Any]) -> str:
    declared = schema.get("type")
    if isinstance(declared, list):
        declared = next((t for t in declared if t != "null"), None)
    if isinstance(declared, str):
        return declared
    return "string" if "enum" in schema else "object"


class Missing:
    """Sentinel: the value could not be taken from the user's text."""


MISSING = Missing()


def _component_from(text: str) -> str | None:
    for word in WORD_RE.findall(text.lower()):
        for component in KNOWN_COMPONENTS:
            if word_match(word, component):
                return component
    return None


def extracted_value(name: str, schema: dict[str, Any], text: str) -> Any:
    """A value found in the text, or MISSING."""
    lname = name.lower()
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        text_words = content_words(text)
        return next((v for v in enum if str(v).lower() in text_words), MISSING)
    if schema_type(schema) != "string":
        return MISSING
    if "email" in lname:
        match = EMAIL_RE.search(text)
        return match.group(0) if match else MISSING
    if "invoice" in lname:
        match = INVOICE_RE.search(text)
        return match.group(0).upper() if match else MISSING
    if QUERY_PARAM_NAMES & set(lname.split("_")):
        return clean_text(text)[:200]
    if "component" in lname or "service" in lname:
        return _component_from(text) or MISSING
    return MISSING


def default_value(name: str, schema: dict[str, Any], text: str) -> Any:
    lname = name.lower()
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    kind = schema_type(schema)
    if kind in ("integer", "number"):
        return 1
    if kind == "boolean":
        return False
    if kind == "array":
        return []
    if kind == "object":
        return {}
    if "component" in lname or "service" in lname:
        return "api"
    return clean_text(text)[:60]
