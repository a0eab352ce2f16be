"""The technical tools' arguments, as the model must send them."""

from __future__ import annotations

from pydantic import BaseModel, Field


class SearchKbArgs(BaseModel):
    query: str = Field(
        min_length=1,
        max_length=2000,
        description="What to look for, in plain words: the symptom, error message or feature name.",
    )
    limit: int = Field(3, ge=1, le=10, description="How many articles to return (1-10).")


class ServiceStatusArgs(BaseModel):
    component: str | None = Field(
        None,
        description=(
            "One component to check (api, dashboard, webhooks, login, billing, email, search); "
            "leave empty for all of them."
        ),
    )
