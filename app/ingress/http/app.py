"""The Flask app: routes on top of `app.ingress.client`, one error handler, JSON everywhere.

Order of checks on a submit: the key (401/403), the body (400/413/422), the tenant's limits (429),
then `client.accept` records the row under the tenant's lock and `client.publish` sends it after;
a rejected request writes nothing.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Literal

from flask import Flask, Response, jsonify, request
from sqlalchemy import select, text
from werkzeug.exceptions import HTTPException

from app.config import get_settings
from app.inference.cost import warn_unpriced
from app.ingress import client
from app.ingress.http import people
from app.ingress.http.auth import require_key
from app.ingress.http.errors import ApiError, api_error, too_large
from app.ingress.http.json_body import DepthLimitedJSON
from app.ingress.http.limits import admission
from app.ingress.http.models import Accepted, EventList, Health, NewRequest, read_body
from app.ingress.http.openapi import REQUEST_ID, document
from app.observability import tracing
from app.orchestration.celery_app import celery
from app.state import Callback, Request, connection_scope, session_scope

log = logging.getLogger("switchboard.api")
_REQUEST_ID = re.compile(REQUEST_ID)


def _json(model: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response = jsonify(model.model_dump(mode="json"))
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _same_request(request_id: str, body: NewRequest) -> bool:
    """Whether an idempotent repeat asks for what the first request asked."""
    with session_scope() as session:
        row = session.execute(
            select(
                Request.text,
                Request.customer,
                Request.priority,
                Request.metadata_,
                Request.conversation_id,
                Callback.url,
            )
            .outerjoin(Callback, Callback.request_id == Request.id)
            .where(Request.id == request_id)
        ).one()
    return (row.text, row.customer, row.priority, row.metadata_, row.conversation_id, row.url) == (
        body.text,
        body.customer,
        body.priority,
        body.metadata,
        body.conversation_id,
        body.callback_url,
    )


def _request_id(value: str) -> str:
    if not _REQUEST_ID.match(value):
        raise client.RequestNotFound(value)
    return value


@tracing.http_span("POST /v1/requests", lambda: request.headers)
def submit() -> Response:
    principal = require_key(write=True)
    body = read_body(NewRequest)
    fields = body.model_dump()
    fields.update(tenant=principal.tenant, idempotency_key=request.headers.get("Idempotency-Key"))
    valid = client.validate(**fields)  # refused before it costs the tenant a slot
    with admission(principal):
        submission = client.accept(valid)  # counted against the cap from its commit on
    if not submission.duplicate:
        client.publish(
            submission.id, body.priority, client.routing_inputs(valid)
        )  # outside the tenant's lock
    if submission.duplicate and not _same_request(submission.id, body):
        raise ApiError(
            409, "this Idempotency-Key was used for a different request; use a new key for a new request"
        )
    log.info(
        "submit %s tenant=%s key=%s duplicate=%s",
        submission.id,
        principal.tenant,
        principal.key_id,
        submission.duplicate,
    )
    status = 200 if submission.duplicate else 202
    return _json(
        Accepted(id=submission.id, status=submission.status, duplicate=submission.duplicate),
        status,
        {"Location": f"/v1/requests/{submission.id}"},
    )


def get_request(request_id: str) -> Response:
    principal = require_key()
    return _json(client.get(_request_id(request_id), tenant=principal.tenant))


def get_events(request_id: str) -> Response:
    principal = require_key()
    return _json(EventList(events=client.events(_request_id(request_id), tenant=principal.tenant)))


def _check(probe: Any) -> Literal["ok", "unavailable"]:
    try:
        probe()
        return "ok"
    except Exception as exc:  # noqa: BLE001 - a health check reports, it does not raise
        log.warning("health check failed: %s", type(exc).__name__)
        return "unavailable"


def _database() -> None:
    with connection_scope() as conn:
        conn.execute(text("SELECT 1"))


def _broker() -> None:
    with celery.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


def healthz() -> Response:
    checks = {"database": _check(_database), "broker": _check(_broker)}
    ok = all(v == "ok" for v in checks.values())
    health = Health(status="ok" if ok else "unavailable", checks=checks)
    return _json(health, 200 if ok else 503, None if ok else {"Retry-After": "5"})


def openapi() -> Response:
    return jsonify(document())


def _handle(exc: Exception) -> Response:
    error = api_error(exc)
    if error is None and isinstance(exc, HTTPException):
        status = exc.code or 500
        messages = {
            404: "no such endpoint; see /openapi.json",
            405: "this endpoint does not take that method; see /openapi.json",
            413: too_large(get_settings().api_max_body_bytes).message,
            400: "the request could not be read; send a JSON object",
        }
        error = ApiError(status if status in messages else 400, messages.get(status, messages[400]))
    if error is None:
        log.exception("unexpected error on %s %s", request.method, request.path)
        error = ApiError(500, "unexpected error; it has been logged; retry later")
    elif error.status >= 500:
        log.warning(
            "%s %s answered %d: %s (%s)",
            request.method,
            request.path,
            error.status,
            error.message,
            type(exc).__name__,
        )
    response = jsonify(error.body())
    response.status_code = error.status
    response.headers.update(error.headers())
    return response


def create_app() -> Flask:
    tracing.setup("api")
    if not logging.getLogger().handlers:
        # Under uvicorn nothing configures the root logger: submits and failures go to stderr,
        # beside uvicorn's own lines. Keys appear only by id.
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    warn_unpriced()
    app = Flask("switchboard")
    app.config["MAX_CONTENT_LENGTH"] = get_settings().api_max_body_bytes
    app.json = DepthLimitedJSON(app)  # keys in model order; JSON bodies nested too deep are refused
    app.add_url_rule("/v1/requests", view_func=submit, methods=["POST"])
    app.add_url_rule("/v1/requests/<request_id>", view_func=get_request, methods=["GET"])
    app.add_url_rule("/v1/requests/<request_id>/events", view_func=get_events, methods=["GET"])
    people.register(app)
    app.add_url_rule("/healthz", view_func=healthz, methods=["GET"])
    app.add_url_rule("/openapi.json", view_func=openapi, methods=["GET"])
    app.register_error_handler(Exception, _handle)
    return app
