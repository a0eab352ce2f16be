"""JSON mode: an instance of the asked schema (`$ref`s and `anyOf` resolved), its identifiers from the
conversation, free text the plain answer; broken JSON when a test asks for it."""

from __future__ import annotations

import json
from typing import Any

from app.simulator.extraction import Missing, default_value, extracted_value, schema_type
from app.simulator.markers import BAD_JSON_MARKER
from app.simulator.text import (
    clean_text,
    message_text,
)
from app.simulator.wire import ChatCompletionRequest


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith(("#/$defs/", "#/definitions/")):
        schema = defs.get(ref.rsplit("/", 1)[-1], {})
    for key in ("anyOf", "oneOf"):
        options = [o for o in schema.get(key) or [] if isinstance(o, dict) and o.get("type") != "null"]
        if options:
            return _resolve(options[0], defs)
    return schema


def schema_instance(
    schema: dict[str, Any],
    text: str,
    answer: str,
    defs: dict[str, Any] | None = None,
    name: str = "",
    depth: int = 0,
) -> Any:
    """A value of the schema's shape: identifiers taken from the user's text where a property
    names one, the plain answer for free text, defaults for the rest."""
    defs = defs if defs is not None else {**schema.get("definitions", {}), **schema.get("$defs", {})}
    schema = _resolve(schema, defs)
    kind = schema_type(schema)
    if kind == "object" and depth < 8:
        properties = schema.get("properties") or {}
        return {
            key: schema_instance(sub if isinstance(sub, dict) else {}, text, answer, defs, key, depth + 1)
            for key, sub in properties.items()
        }
    if kind == "array":
        items = schema.get("items")
        if not isinstance(items, dict):
            return []
        return [schema_instance(items, text, answer, defs, name, depth + 1)]
    found = extracted_value(name, schema, text)
    if not isinstance(found, Missing):
        return found
    if kind == "string" and "enum" not in schema:
        return answer
    return default_value(name, schema, text)


def json_content(body: ChatCompletionRequest, answer: str, user_text: str) -> str:
    """JSON mode: the answer as one JSON object (of the schema's shape for `json_schema`), its
    identifiers read from the whole conversation's user messages, as a model reads them."""
    assert body.response_format is not None
    spec = body.response_format.json_schema or {}
    schema = spec.get("schema")
    said = clean_text("\n".join(message_text(m) for m in body.messages if m.role == "user"))
    value = schema_instance(schema, said, answer) if isinstance(schema, dict) else {"answer": answer}
    content = json.dumps(value)
    if BAD_JSON_MARKER in user_text:
        content = "Sure, here it is: " + content[: max(1, len(content) // 2)]
    return content
