"""Ticket endpoints as plain Django function views on `switchboard-client` (HTTP, an API key).

    POST /tickets               {"text": ..., "priority"?: "high"|"normal"|"low", "conversation_id"?: ...}
                                headers: X-Customer (the end user; see current_customer), Idempotency-Key
                                -> 202 {"id", "status"}; 200 for a repeated Idempotency-Key;
                                   422 {"error", "problems"} for bad input
    GET  /tickets/<id>          -> 200 the request as Switchboard records it; 404 if unknown
    GET  /tickets/<id>/wait?timeout=S
                                -> 200 once finished (succeeded or dead-lettered),
                                   202 with the current view if still running after S seconds

The API key (settings.SWITCHBOARD_API_KEY) decides the tenant: another tenant's ticket is 404,
exactly as an id that does not exist.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from functools import cache, wraps
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST
from switchboard import APIError, Client, RequestView, WaitTimeout

DEFAULT_WAIT_S = 10.0
# A waiting request holds a server thread; keep the wait short and let callers poll again on 202.
MAX_WAIT_S = 30.0


@cache
def switchboard() -> Client:
    """One client per process: it keeps a pool of connections to the API and is thread-safe."""
    return Client(settings.SWITCHBOARD_URL, settings.SWITCHBOARD_API_KEY)


def current_customer(request: HttpRequest) -> str | None:
    """The end user this request acts for: replace with your own authentication (`request.user.email`
    with django.contrib.auth). Here a gateway in front of the app that authenticated the user sets
    X-Customer; trust the header only behind such a gateway."""
    return request.headers.get("X-Customer")


def _problem(status: int, error: str, problems: list[str]) -> JsonResponse:
    return JsonResponse({"error": error, "problems": problems}, status=status)


def answers_api_errors(view: Callable[..., JsonResponse]) -> Callable[..., JsonResponse]:
    """Switchboard's errors become this app's JSON answers with the same status (and Retry-After)."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        try:
            return view(request, *args, **kwargs)
        except APIError as exc:
            body: dict[str, Any] = {"error": exc.message, "code": exc.code}
            if exc.details:
                body["problems"] = exc.details
            response = JsonResponse(body, status=exc.status)
            if exc.retry_after is not None:
                response["Retry-After"] = str(int(exc.retry_after))
            return response

    return wrapped


def _view(view: RequestView, status: int = 200) -> JsonResponse:
    return JsonResponse(view.model_dump(mode="json"), status=status)


@csrf_exempt  # an API called with JSON by other services, not a browser form
@require_POST
@answers_api_errors
def submit_ticket(request: HttpRequest) -> JsonResponse:
    try:
        body = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("text"), str):
        return _problem(422, "send a JSON object with a text", ["text: required"])
    accepted = switchboard().submit(
        body["text"], priority=body.get("priority", "normal"), conversation_id=body.get("conversation_id"),
        customer=current_customer(request), idempotency_key=request.headers.get("Idempotency-Key"))
    response = JsonResponse({"id": accepted.id, "status": accepted.status},
                            status=200 if accepted.duplicate else 202)
    response["Location"] = f"/tickets/{accepted.id}"
    return response


@require_GET
@answers_api_errors
def get_ticket(request: HttpRequest, request_id: str) -> JsonResponse:
    return _view(switchboard().get(request_id))


@require_GET
@answers_api_errors
def wait_ticket(request: HttpRequest, request_id: str) -> JsonResponse:
    try:
        timeout = float(request.GET.get("timeout", DEFAULT_WAIT_S))
    except ValueError:
        timeout = math.nan
    if not 0 <= timeout <= MAX_WAIT_S:  # also refuses nan
        return _problem(422, "invalid timeout", [f"timeout: seconds from 0 to {MAX_WAIT_S:g}"])
    try:
        return _view(switchboard().wait(request_id, timeout))
    except WaitTimeout as still_running:
        return _view(still_running.view, 202)
