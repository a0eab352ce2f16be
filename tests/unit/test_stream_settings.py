"""SWITCHBOARD_STREAM_REPLIES: its three modes, and the true/false it took before them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.config import Settings
from workflows.engine import context


@pytest.mark.parametrize(
    ("given", "mode"),
    [("true", "always"), ("false", "never"), ("when_read", "when_read"), ("never", "never"), (True, "always")],
)
def test_the_modes_and_the_old_booleans(given: object, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if isinstance(given, str):
        monkeypatch.setenv("SWITCHBOARD_STREAM_REPLIES", given)
        assert Settings().stream_replies == mode
    else:
        assert Settings(stream_replies=given).stream_replies == mode


def test_an_unknown_mode_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_STREAM_REPLIES", "sometimes")
    with pytest.raises(ValidationError, match="stream_replies"):
        Settings()


def test_when_read_asks_the_broker_and_the_others_do_not(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []
    monkeypatch.setattr(context.live_readers, "has_reader", lambda rid: asked.append(rid) or rid == "read")
    assert context._streams("always", "x") and not context._streams("never", "x")
    assert asked == []
    assert context._streams("when_read", "read") and not context._streams("when_read", "unread")
    assert asked == ["read", "unread"]
