"""API keys, referred to everywhere by an id derived from the key, never by the key itself."""

from __future__ import annotations

import hashlib
import itertools
import threading
from dataclasses import dataclass, field

from pydantic import SecretStr


def key_id(secret: SecretStr) -> str:
    return "key-" + hashlib.sha256(secret.get_secret_value().encode()).hexdigest()[:8]


@dataclass
class KeyRing:
    """Spreads calls over a provider's keys in turn."""

    keys: list[SecretStr]
    _cycle: itertools.cycle[SecretStr] = field(init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("no provider API keys configured: set SWITCHBOARD_PROVIDER_API_KEYS")
        self._cycle = itertools.cycle(self.keys)

    def next(self) -> tuple[str, SecretStr]:
        with self._lock:
            secret = next(self._cycle)
        return key_id(secret), secret
