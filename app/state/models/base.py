"""The one declarative base every engine table derives from, so `Base.metadata` (Alembic's target) holds them all."""

from __future__ import annotations

from typing import Any, ClassVar, cast

from sqlalchemy import Table, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSONB, list[Any]: JSONB}


def table_of(model: type[Base]) -> Table:
    """A mapped class's Table, for Core statements built once: SQLAlchemy types `__table__` as
    the wider FromClause, which has no `.c` typed for inserts and updates."""
    return cast(Table, model.__table__)


def server_now() -> Any:
    """The database's clock as a column default, so every timestamp in the record comes from one clock."""
    return func.now()
