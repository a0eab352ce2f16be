"""Cost of a call from the price table in settings (USD per million tokens).

A model missing from the table is unpriced: its calls' cost is None (NULL in the record), never
$0, so no sum counts them as free; processes warn about such models when they start.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from app.config import Settings, get_settings

MILLION = Decimal(1_000_000)
log = logging.getLogger(__name__)


def call_cost(model: str, prompt_tokens: int, completion_tokens: int) -> Decimal | None:
    """The call's cost, or None when tokens were used on a model with no price."""
    prices = get_settings().prices
    if model not in prices:
        return Decimal(0) if prompt_tokens + completion_tokens == 0 else None
    per_input, per_output = prices[model]
    cost = (per_input * prompt_tokens + per_output * completion_tokens) / MILLION
    return cost.quantize(Decimal("0.000001"))


def configured_models(settings: Settings) -> list[str]:
    """Every model a call may use: the tiers' models and their fallbacks."""
    models = [settings.cheap_model, settings.capable_model]
    for fallbacks in settings.fallback_models.values():
        for spec in fallbacks:
            name, sep, model = spec.partition("/")
            models.append(model if sep and name in ("primary", "secondary") else spec)
    return list(dict.fromkeys(models))


def unpriced_models(settings: Settings | None = None) -> list[str]:
    settings = settings or get_settings()
    return [m for m in configured_models(settings) if m not in settings.prices]


def warn_unpriced(settings: Settings | None = None) -> list[str]:
    """Log one warning per configured model without a price (at worker and API start)."""
    missing = unpriced_models(settings)
    for model in missing:
        log.warning(
            "model %r has no price in SWITCHBOARD_PRICES: its calls are recorded as unpriced (cost unknown, "
            "not $0) and reports list them; add %s=INPUT/OUTPUT (USD per million tokens)",
            model,
            model,
        )
    return missing
