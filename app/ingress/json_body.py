"""Request bodies as JSON, refused before parsing when nested past the depth limit.

Python's parser recurses once per level: a 64 KiB body of `[` would end in a RecursionError (a
500). The nesting is measured first by one scan over the brackets and quotes only, which stops as
soon as the limit is passed.
"""

from __future__ import annotations

import json
import re
from typing import Any

from app.ingress.errors import ApiError

# The only characters that open or close a level, or a string in which brackets do not count.
_STRUCTURE = re.compile(r'[\[\]{}"\\]')


def nested_past(text: str, limit: int) -> bool:
    """Whether `text` opens more than `limit` arrays/objects inside one another (strings aside)."""
    depth, in_string, escaped_at = 0, False, -1
    for match in _STRUCTURE.finditer(text):
        pos, char = match.start(), match.group()
        if pos == escaped_at:
            continue
        if in_string:
            if char == "\\":
                escaped_at = pos + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def read_json(raw: bytes, max_depth: int) -> Any:
    """The parsed body; None if it is not UTF-8 JSON; ApiError 400 if nested past `max_depth`."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if nested_past(text, max_depth):
        raise ApiError(400, f"the JSON body is nested deeper than {max_depth} levels "
                            "(SWITCHBOARD_API_MAX_JSON_DEPTH); send a flatter document")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None
