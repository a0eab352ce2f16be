"""Argument types the parser checks flags with (numbers, shares, ranges, budgets) and who acts (`--by`)."""

from __future__ import annotations

import argparse
import getpass
from decimal import Decimal

# A budget flag not given (None is a value: back to the setting's default).
UNCHANGED = object()


def number(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except ArithmeticError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value.is_finite():
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def share(text: str) -> Decimal:
    """0.03 or 3%."""
    return number(text[:-1]) / 100 if text.endswith("%") else number(text)


def headroom(text: str) -> tuple[Decimal, Decimal]:
    """2-3 (a range) or 2.5 (one multiplier)."""
    low, sep, high = text.partition("-")
    if not low:
        raise argparse.ArgumentTypeError(f"headroom must be a multiplier or a range like 2-3, not {text!r}")
    return (number(low), number(high) if sep else number(low))


def positive_hours(text: str) -> float:
    value = float(number(text))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 hours, not {text!r}")
    return value


def budget_usd(text: str) -> Decimal | None:
    """A budget flag's value: dollars (0: no limit) or `none` (back to the setting's default)."""
    if text.strip().lower() in ("none", "default"):
        return None
    return number(text)


def person(args: argparse.Namespace) -> str:
    """Who acts: `--by`, or the OS user."""
    return args.by or getpass.getuser()
