"""The built-in development secrets and credentials, and the refusal to start with them outside dev mode.

Settings default to what works on a developer's machine: RabbitMQ's guest account, the postgres
superuser without a password, a development signing key and provider key. A production process
still using one of them would sign callbacks with a key anyone can read in this repository, so
every process that uses one refuses to start unless dev mode is on (`--dev`, or
SWITCHBOARD_DEV=true). The message names the settings, never their values.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import unquote, urlsplit

from app.config import Settings, get_settings
from app.errors import ConfigError


def _declared(name: str) -> object:
    return Settings.model_fields[name].default


def _credentials(url: str) -> tuple[str, str]:
    try:
        parts = urlsplit(url)
        return unquote(parts.username or ""), unquote(parts.password or "")
    except ValueError:
        return "", ""


def _broker(s: Settings) -> str | None:
    if _credentials(s.broker_url.get_secret_value()) == ("guest", "guest"):
        return "SWITCHBOARD_BROKER_URL uses RabbitMQ's default guest account"
    return None


def _database(s: Settings) -> str | None:
    url = s.database_url.get_secret_value()
    if url == _declared("database_url").get_secret_value():  # type: ignore[attr-defined]
        return "SWITCHBOARD_DATABASE_URL is the built-in default (the postgres superuser, no password)"
    if _credentials(url) == ("postgres", "postgres"):
        return "SWITCHBOARD_DATABASE_URL uses the example postgres password"
    return None


def _signing_key(s: Settings) -> str | None:
    key = s.signing_key.get_secret_value()
    if not key.strip():
        return "SWITCHBOARD_SIGNING_KEY is empty"
    if key == _declared("signing_key").get_secret_value():  # type: ignore[attr-defined]
        return "SWITCHBOARD_SIGNING_KEY is the built-in development key"
    return None


def _provider_keys(s: Settings) -> str | None:
    keys = [k.get_secret_value() for k in s.provider_api_keys]
    if not keys:
        return "SWITCHBOARD_PROVIDER_API_KEYS is empty"
    if set(keys) & {k.get_secret_value() for k in _declared("provider_api_keys")}:  # type: ignore[attr-defined]
        return "SWITCHBOARD_PROVIDER_API_KEYS holds the built-in development key"
    return None


def _flower_auth(s: Settings) -> str | None:
    if s.flower_basic_auth is None or ":" not in s.flower_basic_auth.get_secret_value():
        return "SWITCHBOARD_FLOWER_BASIC_AUTH is not set (user:password)"
    return None


Check = Callable[[Settings], "str | None"]
# What each kind of process uses; a process is checked only for what it uses.
USES: dict[str, tuple[Check, ...]] = {
    "api": (_broker, _database, _signing_key),
    "callbacks": (_broker, _database, _signing_key),
    "worker": (_broker, _database, _provider_keys),  # the router and every specialist pool
    "beat": (_broker,),
    "flower": (_broker, _flower_auth),
}


class DefaultSecrets(ConfigError):
    """A process outside dev mode found development secrets or credentials; the message names them."""


def problems(role: str, settings: Settings | None = None) -> list[str]:
    """Each setting `role` uses that still holds a development default, as a sentence naming it."""
    settings = settings or get_settings()
    return [found for check in USES[role] if (found := check(settings))]


def refuse_defaults(role: str, *, dev: bool = False, settings: Settings | None = None) -> None:
    """Raise DefaultSecrets unless dev mode is on or `role` uses no development default."""
    settings = settings or get_settings()
    if dev or settings.dev:
        return
    found = problems(role, settings)
    if found:
        raise DefaultSecrets(
            f"{role} refuses to start outside development mode: " + "; ".join(found) + ". "
            'Set them (README, "Running it in production"), or on a local machine pass --dev '
            "or set SWITCHBOARD_DEV=true."
        )
