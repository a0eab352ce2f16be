"""The OpenAPI 3.1 document at /openapi.json, built from the boundary's pydantic models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from app.ingress.http import people
from app.ingress.http.errors import CODES, ErrorBody
from app.ingress.http.models import Accepted, EventList, Health, NewRequest, RequestView

REQUEST_ID = r"^[0-9a-fA-F-]{36}$"
_REF = "#/components/schemas/{model}"


def _schemas(*models: type[BaseModel]) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template=_REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return schemas


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _error(status: int, description: str) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": f"{CODES[status]}: {description}",
        "content": {"application/json": {"schema": _ref(ErrorBody)}},
    }
    if status in (429, 503):
        response["headers"] = {
            "Retry-After": {
                "required": True,
                "description": "seconds to wait",
                "schema": {"type": "string", "pattern": r"^[0-9]+$"},
            }
        }
    return response


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


_AUTH_ERRORS = {
    "401": _error(401, "no API key, or an unknown or revoked one"),
    "503": _error(
        503,
        "the record or the broker is unavailable, or (code overloaded) a low-priority request was refused under overload",
    ),
}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "pattern": REQUEST_ID}}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Switchboard",
            "version": "1",
            "description": "Submit support requests to the Switchboard engine and read their results.",
        },
        "components": {
            "schemas": _schemas(
                NewRequest, Accepted, RequestView, EventList, Health, ErrorBody, *people.schemas()
            ),
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`Authorization: Bearer sbk_...` from `switchboard keys create`",
                }
            },
        },
        "security": [{"apiKey": []}],
        "paths": {
            "/v1/requests": {
                "post": {
                    "operationId": "submitRequest",
                    "summary": "Submit a request; it belongs to the API key's tenant",
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "description": "a repeat returns the first request and runs nothing again",
                            "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                        },
                        {
                            "name": "traceparent",
                            "in": "header",
                            "required": False,
                            "description": "W3C Trace Context: the request continues the caller's trace",
                            "schema": {"type": "string"},
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref(NewRequest)}},
                    },
                    "responses": {
                        "202": _json(Accepted, "recorded and queued"),
                        "200": _json(Accepted, "an earlier request with the same Idempotency-Key and body"),
                        "400": _error(400, "the body is not a JSON object"),
                        **_AUTH_ERRORS,
                        "403": _error(403, "the API key may only read"),
                        "409": _error(409, "the Idempotency-Key was used for a different request"),
                        "413": _error(413, "the body is larger than SWITCHBOARD_API_MAX_BODY_BYTES"),
                        "422": _error(422, "a field is invalid; details name each"),
                        "429": _error(
                            429, "the tenant is over its requests per minute or concurrent requests"
                        ),
                    },
                }
            },
            "/v1/requests/{id}": {
                "get": {
                    "operationId": "getRequest",
                    "summary": "Status, specialist, result, tokens, cost and timings of one request",
                    "parameters": [_ID],
                    "responses": {
                        "200": _json(RequestView, "the request"),
                        **_AUTH_ERRORS,
                        "404": _error(404, "no such request for this tenant"),
                    },
                }
            },
            "/v1/requests/{id}/events": {
                "get": {
                    "operationId": "getRequestEvents",
                    "summary": "The request's event log, oldest first",
                    "parameters": [_ID],
                    "responses": {
                        "200": _json(EventList, "the events"),
                        **_AUTH_ERRORS,
                        "404": _error(404, "no such request for this tenant"),
                    },
                }
            },
            **people.paths(_ref, _json, _error, _AUTH_ERRORS, _ID),
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "summary": "Whether the database and the broker answer",
                    "security": [],
                    "responses": {
                        "200": _json(Health, "both answer"),
                        "503": {**_json(Health, "one does not"), "headers": _error(503, "")["headers"]},
                    },
                }
            },
        },
    }
