"""API keys, referred to everywhere by an id derived from the key, never by the key itself.

A key the provider answers 401/403 is taken out of rotation for every process (provider_keys).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field

from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert

from app.errors import InferenceError
from app.state import ProviderKey, session_scope

log = logging.getLogger(__name__)


def key_id(secret: SecretStr) -> str:
    return "key-" + hashlib.sha256(secret.get_secret_value().encode()).hexdigest()[:8]


@dataclass
class KeyRing:
    """Spreads calls over a provider's keys in turn (used when no rate limit is configured;
    with limits, the limiter picks the key whose slot comes first)."""

    keys: list[SecretStr]
    _cycle: itertools.cycle[SecretStr] = field(init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("no provider API keys configured: set SWITCHBOARD_PROVIDER_API_KEYS")
        self._cycle = itertools.cycle(self.keys)

    def next(self, exclude: set[str] | None = None) -> tuple[str, SecretStr]:
        with self._lock:
            for _ in range(len(self.keys)):
                secret = next(self._cycle)
                if key_id(secret) not in (exclude or set()):
                    return key_id(secret), secret
        raise NoUsableKey("every API key of this provider is out of rotation")


class NoUsableKey(InferenceError, RuntimeError):
    pass


_disabled_lock = threading.Lock()
_disabled: tuple[float, frozenset[str]] = (0.0, frozenset())


def disabled_key_ids(max_age_s: float = 5.0) -> frozenset[str]:
    """Keys taken out of rotation by any process; re-read at most every `max_age_s`."""
    global _disabled
    with _disabled_lock:
        if time.monotonic() - _disabled[0] <= max_age_s:
            return _disabled[1]
    with session_scope() as session:
        ids = frozenset(
            session.scalars(select(ProviderKey.key_id).where(ProviderKey.disabled_at.isnot(None)))
        )
    with _disabled_lock:
        _disabled = (time.monotonic(), ids)
    return ids


def disable(provider: str, kid: str, reason: str) -> None:
    global _disabled
    with session_scope() as session:
        session.execute(
            insert(ProviderKey)
            .values(key_id=kid, provider=provider, disabled_at=func.now(), reason=reason)
            .on_conflict_do_update(
                index_elements=[ProviderKey.key_id], set_={"disabled_at": func.now(), "reason": reason}
            )
        )
    with _disabled_lock:
        _disabled = (_disabled[0], _disabled[1] | {kid})
    log.error("provider key %s on %s taken out of rotation: %s", kid, provider, reason)
