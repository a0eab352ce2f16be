"""The tenant's status page (`service_status`): each component's state, and the ones not fully
operational."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, select

from specialists.technical.models import ServiceStatus

OPERATIONAL = "operational"


def status_row(row: ServiceStatus | Row[str, str, str, datetime]) -> dict[str, Any]:
    return {
        "component": row.component,
        "status": row.status,
        "message": row.message,
        "updated_at": row.updated_at.isoformat() if row.updated_at else None,
    }


_INCIDENTS = (
    select(ServiceStatus.component, ServiceStatus.status, ServiceStatus.message, ServiceStatus.updated_at)
    .where(ServiceStatus.tenant == bindparam("tenant"), ServiceStatus.status != OPERATIONAL)
    .order_by(ServiceStatus.component)
)


def open_incidents(conn: Connection, tenant: str) -> list[dict[str, Any]]:
    return [status_row(r) for r in conn.execute(_INCIDENTS, {"tenant": tenant})]
