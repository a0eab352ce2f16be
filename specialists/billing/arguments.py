"""The billing tools' arguments, as the model must send them: e-mails and invoice ids normalised
(case, spaces) and checked before any query runs."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field

EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
INVOICE_RE = re.compile(r"\bINV-\d+\b", re.IGNORECASE)
_INVOICE_ID_RE = re.compile(r"^INV-\d+$")


def _normalise_email(value: str) -> str:
    value = value.strip().lower()
    if not EMAIL_RE.fullmatch(value):
        raise ValueError("expected an email address such as jane.doe@example.com")
    return value


def _normalise_invoice_id(value: str) -> str:
    # Models and customers write "inv-1042" or " INV-1042 "; the stored ids are upper case.
    value = value.strip().upper()
    if not _INVOICE_ID_RE.match(value):
        raise ValueError("invoice ids look like INV-1042")
    return value


Email = Annotated[str, AfterValidator(_normalise_email)]
InvoiceId = Annotated[str, AfterValidator(_normalise_invoice_id)]


class EmailArgs(BaseModel):
    email: Email = Field(description="The account's email address, exactly as the customer gave it.")


class ListInvoicesArgs(BaseModel):
    email: Email = Field(description="The account's email address.")
    limit: int = Field(5, ge=1, le=24, description="How many of the most recent invoices to return (1-24).")


class InvoiceArgs(BaseModel):
    invoice_id: InvoiceId = Field(description="The invoice number as printed on the invoice, e.g. INV-1042.")


class IssueRefundArgs(BaseModel):
    invoice_id: InvoiceId = Field(description="The invoice to refund in full, e.g. INV-1042.")
    reason: str = Field(
        min_length=3,
        max_length=500,
        description="Why the refund is being issued, in the customer's terms (kept on the refund record).",
    )
