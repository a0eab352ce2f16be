"""Delivery callbacks: where a request's result may be POSTed, and the POST itself.

Only http(s) URLs on SWITCHBOARD_CALLBACK_ALLOWED_HOSTS, and never an internal address (loopback,
private, link-local, multicast, reserved) unless SWITCHBOARD_CALLBACK_ALLOW_PRIVATE is set. The
address is checked again when the callback is sent, after resolving the name once, and the POST
connects to that checked address: a DNS answer that changed since the submit, or changes between
the check and the connection, cannot point a callback inside the network.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import random
import socket
import time
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import BaseModel
from sqlalchemy import func, select, text

from app.config import get_settings
from app.errors import OrchestrationError
from app.orchestration.celery_app import CALLBACK_TASK, celery
from app.orchestration.topology import CALLBACK_QUEUE
from app.state import Callback, CallbackAttempt, Request, Status, Tenant, session_scope
from app.state.transitions import add_event

log = logging.getLogger(__name__)
# httpx logs every request at INFO, with its URL; a receiver's URL may carry a token of its own.
logging.getLogger("httpx").setLevel(logging.WARNING)


class CallbackRefused(OrchestrationError, ValueError):
    """The URL may not receive callbacks; the message says why."""


def _internal(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return not ip.is_global or ip.is_multicast


def check_url(url: str) -> str:
    """The URL if callbacks may go there (no DNS lookup); raises CallbackRefused otherwise."""
    settings = get_settings()
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise CallbackRefused("is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not host:
        raise CallbackRefused("must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise CallbackRefused("must not carry credentials")
    if host not in settings.callback_allowed_hosts:
        allowed = ", ".join(settings.callback_allowed_hosts) or "none configured"
        raise CallbackRefused(
            f"host {host!r} is not allowed for callbacks (SWITCHBOARD_CALLBACK_ALLOWED_HOSTS: {allowed})"
        )
    try:
        literal = _internal(host)
    except ValueError:
        literal = False
    if literal and not settings.callback_allow_private:
        raise CallbackRefused(f"host {host!r} is an internal address; callbacks go to public addresses only")
    return url


def resolve_checked(url: str) -> list[str]:
    """The addresses the URL's host resolves to now, looked up once; refuses the URL if any of them
    is internal (unless SWITCHBOARD_CALLBACK_ALLOW_PRIVATE). `post` connects to one of exactly these."""
    check_url(url)
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(
            parts.hostname or "", port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except socket.gaierror as exc:
        raise CallbackRefused(f"host {parts.hostname!r} does not resolve ({exc.strerror})") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not get_settings().callback_allow_private and any(_internal(a) for a in addresses):
        raise CallbackRefused(f"host {parts.hostname!r} resolves to an internal address")
    return addresses


def post(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> httpx.Response:
    """POST to the address that passed the check, never to a second lookup of the name: a DNS answer
    that changes between the check and the connection (rebinding) cannot point the callback inside
    the network. The request still names the host (Host header), and TLS sends it as SNI and
    verifies the certificate against it. The next checked address is tried if one refuses."""
    parts = urlsplit(url)
    addresses = resolve_checked(url)
    with httpx.Client(timeout=timeout_s, follow_redirects=False) as http:
        for index, address in enumerate(addresses):
            netloc = (f"[{address}]" if ":" in address else address) + (
                f":{parts.port}" if parts.port else ""
            )
            pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
            try:
                return http.post(
                    pinned,
                    content=body,
                    headers={**headers, "Host": parts.netloc},
                    extensions={"sni_hostname": parts.hostname},
                )
            except (httpx.ConnectError, httpx.ConnectTimeout):
                if index == len(addresses) - 1:
                    raise
    raise CallbackRefused(f"host {parts.hostname!r} resolves to no address")


# --- Delivery ---------------------------------------------------------------------------------

SIGNATURE_HEADER = "X-Switchboard-Signature"


def signing_secret(name: str, salt: str) -> str:
    """A tenant's callback signing secret, derived from SWITCHBOARD_SIGNING_KEY and its salt; never
    stored."""
    key = get_settings().signing_key.get_secret_value().encode()
    return "whsec_" + hmac.new(key, f"{name}:{salt}".encode(), hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`: the receiver recomputes it with the
    tenant's signing secret and rejects old timestamps, so a captured POST cannot be replayed later."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def backoff_s(attempts: int) -> float:
    settings = get_settings()
    base = min(settings.retry_backoff_s * 2 ** max(0, attempts - 1), 300.0)
    return random.uniform(base / 2, base)


Outcome = Literal["delivered", "retry", "failed", "skipped"]


class Delivery(BaseModel):
    outcome: Outcome
    attempts: int = 0


def _payload(request: Request) -> bytes:
    return json.dumps(
        {
            "id": request.id,
            "tenant": request.tenant,
            "customer": request.customer,
            "status": request.status,
            "specialist": request.specialist,
            "result": request.result,
            "tokens": {"prompt": request.prompt_tokens, "completion": request.completion_tokens},
            "cost_usd": float(request.cost_usd),
            "finished_at": request.finished_at.isoformat() if request.finished_at else None,
        },
        separators=(",", ":"),
    ).encode()


def deliver(request_id: str) -> Delivery:
    """One attempt to POST a succeeded request's result to its callback URL.

    The callback row is locked (FOR UPDATE SKIP LOCKED) for the attempt, so a duplicate message
    finds it busy or delivered and sends nothing: one success is delivered once. Only if this
    process dies after the receiver answered and before the commit can the receiver see the same
    `X-Switchboard-Delivery` twice; receivers deduplicate on it. The callbacks pool is small and
    separate, so holding its connection for the POST (at most SWITCHBOARD_CALLBACK_TIMEOUT_S) takes
    nothing from the workers.
    """
    settings = get_settings()
    with session_scope() as session:
        callback = session.scalar(
            select(Callback)
            .where(Callback.request_id == request_id, Callback.status == "pending")
            .with_for_update(skip_locked=True)
        )
        if callback is None:
            return Delivery(outcome="skipped")
        request = session.get(Request, request_id)
        tenant = session.get(Tenant, request.tenant) if request else None
        callback.attempts += 1
        status_code: int | None = None
        error: str | None = None
        outcome: Outcome
        started = time.perf_counter()
        try:
            if request is None or request.status != Status.SUCCEEDED:
                raise CallbackRefused("the request has not succeeded")
            if tenant is None:
                raise CallbackRefused(
                    f"tenant {request.tenant!r} has no signing secret (not created with "
                    "`switchboard tenants create`)"
                )
            body = _payload(request)
            response = post(
                callback.url,
                body,
                {
                    "Content-Type": "application/json",
                    "User-Agent": "switchboard-callbacks",
                    "X-Switchboard-Delivery": request_id,
                    "X-Switchboard-Attempt": str(callback.attempts),
                    SIGNATURE_HEADER: sign(
                        signing_secret(tenant.name, tenant.signing_salt), int(time.time()), body
                    ),
                },
                settings.callback_timeout_s,
            )
            status_code = response.status_code
            outcome = "delivered" if 200 <= status_code < 300 else "retry"
            if outcome == "retry":
                error = f"the receiver answered {status_code}"
        except CallbackRefused as exc:
            outcome, error = "failed", f"refused: {exc}"
        except httpx.HTTPError as exc:
            outcome, error = "retry", f"{type(exc).__name__}: {exc}"
        if outcome == "retry" and callback.attempts >= settings.callback_max_attempts:
            outcome = "failed"
            error = f"{error}; gave up after {callback.attempts} attempts"
        if outcome == "delivered":
            callback.status, callback.delivered_at = "delivered", func.now()
        elif outcome == "failed":
            callback.status = "failed"
        session.add(
            CallbackAttempt(
                request_id=request_id,
                attempt=callback.attempts,
                status_code=status_code,
                error=error,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )
        )
        add_event(
            session, request_id, f"callback_{outcome}", attempt=callback.attempts, status_code=status_code
        )
        attempts = callback.attempts
    if outcome == "failed":
        log.warning("callback for request %s failed for good: %s", request_id, error)
    return Delivery(outcome=outcome, attempts=attempts)


def enqueue(request_id: str, countdown: float = 0.0) -> None:
    celery.send_task(
        CALLBACK_TASK,
        args=[request_id],
        queue=CALLBACK_QUEUE,
        routing_key=CALLBACK_QUEUE,
        countdown=countdown,
    )


def resend_pending(min_age_s: float = 120.0) -> int:
    """Re-enqueue callbacks of requests that succeeded long ago and never got an attempt (a worker
    died between finishing the request and sending the callback task)."""
    with session_scope() as session:
        ids = session.scalars(
            select(Callback.request_id)
            .join(Request, Request.id == Callback.request_id)
            .where(
                Callback.status == "pending",
                Callback.attempts == 0,
                Request.status == Status.SUCCEEDED,
                Request.finished_at
                < func.now() - text("make_interval(secs => :age)").bindparams(age=min_age_s),
            )
            .limit(500)
        ).all()
    for request_id in ids:
        enqueue(request_id)
    return len(ids)
