"""Structured output: a pydantic model as the JSON schema a call asks for, and the answer
validated into it, with the repair prompt that gives the model one chance to fix invalid JSON."""

from __future__ import annotations

import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from app.errors import InferenceError
from app.inference.response import ChatResponse

M = TypeVar("M", bound=BaseModel)
# Models wrap JSON in a code fence now and then even when told not to.
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


class InvalidStructuredOutput(InferenceError, ValueError):
    """The model's answer is not valid JSON of the schema, even after the repair prompt.
    Not retryable: asking again the same way would fail the same way."""


def response_format(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAI's `json_schema` response format for `model` (every adapter translates it)."""
    # strict=False: pydantic's schemas allow optional fields and extra keys, which strict mode refuses.
    return {
        "type": "json_schema",
        "json_schema": {"name": model.__name__, "schema": model.model_json_schema(), "strict": False},
    }


def parse(model: type[M], response: ChatResponse) -> M:
    """The answer as an instance of `model`; ValidationError when it is not one."""
    text = response.content or ""
    fenced = _FENCE.match(text)
    return model.model_validate_json(fenced.group(1) if fenced else text)


def repair_messages(
    messages: list[dict[str, Any]], response: ChatResponse, error: ValidationError
) -> list[dict[str, Any]]:
    """The conversation with the invalid answer and what was wrong with it, asking again."""
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'the reply'}: {e['msg']}" for e in error.errors()[:5]
    )
    return [
        *messages,
        {"role": "assistant", "content": response.content or ""},
        {
            "role": "user",
            "content": f"That reply is not valid JSON of the requested schema ({problems}). "
            "Reply again with only the corrected JSON object.",
        },
    ]
