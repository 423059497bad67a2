"""SCIM 2.0 (RFC 7643/7644) at /scim/v2: identity providers provision users and groups."""

from __future__ import annotations

from litestar import asgi
from litestar.handlers import ASGIRouteHandler
from litestar.types import Receive, Scope, Send

from app.config import Config
from app.runtime import Runtime
from app.scim.application import UserdirScimApplication
from app.scim.schemas import build

PREFIX = "/scim"
_ENDPOINTS = {"Users", "Groups", "Schemas", "ResourceTypes", "ServiceProviderConfig", "Me",
              "Bulk", ".search"}


def route_template(path: str) -> str:
    """A SCIM path as a route template, for logs, metrics and audit records:
    a resource's id becomes {id}; anything unknown is one template."""
    parts = path.removeprefix(f"{PREFIX}/v2").strip("/").split("/")
    if not parts[0]:
        return f"{PREFIX}/v2"
    if parts[0] not in _ENDPOINTS or len(parts) > 2:
        return f"{PREFIX}/v2/{{unknown}}"
    if len(parts) == 2 and parts[1] != ".search":
        parts[1] = "{id}"
    return f"{PREFIX}/v2/" + "/".join(parts)


def mount(config: Config) -> ASGIRouteHandler:
    """scim2-server's ASGI app mounted in Litestar. It is built on the first
    request, for the Runtime the lifespan made (none exists before)."""
    models = build(config.users.account_types)
    base_url = f"{config.public_url}{PREFIX}/v2"
    built: list[tuple[Runtime, UserdirScimApplication]] = []

    @asgi(PREFIX, is_mount=True, copy_scope=True,
          opt={"dialect": "scim", "route_template": route_template,
               "reads_only": lambda path: path.rstrip("/").endswith("/.search")})
    async def scim(scope: Scope, receive: Receive, send: Send) -> None:
        runtime: Runtime = scope["app"].state.runtime
        if not built or built[0][0] is not runtime:  # a new lifespan, a new Runtime
            built[:] = [(runtime, UserdirScimApplication(runtime, models, base_url))]
        application = built[0][1]
        await application(scope, receive, send)  # type: ignore[arg-type]

    return scim
