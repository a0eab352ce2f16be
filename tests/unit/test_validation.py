"""Bad input is refused before anything is written, with a message naming the field."""

from __future__ import annotations

import pytest

from app.ingress.client import InvalidRequest, validate


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"text": ""}, "text: Value error, must not be empty"),
        ({"text": "x" * 40000}, "the limit is 32768"),
        ({"text": "é" * 16385}, "is 32770 bytes"),
        ({"text": "ok", "priority": "urgent"}, "priority"),
        ({"text": "ok", "tenant": "UPPER"}, "tenant"),
        ({"text": "ok", "tenant": "a" * 64}, "tenant"),
        ({"text": "ok", "idempotency_key": ""}, "idempotency_key"),
        ({"text": "ok", "metadata": {"k": "v" * 5000}}, "at most 4096 bytes"),
        ({"text": "ok", "metadata": {f"k{i}": i for i in range(33)}}, "metadata"),
        ({"text": "ok", "surprise": 1}, "surprise"),
    ],
)
def test_refused_with_the_field_named(fields: dict[str, object], expected: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate(**fields)
    assert expected in str(caught.value)


def test_size_limit_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.config import reset_settings

    monkeypatch.setenv("SWITCHBOARD_MAX_TEXT_BYTES", "10")
    reset_settings()
    try:
        with pytest.raises(InvalidRequest, match="the limit is 10"):
            validate(text="eleven char")
        assert validate(text="ten chars!").text == "ten chars!"
    finally:
        monkeypatch.undo()
        reset_settings()


def test_valid_request_is_kept_intact() -> None:
    text = "  Ünïcode 🚀 text\nwith lines and 'quotes'; DROP TABLE requests; -- "
    req = validate(text=text, tenant="acme-eu_1", priority="low", metadata={"order": 42, "vip": True})
    assert req.text == text and req.tenant == "acme-eu_1" and req.metadata == {"order": 42, "vip": True}
