"""Request bodies as JSON, refused before parsing when nested past the depth limit.

Python's parser recurses once per level: a 64 KiB body of `[` would end in a RecursionError (a
500). The nesting is measured first by one scan over the brackets and quotes only, which stops as
soon as the limit is passed. The check sits in the Flask app's JSON provider, so every route that
reads `request.get_json()` has it.
"""

from __future__ import annotations

import re
from typing import Any

from flask.json.provider import DefaultJSONProvider

from app.config import get_settings
from app.ingress.http.errors import ApiError

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


class DepthLimitedJSON(DefaultJSONProvider):
    """Flask's JSON, parsing only UTF-8 text nested at most SWITCHBOARD_API_MAX_JSON_DEPTH deep.

    Too deep raises ApiError (400); anything else unparseable raises ValueError, which Flask turns
    into its "not JSON" answer (None with `silent=True`)."""

    sort_keys = False

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        # Bytes that are not UTF-8 raise UnicodeDecodeError, a ValueError: "not JSON".
        text = s.decode("utf-8") if isinstance(s, bytes | bytearray) else s
        limit = get_settings().api_max_json_depth
        if nested_past(text, limit):
            raise ApiError(
                400,
                f"the JSON body is nested deeper than {limit} levels "
                "(SWITCHBOARD_API_MAX_JSON_DEPTH); send a flatter document",
            )
        try:
            return super().loads(text, **kwargs)
        except RecursionError:
            raise ValueError("nested too deeply") from None
