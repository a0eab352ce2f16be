"""The connection settings for running behind PgBouncer (README, "Behind PgBouncer")."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.config import Settings, reset_settings
from app.ops.migrate import migrations_url
from app.state.session import driver_args


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    reset_settings()
    yield monkeypatch
    monkeypatch.undo()
    reset_settings()


def test_behind_pgbouncer_no_statement_is_prepared_on_the_server() -> None:
    assert driver_args(Settings(database_pgbouncer=True)) == {"prepare_threshold": None}
    assert driver_args(Settings(database_pgbouncer=False)) == {}  # psycopg's default: prepared after 5 runs


def test_migrate_connects_to_the_migrations_url_when_one_is_set(env: pytest.MonkeyPatch) -> None:
    env.setenv("SWITCHBOARD_DATABASE_URL", "postgresql+psycopg://app@pgbouncer:6432/switchboard")
    reset_settings()
    assert migrations_url() == "postgresql+psycopg://app@pgbouncer:6432/switchboard"
    env.setenv("SWITCHBOARD_MIGRATIONS_DATABASE_URL", "postgresql+psycopg://owner@postgres:5432/switchboard")
    reset_settings()
    assert migrations_url() == "postgresql+psycopg://owner@postgres:5432/switchboard"
