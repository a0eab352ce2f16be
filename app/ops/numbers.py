"""Decimal for exact planning arithmetic, printed in JSON as a number rather than a string."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import PlainSerializer


def _as_number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


Number = Annotated[Decimal, PlainSerializer(_as_number, return_type=int | float, when_used="json")]
