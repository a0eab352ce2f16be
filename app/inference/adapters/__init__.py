"""One adapter per provider API, chosen per provider by its kind (SWITCHBOARD_PROVIDER_KIND)."""

from __future__ import annotations

from app.inference.adapters.anthropic_messages import AnthropicMessages
from app.inference.adapters.azure_openai import AzureOpenAI
from app.inference.adapters.base import Adapter, ChatRequest, Failure, HttpCall
from app.inference.adapters.openai_chat import OpenAIChat

ADAPTERS: dict[str, Adapter] = {a.kind: a for a in (OpenAIChat(), AnthropicMessages(), AzureOpenAI())}


def adapter_for(kind: str) -> Adapter:
    try:
        return ADAPTERS[kind]
    except KeyError:
        raise ValueError(f"unknown provider kind {kind!r}; known: {', '.join(ADAPTERS)}") from None


__all__ = ["ADAPTERS", "Adapter", "ChatRequest", "Failure", "HttpCall", "adapter_for"]
