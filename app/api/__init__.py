"""The HTTP side: which routers are mounted, and what every router depends on."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import msgspec
from litestar import Request, Response, Router
from litestar.di import NamedDependency, Provide
from litestar.exceptions import ValidationException

from app.config import Config
from app.domain import Principal
from app.runtime import Runtime

# Each dialect module exposes `router(prefix: str) -> Router`, mounted at its
# configured prefix when its section says `enabled = true`, `ROOTS` (the paths
# under that prefix it owns) and `error_response(request, error)`.
DIALECT_MODULES: dict[str, str] = {
    "nervai": "app.api.nervai",
    "fittrackee": "app.api.fittrackee",
    "ufdl": "app.api.ufdl",
    "library": "app.api.library",
    "accounts": "app.api.accounts",
}

# The body limit of logins, refreshes and code checks: a password is at most
# auth.max_password_length (1 KiB by default), so a larger body is no login,
# and is refused (413) before it is read, let alone parsed.
SMALL_BODY = 16 * 1024

Rt = NamedDependency[Runtime]
Caller = NamedDependency[Principal]


async def runtime(request: Request[Any, Any, Any]) -> Runtime:
    found: Runtime = request.app.state.runtime
    return found


async def caller(request: Request[Any, Any, Any], runtime: Rt) -> Principal:
    """The authenticated user, read from the directory now (TokenError otherwise)."""
    return await runtime.auth.user_for_header(request.headers.get("authorization"))


DEPENDENCIES = {"runtime": Provide(runtime), "caller": Provide(caller)}


def malformed_request(error: Exception) -> bool:
    """Errors Litestar lets through while decoding a request body: bytes that
    are not UTF-8, and nesting deep enough to exhaust msgspec's recursion.
    Every dialect answers them as its own 400, never a 500."""
    if isinstance(error, ValidationException | UnicodeDecodeError | msgspec.DecodeError):
        return True
    return isinstance(error, RecursionError) and "deserializ" in str(error)


ErrorHandler = Callable[[Request[Any, Any, Any], Exception], Response[Any]]


def unrouted(config: Config) -> ErrorHandler:
    """404 and 405 are raised while routing, before any router's own error
    mapping applies: answer them in the format of the dialect whose paths
    the request aims at (the longest matching root), else the native one."""
    from app.api import native

    owners: list[tuple[str, ErrorHandler]] = []
    for name, module_name in DIALECT_MODULES.items():
        settings = getattr(config, name)
        if settings.enabled:
            module = importlib.import_module(module_name)
            prefix = settings.prefix.rstrip("/")
            owners.extend((prefix + root, module.error_response) for root in module.ROOTS)
    owners.sort(key=lambda owner: len(owner[0]), reverse=True)

    def handle(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
        path = request.url.path.rstrip("/")
        for root, handler in owners:
            if path == root or path.startswith(root + "/"):
                return handler(request, error)
        return native.problem(request, error)

    return handle


def routers(config: Config) -> list[Router]:
    from app.api import native

    mounted = [native.router(config)]
    for name, module_name in DIALECT_MODULES.items():
        settings = getattr(config, name)
        if settings.enabled:
            mounted.append(importlib.import_module(module_name).router(settings.prefix))
    return mounted
