"""The one declarative base every engine table derives from, so `Base.metadata` (Alembic's target) holds them all."""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSONB, list[Any]: JSONB}


def server_now() -> Any:
    """The database's clock as a column default, so every timestamp in the record comes from one clock."""
    return func.now()
