"""Ingress parts without services: callback URL rules, fair-share demotion, the error mapping, the
OpenAPI document."""

from __future__ import annotations

import pytest

from app.config import get_settings, reset_settings
from app.ingress.client import InvalidRequest, RequestNotFound
from app.ingress.http.errors import api_error
from app.ingress.http.limits import LimitExceeded, tenant_rate
from app.ingress.http.openapi import document
from app.orchestration.callbacks import CallbackRefused, check_url, resolve_checked, sign
from app.orchestration.fairness import demoted


@pytest.fixture
def allow(monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.setenv("SWITCHBOARD_CALLBACK_ALLOWED_HOSTS", "hooks.example.com, 10.0.0.5,127.0.0.1")
    monkeypatch.delenv("SWITCHBOARD_CALLBACK_ALLOW_PRIVATE", raising=False)
    reset_settings()
    yield get_settings()
    reset_settings()


@pytest.mark.parametrize("url", ["https://hooks.example.com/a?b=1", "http://HOOKS.example.com:8443/x"])
def test_allowed_callback_urls(allow: object, url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://hooks.example.com/a", "http"),
        ("file:///etc/passwd", "http"),
        ("https://other.example.com/a", "not allowed"),
        ("https://user:pw@hooks.example.com/a", "credentials"),
        ("http://10.0.0.5/hook", "internal"),  # allow-listed, but private: refused by default
        ("http://127.0.0.1:9/hook", "internal"),
        ("http://hooks.example.com:99999/", "valid URL"),
    ],
)
def test_refused_callback_urls(allow: object, url: str, reason: str) -> None:
    with pytest.raises(CallbackRefused, match=reason):
        check_url(url)


def test_a_name_that_resolves_inside_is_refused_before_the_post(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_CALLBACK_ALLOWED_HOSTS", "localhost")
    monkeypatch.delenv("SWITCHBOARD_CALLBACK_ALLOW_PRIVATE", raising=False)
    reset_settings()
    try:
        assert check_url("http://localhost:9/hook")  # a name: allowed at submit
        with pytest.raises(CallbackRefused, match="resolves to an internal address"):
            resolve_checked("http://localhost:9/hook")  # but it points inside: refused at delivery
    finally:
        reset_settings()


def test_signature_covers_timestamp_and_body() -> None:
    signed = sign("whsec_x", 1700000000, b'{"a":1}')
    assert signed.startswith("t=1700000000,v1=") and len(signed.split("v1=")[1]) == 64
    assert signed != sign("whsec_x", 1700000001, b'{"a":1}') != sign("whsec_x", 1700000000, b'{"a":2}')


def test_private_addresses_need_the_explicit_setting(allow: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_CALLBACK_ALLOW_PRIVATE", "true")
    reset_settings()
    assert check_url("http://127.0.0.1:9/hook")


def test_fair_share_demotes_only_beyond_the_share() -> None:
    assert demoted(5, unfinished=8, share=8, levels=4) == 5
    assert demoted(5, unfinished=9, share=8, levels=4) == 1
    assert demoted(1, unfinished=50, share=8, levels=4) == 0
    assert demoted(9, unfinished=50, share=0, levels=4) == 9  # fair share off


def test_tenant_rate_never_admits_more_than_the_limit_in_a_minute() -> None:
    for rpm in (1, 2, 60, 600, 10_000):
        rate = tenant_rate(rpm)
        assert rate.per_minute + rate.burst <= rpm + 1e-6 and rate.burst >= 1


def test_every_mapped_error_has_a_documented_status_and_retry_after_when_it_should() -> None:
    assert api_error(InvalidRequest(["text: bad"])).status == 422  # type: ignore[union-attr]
    assert api_error(RequestNotFound("x")).status == 404  # type: ignore[union-attr]
    limited = api_error(LimitExceeded("slow down", 2.2))
    assert limited is not None and limited.status == 429 and limited.headers()["Retry-After"] == "3"
    assert api_error(RuntimeError("bug")) is None
    documented = {int(code) for path in document()["paths"].values() for op in path.values()
                  for code in op["responses"]}
    assert {400, 401, 403, 404, 409, 413, 422, 429, 503} <= documented


@pytest.mark.parametrize("text, past", [
    ('{"a": [[1, 2], {"b": [3]}]}', False),  # depth 4
    ('{"a": [[[[1]]]]}', True),  # depth 5
    # Brackets inside strings, escaped quotes among them, are text: a ticket may quote any.
    ('{"text": "[[[[[[[[ {{{{ \\" [[[[[[", "b": "\\\\"}', False),
    ('{"text": "\\\\\\"", "a": [[[[1]]]]}', True),
])
def test_json_nesting_is_measured_outside_strings(text: str, past: bool) -> None:
    import json

    from app.ingress.http.json_body import nested_past

    json.loads(text)  # each case is valid JSON
    assert nested_past(text, 4) is past


def test_every_route_reading_json_refuses_it_nested_too_deep_before_parsing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The check is in the app's JSON provider: a route of its own, added later, has it too."""
    import json

    from flask import request

    from app.ingress.http import create_app

    app = create_app()
    app.add_url_rule("/echo", "echo", lambda: {"got": request.get_json(force=True, silent=True)},
                     methods=["POST"])
    client = app.test_client()
    parsed: list[object] = []
    real_loads = json.loads
    monkeypatch.setattr(json, "loads", lambda s, **kw: parsed.append(s) or real_loads(s, **kw))
    deep = client.post("/echo", data=b"[" * 60_000)
    assert deep.status_code == 400 and deep.json["error"]["code"] == "bad_request"
    assert f"nested deeper than {get_settings().api_max_json_depth} levels" in deep.json["error"]["message"]
    assert not [s for s in parsed if len(s) >= 60_000]  # refused before the parser saw the body
    assert client.post("/echo", data=b'{"text": "hi"}').json == {"got": {"text": "hi"}}
    # Not UTF-8, or not JSON: Flask's "no JSON" (None here), never a 500.
    assert client.post("/echo", data="[1]".encode("utf-16")).json == {"got": None}
    assert client.post("/echo", data=b'{"text": ').json == {"got": None}
