"""What every request meets first: who its client is; what every answer carries: safe headers."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import re
import time
import uuid
from collections import deque
from collections.abc import Sequence

from litestar.enums import ScopeType
from litestar.handlers import HTTPRouteHandler
from litestar.types import ASGIApp, HTTPResponseStartEvent, Message, Receive, Scope, Send

from app import metrics
from app.bulkhead import current_client
from app.requests import Origin, current_origin, current_request

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
access = logging.getLogger("userdir.access")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})  # RFC 9110 §9.2.1
WAITING = 16  # times client_requests: how many more of one client's requests may wait
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
    """ASGI middleware around the whole app: sets `current_client` for the
    request (the bulkheads' fairness and the login throttle key on it) and
    `current_request` (its id: X-Request-ID if the client sent a sane one,
    else a new one, returned in the answer) and `current_origin` (what an
    audit record says of the request: app/requests.py); adds HEADERS to every
    answer that does not set them itself; logs one line per request and
    counts it."""

    def __init__(self, app: ASGIApp, trusted_proxies: Sequence[str] = (),
                 client_requests: int = 8, wait: float = 30.0,
                 count_requests: bool = True) -> None:
        self.app = app
        # metrics.enabled = false: no counting at all, not just no /metrics.
        self.count_requests = count_requests
        self.trusted = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]
        self.client_requests = client_requests
        self.wait = wait
        self._gates: dict[str, _Gate] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        peer = scope.get("client")
        forwarded = _header(scope, b"x-forwarded-for") if self.trusted else None
        address = client_address(peer[0] if peer else None, forwarded, self.trusted)
        given = _header(scope, b"x-request-id")
        request_id = given if given and REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        gate = self._gates.get(address) or self._gates.setdefault(
            address, _Gate(self.client_requests))
        if not await gate.enter(self.wait):
            await _too_many(send, request_id)
            _account(scope, address, request_id, 429, time.perf_counter() - started)
            self._forget(address, gate)
            return
        tokens = (current_client.set(address), current_request.set(request_id))
        # What the audit marker records; the route is known once Litestar has
        # routed the request (it fills in this same scope).
        origin = current_origin.set(Origin(
            request_id, address, functools.partial(_route_of, scope),
            changes=functools.partial(_may_change, scope)))
        status = 0

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in HEADERS if n not in present]
                extra.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            gate.leave()
            self._forget(address, gate)
            current_client.reset(tokens[0])
            current_request.reset(tokens[1])
            current_origin.reset(origin)
            _account(scope, address, request_id, status, time.perf_counter() - started,
                     self.count_requests)


    def _forget(self, address: str, gate: _Gate) -> None:
        if gate.idle and self._gates.get(address) is gate:
            del self._gates[address]


class _Gate:
    """One client's requests in progress: at most `limit` at once, then up
    to WAITING times as many wait their turn, in order; more are refused.

    A client that sends many requests at once (64 connections, each the next
    as soon as the last is answered) would otherwise share the interpreter
    with everyone's requests, or, answered 429 at once, send a thousand a
    second: waiting costs nothing, and slows him to `limit` at a time."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self.waiting: deque[asyncio.Future[None]] = deque()

    @property
    def idle(self) -> bool:
        return self.active == 0 and not self.waiting

    async def enter(self, wait: float) -> bool:
        """True: go on (then `leave`); False: refused, too many wait already,
        or the turn did not come within `wait` seconds."""
        if self.active < self.limit:
            self.active += 1
            return True
        if len(self.waiting) >= WAITING * self.limit:
            return False
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append(turn)
        try:
            await asyncio.wait_for(turn, wait)
        except TimeoutError:
            self._give_up(turn)
            return False
        except asyncio.CancelledError:  # the client left while waiting
            self._give_up(turn)
            raise
        return True  # the slot of a request that left was handed over

    def _give_up(self, turn: asyncio.Future[None]) -> None:
        if turn.done() and not turn.cancelled():
            self.leave()  # handed a slot just as we gave up: pass it on
        elif turn in self.waiting:
            self.waiting.remove(turn)

    def leave(self) -> None:
        while self.waiting:
            turn = self.waiting.popleft()
            if not turn.done():
                turn.set_result(None)  # the slot goes on to the next in line
                return
        self.active -= 1


async def _too_many(send: Send, request_id: str) -> None:
    body = b'{"detail": "too many requests at once from this client"}'
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()), (b"retry-after", b"1"),
               (b"x-request-id", request_id.encode()), *HEADERS]
    start: HTTPResponseStartEvent = {"type": "http.response.start", "status": 429,
                                     "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _account(scope: Scope, address: str, request_id: str, status: int, seconds: float,
             count: bool = True) -> None:
    """One log line and the metrics of a request: route templates, never raw
    paths, in the metrics; the path without its query string in the log
    (a query may carry what is nobody's business)."""
    dialect, route = _dialect_and_template(scope)
    method = scope.get("method", "-")
    if count:
        metrics.REQUESTS.labels(dialect, route, method, str(status)).inc()
        metrics.LATENCY.labels(dialect, route, method).observe(seconds)
    # The path as sent (still %-escaped): whatever bytes a client put there,
    # the line stays one line of ASCII.
    path = bytes(scope.get("raw_path") or b"").decode("ascii", "backslashreplace")
    access.info("%s %s %s %d %.1fms", address, method, path, status,
                seconds * 1000, extra={
                    "request_id": request_id, "client": address, "method": method,
                    "path": path, "status": status, "route": route,
                    "dialect": dialect, "duration_ms": round(seconds * 1000, 2)})


def _dialect_and_template(scope: Scope) -> tuple[str, str]:
    """A route's dialect is its first tag; a mounted application (SCIM) says
    its dialect and templates its paths itself, in the handler's opt."""
    handler = scope.get("route_handler")
    if isinstance(handler, HTTPRouteHandler):
        tags = handler.resolve_tags()
        return (tags[0] if tags else "-"), (scope.get("path_template") or "-")
    opt = getattr(handler, "opt", None) or {}
    if "dialect" in opt:
        # raw_path: a mount may have cut the prefix off `path`.
        raw = bytes(scope.get("raw_path") or b"").decode("ascii", "replace")
        return opt["dialect"], opt["route_template"](raw)
    return "-", scope.get("path_template") or "-"


def _may_change(scope: Scope) -> bool:
    """Whether a routed request may change something: any method but GET,
    HEAD and OPTIONS (RFC 9110 §9.2.1), unless its route reads only (a
    search sent as a POST: opt "reads_only", a flag or a test of the path)."""
    if scope.get("method", "GET") in SAFE_METHODS:
        return False
    reads_only = (getattr(scope.get("route_handler"), "opt", None) or {}).get("reads_only")
    if callable(reads_only):
        return not reads_only(bytes(scope.get("raw_path") or b"").decode("ascii", "replace"))
    return not reads_only


def _route_of(scope: Scope) -> tuple[str, str]:
    """(dialect, "METHOD /template") of a routed request, for the audit marker."""
    dialect, template = _dialect_and_template(scope)
    return dialect, (f"{scope.get('method', '-')} {template}" if template != "-" else "-")


def _header(scope: Scope, name: bytes) -> str | None:
    values = [v.decode("latin-1") for n, v in scope.get("headers", []) if n.lower() == name]
    return ", ".join(values) if values else None
