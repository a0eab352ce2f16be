"""Cost estimation: tokens a day from traffic, dollars a day and a month at a price, and the saving
when part of the traffic runs on the cheap tier.

The worked example it reproduces: 10,000 conversations x 8 turns x 2,000 tokens = 160M tokens a day;
at typical prices of $2.50-$12.50 per million tokens that is $400-$2,000 a day, $12,000-$60,000 a
month. Prices of named models come from the price table in settings (SWITCHBOARD_PRICES), blended
by the share of tokens that are output.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field

from app.config import Settings
from app.errors import OpsError
from app.ops.numbers import Number

MILLION = Decimal(1_000_000)
CENT = Decimal("0.01")
# What a capable model typically costs per million tokens, input and output blended: the range the
# estimate shows when no model or price is named.
TYPICAL_USD_PER_MTOK = (Decimal("2.50"), Decimal("12.50"))
# Support traffic is mostly prompt (system prompt, history, retrieved context) and a short reply;
# --from-record measures the real share.
DEFAULT_OUTPUT_SHARE = Decimal("0.25")


class UnknownModel(OpsError, LookupError):
    pass


class CostInputs(BaseModel):
    conversations: Number = Field(gt=0, description="conversations per day")
    turns: Number = Field(gt=0)
    tokens_per_turn: Number = Field(gt=0)
    output_share: Number = Field(DEFAULT_OUTPUT_SHARE, ge=0, le=1)
    cheap_share: Number = Field(Decimal("0.5"), ge=0, le=1)
    days_per_month: Number = Field(Decimal(30), gt=0)
    source: Literal["flags", "record"] = "flags"


class PriceScenario(BaseModel):
    label: str
    usd_per_mtok: Number
    usd_per_day: Number
    usd_per_month: Number
    # The same traffic with `cheap_share` of its tokens on the cheap tier.
    tiered_usd_per_day: Number
    tiered_usd_per_month: Number
    saving_per_day: Number
    saving_per_month: Number
    saving_percent: Number


class CostEstimate(BaseModel):
    inputs: CostInputs
    tokens_per_conversation: Number
    tokens_per_day: Number
    tokens_per_month: Number
    cheap_model: str
    cheap_usd_per_mtok: Number
    scenarios: list[PriceScenario]


def blended_price(model: str, output_share: Decimal, settings: Settings) -> Decimal:
    if model not in settings.prices:
        known = ", ".join(sorted(settings.prices)) or "none"
        raise UnknownModel(
            f"no price for model {model!r} in SWITCHBOARD_PRICES (priced: {known}); "
            "add it as model=INPUT/OUTPUT or pass --price-per-mtok"
        )
    per_input, per_output = settings.prices[model]
    return per_input * (1 - output_share) + per_output * output_share


def _money(value: Decimal) -> Decimal:
    return value.quantize(CENT)


def _scenario(
    label: str, price: Decimal, inputs: CostInputs, tokens_per_day: Decimal, cheap_price: Decimal
) -> PriceScenario:
    per_day = tokens_per_day / MILLION * price
    tiered_price = inputs.cheap_share * cheap_price + (1 - inputs.cheap_share) * price
    tiered_per_day = tokens_per_day / MILLION * tiered_price
    saving = per_day - tiered_per_day
    return PriceScenario(
        label=label,
        usd_per_mtok=price.quantize(Decimal("0.0001")).normalize(),
        usd_per_day=_money(per_day),
        usd_per_month=_money(per_day * inputs.days_per_month),
        tiered_usd_per_day=_money(tiered_per_day),
        tiered_usd_per_month=_money(tiered_per_day * inputs.days_per_month),
        saving_per_day=_money(saving),
        saving_per_month=_money(saving * inputs.days_per_month),
        saving_percent=(saving / per_day * 100).quantize(Decimal("0.1")) if per_day else Decimal(0),
    )


def estimate(
    inputs: CostInputs,
    settings: Settings,
    *,
    model: str | None = None,
    price_per_mtok: Decimal | None = None,
    recorded_usd_per_mtok: Decimal | None = None,
) -> CostEstimate:
    """Scenarios: the named model or price, else the typical range (plus what the record paid)."""
    tokens_per_day = inputs.conversations * inputs.turns * inputs.tokens_per_turn
    cheap_price = blended_price(settings.cheap_model, inputs.output_share, settings)
    prices: list[tuple[str, Decimal]]
    if price_per_mtok is not None:
        prices = [("given price", price_per_mtok)]
    elif model is not None:
        prices = [(model, blended_price(model, inputs.output_share, settings))]
    else:
        low, high = TYPICAL_USD_PER_MTOK
        prices = [("typical low", low), ("typical high", high)]
        if recorded_usd_per_mtok is not None:
            prices.append(("as recorded", recorded_usd_per_mtok))
    return CostEstimate(
        inputs=inputs,
        tokens_per_conversation=inputs.turns * inputs.tokens_per_turn,
        tokens_per_day=tokens_per_day,
        tokens_per_month=tokens_per_day * inputs.days_per_month,
        cheap_model=settings.cheap_model,
        cheap_usd_per_mtok=cheap_price.normalize(),
        scenarios=[_scenario(label, price, inputs, tokens_per_day, cheap_price) for label, price in prices],
    )


def _n(value: Decimal) -> str:
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def _usd(value: Decimal) -> str:
    """Whole dollars as the seed writes them ($400), otherwise cents ($2.50), or finer for a price ($0.2625)."""
    if value == value.to_integral_value():
        return f"${value:,.0f}"
    if value == value.quantize(CENT):
        return f"${value:,.2f}"
    return f"${value.normalize():,f}"


def _tokens(value: Decimal) -> str:
    return f"{_n(value / MILLION)}M" if value >= MILLION else _n(value)


def explain(e: CostEstimate) -> list[str]:
    i = e.inputs
    lines = [
        f"inputs from {i.source}",
        (
            f"tokens per day:   {_n(i.conversations)} conversations x {_n(i.turns)} turns x "
            f"{_n(i.tokens_per_turn)} tokens = {_tokens(e.tokens_per_day)}"
        ),
    ]
    for s in e.scenarios:
        lines.append(
            f"{s.label + ':':<18}{_usd(s.usd_per_mtok)}/M tokens -> {_usd(s.usd_per_day)}/day, "
            f"{_usd(s.usd_per_month)}/month ({_n(i.days_per_month)} days)"
        )
    if len(e.scenarios) > 1:
        lo, hi = e.scenarios[0], e.scenarios[1]
        lines.append(
            f"range:            {_usd(lo.usd_per_day)}-{_usd(hi.usd_per_day)}/day, "
            f"{_usd(lo.usd_per_month)}-{_usd(hi.usd_per_month)}/month"
        )
    lines.append(
        f"cheap tier:       {_n(i.cheap_share * 100)}% of tokens on {e.cheap_model} "
        f"({_usd(e.cheap_usd_per_mtok)}/M tokens at {_n(i.output_share * 100)}% output)"
    )
    for s in e.scenarios:
        lines.append(
            f"  {s.label + ':':<16}{_usd(s.tiered_usd_per_day)}/day, {_usd(s.tiered_usd_per_month)}/month; "
            f"saves {_usd(s.saving_per_day)}/day, {_usd(s.saving_per_month)}/month ({s.saving_percent}%)"
        )
    return lines
