"""Cost of a call from the price table in settings (USD per million tokens)."""

from __future__ import annotations

from decimal import Decimal

from app.config import get_settings

MILLION = Decimal(1_000_000)


def call_cost(model: str, prompt_tokens: int, completion_tokens: int) -> Decimal:
    prices = get_settings().prices
    if model not in prices:
        # An unpriced model costs nothing in the record rather than failing the call; the cost
        # report lists calls on unpriced models so the table can be completed.
        return Decimal(0)
    per_input, per_output = prices[model]
    cost = (per_input * prompt_tokens + per_output * completion_tokens) / MILLION
    return cost.quantize(Decimal("0.000001"))
