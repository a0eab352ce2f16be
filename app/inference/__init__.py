"""Every LLM call goes through this package: see gateway.complete()."""

from app.inference.budget import BudgetExhausted
from app.inference.errors import FailureClass, ProviderError
from app.inference.gateway import Deferred, complete
from app.inference.provider import ChatResponse, ToolCall

__all__ = [
    "BudgetExhausted",
    "ChatResponse",
    "Deferred",
    "FailureClass",
    "ProviderError",
    "ToolCall",
    "complete",
]
