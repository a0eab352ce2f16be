"""Tenants and their API keys.

A key is `sbk_<12 hex>.<43 url-safe chars>`: the part before the dot is its id (safe to log and
show), the rest 256 random bits. Only the SHA-256 of the whole token is stored. A slow password hash
(bcrypt, argon2) protects low-entropy secrets against guessing; a 256-bit random token cannot be
guessed, so one fast hash is as safe and keeps authentication to a single indexed lookup.

A tenant's callback signing secret is HMAC(SWITCHBOARD_SIGNING_KEY, name:salt): the record holds
only the salt, the secret is shown once when the tenant is created.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from app.config import get_settings
from app.errors import IngressError
from app.orchestration.callbacks import signing_secret
from app.state import ApiKey, Tenant, session_scope

TENANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")  # the same rule as requests.tenant
KEY_PREFIX = "sbk_"
Scope = Literal["submit", "read"]


class TenantError(IngressError, ValueError):
    """A tenant or key command that cannot be done as asked; the message says why."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's tenant, its id and what it may do."""

    tenant: str
    key_id: str
    scope: str
    rpm_limit: int
    max_concurrent: int


class TenantView(BaseModel):
    name: str
    rpm_limit: int
    max_concurrent: int
    created_at: datetime
    keys: int
    # USD; None: the setting's default applies (SWITCHBOARD_TENANT_DAILY_BUDGET_USD,
    # SWITCHBOARD_REQUEST_BUDGET_USD); 0: no limit.
    daily_budget_usd: float | None = None
    request_budget_usd: float | None = None


class NewTenant(BaseModel):
    name: str
    rpm_limit: int
    max_concurrent: int
    signing_secret: str  # shown once


class NewKey(BaseModel):
    id: str
    tenant: str
    scope: str
    token: str  # shown once


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", errors="surrogatepass")).hexdigest()


def create_tenant(name: str, *, rpm_limit: int | None = None, max_concurrent: int | None = None) -> NewTenant:
    if not TENANT_NAME.match(name):
        raise TenantError(
            "tenant names are 1-63 characters: lowercase letters, digits, '_' and '-', "
            "starting with a letter or digit"
        )
    settings = get_settings()
    rpm = settings.tenant_default_rpm if rpm_limit is None else rpm_limit
    cap = settings.tenant_default_max_concurrent if max_concurrent is None else max_concurrent
    if rpm < 1 or cap < 1:
        raise TenantError("--rpm and --max-concurrent must be at least 1")
    salt = secrets.token_hex(16)
    try:
        with session_scope() as session:
            session.add(Tenant(name=name, rpm_limit=rpm, max_concurrent=cap, signing_salt=salt))
    except IntegrityError:
        raise TenantError(f"tenant {name!r} exists already") from None
    return NewTenant(name=name, rpm_limit=rpm, max_concurrent=cap, signing_secret=signing_secret(name, salt))


def list_tenants() -> list[TenantView]:
    with session_scope() as session:
        keys = (
            select(func.count())
            .select_from(ApiKey)
            .where(ApiKey.tenant == Tenant.name, ApiKey.revoked_at.is_(None))
            .scalar_subquery()
        )
        rows = session.execute(select(Tenant, keys).order_by(Tenant.name)).all()
    return [_view(t, n) for t, n in rows]


def _view(t: Tenant, keys: int) -> TenantView:
    return TenantView(
        name=t.name,
        rpm_limit=t.rpm_limit,
        max_concurrent=t.max_concurrent,
        created_at=t.created_at,
        keys=keys,
        daily_budget_usd=_usd(t.daily_budget_usd),
        request_budget_usd=_usd(t.request_budget_usd),
    )


def _usd(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


# `update_budgets` leaves a budget passed as UNCHANGED as it is; None clears it (the default applies).
UNCHANGED = Decimal(-1)


def update_budgets(
    name: str, *, daily_usd: Decimal | None = UNCHANGED, request_usd: Decimal | None = UNCHANGED
) -> TenantView:
    """Set or clear (None) a tenant's daily budget and request ceiling, in USD (0: no limit)."""
    given = (("daily_budget_usd", daily_usd), ("request_budget_usd", request_usd))
    values = {column: value for column, value in given if value is not UNCHANGED}
    if not values:
        raise TenantError("nothing to change: give --daily-budget-usd and/or --request-budget-usd")
    for column, value in values.items():
        if value is not None and (not value.is_finite() or value < 0 or value >= Decimal("1e10")):
            raise TenantError(
                f"--{column.removesuffix('_usd').replace('_', '-')}-usd must be 0 (no limit) "
                "or a positive amount of dollars, or 'none' for the default"
            )
    with session_scope() as session:
        tenant = session.get(Tenant, name, with_for_update=True)
        if tenant is None:
            raise TenantError(f"no tenant {name!r}: create it first with `switchboard tenants create {name}`")
        for column, value in values.items():
            setattr(tenant, column, value)
        session.flush()
        keys = (
            session.scalar(
                select(func.count())
                .select_from(ApiKey)
                .where(ApiKey.tenant == name, ApiKey.revoked_at.is_(None))
            )
            or 0
        )
        return _view(tenant, keys)


def tenant_signing_secret(name: str) -> str:
    with session_scope() as session:
        salt = session.scalar(select(Tenant.signing_salt).where(Tenant.name == name))
    if salt is None:
        raise TenantError(f"no tenant {name!r}")
    return signing_secret(name, salt)


def create_key(tenant: str, *, scope: Scope = "submit") -> NewKey:
    key_id = KEY_PREFIX + secrets.token_hex(6)
    token = f"{key_id}.{secrets.token_urlsafe(32)}"
    with session_scope() as session:
        if session.get(Tenant, tenant) is None:
            raise TenantError(
                f"no tenant {tenant!r}: create it first with `switchboard tenants create {tenant}`"
            )
        session.add(ApiKey(id=key_id, tenant=tenant, token_sha256=_sha256(token), scope=scope))
    return NewKey(id=key_id, tenant=tenant, scope=scope, token=token)


def revoke_key(key_id: str) -> bool:
    """True if the key was active and is now revoked; False if it was revoked already."""
    with session_scope() as session:
        if session.get(ApiKey, key_id) is None:
            raise TenantError(f"no key {key_id!r}")
        revoked = session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=func.now())
            .returning(ApiKey.id)
        ).first()
    return revoked is not None


def authenticate(token: str) -> Principal | None:
    """The principal for a bearer token; None for anything unknown, malformed or revoked."""
    key_id, dot, _ = token.partition(".")
    if not dot or not key_id.startswith(KEY_PREFIX) or len(key_id) > 32:
        return None
    with session_scope() as session:
        row = session.execute(
            select(
                ApiKey.token_sha256,
                ApiKey.scope,
                ApiKey.revoked_at,
                Tenant.name,
                Tenant.rpm_limit,
                Tenant.max_concurrent,
            )
            .join(Tenant, Tenant.name == ApiKey.tenant)
            .where(ApiKey.id == key_id)
        ).first()
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.token_sha256, _sha256(token)):
        return None
    return Principal(row.name, key_id, row.scope, row.rpm_limit, row.max_concurrent)
