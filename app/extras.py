"""The engine's optional parts, the extra that installs each, and a clear error when one is missing.

The core install carries what every worker needs (Celery, kombu, SQLAlchemy, psycopg, Alembic,
httpx, pydantic, prometheus-client). The HTTP API, Flower, the local classifier, the demo with its
simulated provider, the deployment-file writers and the Redis limiter backend are extras: a process that needs one checks for
it where it starts, and says which `pip install` brings it, as Dramatiq's optional backends do.
"""

from __future__ import annotations

import importlib.util

from app.errors import ConfigError

# extra -> the import names it provides
EXTRAS: dict[str, tuple[str, ...]] = {
    "api": ("flask", "uvicorn", "a2wsgi"),
    "flower": ("flower",),
    "classifier": ("sklearn",),
    "demo": ("starlette", "uvicorn", "tqdm"),
    "deploy": ("yaml",),
    "redis": ("redis",),
}


class MissingExtra(ConfigError, RuntimeError):
    """An optional part was asked for and its extra is not installed."""


def missing(extra: str) -> list[str]:
    return [name for name in EXTRAS[extra] if importlib.util.find_spec(name) is None]


def message(extra: str, purpose: str, absent: list[str]) -> str:
    return (
        f"{purpose} needs {', '.join(absent)}, which the core install leaves out: "
        f"pip install 'switchboard[{extra}]'"
    )


def require(extra: str, purpose: str) -> None:
    """Raise MissingExtra naming what is missing and the command that installs it."""
    absent = missing(extra)
    if absent:
        raise MissingExtra(message(extra, purpose, absent))


def unavailable(extra: str, purpose: str, exc: ModuleNotFoundError) -> MissingExtra:
    """For a module-level import of an optional dependency: `raise unavailable(...) from exc`."""
    return MissingExtra(message(extra, purpose, [exc.name or str(exc)]))
