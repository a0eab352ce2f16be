"""The one door to the LLM: every call from every process goes through `complete()`.

It picks the model for the tier and a key, calls the provider, and records the call (tokens, cost,
latency, outcome) in its own short transaction; no database connection is held during the call.
"""

from __future__ import annotations

import logging
import time
from decimal import Decimal
from functools import lru_cache
from typing import Any

from sqlalchemy import update

from app.config import get_settings
from app.db import LlmCall, Request, session_scope
from app.inference import provider
from app.inference.cost import call_cost
from app.inference.errors import ProviderError
from app.inference.keys import KeyRing

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def key_ring() -> KeyRing:
    return KeyRing(list(get_settings().provider_api_keys))


def complete(
    messages: list[dict[str, Any]],
    *,
    tier: str,
    purpose: str,
    request_id: str | None = None,
    step: str | None = None,
    tools: list[dict[str, Any]] | None = None,
    max_tokens: int = 512,
) -> provider.ChatResponse:
    settings = get_settings()
    model = settings.model_for_tier(tier)
    kid, secret = key_ring().next()
    started = time.perf_counter()
    try:
        response = provider.chat(
            model=model,
            messages=messages,
            api_key=secret.get_secret_value(),
            key_id=kid,
            tools=tools,
            max_tokens=max_tokens,
        )
    except ProviderError as exc:
        _record(request_id, step, purpose, model, tier, kid, 0, 0, started, outcome=exc.kind, error=str(exc))
        raise
    _record(
        request_id,
        step,
        purpose,
        response.model,
        tier,
        kid,
        response.usage.prompt_tokens,
        response.usage.completion_tokens,
        started,
        outcome="ok",
    )
    return response


def _record(
    request_id: str | None,
    step: str | None,
    purpose: str,
    model: str,
    tier: str,
    kid: str,
    prompt_tokens: int,
    completion_tokens: int,
    started: float,
    *,
    outcome: str,
    error: str | None = None,
) -> None:
    latency_ms = (time.perf_counter() - started) * 1000
    cost = call_cost(model, prompt_tokens, completion_tokens) if outcome == "ok" else Decimal(0)
    with session_scope() as session:
        session.add(
            LlmCall(
                request_id=request_id,
                step=step,
                purpose=purpose,
                model=model,
                tier=tier,
                key_id=kid,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                cost_usd=cost,
                latency_ms=latency_ms,
                outcome=outcome,
                error=error,
            )
        )
        if request_id is not None and outcome == "ok":
            session.execute(
                update(Request)
                .where(Request.id == request_id)
                .values(
                    prompt_tokens=Request.prompt_tokens + prompt_tokens,
                    completion_tokens=Request.completion_tokens + completion_tokens,
                    cost_usd=Request.cost_usd + cost,
                )
            )
