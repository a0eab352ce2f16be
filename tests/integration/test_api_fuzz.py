"""Schemathesis drives the real HTTP server from its own /openapi.json with 1,000+ generated
requests: every answer is documented (status, content type, headers, body schema), none is a 5xx,
and nothing is half-written: one row and one published message for every 202, none for a refusal."""

from __future__ import annotations

import collections
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kombu import Connection
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import func, select

from app.state import Request, session_scope
from tests.integration.conftest import new_tenant

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
OPERATIONS = ["POST /v1/requests", "GET /v1/requests/{id}", "GET /v1/requests/{id}/events"]
EXAMPLES_PER_OPERATION = 400  # three operations with inputs: over 1,000 calls in all
STATUSES: collections.Counter[tuple[str, int]] = collections.Counter()
BASELINE: dict[str, int] = {}


def _messages(broker: str) -> int:
    with Connection(broker) as conn:
        return int(conn.default_channel.queue_declare(queue="router", passive=True).message_count)


def _rows(tenant: str) -> int:
    with session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(Request).where(Request.tenant == tenant)) or 0)


@pytest.fixture(scope="module")
def fuzz_tenant(quiet_api: tuple[str, str]) -> tuple[str, str, str]:
    """(tenant, token, the id of one of its requests, so reads also reach their 200 answers)."""
    tenant, token = new_tenant(rpm_limit=1_000_000, max_concurrent=1_000_000)
    BASELINE["messages"] = _messages(quiet_api[1])
    known = httpx.post(f"{quiet_api[0]}/v1/requests", headers={"Authorization": f"Bearer {token}"},
                       json={"text": "a request the fuzz can read"}, timeout=30)
    assert known.status_code == 202
    STATUSES[("setup", 202)] += 1
    return tenant, token, str(known.json()["id"])


@pytest.fixture(scope="module")
def api_schema(quiet_api: tuple[str, str]) -> Any:
    return schemathesis.openapi.from_url(f"{quiet_api[0]}/openapi.json")


@pytest.mark.parametrize("label", OPERATIONS)
def test_every_generated_request_gets_a_documented_answer(label: str, api_schema: Any, quiet_api: tuple[str, str],
                                                          fuzz_tenant: tuple[str, str, str]) -> None:
    operation = api_schema.find_operation_by_label(label)
    # Valid inputs, inputs that break the schema on purpose and, for reads, the tenant's own request.
    strategies = [operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)]
    if "{id}" in label:
        strategies.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters={"id": fuzz_tenant[2]}))
    cases = st.one_of(strategies)

    @given(case=cases)
    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck),
              derandomize=True, database=None)
    def call(case: Any) -> None:
        response = case.call_and_validate(base_url=quiet_api[0], checks=CHECKS, timeout=30,
                                          headers={"Authorization": f"Bearer {fuzz_tenant[1]}"})
        STATUSES[(label, response.status_code)] += 1

    call()


def test_nothing_half_written(quiet_api: tuple[str, str], fuzz_tenant: tuple[str, str, str]) -> None:
    """Runs after the fuzz: rows and messages match the 202s exactly."""
    total = sum(n for (label, _), n in STATUSES.items() if label != "setup")
    print("schemathesis answers:", dict(STATUSES))
    assert total >= 1000, f"only {total} generated requests"
    accepted = STATUSES[("POST /v1/requests", 202)] + STATUSES[("setup", 202)]
    assert accepted > 1 and STATUSES[("POST /v1/requests", 422)] > 0
    assert STATUSES[("GET /v1/requests/{id}", 200)] > 0 and STATUSES[("GET /v1/requests/{id}/events", 200)] > 0
    assert _rows(fuzz_tenant[0]) == accepted
    assert _messages(quiet_api[1]) - BASELINE["messages"] == accepted
