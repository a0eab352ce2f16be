"""Every setting, read from SWITCHBOARD_* environment variables.

Defaults work on a developer machine with RabbitMQ and PostgreSQL on localhost, so the demo and the
tests need no configuration; production overrides them through the environment.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ProviderKind = Literal["openai", "anthropic", "azure"]


def _entries(value: str, sep: str = "/") -> Iterator[tuple[str, str, list[str]]]:
    """`name=a/b,other=c/d` -> (entry, name, [a, b]) for each entry (`sep` splits the values)."""
    for item in filter(None, (p.strip() for p in value.split(","))):
        name, _, rest = item.partition("=")
        yield item, name.strip(), [p.strip() for p in rest.split(sep)]


_TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
_FALSE_WORDS = frozenset({"false", "0", "no", "off"})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_", extra="ignore")

    broker_url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672//")
    database_url: SecretStr = SecretStr("postgresql+psycopg://postgres@127.0.0.1:5432/switchboard")
    # Each process keeps few connections: workers hold one only for a short transaction, never
    # across an LLM call, so a small pool serves a large thread pool. All ten are kept once opened
    # (no overflow): a busy pool of 5 + 5 overflow closed and reopened a connection every five
    # requests, and each reopening forks a server backend and loses its prepared statements.
    database_pool_size: int = 10
    database_max_overflow: int = 0
    # No statement runs longer (0: no limit). Workflow steps run in their task's thread, and a
    # threads pool has no task time limit: with the provider's HTTP timeout, this bounds every wait
    # a step can make, so a stuck lock or query fails the step (and it retries) instead of
    # holding its worker slot for good.
    database_statement_timeout_s: float = Field(default=60.0, ge=0)
    # The database URL points at PgBouncer in transaction mode (README, "Behind PgBouncer"): no
    # server-side prepared statements (PgBouncer before 1.21 cannot carry them from one server
    # connection to the next) and no startup options (it refuses them), so the statement timeout
    # is stored on the database by `switchboard migrate` instead.
    database_pgbouncer: bool = False
    # Where `switchboard migrate` connects when set (e.g. straight to PostgreSQL, past the pooler
    # every other process uses); the database URL when unset.
    migrations_database_url: SecretStr | None = None
    # The role of this process (router, billing, ...), set by the pool commands; shown in logs
    # and in PostgreSQL's pg_stat_activity.
    process_name: str = "client"
    # Development mode (`--dev` on the commands that take it): the built-in development secrets
    # and credentials are accepted. Off, every process refuses to start with them.
    dev: bool = False

    # Which API the provider speaks (app/inference/adapters): `openai` (OpenAI and any
    # OpenAI-compatible /v1 server: vLLM, Ollama, LiteLLM, the simulator), `anthropic` (the
    # Messages API) or `azure` (Azure OpenAI deployments). The base URL is the API's base as its
    # own SDK takes it: an OpenAI-compatible `.../v1`, `https://api.anthropic.com`, or
    # `https://RESOURCE.openai.azure.com`.
    provider_kind: ProviderKind = "openai"
    provider_base_url: str = "http://127.0.0.1:8765/v1"
    provider_api_keys: Annotated[list[SecretStr], NoDecode] = [SecretStr("sk-switchboard-dev")]
    # The key's (account's) limits, for all models together: each API key may make this many
    # requests and tokens a minute whatever the model (0: no limit at that level).
    provider_rpm: int = 0
    provider_tpm: int = 0
    # A cap across every key of the provider together (0: none).
    provider_total_rpm: int = 0
    provider_total_tpm: int = 0
    provider_timeout_s: float = 30.0
    # Limits per model on each key, "model=RPM/TPM,..." (TPM may be left out; 0: none). A name in
    # MODEL_GROUPS stands for every model of the group, which share one budget; `secondary/model`
    # names a model of the secondary provider.
    model_limits: Annotated[dict[str, tuple[int, int]], NoDecode] = {}
    # "group=model|model2,...": models that share one model-level budget (a family, a deployment).
    model_groups: Annotated[dict[str, list[str]], NoDecode] = {}

    # Stay this far below each provider limit: bursts and clock differences eat into the rest.
    provider_headroom: float = 0.1
    # Retries of one call (429, 5xx, timeouts); one budget per call, never stacked with others.
    provider_max_retries: int = 3
    # A call that would wait longer than this for its rate-limit slot defers its task instead of
    # holding a worker thread.
    limiter_max_wait_s: float = 30.0
    # Where the provider rate limiter keeps its buckets: PostgreSQL (the default, nothing more to
    # run) or Redis (the `redis` extra), for a fleet that reserves more than PostgreSQL's hot-row
    # rate on one bucket (bench/limiter.py; app/inference/limiter_redis.py says what changes).
    limiter_backend: Literal["postgres", "redis"] = "postgres"
    limiter_redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    # N >= 2: a process reserves N calls' worth of a bucket set per round trip and hands them out
    # itself (app/inference/limiter_lease.py: what keeps the fleet under the limit, what it costs).
    limiter_lease: int = 1

    # An optional second provider for fallback chains ("secondary/<model>"), of its own kind.
    secondary_provider_kind: ProviderKind = "openai"
    secondary_provider_base_url: str | None = None
    secondary_provider_api_keys: Annotated[list[SecretStr], NoDecode] = []
    secondary_provider_rpm: int = 0
    secondary_provider_tpm: int = 0
    secondary_provider_total_rpm: int = 0
    secondary_provider_total_tpm: int = 0
    # Azure OpenAI: the API version every call names, and "model=deployment,..." for models whose
    # deployment is named otherwise (default: the deployment is named as the model).
    azure_api_version: str = "2024-10-21"
    azure_deployments: Annotated[dict[str, str], NoDecode] = {}
    # Anthropic: the `anthropic-version` header.
    anthropic_version: str = "2023-06-01"
    # Models (shell-style patterns) that take `max_completion_tokens` and refuse `max_tokens`:
    # OpenAI's o-series and gpt-5 family. Other OpenAI-compatible servers know only `max_tokens`.
    max_completion_tokens_models: Annotated[list[str], NoDecode] = ["o1*", "o3*", "o4*", "gpt-5*"]
    # "model=next|next2,...": where a call goes when its model's breaker is open.
    fallback_models: Annotated[dict[str, list[str]], NoDecode] = {}

    breaker_consecutive_failures: int = 5
    breaker_failure_rate: float = 0.5
    breaker_window_s: float = 30.0
    breaker_min_calls: int = 10
    breaker_cooldown_s: float = 15.0

    cache_ttl_s: float = 3600.0

    # Conversation history beyond this many tokens is condensed before a call.
    history_token_budget: int = 2000
    history_policy: Literal["truncate", "summarize"] = "summarize"

    # Rules that move a cheap-tier step to the capable tier for one request.
    upgrade_high_priority: bool = True
    upgrade_text_chars: int = 4000
    upgrade_below_confidence: float = 0.5

    cheap_model: str = "sim-small"
    capable_model: str = "sim-large"
    # USD per million tokens, "model=input/output" pairs.
    prices: Annotated[dict[str, tuple[Decimal, Decimal]], NoDecode] = {
        "sim-small": (Decimal("0.15"), Decimal("0.60")),
        "sim-large": (Decimal("2.50"), Decimal("10.00")),
    }

    # Where specialists come from: module or package paths, comma-separated (app/orchestration/registry.py).
    # Each names a module defining SPECIALIST, or a package whose submodules (or itself) define one.
    specialists: Annotated[list[str], NoDecode] = ["specialists"]

    # Budgets (app/inference/budget.py), in USD; 0 means none. A request's calls stop at its
    # ceiling, a tenant's at its daily budget (UTC days); `switchboard tenants update` overrides
    # both per tenant. Each call reserves its estimated maximum cost before it is made.
    request_budget_usd: Decimal = Field(default=Decimal(0), ge=0)
    tenant_daily_budget_usd: Decimal = Field(default=Decimal(0), ge=0)
    # Past this share of a ceiling, a request's remaining calls use the cheap tier.
    budget_cheap_share: float = Field(default=0.8, gt=0, le=1)

    router_confidence_threshold: float = 0.6
    # A follow-up turn leaves its conversation's specialist only on this much confidence.
    topic_change_confidence: float = 0.85
    # Where undecidable requests go; unset: the specialist that declares `fallback=True`, else the
    # first one found (app/orchestration/registry.py).
    fallback_specialist: str | None = None

    max_text_bytes: int = 32 * 1024
    max_attempts: int = 3
    retry_backoff_s: float = 2.0
    retry_backoff_max_s: float = 60.0
    # Below RabbitMQ's consumer_timeout (30 min by default) so Celery, not the broker, ends a stuck
    # task and the message is dead-lettered instead of the channel being closed.
    task_soft_time_limit_s: int = 600
    task_time_limit_s: int = 660

    router_concurrency: int = 4
    specialist_concurrency: int = 16
    specialist_pool: str = "threads"

    # Scaling (app/ops/scale.py, app/ops/autoscaler.py). `switchboard scale` adds a worker process
    # under the local supervisor once a queue's concurrency passes this many threads per process.
    scale_max_per_process: int = 64
    # RabbitMQ's management API for queue depths; default: the broker's host on port 15672.
    rabbitmq_management_url: str | None = None
    autoscale_min: int = 1
    autoscale_max: int = 64
    # More pending messages (ready + unacked) than this per unit of concurrency adds capacity.
    autoscale_target_pending: float = 10.0
    autoscale_cooldown_s: float = 30.0
    autoscale_interval_s: float = 5.0
    # "queue=MIN/MAX/TARGET/COOLDOWN,...": one queue's policy instead of the defaults above.
    autoscale_policies: Annotated[dict[str, tuple[int, int, float, float]], NoDecode] = {}
    # Graceful degradation (app/orchestration/admission/degradation.py), by requests waiting for a queue: past the first
    # threshold its pending work runs on the cheap model tier, past the second new `low` priority
    # submissions are refused. "queue=CHEAP/REFUSE,..."; `*` sets the default for every queue.
    degrade_thresholds: Annotated[dict[str, tuple[int, int]], NoDecode] = {"*": (500, 2000)}

    flower_port: int = 5555
    # Loopback by default: Flower can retry and revoke tasks, so exposing it is a deliberate choice.
    flower_address: str = "127.0.0.1"
    flower_basic_auth: SecretStr | None = None
    simulator_port: int = 8765

    # Prometheus: the pool commands give each process kind its own port, derived from its queue's
    # name (app/orchestration/metrics_ports.py), so adding a specialist moves no other pool's port
    # (SWITCHBOARD_<QUEUE>_METRICS_PORT overrides one; 0 turns metrics off). `metrics_port` is
    # this process's port.
    metrics_base_port: int = 9560
    metrics_port: int = 0
    # Loopback unless widened: /metrics shows what the engine does and for whom. The generated
    # Kubernetes manifests set 0.0.0.0 so Prometheus can scrape the pods.
    metrics_address: str = "127.0.0.1"
    # A `tenant` label on the per-request usage histograms: one set of series per tenant, which
    # names every tenant to whoever reads /metrics and grows with them. Off unless asked for.
    metrics_tenant_labels: bool = False
    # Worker log lines as JSON objects carrying the request id, so one request can be followed
    # across the router and specialist processes.
    log_json: bool = True

    # The HTTP ingress (uvicorn): where it listens, its processes and the threads per process that
    # run requests (connections themselves live on the event loop and take no thread).
    api_address: str = "127.0.0.1"
    api_port: int = 8080
    api_workers: int = 2
    # Threads per process; each holds at most two database connections during a submit.
    api_threads: int = 4
    api_max_body_bytes: int = 64 * 1024
    # JSON bodies nested deeper are refused (400) before they are parsed; Python's parser recurses
    # once per level, and far below its recursion limit.
    api_max_json_depth: int = Field(default=32, ge=1, le=500)
    # Seconds an idle kept-alive connection stays open.
    api_keepalive_s: int = Field(default=5, ge=1)
    # GET /v1/requests/{id}/stream: a keep-alive comment this often (proxies close idle
    # connections), the record read at least this often, and at most this many streams open
    # per API process (each is a socket and a RabbitMQ queue, never a thread).
    stream_keepalive_s: float = Field(default=15.0, gt=0)
    stream_poll_s: float = Field(default=2.0, gt=0)
    stream_max_open: int = Field(default=1000, ge=1)
    # A streamed answer's socket is read at most this often once its text has begun (the pieces
    # that arrived meanwhile are handled as one; see provider._stream); 0 reads every chunk.
    # 0.3 s: three updates a second still reads as text being written, and each read and its
    # live message cost the worker some 0.15 ms of CPU (0.2 s cost 0.5 ms more per draft).
    stream_read_interval_s: float = Field(default=0.3, ge=0, le=1)
    # Steps that ask to stream their answer: `always` do (workers); `when_read` do only while a
    # reader is bound to the request's live messages (one confirmed publish asks RabbitMQ, see
    # app/orchestration/live_readers.py), so traffic nobody watches (e-mail tickets, callbacks)
    # is not streamed; `never` calls the provider without streaming, and readers get status and
    # done only. true and false are always and never.
    stream_replies: Literal["always", "when_read", "never"] = "always"
    # Limits a new tenant gets unless `tenants create` says otherwise.
    tenant_default_rpm: int = 600
    tenant_default_max_concurrent: int = 100
    # A tenant's first N unfinished requests per specialist keep their priority; the rest are
    # dispatched FAIR_SHARE_DEMOTION levels lower, so another tenant's requests overtake a burst.
    # 0 turns fair share off.
    fair_share: int = 8
    fair_share_demotion: int = 4
    # Derives each tenant's callback signing secret (HMAC) from its salt; set it in production.
    signing_key: SecretStr = SecretStr("switchboard-dev-signing-key")
    # Callbacks go only to these hosts (exact names), and never to loopback, private or link-local
    # addresses unless CALLBACK_ALLOW_PRIVATE is set.
    callback_allowed_hosts: Annotated[list[str], NoDecode] = []
    callback_allow_private: bool = False
    callback_max_attempts: int = 8
    callbacks_concurrency: int = 4
    callback_timeout_s: float = 10.0
    # A tool call waiting for a person's approval longer than this is escalated to the human queue
    # by the reconciler's sweep.
    approval_deadline_s: float = Field(default=86400.0, gt=0)
    # How long a request may wait in the human queue before the inbox shows it as past its SLA.
    human_sla_s: float = Field(default=3600.0, gt=0)
    # Failures retries cannot fix go to the human queue instead of the dead-letter queue. Off by
    # default: dead letters are replayable, and an operator queue needs people watching it.
    handoff_on_failure: bool = False

    @field_validator("provider_api_keys", "secondary_provider_api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [SecretStr(k.strip()) for k in value.split(",") if k.strip()]
        return value

    @field_validator("stream_replies", mode="before")
    @classmethod
    def _stream_replies(cls, value: object) -> object:
        # It was a boolean before it had a third mode: those values keep their meaning.
        word = value.strip().lower() if isinstance(value, str) else None
        if value is True or word in _TRUE_WORDS:
            return "always"
        if value is False or word in _FALSE_WORDS:
            return "never"
        return value

    @field_validator("specialists", mode="before")
    @classmethod
    def _split_specialists(cls, value: object) -> object:
        if isinstance(value, str):
            value = [p.strip() for p in value.split(",") if p.strip()]
        if not value:
            raise ValueError("name at least one module or package, e.g. SWITCHBOARD_SPECIALISTS=specialists")
        return value

    @field_validator("azure_deployments", mode="before")
    @classmethod
    def _parse_deployments(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        table: dict[str, str] = {}
        for item, model, parts in _entries(value, sep="="):
            if not (model and len(parts) == 1 and parts[0]):
                raise ValueError(f"deployment entry {item!r} must look like model=deployment")
            table[model] = parts[0]
        return table

    @field_validator("callback_allowed_hosts", "max_completion_tokens_models", mode="before")
    @classmethod
    def _split_names(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, str):
            names = [h.strip() for h in value.split(",") if h.strip()]
            # Host names are case-insensitive; model names are matched as written.
            return [h.lower() for h in names] if info.field_name == "callback_allowed_hosts" else names
        return value

    @field_validator("prices", mode="before")
    @classmethod
    def _parse_prices(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        table: dict[str, tuple[Decimal, Decimal]] = {}
        for item, model, parts in _entries(value):
            if not (model and len(parts) == 2 and all(parts)):
                raise ValueError(
                    f"price entry {item!r} must look like model=INPUT/OUTPUT (USD per million tokens)"
                )
            table[model] = (Decimal(parts[0]), Decimal(parts[1]))
        return table

    @field_validator("fallback_models", mode="before")
    @classmethod
    def _parse_fallbacks(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        chains: dict[str, list[str]] = {}
        for item, model, nexts in _entries(value, sep="|"):
            if not (model and nexts != [""]):
                raise ValueError(f"fallback entry {item!r} must look like model=next|next2")
            chains[model] = [m for m in nexts if m]
        return chains

    @field_validator("model_limits", mode="before")
    @classmethod
    def _parse_model_limits(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        table: dict[str, tuple[int, int]] = {}
        for item, model, parts in _entries(value):
            shape = f"model limit {item!r} must look like model=RPM/TPM, whole numbers of 0 or more"
            try:
                rpm, tpm = int(parts[0] or 0), int(parts[1]) if len(parts) > 1 and parts[1] else 0
            except ValueError:
                raise ValueError(shape) from None
            if not model or len(parts) > 2 or rpm < 0 or tpm < 0:
                raise ValueError(shape)
            table[model] = (rpm, tpm)
        return table

    @field_validator("model_groups", mode="before")
    @classmethod
    def _parse_model_groups(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        groups: dict[str, list[str]] = {}
        owner: dict[str, str] = {}
        for item, group, members in _entries(value, sep="|"):
            members = [m for m in members if m]
            if not (group and members):
                raise ValueError(f"model group {item!r} must look like group=model|model2")
            for m in members:
                if owner.setdefault(m, group) != group:
                    raise ValueError(f"model {m!r} is in two model groups ({owner[m]!r} and {group!r})")
            groups[group] = members
        return groups

    @field_validator("autoscale_policies", mode="before")
    @classmethod
    def _parse_policies(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        table: dict[str, tuple[int, int, float, float]] = {}
        for item, queue, parts in _entries(value):
            try:
                low, high, target, cooldown = int(parts[0]), int(parts[1]), float(parts[2]), float(parts[3])
            except (IndexError, ValueError):
                raise ValueError(
                    f"autoscale policy {item!r} must look like queue=MIN/MAX/TARGET/COOLDOWN"
                ) from None
            if len(parts) != 4 or not queue or not 0 <= low <= high or target <= 0 or cooldown < 0:
                raise ValueError(
                    f"autoscale policy {item!r}: need 0 <= MIN <= MAX, TARGET > 0, COOLDOWN >= 0"
                )
            table[queue] = (low, high, target, cooldown)
        return table

    @field_validator("degrade_thresholds", mode="before")
    @classmethod
    def _parse_thresholds(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        table: dict[str, tuple[int, int]] = {}
        for item, queue, parts in _entries(value):
            try:
                cheap, refuse = (int(p) for p in parts)
            except ValueError:
                raise ValueError(
                    f"threshold {item!r} must look like queue=CHEAP/REFUSE (request counts)"
                ) from None
            if not queue or not 0 < cheap <= refuse:
                raise ValueError(f"threshold {item!r}: need 0 < CHEAP <= REFUSE")
            table[queue] = (cheap, refuse)
        return table

    @field_validator("max_attempts")
    @classmethod
    def _at_least_one(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be at least 1")
        return value

    def model_for_tier(self, tier: str) -> str:
        tiers = {"cheap": self.cheap_model, "capable": self.capable_model}
        try:
            return tiers[tier]
        except KeyError:
            raise ValueError(
                f"unknown model tier {tier!r}; known tiers: {', '.join(sorted(tiers))}"
            ) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget cached settings; tests and the demo change the environment and call this."""
    get_settings.cache_clear()
