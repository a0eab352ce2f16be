"""`switchboard migrate`: create the database if it is missing, then apply Alembic revisions."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from app.config import get_settings

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def ensure_database(url: str) -> bool:
    """Create the target database on first use; True if it was created."""
    target = make_url(url)
    admin = create_engine(
        target.set(database="postgres"), poolclass=NullPool, isolation_level="AUTOCOMMIT"
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
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = url
    return config


def upgrade(url: str | None = None) -> bool:
    url = url or get_settings().database_url.get_secret_value()
    created = ensure_database(url)
    command.upgrade(alembic_config(url), "head")
    return created
