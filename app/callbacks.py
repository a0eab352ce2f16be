"""Delivery callbacks: where a request's result may be POSTed, and the POST itself.

Only http(s) URLs on SWITCHBOARD_CALLBACK_ALLOWED_HOSTS, and never an internal address (loopback,
private, link-local, multicast, reserved) unless SWITCHBOARD_CALLBACK_ALLOW_PRIVATE is set. The
address is checked again when the callback is sent, after resolving the name, so a DNS answer
that changed since the submit cannot point a callback inside the network.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from app.config import get_settings


class CallbackRefused(ValueError):
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
        raise CallbackRefused(f"host {host!r} is not allowed for callbacks (SWITCHBOARD_CALLBACK_ALLOWED_HOSTS: "
                              f"{allowed})")
    try:
        literal = _internal(host)
    except ValueError:
        literal = False
    if literal and not settings.callback_allow_private:
        raise CallbackRefused(f"host {host!r} is an internal address; callbacks go to public addresses only")
    return url


def resolve_checked(url: str) -> None:
    """Refuse a URL whose host now resolves to an internal address (checked before each POST)."""
    check_url(url)
    if get_settings().callback_allow_private:
        return
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname or "", port, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise CallbackRefused(f"host {parts.hostname!r} does not resolve ({exc.strerror})") from None
    for info in infos:
        if _internal(str(info[4][0])):
            raise CallbackRefused(f"host {parts.hostname!r} resolves to an internal address")
