"""How a request is classified: rules, then the local classifier, then (when unsure) the cheap LLM.

Pure decision logic with no queue I/O, so `switchboard route` can classify without enqueuing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel

from app.config import get_settings
from app.inference import BudgetExhausted, Deferred, ProviderError, complete
from app.orchestration.classifier import classifier
from app.orchestration.registry import fallback_specialist, match_rules, specialists

log = logging.getLogger(__name__)

Method = Literal["rule", "classifier", "llm", "fallback", "conversation"]


class RouteDecision(BaseModel):
    specialist: str
    confidence: float
    method: Method


def _routing_prompt() -> str:
    lines = [f"- {name}: {spec.description}" for name, spec in specialists().items()]
    options = ", ".join([*specialists(), "unknown"])
    return (
        "You route customer support messages to the team that should answer them.\n"
        + "\n".join(lines)
        + f"\nReply with exactly one word from the options, nothing else.\nOptions: {options}"
    )


def _ask_llm(text: str, request_id: str | None, tenant: str | None) -> str | None:
    messages = [{"role": "system", "content": _routing_prompt()}, {"role": "user", "content": text}]
    try:
        response = complete(
            messages,
            tier="cheap",
            purpose="route",
            request_id=request_id,
            max_tokens=5,
            cache=True,
            tenant=tenant,
        )
    except (ProviderError, Deferred, BudgetExhausted) as exc:
        log.warning("routing LLM unavailable, using the fallback specialist: %s", exc)
        return None
    answer = re.sub(r"[^a-z0-9_]", "", (response.content or "").strip().lower())
    return answer if answer in specialists() else None


def decide(
    text: str,
    *,
    current_specialist: str | None = None,
    request_id: str | None = None,
    tenant: str | None = None,
    use_llm: bool = True,
    before_llm: Callable[[], None] | None = None,
) -> RouteDecision:
    """`before_llm` runs before the fallback LLM call, and may raise to prevent it: the router
    confirms there that the tenant the call is charged to owns the request."""
    settings = get_settings()
    following = current_specialist if current_specialist in specialists() else None
    if following is None:
        # A rule decides without the classifier, the router's largest CPU cost.
        ruled = match_rules(text)
        if ruled is not None:
            return RouteDecision(specialist=ruled, confidence=1.0, method="rule")
    prediction = classifier().predict(text)
    if following is not None:
        # A follow-up stays with its specialist unless the classifier is sure the topic changed.
        if prediction.specialist != following and prediction.confidence >= settings.topic_change_confidence:
            return RouteDecision(
                specialist=prediction.specialist, confidence=prediction.confidence, method="classifier"
            )
        return RouteDecision(
            specialist=following,
            confidence=prediction.scores.get(following, 0.0),
            method="conversation",
        )
    if prediction.confidence >= settings.router_confidence_threshold:
        return RouteDecision(
            specialist=prediction.specialist, confidence=prediction.confidence, method="classifier"
        )
    if use_llm:
        if before_llm is not None:
            before_llm()
        answer = _ask_llm(text, request_id, tenant)
        if answer is not None:
            return RouteDecision(
                specialist=answer, confidence=prediction.scores.get(answer, 0.0), method="llm"
            )
    fallback = fallback_specialist()
    return RouteDecision(
        specialist=fallback, confidence=prediction.scores.get(fallback, 0.0), method="fallback"
    )
