"""Which buckets a call draws on (key, model group, provider), their names, and learning from headers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from app.config import Settings, reset_settings
from app.inference import limits, targets
from app.inference.headers import ReportedLimits, reported_limits
from app.inference.keys import key_id
from app.inference.limiter import MemoryLimiter
from app.simulator import max_in_window

KEY = "sk-levels-secret-value"


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in ("MODEL_LIMITS", "MODEL_GROUPS", "PROVIDER_TOTAL_RPM", "PROVIDER_TOTAL_TPM",
                 "SECONDARY_PROVIDER_BASE_URL"):
        monkeypatch.delenv(f"SWITCHBOARD_{name}", raising=False)
    monkeypatch.setenv("SWITCHBOARD_PROVIDER_BASE_URL", "http://user:pw@api.example.test:8443/v1")
    monkeypatch.setenv("SWITCHBOARD_PROVIDER_API_KEYS", KEY)
    monkeypatch.setenv("SWITCHBOARD_PROVIDER_RPM", "40")
    monkeypatch.setenv("SWITCHBOARD_PROVIDER_TPM", "0")
    _refresh()
    yield monkeypatch
    monkeypatch.undo()
    _refresh()


def _refresh() -> None:
    reset_settings()
    targets.providers.cache_clear()


def _set(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name, value in values.items():
        monkeypatch.setenv(f"SWITCHBOARD_{name.upper()}", value)
    _refresh()


def test_a_call_draws_on_its_key_and_its_model_group_named_without_the_key(
    settings: pytest.MonkeyPatch,
) -> None:
    _set(settings, model_limits="gpt-4o=500/30000000,mini=5000",
         model_groups="mini=gpt-4o-mini|gpt-4o-mini-2024", provider_total_rpm="100")
    kid = key_id(targets.providers()["primary"].keys[0])
    [call] = limits.candidates(targets.parse_target("gpt-4o-mini-2024"), [kid], 700)
    names = {d.bucket: (d.limit, d.units) for d in call.demands}
    host = "api.example.test:8443"
    assert names == {
        f"key:{host}/{kid}/rpm": (40, 1),
        f"model:{host}/{kid}/mini/rpm": (5000, 1),
        f"model:{host}/{kid}/mini/tpm": (None, 700),  # no model TPM configured: only a learned one applies
        f"provider:{host}/rpm": (100, 1),
    }
    assert KEY not in repr(call) and "pw" not in repr(call)
    assert limits.parse_bucket(f"model:{host}/{kid}/mini/tpm") == {
        "level": "model", "host": host, "key_id": kid, "group": "mini", "kind": "tpm"}
    assert limits.parse_bucket("tenant:acme/rpm") is None


def test_nothing_configured_means_no_reservation(settings: pytest.MonkeyPatch) -> None:
    _set(settings, provider_rpm="0")
    assert limits.candidates(targets.parse_target("gpt-4o"), ["key-1"], 10) == []
    _set(settings, model_limits="gpt-4o=10")
    assert limits.candidates(targets.parse_target("gpt-4o"), ["key-1"], 10) != []


def test_two_tiers_on_one_key_share_the_key_limit(settings: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    limiter = MemoryLimiter(lambda: clock[0])
    starts = []
    for i in range(200):
        model = "sim-large" if i % 2 else "sim-small"
        starts.append(limiter.reserve(limits.candidates(targets.parse_target(model), ["k"], 10), 1e9).start)
    assert max_in_window(sorted(starts), 60.0) <= 40


def test_bad_limit_settings_are_refused_clearly() -> None:
    with pytest.raises(ValidationError, match="model=RPM/TPM"):
        Settings(model_limits="gpt-4o=fast")
    with pytest.raises(ValidationError, match="two model groups"):
        Settings(model_groups="a=m1|m2,b=m2")
    assert Settings(model_limits="gpt-4o=500/30000000, mini=50").model_limits == {
        "gpt-4o": (500, 30_000_000), "mini": (50, 0)}


def test_limit_headers_of_openai_and_anthropic() -> None:
    assert reported_limits({"x-ratelimit-limit-requests": "500", "x-ratelimit-limit-tokens": "30000"}) == \
        ReportedLimits(requests=500, tokens=30000)
    assert reported_limits({"anthropic-ratelimit-requests-limit": "50",
                            "anthropic-ratelimit-tokens-limit": "90000",
                            "anthropic-ratelimit-input-tokens-limit": "80000",
                            "anthropic-ratelimit-output-tokens-limit": "16000"}) == \
        ReportedLimits(requests=50, tokens=80000, input_tokens=80000, output_tokens=16000)
    assert reported_limits({"anthropic-ratelimit-tokens-limit": "90000"}).tokens == 90000
    assert reported_limits({"x-ratelimit-limit-requests": "lots"}) == ReportedLimits()


def test_a_lower_reported_limit_is_learned_once_and_a_looser_one_never(settings: pytest.MonkeyPatch) -> None:
    limiter = MemoryLimiter(lambda: 0.0)
    target = targets.parse_target("sim-large")
    bucket = limits.model_bucket(target.provider.host, "k", "sim-large", "rpm")
    reservation = limiter.reserve(limits.candidates(target, ["k"], 10), 1e9)
    # The key's 40 binds already: a report of 40 or more teaches nothing.
    limits.learn(limiter, target, reservation, {"x-ratelimit-limit-requests": "40"})
    assert limiter.events == []
    limits.learn(limiter, target, reservation, {"x-ratelimit-limit-requests": "12"})
    assert limiter.learned(bucket) == 12 and len(limiter.events) == 1
    again = limiter.reserve(limits.candidates(target, ["k"], 10), 1e9)
    limits.learn(limiter, target, again, {"x-ratelimit-limit-requests": "12"})
    assert len(limiter.events) == 1  # nothing new
    # The provider raised it: the learned limit follows, and the configured 40 still caps it.
    limits.learn(limiter, target, again, {"x-ratelimit-limit-requests": "30"})
    assert limiter.learned(bucket) == 30 and len(limiter.events) == 2
