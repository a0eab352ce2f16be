"""What crosses the HTTP boundary, as pydantic models; the OpenAPI document is built from them."""

from __future__ import annotations

from typing import Literal, TypeVar

from flask import request
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from app.ingress.client import EventView, InvalidRequest, RequestView
from app.ingress.http.errors import ApiError

BodyT = TypeVar("BodyT", bound=BaseModel)

__all__ = ["Accepted", "EventList", "Health", "NewRequest", "RequestView"]


class NewRequest(BaseModel):
    """The body of POST /v1/requests. The tenant comes from the API key, never from the body."""

    model_config = ConfigDict(extra="forbid")

    text: StrictStr = Field(description="the customer's message; at most SWITCHBOARD_MAX_TEXT_BYTES bytes")
    customer: StrictStr | None = Field(
        None,
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="your app's id of the end user you authenticated (e.g. their account e-mail): the "
        "request's tools read and change only this customer's data; without one, account tools refuse. "
        "Recorded with the request; it never changes",
    )
    priority: Literal["high", "normal", "low"] = "normal"
    metadata: dict[StrictStr, StrictStr | int | float | bool | None] = Field(
        default_factory=dict, max_length=32, description="flat JSON object, at most 4096 bytes"
    )
    conversation_id: StrictStr | None = Field(None, pattern=r"^[A-Za-z0-9._:-]{1,64}$")
    callback_url: StrictStr | None = Field(
        None, max_length=2000, description="http(s) URL on the allow-list; the result is POSTed there, signed"
    )


class Accepted(BaseModel):
    id: str
    status: str
    duplicate: bool = Field(description="true when the Idempotency-Key named an earlier request")


class EventList(BaseModel):
    events: list[EventView]


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, Literal["ok", "unavailable"]]


def read_body(model: type[BodyT], *, optional: bool = False) -> BodyT:
    """The JSON body as `model`; with `optional`, an empty body is an empty object. A body that is
    not a JSON object is answered 400, an invalid field 422 naming each."""
    data = request.get_json(force=True, silent=True)
    if data is None and optional and not request.get_data():
        data = {}
    if not isinstance(data, dict):
        raise ApiError(400, "send a JSON object as the body (Content-Type: application/json)")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()]
        raise InvalidRequest(problems) from None
