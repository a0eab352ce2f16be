"""Limits Switchboard sets on its own database connections."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from app.config import reset_settings
from app.state import dispose_engine, session_scope
from workflows.engine.runner import _retry_here


@pytest.fixture
def short_statement_timeout(services: object, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SWITCHBOARD_DATABASE_STATEMENT_TIMEOUT_S", "0.2")
    reset_settings()
    dispose_engine()
    yield
    monkeypatch.undo()
    reset_settings()
    dispose_engine()


def test_a_statement_past_the_timeout_is_cancelled_and_the_step_may_retry(short_statement_timeout: None) -> None:
    # A step stuck on a lock or a slow query fails instead of holding its worker slot for good.
    with pytest.raises(OperationalError) as stuck, session_scope() as session:
        session.execute(text("SELECT pg_sleep(2)"))
    assert "statement timeout" in str(stuck.value)
    assert _retry_here(stuck.value)
    with session_scope() as session:  # the pool is still usable
        assert session.scalar(text("SELECT 1")) == 1
