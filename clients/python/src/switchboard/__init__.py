"""Switchboard's client for apps: submit requests to the HTTP API, wait for them, read their results.

    from switchboard import Client

    with Client("https://switchboard.internal", api_key) as sb:
        accepted = sb.submit("I was charged twice", priority="high", idempotency_key="ticket-8812")
        view = sb.wait(accepted.id, timeout=60)
        print(view.status, view.specialist, view.reply, view.tokens.total, view.cost_usd)

It depends on httpx and pydantic only: no Celery, no database driver, none of the engine's code.
"""

from switchboard._core import PollPolicy, RetryPolicy
from switchboard._version import __version__
from switchboard.async_client import AsyncClient
from switchboard.client import Client
from switchboard.errors import (
    APIError,
    BadRequest,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    Overloaded,
    RateLimited,
    ServerError,
    ServiceUnreachable,
    SwitchboardError,
    Unauthorized,
    Unavailable,
    WaitTimeout,
)
from switchboard.models import FINISHED_STATUSES, Accepted, Event, Health, Priority, RequestView, Tokens

__all__ = [
    # Clients
    "AsyncClient",
    "Client",
    # Policies
    "PollPolicy",
    "RetryPolicy",
    # Answers
    "Accepted",
    "Event",
    "FINISHED_STATUSES",
    "Health",
    "Priority",
    "RequestView",
    "Tokens",
    # Errors: every one is a SwitchboardError; the API's answers are APIErrors
    "SwitchboardError",
    "ServiceUnreachable",
    "WaitTimeout",
    "APIError",
    "BadRequest",
    "InvalidRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "RateLimited",
    "Unavailable",
    "Overloaded",
    "ServerError",
    # Version
    "__version__",
]
