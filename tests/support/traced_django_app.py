"""The Django example as a team would trace it: its own tracer provider and exporter (service
`ticket-app`), OpenTelemetry's Django middleware and its httpx instrumentation (the example reaches
Switchboard's HTTP API with `switchboard-client`, on httpx), nothing of Switchboard's tracing set up
by hand. Posts one ticket through the example's view with the given headers, prints the answer;
SWITCHBOARD_URL and SWITCHBOARD_API_KEY come from the environment, as the example reads them.

    python tests/support/traced_django_app.py OTLP_ENDPOINT TEXT HEADERS_JSON
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.django import DjangoInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

ROOT = Path(__file__).resolve().parents[2]


def main(endpoint: str, text: str, headers: dict[str, str]) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "ticket-app"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")))
    trace.set_tracer_provider(provider)
    sys.path[:0] = [str(ROOT), str(ROOT / "examples" / "django_app")]
    os.environ["DJANGO_SETTINGS_MODULE"] = "project.settings"
    DjangoInstrumentor().instrument()  # before django.setup(): it adds its middleware to the settings
    HTTPXClientInstrumentor().instrument()  # the outgoing call carries the view's traceparent
    import django
    from django.test import Client
    from django.test.utils import setup_test_environment

    django.setup()
    setup_test_environment()
    answer = Client().post("/tickets", data=json.dumps({"text": text}), content_type="application/json",
                           headers=headers)
    print(json.dumps({"http_status": answer.status_code, **answer.json()}))
    provider.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))
