"""Bearer API keys: the request belongs to the key's tenant, whatever the body says."""

from __future__ import annotations

from flask import request

from app.ingress.http.errors import ApiError
from app.ingress.tenants import Principal, authenticate


def principal_for(authorization: str, *, write: bool = False) -> Principal:
    """The principal of an `Authorization` header's value, or the ApiError (401/403) to answer."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401,
            "send your API key as 'Authorization: Bearer <key>' "
            "(create one with `switchboard keys create TENANT`)",
        )
    principal = authenticate(token.strip())
    if principal is None:
        raise ApiError(401, "this API key is unknown or revoked; ask your operator for a new one")
    if write and principal.scope != "submit":
        raise ApiError(
            403, f"API key {principal.key_id} may only read; submit with a key created without --read-only"
        )
    return principal


def require_key(*, write: bool = False) -> Principal:
    return principal_for(request.headers.get("Authorization", ""), write=write)
