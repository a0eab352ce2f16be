"""Every error the HTTP API answers: JSON with a stable code and a message that says what to do.

`api_error()` is the one place where an exception from the client, the limits or a service maps to
a status code; a new client exception gets one line in `_MAPPING`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from kombu.exceptions import OperationalError as BrokerError
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError

from app.errors import IngressError
from app.ingress.client import InvalidRequest, Overloaded
from app.ingress.http.limits import LimitExceeded
from app.state.transitions import NotWaiting, RequestNotFound

# status -> the stable code clients switch on
CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "idempotency_conflict",
    413: "body_too_large",
    422: "invalid_request",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: list[str] = []


class ErrorBody(BaseModel):
    error: ErrorDetail


class ApiError(IngressError):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        details: list[str] | None = None,
        retry_after_s: float | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or CODES[status]
        self.message = message
        self.details = details or []
        self.retry_after_s = retry_after_s

    def body(self) -> dict[str, object]:
        return ErrorBody(
            error=ErrorDetail(code=self.code, message=self.message, details=self.details)
        ).model_dump()

    def headers(self) -> dict[str, str]:
        headers = {}
        if self.retry_after_s is not None:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after_s)))
        if self.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="switchboard"'
        return headers


def too_large(max_bytes: int) -> ApiError:
    return ApiError(
        413, f"the body is larger than {max_bytes} bytes (SWITCHBOARD_API_MAX_BODY_BYTES); send less"
    )


def _invalid(exc: InvalidRequest) -> ApiError:
    return ApiError(
        422,
        "the request is invalid: fix the fields listed in details and send it again",
        details=exc.problems,
    )


def _not_found(exc: RequestNotFound) -> ApiError:
    return ApiError(404, "no such request for this API key's tenant: check the id")


def _limited(exc: LimitExceeded) -> ApiError:
    return ApiError(429, str(exc), retry_after_s=exc.retry_after_s)


def _database(exc: DBAPIError) -> ApiError:
    # Never the driver's message: it can carry connection details.
    return ApiError(503, "the record (PostgreSQL) is unavailable; retry later", retry_after_s=5)


def _broker(exc: BrokerError) -> ApiError:
    return ApiError(503, "the broker (RabbitMQ) is unavailable; retry later", retry_after_s=5)


def _not_waiting(exc: NotWaiting) -> ApiError:
    return ApiError(409, f"{exc}: nothing to do; GET the request to see where it is", code="not_waiting")


def _overloaded(exc: Overloaded) -> ApiError:
    return ApiError(503, str(exc), retry_after_s=exc.retry_after_s, code="overloaded")


# A new exception maps here; the first match wins, so a subclass comes before its base.
_MAPPING: list[tuple[type[BaseException], Callable[..., ApiError]]] = [
    (Overloaded, _overloaded),
    (InvalidRequest, _invalid),
    (RequestNotFound, _not_found),
    (LimitExceeded, _limited),
    (NotWaiting, _not_waiting),
    (DBAPIError, _database),
    (BrokerError, _broker),
]


def api_error(exc: BaseException) -> ApiError | None:
    """The answer for an exception, or None if it is a bug (answered 500 and logged)."""
    if isinstance(exc, ApiError):
        return exc
    for kind, build in _MAPPING:
        if isinstance(exc, kind):
            return build(exc)
    return None
