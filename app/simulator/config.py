"""The simulated provider's configuration: start-up settings (`SWITCHBOARD_SIM_*`), the live fault switches
`/admin/faults` and `/admin/prompts` take, and the part of it that may change while running."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.simulator.ratelimit import WINDOW_S, Level


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def parse_model_limits(value: Any) -> Any:
    """`model=RPM/TPM,...` (TPM may be left out) -> {model: (rpm, tpm)}; other values unchanged."""
    if not isinstance(value, str):
        return value
    table: dict[str, tuple[int, int]] = {}
    for item in filter(None, (p.strip() for p in value.split(","))):
        model, _, rest = item.partition("=")
        parts = rest.split("/")
        try:
            rpm, tpm = int(parts[0] or 0), int(parts[1]) if len(parts) > 1 and parts[1] else 0
        except ValueError:
            raise ValueError(f"model limit {item!r} must look like model=RPM/TPM") from None
        if not model.strip() or len(parts) > 2:
            raise ValueError(f"model limit {item!r} must look like model=RPM/TPM")
        table[model.strip()] = (rpm, tpm)
    return table


ModelLimits = Annotated[dict[str, tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]]], NoDecode]


class SimulatorConfig(BaseSettings):
    """Start-up configuration; every field can come from ``SWITCHBOARD_SIM_<NAME>``."""

    # NoDecode: list env vars are comma separated, not JSON, so shells stay simple.
    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_SIM_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535)
    models: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["sim-small", "sim-large"])
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Per key and model: every model gets its own budget (OpenAI's per-model limits).
    rpm: int = Field(default=0, ge=0)
    tpm: int = Field(default=0, ge=0)
    # Per key, across all models together (an account or key limit); 0: none.
    account_rpm: int = Field(default=0, ge=0)
    account_tpm: int = Field(default=0, ge=0)
    # Per key and model, for the models named ("model=RPM/TPM,..."), instead of rpm/tpm.
    model_limits: ModelLimits = Field(default_factory=dict)
    latency_ms: float = Field(default=0.0, ge=0)
    latency_jitter_ms: float = Field(default=0.0, ge=0)
    error_rate: float = Field(default=0.0, ge=0, le=1)
    timeout_rate: float = Field(default=0.0, ge=0, le=1)
    timeout_sleep_s: float = Field(default=120.0, ge=0)
    slow_marker_s: float = Field(default=5.0, ge=0)
    # Test aid (tests/integration/test_gateway.py): length of the RPM/TPM sliding window. Real
    # providers count per minute; a short window gives short retry-after values, so "wait as
    # told, then succeed" can be tested in seconds.
    rate_window_s: float = Field(default=WINDOW_S, gt=0)
    # Test aid (tests/integration/test_authority.py): keep every prompt received, for
    # `GET /admin/prompts`, so a test can check what the engine sent a provider. Also switched on
    # and off live with `POST /admin/prompts {"record": true}`.
    record_prompts: bool = False
    seed: int = 7

    @field_validator("models", "api_keys", mode="before")
    @classmethod
    def _parse_csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("model_limits", mode="before")
    @classmethod
    def _parse_model_limits(cls, value: Any) -> Any:
        return parse_model_limits(value)


class FaultUpdate(BaseModel):
    """Body of ``POST /admin/faults``; only the fields sent are changed."""

    # Forbid unknown fields: a typo must not silently leave a fault switched off.
    model_config = ConfigDict(extra="forbid")

    error_rate: float | None = Field(default=None, ge=0, le=1)
    timeout_rate: float | None = Field(default=None, ge=0, le=1)
    timeout_sleep_s: float | None = Field(default=None, ge=0)
    outage_seconds: float | None = Field(default=None, ge=0)
    latency_ms: float | None = Field(default=None, ge=0)
    latency_jitter_ms: float | None = Field(default=None, ge=0)
    rpm: int | None = Field(default=None, ge=0)
    tpm: int | None = Field(default=None, ge=0)
    account_rpm: int | None = Field(default=None, ge=0)
    account_tpm: int | None = Field(default=None, ge=0)
    # Replaces the whole table: {"model": [rpm, tpm]} or "model=RPM/TPM,...".
    model_limits: ModelLimits | None = None

    @field_validator("model_limits", mode="before")
    @classmethod
    def _parse_model_limits(cls, value: Any) -> Any:
        return parse_model_limits(value)


class PromptRecording(BaseModel):
    """Body of ``POST /admin/prompts``: start recording prompts afresh (true) or stop (false)."""

    model_config = ConfigDict(extra="forbid")

    record: bool


class RuntimeSettings(BaseModel):
    """The part of the configuration that ``/admin/faults`` may change live."""

    model_config = ConfigDict(validate_assignment=True)

    error_rate: float
    timeout_rate: float
    timeout_sleep_s: float
    latency_ms: float
    latency_jitter_ms: float
    rpm: int
    tpm: int
    account_rpm: int
    account_tpm: int
    model_limits: dict[str, tuple[int, int]]
    slow_marker_s: float

    def levels(self, key_id: str, model: str) -> list[Level]:
        """Every limit a request of this key and model must fit, account level first."""
        rpm, tpm = self.model_limits.get(model, (self.rpm, self.tpm))
        return [
            Level("account", (key_id, "*"), self.account_rpm, self.account_tpm),
            Level("model", (key_id, model), rpm, tpm),
        ]
