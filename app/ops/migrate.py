"""`switchboard migrate`: create the database if it is missing, then apply the engine's Alembic
history and each enabled specialist's own.

The engine's history (migrations/, version table `alembic_version`) holds only the engine's tables.
A specialist that owns tables ships its revisions in a directory (`Specialist.migrations`), run as
a history of its own with its own version table (`alembic_version_<name>`), so enabling, adding or
removing a specialist never touches the engine's history or another specialist's, and a database
with only a team's own specialist enabled has none of the bundled examples' tables.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from app.config import get_settings
from app.orchestration.registry import specialists
from app.orchestration.specialist import Specialist
from app.state.session import driver_args

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
ENGINE = "engine"


def ensure_database(url: str) -> bool:
    """Create the target database on first use; True if it was created."""
    target = make_url(url)
    admin = create_engine(
        target.set(database="postgres"),
        poolclass=NullPool,
        isolation_level="AUTOCOMMIT",
        connect_args=driver_args(),
    )
    try:
        with admin.connect() as conn:
            exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": target.database})
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{target.database}"'))
                return True
    finally:
        admin.dispose()
    return False


def alembic_config(url: str) -> Config:
    """The engine's history."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = url
    return config


def version_table(specialist: str) -> str:
    return f"alembic_version_{specialist}"


def specialist_config(url: str, spec: Specialist) -> Config:
    """One specialist's history: its revisions, its version table, the engine's env.py."""
    assert spec.migrations is not None
    config = alembic_config(url)
    # Only the specialist's directory: the engine's versions/ are not part of this history.
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", str(spec.migrations))
    config.attributes["version_table"] = version_table(spec.name)
    return config


def histories(url: str) -> dict[str, Config]:
    """Every history `migrate` applies, in order: the engine's, then each enabled specialist's."""
    found = {ENGINE: alembic_config(url)}
    for spec in specialists().values():
        if spec.migrations is not None:
            found[spec.name] = specialist_config(url, spec)
    return found


def migrations_url() -> str:
    """Where `migrate` connects: SWITCHBOARD_MIGRATIONS_DATABASE_URL when set (say, straight to
    PostgreSQL past PgBouncer), else the database URL every process uses."""
    settings = get_settings()
    chosen = settings.migrations_database_url or settings.database_url
    return chosen.get_secret_value()


def upgrade(url: str | None = None) -> bool:
    url = url or migrations_url()
    created = ensure_database(url)
    for config in histories(url).values():
        command.upgrade(config, "head")
    if get_settings().database_pgbouncer:
        store_statement_timeout(url)
    return created


def store_statement_timeout(url: str) -> None:
    """Behind PgBouncer no startup option reaches the server, so the engine's statement timeout
    is stored on the database instead: every server connection PgBouncer opens starts with it."""
    timeout_ms = int(get_settings().database_statement_timeout_s * 1000)
    target = make_url(url)
    engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT", connect_args=driver_args())
    try:
        with engine.connect() as conn:
            name = conn.dialect.identifier_preparer.quote(str(target.database))
            conn.execute(text(f"ALTER DATABASE {name} SET statement_timeout = {timeout_ms}"))
    except DBAPIError as exc:  # e.g. the migrating role does not own the database
        log.warning(
            "migrate: could not store statement_timeout on database %s (%s); set it on the role "
            "Switchboard connects as: ALTER ROLE ... SET statement_timeout = %d",
            target.database,
            type(exc.orig).__name__,
            timeout_ms,
        )
    finally:
        engine.dispose()


def current(url: str | None = None) -> dict[str, dict[str, str | None]]:
    """Per history, the revision the database is at and the history's head."""
    url = url or migrations_url()
    engine = create_engine(url, poolclass=NullPool, connect_args=driver_args())
    found: dict[str, dict[str, str | None]] = {}
    try:
        with engine.connect() as conn:
            for name, config in histories(url).items():
                table = config.attributes.get("version_table", "alembic_version")
                at = MigrationContext.configure(conn, opts={"version_table": table}).get_current_revision()
                found[name] = {"revision": at, "head": ScriptDirectory.from_config(config).get_current_head()}
    finally:
        engine.dispose()
    return found
