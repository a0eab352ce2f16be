"""Providers, and the chain of provider/model targets a call may use."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from urllib.parse import urlsplit

from pydantic import SecretStr

from app.config import get_settings
from app.inference.keys import key_id


@dataclass(frozen=True)
class Provider:
    name: str
    kind: str  # the API it speaks: an adapter's kind (app/inference/adapters)
    base_url: str
    keys: tuple[SecretStr, ...]
    rpm: int
    tpm: int

    @property
    def host(self) -> str:
        # Buckets and breakers are named by host, so two deployments sharing a database and an
        # account share one budget, and no credential ends up in a name.
        return urlsplit(self.base_url).netloc.rsplit("@", 1)[-1] or self.base_url

    @cached_property
    def _secrets_by_id(self) -> dict[str, SecretStr]:
        # Each id is a SHA-256 of its key: worked out once per provider, not on every call.
        return {key_id(k): k for k in self.keys}

    def key_ids(self) -> list[str]:
        return list(self._secrets_by_id)

    def secret(self, kid: str) -> SecretStr:
        return self._secrets_by_id[kid]


@dataclass(frozen=True)
class Target:
    provider: Provider
    model: str

    @property
    def label(self) -> str:
        return f"{self.provider.host}/{self.model}"


@lru_cache(maxsize=1)
def providers() -> dict[str, Provider]:
    s = get_settings()
    found = {
        "primary": Provider(
            "primary",
            s.provider_kind,
            s.provider_base_url,
            tuple(s.provider_api_keys),
            s.provider_rpm,
            s.provider_tpm,
        )
    }
    if s.secondary_provider_base_url:
        found["secondary"] = Provider(
            "secondary",
            s.secondary_provider_kind,
            s.secondary_provider_base_url,
            tuple(s.secondary_provider_api_keys),
            s.secondary_provider_rpm,
            s.secondary_provider_tpm,
        )
    for provider in found.values():
        if not provider.keys:
            raise ValueError(f"provider {provider.name!r} has no API keys configured")
    return found


def parse_target(spec: str) -> Target:
    """`model` (on the primary provider) or `provider/model`."""
    name, sep, model = spec.partition("/")
    known = providers()
    if sep and name in known:
        return Target(known[name], model)
    if sep and name not in known and name in ("primary", "secondary"):
        raise ValueError(f"fallback {spec!r} names provider {name!r}, which is not configured")
    return Target(known["primary"], spec)


def chain(model: str) -> list[Target]:
    """The model on the primary provider, then its configured fallbacks in order."""
    return [parse_target(model), *(parse_target(m) for m in get_settings().fallback_models.get(model, []))]
