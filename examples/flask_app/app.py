"""A Flask app that hands support tickets to Switchboard.

    flask --app examples.flask_app.app run

Endpoints:

    POST /tickets                   {"text": ..., "priority"?: "high"|"normal"|"low", "conversation_id"?: ...}
                                    headers: X-Tenant (default "default"), X-Customer (the signed-in
                                    user; stands in for your login), Idempotency-Key (optional)
                                    -> 202 {"id", "status"}; 422 {"error", "problems"} for bad input
    GET  /tickets/<id>              -> 200 the request as Switchboard records it; 404 if unknown
    GET  /tickets/<id>/wait?timeout=S
                                    -> 200 once finished (succeeded or dead-lettered),
                                       202 with the current view if still running after S seconds

Only `app.client` is imported: the web process needs the settings (SWITCHBOARD_BROKER_URL,
SWITCHBOARD_DATABASE_URL), not the worker code. Tenants are isolated: a tenant asking for
another tenant's ticket gets 404, exactly as for an id that does not exist.
"""

from __future__ import annotations

import math
from typing import Any

from flask import Flask, Response, jsonify, request

from app import client

DEFAULT_WAIT_S = 10.0
# A waiting request holds a server thread; keep the wait short and let callers poll again on 202.
MAX_WAIT_S = 30.0
FIELDS = ("text", "priority", "conversation_id")


def _error(status: int, error: str, problems: list[str] | None = None) -> tuple[Response, int]:
    body: dict[str, Any] = {"error": error}
    if problems is not None:
        body["problems"] = problems
    return jsonify(body), status


def _tenant() -> str:
    return request.headers.get("X-Tenant", "default")


def _customer() -> str | None:
    # The end user your app authenticated (e.g. flask_login's current_user.email); the header stands
    # in for a login here. Never take it from the ticket body: the tools act for this customer only.
    return request.headers.get("X-Customer")


def _not_found(request_id: str) -> tuple[Response, int]:
    return _error(404, f"no ticket {request_id!r}")


def _view(view: client.RequestView) -> tuple[Response, int]:
    # finished_at is set exactly when the request reached a final status.
    return jsonify(view.model_dump(mode="json")), 200 if view.finished_at is not None else 202


def create_app() -> Flask:
    flask_app = Flask(__name__)

    @flask_app.post("/tickets")
    def submit_ticket() -> tuple[Response, int]:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return _error(400, "the body must be a JSON object", ["body: must be a JSON object"])
        unknown = sorted(set(body) - set(FIELDS))
        if unknown:
            return _error(422, "invalid request", [f"{name}: unknown field" for name in unknown])
        if "text" not in body:
            return _error(422, "invalid request", ["text: field required"])
        try:
            submission = client.submit(
                body["text"],
                tenant=_tenant(),
                customer=_customer(),
                priority=body.get("priority") or "normal",
                idempotency_key=request.headers.get("Idempotency-Key"),
                conversation_id=body.get("conversation_id"),
            )
        except client.InvalidRequest as exc:
            return _error(422, "invalid request", exc.problems)
        response = jsonify({"id": submission.id, "status": submission.status})
        response.headers["Location"] = f"/tickets/{submission.id}"
        return response, 202

    @flask_app.get("/tickets/<request_id>")
    def get_ticket(request_id: str) -> tuple[Response, int]:
        try:
            view = client.get(request_id, tenant=_tenant())
        except client.RequestNotFound:
            return _not_found(request_id)
        return jsonify(view.model_dump(mode="json")), 200

    @flask_app.get("/tickets/<request_id>/wait")
    def wait_ticket(request_id: str) -> tuple[Response, int]:
        raw = request.args.get("timeout", str(DEFAULT_WAIT_S))
        try:
            timeout = float(raw)
        except ValueError:
            timeout = math.nan
        if not 0 <= timeout <= MAX_WAIT_S:  # also refuses nan
            problem = f"timeout: must be a number of seconds from 0 to {MAX_WAIT_S:g}"
            return _error(422, "invalid timeout", [problem])
        tenant = _tenant()
        try:
            try:
                view = client.wait(request_id, timeout, tenant=tenant)
            except TimeoutError:
                view = client.get(request_id, tenant=tenant)
        except client.RequestNotFound:
            return _not_found(request_id)
        return _view(view)

    return flask_app
