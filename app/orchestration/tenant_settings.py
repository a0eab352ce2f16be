"""Per-tenant settings that specialists define: their defaults in code, a tenant's overrides in the record.

The engine knows no setting by name. A specialist declares each one it reads
(`Specialist.tenant_settings`, named `<specialist>.<setting>`) with a default and a parser; an
operator overrides it for one tenant with `switchboard settings set TENANT NAME VALUE`, which
refuses names no specialist declares and values its parser refuses. One table keyed by tenant and
name rather than a column on `tenants`: requests submitted through the Python client or Celery
name tenants that the HTTP API's table need not hold, and each override keeps who set it and when.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert

from app.errors import OrchestrationError
from app.orchestration.registry import specialists
from app.orchestration.specialist import TenantSettingDef
from app.state import TenantSetting, autocommit_scope, session_scope


class SettingError(OrchestrationError, ValueError):
    """An unknown setting or a value its specialist refuses; the message says which."""


class SettingView(BaseModel):
    tenant: str
    name: str
    value: Any
    updated_by: str | None
    updated_at: datetime


def declared() -> dict[str, TenantSettingDef]:
    return {d.name: d for spec in specialists().values() for d in spec.tenant_settings}


def _definition(name: str) -> TenantSettingDef:
    found = declared().get(name)
    if found is None:
        known = ", ".join(sorted(declared())) or "none"
        raise SettingError(f"no specialist declares a setting {name!r} (known: {known})")
    return found


def value(tenant: str, definition: TenantSettingDef) -> Any:
    """The tenant's value of a setting, parsed, or its default. An override that no longer parses
    (changed by hand) raises SettingError: callers fail closed rather than guess."""
    with autocommit_scope() as conn:
        stored = conn.scalar(
            select(TenantSetting.value).where(
                TenantSetting.tenant == tenant, TenantSetting.name == definition.name
            )
        )
    if stored is None:
        return definition.parse(definition.default)
    try:
        return definition.parse(stored)
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise SettingError(f"tenant {tenant!r} has an invalid {definition.name}: {exc}") from None


def set_value(tenant: str, name: str, raw: str, *, by: str) -> SettingView:
    """Override a setting for one tenant. `raw` is JSON, or else taken as a string."""
    definition = _definition(name)
    try:
        given = json.loads(raw)
    except ValueError:
        given = raw
    try:
        definition.parse(given)
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise SettingError(f"{name}: {exc}") from None
    with session_scope() as session:
        session.execute(
            insert(TenantSetting)
            .values(tenant=tenant, name=name, value=given, updated_by=by)
            .on_conflict_do_update(
                index_elements=[TenantSetting.tenant, TenantSetting.name],
                set_={"value": given, "updated_by": by, "updated_at": func.now()},
            )
        )
        row = session.get(TenantSetting, (tenant, name))
        assert row is not None
        return SettingView(
            tenant=tenant, name=name, value=row.value, updated_by=row.updated_by, updated_at=row.updated_at
        )


def unset(tenant: str, name: str) -> bool:
    """Drop a tenant's override (the default applies again); False if it had none."""
    _definition(name)
    with session_scope() as session:
        deleted = session.execute(
            delete(TenantSetting).where(TenantSetting.tenant == tenant, TenantSetting.name == name)
        )
    return bool(deleted.rowcount)  # type: ignore[attr-defined]


def overrides(tenant: str | None = None) -> list[SettingView]:
    with session_scope() as session:
        query = select(TenantSetting).order_by(TenantSetting.tenant, TenantSetting.name)
        if tenant is not None:
            query = query.where(TenantSetting.tenant == tenant)
        return [
            SettingView(
                tenant=r.tenant, name=r.name, value=r.value, updated_by=r.updated_by, updated_at=r.updated_at
            )
            for r in session.scalars(query)
        ]
