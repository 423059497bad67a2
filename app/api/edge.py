"""What every request meets first: who its client is; what every answer carries: safe headers."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from litestar.enums import ScopeType
from litestar.middleware import DefineMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from app.bulkhead import current_client

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# Every answer: no MIME sniffing; nothing cached unless the route says how
# (tokens, codes and personal data must not stay in a shared cache).
HEADERS = ((b"x-content-type-options", b"nosniff"), (b"cache-control", b"no-store"))


def client_address(peer: str | None, forwarded_for: str | None,
                   trusted: Sequence[Network]) -> str:
    """The client's address: the socket's peer, unless that peer is a trusted
    proxy; then the nearest address in X-Forwarded-For that is not one
    (each proxy appends the address it received the request from)."""
    address = peer or "-"
    if not trusted or not _is_trusted(address, trusted) or not forwarded_for:
        return address
    for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
        if not hop:
            break
        address = hop
        if not _is_trusted(hop, trusted):
            break
    return address


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


class Edge:
    """ASGI middleware: sets `current_client` for the request (the
    bulkheads' fairness and the login throttle key on it) and adds HEADERS
    to every answer that does not set them itself."""

    def __init__(self, app: ASGIApp, trusted_proxies: Sequence[str] = ()) -> None:
        self.app = app
        self.trusted = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        peer = scope.get("client")
        forwarded = _header(scope, b"x-forwarded-for") if self.trusted else None
        address = client_address(peer[0] if peer else None, forwarded, self.trusted)
        token = current_client.set(address)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in HEADERS if n not in present]
                if extra:
                    message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            current_client.reset(token)


def _header(scope: Scope, name: bytes) -> str | None:
    values = [v.decode("latin-1") for n, v in scope.get("headers", []) if n.lower() == name]
    return ", ".join(values) if values else None


def edge(trusted_proxies: Sequence[str]) -> DefineMiddleware:
    """The middleware as Litestar takes it."""
    return DefineMiddleware(Edge, trusted_proxies=list(trusted_proxies))
