"""OpenTelemetry traces: one trace per request, from submit (or the HTTP API) through the router,
the specialist task, every workflow step and every LLM call.

Configured by the standard OTEL_* variables and nothing else: with OTEL_EXPORTER_OTLP_ENDPOINT (or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or OTEL_TRACES_EXPORTER=otlp|console) set, `setup()` installs
the SDK with a batching OTLP/HTTP exporter; otherwise no provider is installed and every span
here is the API's no-op. A process whose app configured its own tracer provider keeps it.

W3C trace context crosses the Celery hops in the message headers (the Celery instrumentation's
publish and task spans); the request row keeps its `traceparent`, so the reconciler's re-publish
and a replayed dead letter continue the request's original trace. Spans carry ids, models, token
counts, cost and outcomes, never prompt text, answers or API keys.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ParamSpec, Protocol, TypeVar

from celery import signals
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

_tracer = trace.get_tracer("switchboard")
_setup_lock = threading.Lock()
_set_up = False


def wanted() -> bool:
    """Whether the standard variables ask this process to export traces."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return any(os.environ.get(f"OTEL_EXPORTER_OTLP{kind}_ENDPOINT") for kind in ("", "_TRACES"))


def _own_provider() -> bool:
    # The SDK, on demand: it takes longer to import than this module, and most processes never trace.
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415

    return isinstance(trace.get_tracer_provider(), TracerProvider)


def setup(kind: str) -> bool:
    """Once per process (workers, API, a client that submits): install the SDK for service
    `switchboard-<kind>` (OTEL_SERVICE_NAME wins) if the variables ask, and propagate trace context
    through Celery's headers whenever some SDK provider records. Returns whether spans are recorded."""
    global _set_up
    with _setup_lock:
        if _set_up:
            return _own_provider()
        _set_up = True
        if wanted() and not _own_provider():
            _install_sdk(kind)
        if not _own_provider():
            return False
        _instrument_celery()
        return True


def _instrument_celery() -> None:
    """Task spans from the Celery instrumentation (its task_prerun/postrun signals: the parent is
    the `traceparent` in the message's headers); the publishing side is ours. The
    instrumentation's publish span is ended by after_task_publish only when the task is
    registered in the publishing process, and Switchboard sends tasks by name from processes that
    never import them (the client, the API): there it would never end and would stay the
    thread's current span. Failures and retries are ours too: the instrumentation records the
    exception's message, which may quote a provider's answer."""
    # On demand: the instrumentation's import (its dependency checks) is the slowest of them all.
    from opentelemetry.instrumentation.celery import CeleryInstrumentor  # noqa: PLC0415

    instrumentor = CeleryInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()
    for signal, theirs, ours in (
        (signals.before_task_publish, instrumentor._trace_before_publish, _before_publish),
        (signals.after_task_publish, instrumentor._trace_after_publish, _after_publish),
        (signals.task_failure, instrumentor._trace_failure, _task_failed),
        (signals.task_retry, instrumentor._trace_retry, _task_retried),
    ):
        signal.disconnect(theirs)
        signal.connect(ours, weak=False)


def _task_failed(exception: BaseException | None = None, **_: Any) -> None:
    # Sent in the task's thread while its span is current, before task_postrun ends it.
    if exception is not None:
        failed(trace.get_current_span(), exception)


def _task_retried(reason: Any = None, **_: Any) -> None:
    current = trace.get_current_span()
    if current.is_recording():
        current.add_event("retry", {"error.type": type(reason).__name__})


# Publish spans by message id, per thread: before_task_publish and after_task_publish fire in the
# thread that sends. A send that raised never fires the second; its span ends with the next send.
_publishing = threading.local()


def _before_publish(
    sender: str | None = None, headers: dict[str, Any] | None = None, routing_key: str | None = None, **_: Any
) -> None:
    if headers is None:
        return
    spans: dict[str, Span] = getattr(_publishing, "spans", None) or {}
    for stale in spans.values():
        stale.end()
    name = str(sender or headers.get("task") or "task")
    publish = _tracer.start_span(
        f"publish {name}",
        kind=SpanKind.PRODUCER,
        attributes=_clean(
            {
                "messaging.system": "rabbitmq",
                "messaging.operation.type": "publish",
                "messaging.destination.name": routing_key,
                "messaging.message.id": headers.get("id"),
                "celery.task_name": name,
            }
        ),
    )
    _publishing.spans = {str(headers.get("id")): publish}
    # Into the message's headers: the worker's Celery request carries them as attributes, where
    # the instrumentation's task span finds its parent.
    propagate.inject(headers, context=trace.set_span_in_context(publish))


def _after_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    spans: dict[str, Span] = getattr(_publishing, "spans", None) or {}
    published = spans.pop(str((headers or {}).get("id")), None)
    if published is not None:
        published.end()


def _install_sdk(kind: str) -> None:
    # The SDK, on demand: only a process the OTEL_* variables ask to export pays for its import.
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter  # noqa: PLC0415

    # Resource.create reads OTEL_RESOURCE_ATTRIBUTES; an explicit service.name would override
    # OTEL_SERVICE_NAME, so it is given only when the operator named none.
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: f"switchboard-{kind}"}
    provider = TracerProvider(resource=Resource.create(attributes))
    exporter: SpanExporter
    if os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "console":
        exporter = ConsoleSpanExporter()
    else:
        # On demand: the OTLP exporter brings protobuf and requests, which the console one does not need.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: PLC0415

        # Endpoint, headers, timeout and compression from the OTEL_EXPORTER_OTLP_* variables.
        exporter = OTLPSpanExporter()
    # Batched off the task's thread (OTEL_BSP_* tune it); flushed at exit by the provider.
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    log.info("exporting traces as %s", provider.resource.attributes.get(SERVICE_NAME))


class HeaderCarrier(Protocol):
    """Incoming headers as OpenTelemetry's default getter reads them: a dict, or Flask's
    `request.headers` (which is no Mapping)."""

    def get(self, key: str, default: None, /) -> str | None: ...

    def keys(self) -> Iterable[str]: ...


@contextmanager
def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    carrier: HeaderCarrier | None = None,
    **attributes: Any,
) -> Iterator[Span]:
    """A span around a block, current inside it. With `carrier` (incoming HTTP headers) it
    continues the caller's trace from their `traceparent`."""
    parent = propagate.extract(carrier) if carrier is not None else None
    if isinstance(_tracer, trace.ProxyTracer) and isinstance(
        trace.get_tracer_provider(), trace.ProxyTracerProvider
    ):
        # Nothing records (no provider set up): skip the API's no-op machinery, and keep an
        # incoming context current so the request's row still names the caller's trace.
        token = otel_context.attach(parent) if parent is not None else None
        try:
            yield trace.get_current_span()
        finally:
            if token is not None:
                otel_context.detach(token)
        return
    # Exceptions are recorded by class only: a message may quote a provider's answer or the ticket.
    with _tracer.start_as_current_span(
        name,
        context=parent,
        kind=kind,
        attributes=_clean(attributes),
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except BaseException as exc:
            failed(current, exc)
            raise


def failed(current: Span, exc: BaseException) -> None:
    """Mark `current` as failed by `exc`'s class (its message may quote the prompt or an answer)."""
    if current.is_recording():
        current.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        current.set_attribute("error.type", type(exc).__name__)


def submit_span(fn: Callable[P, R]) -> Callable[P, R]:
    """`client.submit` as the root of the request's trace (or a child of the calling app's span);
    a process that submits without having set tracing up is set up as a client here."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        setup("client")
        with span("switchboard.submit", kind=SpanKind.PRODUCER):
            return fn(*args, **kwargs)

    return run


def http_span(name: str, headers: Callable[[], HeaderCarrier]) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """A view in a SERVER span continuing the caller's `traceparent` (read by `headers()` from
    the request being served), with the response's status code."""

    def wrap(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            method, _, route = name.partition(" ")
            with span(
                name,
                kind=SpanKind.SERVER,
                carrier=headers(),
                **{"http.request.method": method, "http.route": route},
            ) as current:
                response = fn(*args, **kwargs)
                current.set_attribute("http.response.status_code", getattr(response, "status_code", 0))
                return response

        return run

    return wrap


def annotate(**attributes: Any) -> None:
    """Set `switchboard.<name>` attributes on the current span (a no-op outside one)."""
    current = trace.get_current_span()
    if current.is_recording():
        current.set_attributes({f"switchboard.{k}": v for k, v in _clean(attributes).items()})


def _clean(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """OpenTelemetry takes str, bool, int, float and sequences of one of them; None is left out."""
    out: dict[str, Any] = {}
    for key, value in attributes.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            out[key] = [str(v) for v in value]
        elif isinstance(value, (str, bool, int, float)):
            out[key] = value
        else:
            out[key] = str(value)
    return out


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the current span, to keep with the request's row; None outside a
    trace."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


def trace_id_of(traceparent: str | None) -> str | None:
    """The 32-hex trace id in a `traceparent` ("00-<trace id>-<span id>-<flags>")."""
    parts = (traceparent or "").split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


@contextmanager
def resumed(traceparent: str | None) -> Iterator[None]:
    """Make the request's recorded trace current, so what is published inside (the reconciler's
    re-publish, a replayed dead letter) continues the request's original trace."""
    if not traceparent:
        yield
        return
    token = otel_context.attach(propagate.extract({"traceparent": traceparent}))
    try:
        yield
    finally:
        otel_context.detach(token)


def continue_from_environment() -> None:
    """Continue the trace named by the TRACEPARENT environment variable (OpenTelemetry's carrier
    for a parent process: a shell script, a CI job) for the rest of this process."""
    traceparent = os.environ.get("TRACEPARENT")
    if traceparent:
        otel_context.attach(
            propagate.extract({"traceparent": traceparent, "tracestate": os.environ.get("TRACESTATE", "")})
        )


def log_ids() -> dict[str, str]:
    """trace_id and span_id of the current span, for a log line; empty outside a span."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return {}
    return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}


# ---- the workflow's steps and the LLM calls ---------------------------------------------------


def step_span(name: str, attempt: int, request_id: str) -> Any:
    """A span for one attempt of one workflow step (attempt counts from 1 within this task)."""
    attributes: dict[str, Any] = {
        "switchboard.step": name,
        "switchboard.step.attempt": attempt,
        "switchboard.request_id": request_id,
    }
    return span(f"step {name}", **attributes)


def llm_call(fn: Callable[P, R]) -> Callable[P, R]:
    """`gateway.complete` in a span; `record_call` fills it in from the record's row."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "switchboard.llm.tier": kwargs.get("tier"),
            "switchboard.llm.purpose": kwargs.get("purpose"),
            "switchboard.step": kwargs.get("step"),
            "switchboard.request_id": kwargs.get("request_id"),
        }
        with span("chat", kind=SpanKind.CLIENT, **attributes):
            return fn(*args, **kwargs)

    return run


def record_call(row: Mapping[str, Any], provider_kind: str) -> None:
    """One attempt of the current LLM call, as the record has it (`call_log` row): the last
    attempt's figures are the span's attributes, each failed attempt an event."""
    current = trace.get_current_span()
    if not current.is_recording():
        return
    if row["outcome"] != "ok":
        current.add_event(
            "attempt failed",
            {
                "switchboard.llm.outcome": str(row["outcome"]),
                "gen_ai.request.model": str(row["model"]),
                "switchboard.llm.retries": int(row["retries"]),
            },
        )
    current.update_name(f"chat {row['model']}")
    cost = row.get("cost_usd")
    current.set_attributes(
        _clean(
            {
                "gen_ai.request.model": row["model"],
                "gen_ai.system": provider_kind,
                "server.address": row["provider"],
                "gen_ai.usage.input_tokens": int(row["prompt_tokens"]),
                "gen_ai.usage.output_tokens": int(row["completion_tokens"]),
                # Unpriced models record no cost (None): left out rather than reported as $0.
                "switchboard.llm.cost_usd": float(cost) if cost is not None else None,
                "switchboard.llm.priced": cost is not None,
                "switchboard.llm.latency_ms": float(row["latency_ms"]),
                "switchboard.llm.limiter_wait_ms": float(row["limiter_wait_ms"]),
                "switchboard.llm.cache_hit": bool(row["cache_hit"]),
                "switchboard.llm.retries": int(row["retries"]),
                "switchboard.llm.outcome": str(row["outcome"]),
            }
        )
    )
