"""The API's errors as exceptions, one per stable error code; every one is a SwitchboardError."""

from __future__ import annotations

import json
from typing import Any

import httpx


class SwitchboardError(Exception):
    """Every error this client raises."""


class ServiceUnreachable(SwitchboardError):
    """No answer from the API (connection refused, timed out) after the retries allowed."""


class WaitTimeout(SwitchboardError, TimeoutError):
    """`wait` gave up before the request finished; `view` is how it was last seen."""

    def __init__(self, view: Any, timeout: float) -> None:
        super().__init__(f"request {view.id} is still {view.status} after {timeout:g}s")
        self.view = view


class APIError(SwitchboardError):
    """The API answered with an error: `status`, its stable `code`, `message` and `details`."""

    def __init__(self, status: int, code: str, message: str, details: list[str] | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        # Seconds the API asked to wait before trying again (429 and 503), else None.
        self.retry_after = retry_after


class BadRequest(APIError):
    """400 or 413: the body could not be read or is too large."""


class InvalidRequest(APIError):
    """422: a field is invalid; `problems` names each ("text: must not be empty")."""

    @property
    def problems(self) -> list[str]:
        return self.details


class Unauthorized(APIError):
    """401: no API key, or an unknown or revoked one."""


class Forbidden(APIError):
    """403: the key may not do this (a read-only key submitting)."""


class NotFound(APIError):
    """404: no such request for this key's tenant (another tenant's request looks the same)."""


class Conflict(APIError):
    """409: the idempotency key was used for a different request."""


class RateLimited(APIError):
    """429: the tenant is over its requests per minute or unfinished requests; see `retry_after`."""


class Unavailable(APIError):
    """503: the record or the broker is down; see `retry_after`."""


class Overloaded(Unavailable):
    """503 `overloaded`: a low-priority request was refused while its queue is past its limit."""


class ServerError(APIError):
    """500 or another status this client does not know."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict, 413: BadRequest,
    422: InvalidRequest, 429: RateLimited, 503: Unavailable,
}


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a Retry-After header in its delta-seconds form (what the API sends), else None."""
    try:
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):
        return None


def error_for(response: httpx.Response) -> APIError:
    """The exception for an error answer, from its `{"error": {"code", "message", "details"}}` body."""
    try:
        body = json.loads(response.content)["error"]
        code, message = str(body["code"]), str(body["message"])
        details = [str(d) for d in body.get("details") or []]
    except (ValueError, KeyError, TypeError):
        code, message, details = "unexpected_answer", response.text[:200] or response.reason_phrase, []
    kind = Overloaded if code == "overloaded" else _BY_STATUS.get(response.status_code, ServerError)
    return kind(response.status_code, code, message, details, retry_after(response))
