"""The engine's durable record: every request, every stage, every LLM call, and shared engine state.

One module per concern, all on one `Base`: importing this package registers every table in
`Base.metadata`, which Alembic (migrations/env.py) compares against. The schema changes only
through Alembic revisions in migrations/; these classes describe it.
"""

from app.state.models.base import Base, table_of
from app.state.models.breakers import BreakerEvent, CircuitBreaker
from app.state.models.cache import CachedResponse
from app.state.models.conversations import Conversation, Turn
from app.state.models.deliveries import Callback, CallbackAttempt, Delivery
from app.state.models.limits import LimitEvent, ProviderKey, RateBucket
from app.state.models.people import Approval, Handoff
from app.state.models.requests import Request, RequestEvent, new_id
from app.state.models.scaling import PoolTarget, ScalingDecision
from app.state.models.status import STATUS_CHECK, TERMINAL, WAITING_ON_PERSON, Status
from app.state.models.steps import LlmCall, StepRun
from app.state.models.tenants import ApiKey, Tenant, TenantSetting, TenantSpend

# Grouped by module in the imports above.
__all__ = [
    "STATUS_CHECK",
    "TERMINAL",
    "WAITING_ON_PERSON",
    "ApiKey",
    "Approval",
    "Base",
    "BreakerEvent",
    "CachedResponse",
    "Callback",
    "CallbackAttempt",
    "CircuitBreaker",
    "Conversation",
    "Delivery",
    "Handoff",
    "LimitEvent",
    "LlmCall",
    "PoolTarget",
    "ProviderKey",
    "RateBucket",
    "Request",
    "RequestEvent",
    "ScalingDecision",
    "Status",
    "StepRun",
    "Tenant",
    "TenantSetting",
    "TenantSpend",
    "Turn",
    "new_id",
    "table_of",
]
