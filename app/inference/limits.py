"""Which rate-limit buckets a call draws on, and what the provider's headers teach them.

Providers enforce limits at several levels at once, and a call reserves its slot in each:
- the API key (the account): SWITCHBOARD_PROVIDER_RPM / _TPM, for all models together;
- the model group on that key: SWITCHBOARD_MODEL_LIMITS, several models sharing one budget where
  SWITCHBOARD_MODEL_GROUPS says so (a family, an Azure deployment);
- optionally the whole provider, across keys: SWITCHBOARD_PROVIDER_TOTAL_RPM / _TPM.

Bucket names are readable and never hold a key's value: `key:<host>/<key-id>/rpm`,
`model:<host>/<key-id>/<group>/tpm`, `provider:<host>/rpm`. The model buckets are always part of a
limited call, configured or not, because that is where a limit the provider reports is learned
(OpenAI, Anthropic and Azure report the limits of the model or deployment called).
"""

from __future__ import annotations

from app.config import get_settings
from app.inference.headers import reported_limits
from app.inference.limiter import Candidate, Demand, Limiter, Reservation
from app.inference.targets import Provider, Target

KINDS = ("rpm", "tpm")
LEVELS = ("key", "model", "provider")


def key_bucket(host: str, kid: str, kind: str) -> str:
    return f"key:{host}/{kid}/{kind}"


def model_bucket(host: str, kid: str, group: str, kind: str) -> str:
    return f"model:{host}/{kid}/{group}/{kind}"


def provider_bucket(host: str, kind: str) -> str:
    return f"provider:{host}/{kind}"


def parse_bucket(name: str) -> dict[str, str] | None:
    """A bucket name's parts (level, host, key_id, group, kind); None for other buckets."""
    level, sep, rest = name.partition(":")
    parts = rest.split("/")
    if not sep or level not in LEVELS or parts[-1] not in KINDS:
        return None
    found = {"level": level, "host": parts[0], "kind": parts[-1]}
    if level == "key" and len(parts) == 3:
        return {**found, "key_id": parts[1]}
    if level == "model" and len(parts) >= 4:
        return {**found, "key_id": parts[1], "group": "/".join(parts[2:-1])}
    if level == "provider" and len(parts) == 2:
        return found
    return None


def _spec(provider: Provider, model: str) -> str:
    """How settings name a model: `model` on the primary provider, `name/model` on another."""
    return model if provider.name == "primary" else f"{provider.name}/{model}"


def model_group(provider: Provider, model: str) -> tuple[str, tuple[int, int]]:
    """The model's group (the model itself unless MODEL_GROUPS puts it in one) and its limits."""
    s = get_settings()
    spec = _spec(provider, model)
    group = next((g for g, members in s.model_groups.items() if spec in members), spec)
    prefix = f"{provider.name}/"
    name = group.removeprefix(prefix) if provider.name != "primary" else group
    return name, s.model_limits.get(group, (0, 0))


def provider_cap(provider: Provider) -> tuple[int, int]:
    s = get_settings()
    if provider.name == "secondary":
        return s.secondary_provider_total_rpm, s.secondary_provider_total_tpm
    return s.provider_total_rpm, s.provider_total_tpm


def candidates(target: Target, key_ids: list[str], tokens: int) -> list[Candidate]:
    """For each usable key, every bucket a call of `tokens` would draw on; [] when no limit is
    configured at any level (then nothing is reserved and keys are used in turn)."""
    p, headroom = target.provider, get_settings().provider_headroom
    group, (model_rpm, model_tpm) = model_group(p, target.model)
    total_rpm, total_tpm = provider_cap(p)
    if not any((p.rpm, p.tpm, model_rpm, model_tpm, total_rpm, total_tpm)):
        return []
    found = []
    for kid in key_ids:
        demands = [
            Demand.of(model_bucket(p.host, kid, group, "rpm"), 1, model_rpm, headroom),
            Demand.of(model_bucket(p.host, kid, group, "tpm"), tokens, model_tpm, headroom, tokens=True),
        ]
        if p.rpm:
            demands.append(Demand.of(key_bucket(p.host, kid, "rpm"), 1, p.rpm, headroom))
        if p.tpm:
            demands.append(Demand.of(key_bucket(p.host, kid, "tpm"), tokens, p.tpm, headroom, tokens=True))
        if total_rpm:
            demands.append(Demand.of(provider_bucket(p.host, "rpm"), 1, total_rpm, headroom))
        if total_tpm:
            demands.append(
                Demand.of(provider_bucket(p.host, "tpm"), tokens, total_tpm, headroom, tokens=True)
            )
        found.append(Candidate(kid, tuple(demands)))
    return found


def pause_bucket(target: Target, kid: str) -> str:
    """Where a 429 or an exhausted limit pauses everyone: this key and model group."""
    group, _ = model_group(target.provider, target.model)
    return model_bucket(target.provider.host, kid, group, "rpm")


def learn(limiter: Limiter, target: Target, reservation: Reservation, headers: dict[str, str]) -> None:
    """Adopt, fleet-wide, a limit the provider reports that is lower than every limit the call was
    held to (or that raises a limit learned before). Costs nothing when the headers say nothing new."""
    reported = reported_limits(headers)
    group, configured = model_group(target.provider, target.model)
    for kind, value, limit in (
        ("rpm", reported.requests, configured[0]),
        ("tpm", reported.tokens, configured[1]),
    ):
        bucket = model_bucket(target.provider.host, reservation.key_id, group, kind)
        held = reservation.bucket(bucket)
        if value is None or held is None or value == held.learned:
            continue
        same_kind = (h.limit for h in reservation.held if h.tokens == (kind == "tpm") and h.limit)
        tightest = min(same_kind, default=None)
        lower = tightest is None or value < tightest
        raised = held.learned is not None and value > held.learned
        if lower or raised:
            unit = "requests" if kind == "rpm" else "tokens"
            source = f"{target.provider.host} reported a limit of {value} {unit}/min for {target.model}"
            limiter.learn(bucket, float(value), float(limit) if limit else None, source)
