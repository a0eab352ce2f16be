"""The HTTP routes where a person steps in: approve or reject a parked tool call, the human inbox, a reply.

Every route acts for the API key's tenant only: another tenant's request is not found (404). Deciding
and replying need a key that may submit (403 for a read-only key); a request not in the status
the action needs is answered 409 with the status it is in. Who decided or replied is recorded as
the key's id.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from app.ingress import client
from app.ingress.http.auth import require_key
from app.ingress.http.models import read_body
from app.orchestration import approvals, handoffs
from app.orchestration.approvals import ApprovalView
from app.orchestration.handoffs import InboxItem


class Decision(BaseModel):
    """The body of POST /v1/requests/{id}/approve (optional) and /reject (a reason required)."""

    model_config = ConfigDict(extra="forbid")

    reason: StrictStr | None = Field(
        None,
        min_length=1,
        max_length=2000,
        description="recorded with the decision; a rejection's is told to the model",
    )


class Reply(BaseModel):
    """The body of POST /v1/requests/{id}/reply."""

    model_config = ConfigDict(extra="forbid")

    text: StrictStr = Field(min_length=1, description="the person's answer; it becomes the request's result")


class Replied(BaseModel):
    id: str
    status: str
    result: dict[str, Any]


class ApprovalList(BaseModel):
    approvals: list[ApprovalView]


class Inbox(BaseModel):
    requests: list[InboxItem]


def _json(model: BaseModel) -> Response:
    return jsonify(model.model_dump(mode="json"))


def _decide(request_id: str, approve: bool) -> Response:
    principal = require_key(write=True)
    body: Decision = read_body(Decision, optional=approve)
    if not approve and body.reason is None:
        raise client.InvalidRequest(
            ["reason: a rejection needs a reason (it is recorded and told to the model)"]
        )
    return _json(
        approvals.decide(
            request_id, approve=approve, by=principal.key_id, reason=body.reason, tenant=principal.tenant
        )
    )


def approve(request_id: str) -> Response:
    return _decide(request_id, True)


def reject(request_id: str) -> Response:
    return _decide(request_id, False)


def list_approvals() -> Response:
    principal = require_key()
    return _json(ApprovalList(approvals=approvals.pending(principal.tenant)))


def inbox() -> Response:
    principal = require_key()
    return _json(Inbox(requests=handoffs.inbox(principal.tenant)))


def reply(request_id: str) -> Response:
    principal = require_key(write=True)
    body: Reply = read_body(Reply)
    try:
        answer = handoffs.reply(request_id, body.text, by=principal.key_id, tenant=principal.tenant)
    except ValueError as exc:
        raise client.InvalidRequest([f"text: {exc}"]) from None
    return _json(Replied.model_validate(answer))


def register(app: Flask) -> None:
    # Ids are checked by their pattern in the views' lookups: a malformed id is simply not found.
    app.add_url_rule("/v1/requests/<request_id>/approve", view_func=approve, methods=["POST"])
    app.add_url_rule("/v1/requests/<request_id>/reject", view_func=reject, methods=["POST"])
    app.add_url_rule("/v1/requests/<request_id>/reply", view_func=reply, methods=["POST"])
    app.add_url_rule("/v1/approvals", view_func=list_approvals, methods=["GET"])
    app.add_url_rule("/v1/inbox", view_func=inbox, methods=["GET"])


def schemas() -> tuple[type[BaseModel], ...]:
    return Decision, Reply, Replied, ApprovalList, Inbox


def paths(
    ref: Any, json: Any, error: Any, auth_errors: dict[str, Any], id_: dict[str, Any]
) -> dict[str, Any]:
    """This module's part of the OpenAPI document (helpers passed in by app/ingress/http/openapi.py)."""
    acting = {
        **auth_errors,
        "403": error(403, "the API key may only read"),
        "404": error(404, "no such request for this tenant"),
        "409": error(409, "the request is not in the status this needs (code not_waiting)"),
        "422": error(422, "a field is invalid; details name each"),
    }

    def action(op: str, summary: str, body: type[BaseModel], ok: Any, required: bool) -> dict[str, Any]:
        return {
            "post": {
                "operationId": op,
                "summary": summary,
                "parameters": [id_],
                "requestBody": {"required": required, "content": {"application/json": {"schema": ref(body)}}},
                "responses": {"200": ok, **acting},
            }
        }

    return {
        "/v1/requests/{id}/approve": action(
            "approveRequest",
            "Approve the request's pending tool call; it resumes",
            Decision,
            json(ApprovalView, "the decision"),
            False,
        ),
        "/v1/requests/{id}/reject": action(
            "rejectRequest",
            "Reject the pending tool call; the model tells the customer",
            Decision,
            json(ApprovalView, "the decision"),
            True,
        ),
        "/v1/requests/{id}/reply": action(
            "replyToRequest",
            "Answer a request in the human queue; the text is its result",
            Reply,
            json(Replied, "the request, succeeded"),
            True,
        ),
        "/v1/approvals": {
            "get": {
                "operationId": "listApprovals",
                "summary": "The tenant's pending approvals",
                "responses": {"200": json(ApprovalList, "oldest first"), **auth_errors},
            }
        },
        "/v1/inbox": {
            "get": {
                "operationId": "inbox",
                "summary": "The tenant's requests in the human queue, with "
                "their wait against SWITCHBOARD_HUMAN_SLA_S",
                "responses": {"200": json(Inbox, "longest-waiting first"), **auth_errors},
            }
        },
    }
