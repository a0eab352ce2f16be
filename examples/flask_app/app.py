"""A Flask app that hands support tickets to Switchboard with `switchboard-client` (HTTP, an API key).

    pip install -r requirements.txt
    SWITCHBOARD_URL=http://127.0.0.1:8080 SWITCHBOARD_API_KEY=sbk_... flask --app app run

This file is the project's `app` module, Flask's most common layout; the client imports as
`switchboard`, so the two never meet. Endpoints:

    POST /tickets               {"text": ..., "priority"?: "high"|"normal"|"low", "conversation_id"?: ...}
                                headers: X-Customer (the end user; see current_customer), Idempotency-Key
                                -> 202 {"id", "status"}; 200 for a repeated Idempotency-Key;
                                   422 {"error", "problems"} for bad input
    GET  /tickets/<id>          -> 200 the request as Switchboard records it; 404 if unknown
    GET  /tickets/<id>/wait?timeout=S
                                -> 200 once finished (succeeded or dead-lettered),
                                   202 with the current view if still running after S seconds

The API key decides the tenant: another tenant's ticket is 404, exactly as an id that does not exist.
"""

from __future__ import annotations

import math
import os

from flask import Flask, Response, jsonify, request
from switchboard import APIError, Client, RequestView, WaitTimeout

DEFAULT_WAIT_S = 10.0
# A waiting request holds a server thread; keep the wait short and let callers poll again on 202.
MAX_WAIT_S = 30.0


def current_customer() -> str | None:
    """The end user this request acts for: replace with your own authentication (Flask-Login's
    `current_user.email`, a verified session). Here a gateway in front of the app that
    authenticated the user sets X-Customer; trust the header only behind such a gateway."""
    return request.headers.get("X-Customer")


def _view(view: RequestView, status: int = 200) -> tuple[Response, int]:
    return jsonify(view.model_dump(mode="json")), status


def _api_error(exc: APIError) -> tuple[Response, int]:
    body: dict[str, object] = {"error": exc.message, "code": exc.code}
    if exc.details:
        body["problems"] = exc.details
    response = jsonify(body)
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(int(exc.retry_after))
    return response, exc.status


def create_app(client: Client | None = None) -> Flask:
    flask_app = Flask(__name__)
    sb = client or Client(os.environ["SWITCHBOARD_URL"], os.environ["SWITCHBOARD_API_KEY"])
    flask_app.register_error_handler(APIError, _api_error)

    @flask_app.post("/tickets")
    def submit_ticket() -> tuple[Response, int]:
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            return jsonify({"error": "send a JSON object with a text", "problems": ["text: required"]}), 422
        accepted = sb.submit(body["text"], priority=body.get("priority", "normal"),
                             conversation_id=body.get("conversation_id"), customer=current_customer(),
                             idempotency_key=request.headers.get("Idempotency-Key"))
        response = jsonify({"id": accepted.id, "status": accepted.status})
        response.headers["Location"] = f"/tickets/{accepted.id}"
        return response, 200 if accepted.duplicate else 202

    @flask_app.get("/tickets/<request_id>")
    def get_ticket(request_id: str) -> tuple[Response, int]:
        return _view(sb.get(request_id))

    @flask_app.get("/tickets/<request_id>/wait")
    def wait_ticket(request_id: str) -> tuple[Response, int]:
        try:
            timeout = float(request.args.get("timeout", DEFAULT_WAIT_S))
        except ValueError:
            timeout = math.nan
        if not 0 <= timeout <= MAX_WAIT_S:  # also refuses nan
            return jsonify({"error": "invalid timeout",
                            "problems": [f"timeout: seconds from 0 to {MAX_WAIT_S:g}"]}), 422
        try:
            return _view(sb.wait(request_id, timeout))
        except WaitTimeout as still_running:
            return _view(still_running.view, 202)

    return flask_app
