"""OpenTelemetry traces across processes: real router and billing worker processes, the CLI as the
client and the HTTP API process, all exporting with OTLP/HTTP (only the standard OTEL_*
variables set) to a receiver in this test that decodes what a collector would get. One request is
one trace: it continues the caller's traceparent (the CLI's TRACEPARENT, the API's header), and
the spans link submit -> publish -> route -> publish -> specialist task -> steps -> LLM calls.
No exported span holds the ticket's text, the system prompt or a provider key."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from app.config import get_settings
from app.ingress import client
from app.observability import tracing
from app.ops.pools import api_spec, pool_specs
from app.ops.supervisor import Supervisor, wait_for_workers, wait_http
from app.orchestration.registry import get_specialist
from app.state import session_scope
from tests import conftest as root
from tests.integration.conftest import ROOT, new_tenant, run_cli, wait_until
from tests.support.otlp_receiver import OtlpReceiver, ReceivedSpan

KEYS = ("sk-trace-secret-4f1d9a7c", "sk-trace-secret-b83e20aa")
STEPS = ("understand", "retrieve", "draft", "deliver")
SERVER, PRODUCER, CONSUMER, CLIENT = 2, 4, 5, 3  # OTLP's Span.SpanKind values


@dataclass
class Traced:
    receiver: OtlpReceiver
    otel_env: dict[str, str]
    api: str
    logs: Path


@contextmanager
def _traced_stack(logs: Path, pool: str) -> Iterator[Traced]:
    """Router and billing workers (Celery's `pool`) and an API process of their own (a private
    vhost), each exporting its spans to a receiver of their own."""
    from app.config import reset_settings
    from app.orchestration.celery_app import use_broker
    from tests.support.services import scratch_vhost

    assert root.SERVICES is not None
    if root.SERVICES.origin != "local":
        pytest.skip("needs rabbitmqctl on the local broker to make a vhost")
    receiver = OtlpReceiver(root._free_port()).start()
    otel_env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    previous = os.environ["SWITCHBOARD_BROKER_URL"]
    vhost = f"{root.SERVICES.vhost}-tr{secrets.token_hex(3)}"
    with scratch_vhost("amqp://guest:guest@127.0.0.1:5672//", vhost) as url:
        env = {**otel_env, "SWITCHBOARD_BROKER_URL": url, "SWITCHBOARD_PROVIDER_API_KEYS": ",".join(KEYS)}
        os.environ["SWITCHBOARD_BROKER_URL"] = url
        reset_settings()
        use_broker(url)
        try:
            with Supervisor(logs, restart=False) as sup:
                settings = get_settings().model_copy(update={"specialist_pool": pool})
                for spec in pool_specs(settings, queues=["router", "billing"]):
                    sup.start(replace(spec, env={**spec.env, **env}))
                port = root._free_port()
                spec = api_spec(get_settings().model_copy(update={"api_port": port, "api_workers": 1}))
                sup.start(replace(spec, env={**spec.env, **env, "SWITCHBOARD_API_PORT": str(port)}))
                api = f"http://127.0.0.1:{port}"
                wait_for_workers(["router", "billing"], timeout=120)
                wait_http(f"{api}/healthz", 60)
                yield Traced(receiver, {**otel_env, "SWITCHBOARD_BROKER_URL": url}, api, logs)
        finally:
            os.environ["SWITCHBOARD_BROKER_URL"] = previous
            reset_settings()
            use_broker(previous)
            receiver.stop()


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory, simulator: str) -> Iterator[Traced]:
    """The pools as the Procfile runs them: Celery's threads pool, one process each."""
    with _traced_stack(tmp_path_factory.mktemp("traced-logs"), "threads") as stack:
        yield stack


def _ticket(marker: str) -> tuple[str, str]:
    """A refund ticket from an invoice's own customer (the billing rules route it), and that
    customer; `marker` makes its text findable in anything exported."""
    with session_scope() as session:
        invoice, customer = session.execute(text(
            "SELECT id, customer FROM invoices WHERE status = 'paid' ORDER BY id LIMIT 1")).one()
    return f"I was charged twice for invoice {invoice}, please refund it ({marker}).", str(customer)


def _wait_for_trace(receiver: OtlpReceiver, trace_id: str) -> list[ReceivedSpan]:
    """Every span of the request's trace, once the last ones (the task's steps and the task
    itself, ended after its last step) have arrived."""

    def complete() -> bool:
        names = [s.name for s in receiver.trace(trace_id)]
        return "run/switchboard.specialist.billing" in names and all(f"step {s}" in names for s in STEPS)

    wait_until(complete, 60, f"the spans of trace {trace_id}")
    return receiver.trace(trace_id)


def _one(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, (name, [s.name for s in spans])
    return found[0]


def _check_pipeline(spans: list[ReceivedSpan], publish_route: ReceivedSpan, request_id: str) -> None:
    """From the publish of `switchboard.route` on: router, specialist task, steps, LLM calls."""
    route = _one(spans, "run/switchboard.route")
    assert (route.service, route.kind) == ("switchboard-router", CONSUMER)
    assert route.parent_id == publish_route.span_id
    assert route.attributes["switchboard.request_id"] == request_id
    assert route.attributes["switchboard.specialist"] == "billing"
    assert route.attributes["switchboard.method"] == "rule"
    assert route.attributes["switchboard.confidence"] > 0

    dispatch = _one(spans, "publish switchboard.specialist.billing")
    assert (dispatch.service, dispatch.kind) == ("switchboard-router", PRODUCER)
    assert dispatch.parent_id == route.span_id
    task = _one(spans, "run/switchboard.specialist.billing")
    assert (task.service, task.kind, task.parent_id) == ("switchboard-billing", CONSUMER, dispatch.span_id)
    assert task.attributes["switchboard.attempt"] == 1
    assert task.attributes["switchboard.resumed"] is False

    steps = {name: _one(spans, f"step {name}") for name in STEPS}
    for name, step in steps.items():
        assert (step.service, step.parent_id) == ("switchboard-billing", task.span_id), name
        assert step.attributes["switchboard.step"] == name
        assert step.attributes["switchboard.step.attempt"] == 1

    calls = [s for s in spans if s.name.startswith("chat ")]
    by_step = {name: [c for c in calls if c.parent_id == step.span_id] for name, step in steps.items()}
    # understand: one call; draft: the agent loop's (a tool call, then the answer); the others
    # none, and the router none (its rules placed the ticket).
    assert len(by_step["understand"]) == 1 and len(by_step["draft"]) >= 1, [s.name for s in spans]
    assert len(calls) == len(by_step["understand"]) + len(by_step["draft"])
    for call in calls:
        attrs = call.attributes
        assert call.kind == CLIENT
        assert call.name == f"chat {attrs['gen_ai.request.model']}"
        assert attrs["gen_ai.system"] == "openai"
        assert attrs["gen_ai.usage.input_tokens"] > 0 and attrs["gen_ai.usage.output_tokens"] > 0
        assert attrs["switchboard.llm.cost_usd"] > 0 and attrs["switchboard.llm.priced"] is True
        assert attrs["switchboard.llm.limiter_wait_ms"] >= 0
        assert attrs["switchboard.llm.cache_hit"] is False
        assert attrs["switchboard.llm.retries"] == 0
        assert attrs["switchboard.llm.outcome"] == "ok"
        assert attrs["switchboard.request_id"] == request_id
    assert {c.attributes["switchboard.llm.tier"] for c in by_step["draft"]} == {"capable"}


def _check_secrets(receiver: OtlpReceiver, marker: str) -> None:
    """Nothing exported by any process holds the ticket, the specialist's prompt or a key."""
    exported = b"".join(s.raw for s in receiver.spans)
    assert exported
    prompt = get_specialist("billing").system_prompt
    for secret in (marker, prompt[:40], *KEYS):
        assert secret.encode() not in exported, secret


def test_one_trace_from_the_cli_through_router_task_steps_and_llm_calls(traced: Traced) -> None:
    _one_trace_from_the_cli(traced)


def _one_trace_from_the_cli(traced: Traced) -> None:
    trace_id, caller = secrets.token_hex(16), secrets.token_hex(8)
    marker = f"ticket-{secrets.token_hex(4)}"
    ticket, customer = _ticket(marker)
    env = {**traced.otel_env, "TRACEPARENT": f"00-{trace_id}-{caller}-01"}
    submitted = run_cli("submit", ticket, "--customer", customer, "--json", env=env)
    assert submitted.returncode == 0, submitted.stderr
    request_id = json.loads(submitted.stdout)["id"]
    assert client.wait(request_id, timeout=120).status == "succeeded"

    spans = _wait_for_trace(traced.receiver, trace_id)
    submit = _one(spans, "switchboard.submit")
    assert (submit.service, submit.kind, submit.parent_id) == ("switchboard-client", PRODUCER, caller)
    assert submit.attributes["switchboard.request_id"] == request_id
    publish = _one(spans, "publish switchboard.route")
    assert (publish.service, publish.parent_id) == ("switchboard-client", submit.span_id)
    _check_pipeline(spans, publish, request_id)
    # Every span about this request, from any process, is in this one trace.
    about = [s for s in traced.receiver.spans if s.attributes.get("switchboard.request_id") == request_id]
    assert about and {s.trace_id for s in about} == {trace_id}

    status = run_cli("status", request_id, "--json", env=traced.otel_env)
    assert json.loads(status.stdout)["trace_id"] == trace_id
    _check_secrets(traced.receiver, marker)

    # The workers' JSON log lines about the request carry its trace id and their span's id.
    lines = [json.loads(line) for line in (traced.logs / "billing.log").read_text().splitlines()
             if line.startswith("{") and request_id in line]
    traced_lines = [line for line in lines if line.get("trace_id") == trace_id]
    assert traced_lines and all(len(line["span_id"]) == 16 for line in traced_lines)
    assert any(line["message"].startswith("succeeded") for line in traced_lines)


def test_the_http_api_continues_the_callers_traceparent(traced: Traced) -> None:
    trace_id, caller = secrets.token_hex(16), secrets.token_hex(8)
    marker = f"ticket-{secrets.token_hex(4)}"
    ticket, customer = _ticket(marker)
    _, token = new_tenant()
    answer = httpx.post(f"{traced.api}/v1/requests", json={"text": ticket, "customer": customer},
                        headers={"Authorization": f"Bearer {token}",
                                 "traceparent": f"00-{trace_id}-{caller}-01"}, timeout=30)
    assert answer.status_code == 202, answer.text
    request_id = answer.json()["id"]
    assert client.wait(request_id, timeout=120).status == "succeeded"

    spans = _wait_for_trace(traced.receiver, trace_id)
    api = _one(spans, "POST /v1/requests")
    assert (api.service, api.kind, api.parent_id) == ("switchboard-api", SERVER, caller)
    assert api.attributes["switchboard.request_id"] == request_id
    assert api.attributes["http.response.status_code"] == 202
    publish = _one(spans, "publish switchboard.route")
    assert (publish.service, publish.parent_id) == ("switchboard-api", api.span_id)
    _check_pipeline(spans, publish, request_id)
    assert client.get(request_id).trace_id == trace_id
    _check_secrets(traced.receiver, marker)
    assert token.encode() not in b"".join(s.raw for s in traced.receiver.spans)


def test_a_republished_request_continues_its_original_trace(traced: Traced) -> None:
    """Accepted in a trace but never published (the broker was down): the reconciler's publish,
    from another process, is a child of the span that accepted it."""
    trace_id, accepting = secrets.token_hex(16), secrets.token_hex(8)
    ticket, customer = _ticket(f"ticket-{secrets.token_hex(4)}")
    with tracing.resumed(f"00-{trace_id}-{accepting}-01"):
        request_id = client.accept(client.validate(text=ticket, customer=customer)).id
    assert client.get(request_id).trace_id == trace_id

    reconciled = run_cli("reconcile", "--min-age", "0", "--json", env=traced.otel_env)
    assert reconciled.returncode == 0, reconciled.stderr
    assert client.wait(request_id, timeout=120).status == "succeeded"
    spans = _wait_for_trace(traced.receiver, trace_id)
    publish = _one(spans, "publish switchboard.route")
    assert (publish.service, publish.parent_id) == ("switchboard-client", accepting)
    _check_pipeline(spans, publish, request_id)


def test_a_replayed_dead_letter_continues_its_trace_and_resumes_from_its_checkpoint(
        traced: Traced, faults: httpx.Client) -> None:
    """Every attempt (Celery's retries) and the operator's replay, from another process, stay in
    the request's trace; the replayed task says which steps it resumed from."""
    trace_id, caller = secrets.token_hex(16), secrets.token_hex(8)
    marker = f"ticket-{secrets.token_hex(4)}"
    ticket, customer = _ticket(marker)
    faults.post("/admin/faults", json={"error_rate": 1.0}).raise_for_status()
    env = {**traced.otel_env, "TRACEPARENT": f"00-{trace_id}-{caller}-01"}
    submitted = run_cli("submit", ticket, "--customer", customer, "--json", env=env)
    assert submitted.returncode == 0, submitted.stderr
    request_id = json.loads(submitted.stdout)["id"]
    assert client.wait(request_id, timeout=120).status == "dead_lettered"
    faults.post("/admin/faults", json={"error_rate": 0}).raise_for_status()

    replayed = run_cli("dlq", "replay", request_id, "--json", env=traced.otel_env)
    assert replayed.returncode == 0, replayed.stderr
    assert client.wait(request_id, timeout=120).status == "succeeded"

    def replay_traced() -> bool:
        runs = [s for s in traced.receiver.trace(trace_id) if s.name == "run/switchboard.specialist.billing"]
        return any(s.attributes.get("switchboard.resumed") for s in runs) and any(
            s.name == "step deliver" for s in traced.receiver.trace(trace_id))

    wait_until(replay_traced, 60, "the replayed task's spans")
    spans = traced.receiver.trace(trace_id)
    submit = _one(spans, "switchboard.submit")
    publishes = [s for s in spans if s.name == "publish switchboard.specialist.billing"]
    replay = [p for p in publishes if p.service == "switchboard-client"]
    # The replay's publish is a child of the span that accepted the request.
    assert len(replay) == 1 and replay[0].parent_id == submit.span_id
    runs = {s.span_id: s for s in spans if s.name == "run/switchboard.specialist.billing"}
    # Each failed attempt (and a deferral, if the breaker opened) is a retry: its own task span.
    assert len(runs) >= get_settings().max_attempts + 1
    # Every attempt's task span hangs off a publish in this trace: the router's or a retry's.
    assert all(run.parent_id in {p.span_id for p in publishes} for run in runs.values())
    routed = [p.span_id for p in publishes if p.service == "switchboard-router"]
    first = [run for run in runs.values() if run.parent_id in routed]
    assert len(first) == 1 and first[0].attributes["switchboard.resumed"] is False
    assert first[0].attributes["switchboard.attempt"] == 1
    # `retrieve` (no LLM call) succeeded on the first attempt: later ones, and the replay, resume.
    after_replay = [run for run in runs.values() if run.parent_id == replay[0].span_id]
    assert len(after_replay) == 1 and after_replay[0].attributes["switchboard.resumed"] is True
    assert after_replay[0].attributes["switchboard.checkpointed_steps"] == ["retrieve"]
    # Its children: the steps it ran, and a retry's publish if the breaker was still open.
    children = [s for s in spans if s.parent_id == after_replay[0].span_id]
    ran = {s.attributes["switchboard.step"] for s in children if s.name.startswith("step ")}
    # It ran from the first unfinished step, never `retrieve` again (if the breaker was still
    # half-open it may fail once more and its retry, a child, finish the rest).
    assert "understand" in ran and "retrieve" not in ran, [s.name for s in children]
    failed = [s for s in spans if s.name.startswith("chat ") and s.attributes.get("error.type")]
    assert failed and all("attempt failed" in s.events for s in failed)
    # Failed steps and tasks say which exception, never its message (it quotes the provider).
    assert {s.attributes.get("error.type") for s in spans if s.name == "step understand"} >= {"ProviderError"}
    assert all(b"HTTP 500" not in s.raw for s in spans)
    _check_secrets(traced.receiver, marker)


def test_a_django_apps_own_trace_continues_into_switchboard(traced: Traced) -> None:
    """The example Django project with its own tracer provider, OpenTelemetry's Django middleware
    and httpx instrumentation: its view's call to the HTTP API carries the view's trace (itself
    continuing the browser's traceparent), the API continues it, and the workers follow."""
    trace_id, browser = secrets.token_hex(16), secrets.token_hex(8)
    ticket, customer = _ticket(f"ticket-{secrets.token_hex(4)}")
    headers = {"X-Customer": customer, "traceparent": f"00-{trace_id}-{browser}-01"}
    _, token = new_tenant()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
           "SWITCHBOARD_URL": traced.api, "SWITCHBOARD_API_KEY": token}
    app = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "support" / "traced_django_app.py"), traced.receiver.endpoint,
         ticket, json.dumps(headers)], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env, check=False)
    assert app.returncode == 0, app.stderr
    answer = json.loads(app.stdout.splitlines()[-1])
    assert answer["http_status"] == 202, answer
    assert client.wait(answer["id"], timeout=120).status == "succeeded"

    spans = _wait_for_trace(traced.receiver, trace_id)
    view = [s for s in spans if s.service == "ticket-app" and s.kind == SERVER]
    assert len(view) == 1 and view[0].parent_id == browser
    assert view[0].attributes["http.route"] == "tickets"  # the Django middleware's span
    calls = [s for s in spans if s.service == "ticket-app" and s.kind == CLIENT]
    assert len(calls) == 1 and calls[0].parent_id == view[0].span_id  # the POST to the API
    api = _one(spans, "POST /v1/requests")
    assert (api.service, api.parent_id) == ("switchboard-api", calls[0].span_id)
    publish = _one(spans, "publish switchboard.route")
    assert publish.parent_id == api.span_id
    _check_pipeline(spans, publish, answer["id"])


def test_prefork_pools_export_from_their_child_processes(tmp_path_factory: pytest.TempPathFactory,
                                                         simulator: str) -> None:
    """With SWITCHBOARD_SPECIALIST_POOL=prefork the tasks run in forked children: the SDK set up
    in the parent (worker_init) exports from each child, and the links are the same."""
    with _traced_stack(tmp_path_factory.mktemp("prefork-logs"), "prefork") as prefork:
        _one_trace_from_the_cli(prefork)
