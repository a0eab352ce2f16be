"""Ticket endpoints as plain Django function views; only `app.client` is imported.

    POST /tickets                   {"text": ..., "priority"?: "high"|"normal"|"low", "conversation_id"?: ...}
                                    headers: X-Tenant (default "default"), X-Customer (the signed-in
                                    user; stands in for your login), Idempotency-Key (optional)
                                    -> 202 {"id", "status"}; 422 {"error", "problems"} for bad input
    GET  /tickets/<id>              -> 200 the request as Switchboard records it; 404 if unknown
    GET  /tickets/<id>/wait?timeout=S
                                    -> 200 once finished (succeeded or dead-lettered),
                                       202 with the current view if still running after S seconds

A tenant asking for another tenant's ticket gets 404, exactly as for an id that does not exist.
"""

from __future__ import annotations

import json
import math
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from app import client

DEFAULT_WAIT_S = 10.0
# A waiting request holds a server thread; keep the wait short and let callers poll again on 202.
MAX_WAIT_S = 30.0
FIELDS = ("text", "priority", "conversation_id")


def _error(status: int, error: str, problems: list[str] | None = None) -> JsonResponse:
    body: dict[str, Any] = {"error": error}
    if problems is not None:
        body["problems"] = problems
    return JsonResponse(body, status=status)


def _tenant(request: HttpRequest) -> str:
    return request.headers.get("X-Tenant", "default")


def _customer(request: HttpRequest) -> str | None:
    # The signed-in user (django.contrib.auth), else the X-Customer header that stands in for a login
    # in this example. Never taken from the ticket body: the tools act for this customer only.
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return str(user.get_username())
    return request.headers.get("X-Customer")


def _not_found(request_id: str) -> JsonResponse:
    return _error(404, f"no ticket {request_id!r}")


@csrf_exempt  # an API called with JSON by other services, not a browser form
@require_POST
def submit_ticket(request: HttpRequest) -> JsonResponse:
    try:
        body = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        body = None
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
            tenant=_tenant(request),
            customer=_customer(request),
            priority=body.get("priority") or "normal",
            idempotency_key=request.headers.get("Idempotency-Key"),
            conversation_id=body.get("conversation_id"),
        )
    except client.InvalidRequest as exc:
        return _error(422, "invalid request", exc.problems)
    response = JsonResponse({"id": submission.id, "status": submission.status}, status=202)
    response["Location"] = f"/tickets/{submission.id}"
    return response


@require_GET
def get_ticket(request: HttpRequest, request_id: str) -> JsonResponse:
    try:
        view = client.get(request_id, tenant=_tenant(request))
    except client.RequestNotFound:
        return _not_found(request_id)
    return JsonResponse(view.model_dump(mode="json"))


@require_GET
def wait_ticket(request: HttpRequest, request_id: str) -> JsonResponse:
    raw = request.GET.get("timeout", str(DEFAULT_WAIT_S))
    try:
        timeout = float(raw)
    except ValueError:
        timeout = math.nan
    if not 0 <= timeout <= MAX_WAIT_S:  # also refuses nan
        problem = f"timeout: must be a number of seconds from 0 to {MAX_WAIT_S:g}"
        return _error(422, "invalid timeout", [problem])
    tenant = _tenant(request)
    try:
        try:
            view = client.wait(request_id, timeout, tenant=tenant)
        except TimeoutError:
            view = client.get(request_id, tenant=tenant)
    except client.RequestNotFound:
        return _not_found(request_id)
    # finished_at is set exactly when the request reached a final status.
    return JsonResponse(view.model_dump(mode="json"), status=200 if view.finished_at is not None else 202)
