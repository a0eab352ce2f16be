"""Provider failures, classified by what the caller should do about them."""

from __future__ import annotations

from enum import StrEnum

from app.errors import InferenceError


class FailureClass(StrEnum):
    RATE_LIMITED = "rate_limited"  # 429: wait as told
    SERVER = "server_error"  # 5xx: back off with jitter
    TIMEOUT = "timeout"
    CONNECTION = "connection_error"
    AUTH = "auth_error"  # 401/403: never retried; the key is taken out of rotation
    BAD_REQUEST = "bad_request"  # 400/404/422: never retried
    CONTEXT_LENGTH = "context_length"
    CONTENT_FILTER = "content_filter"


RETRYABLE = frozenset(
    {FailureClass.RATE_LIMITED, FailureClass.SERVER, FailureClass.TIMEOUT, FailureClass.CONNECTION}
)


class ProviderError(InferenceError):
    """A failed provider call. The message never contains an API key."""

    def __init__(
        self,
        kind: FailureClass,
        message: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
        key_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.retry_after_s = retry_after_s
        self.key_id = key_id

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE

    def __str__(self) -> str:
        status = f" HTTP {self.status}" if self.status else ""
        return f"provider {self.kind}{status}: {self.args[0]}"


def classify_status(status: int, body_text: str) -> FailureClass:
    lowered = body_text.lower()
    if status == 429:
        return FailureClass.RATE_LIMITED
    if status in (401, 403):
        return FailureClass.AUTH
    if "context_length" in lowered or "maximum context length" in lowered:
        return FailureClass.CONTEXT_LENGTH
    if "content_filter" in lowered or "content management policy" in lowered:
        return FailureClass.CONTENT_FILTER
    if status >= 500:
        return FailureClass.SERVER
    return FailureClass.BAD_REQUEST
