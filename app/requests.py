"""What the request being served is and who asked, for code far from HTTP: no Litestar here."""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from dataclasses import dataclass, field

ANONYMOUS = "anonymous"  # a request nobody signed in to (a sign-up, an emailed code)
SERVICE = "service"      # the API process's own work outside requests (bootstrap, adoption)


def _unrouted() -> tuple[str, str]:
    return "-", "-"


def _reads_only() -> bool:
    return False


@dataclass
class Origin:
    """Where a request comes from, filled in as it goes: the edge knows its id
    and client, the router its dialect and route (read lazily: routing happens
    after the edge), authentication its caller. Mutable on purpose: Litestar
    resolves dependencies in task groups of their own, whose context changes
    never reach the handler, while a change to this shared object does."""

    request_id: str
    client: str
    route: Callable[[], tuple[str, str]] = _unrouted  # (dialect, "METHOD /template")
    actor: str = ANONYMOUS
    actor_id: str | None = None  # the signed-in user's entryUUID
    extra: dict[str, str] = field(default_factory=dict)
    # Whether the request may change something (read lazily, as the route):
    # all it reads then comes from the provider, its caller's rights first of
    # all, never from a read replica that may lag behind.
    changes: Callable[[], bool] = _reads_only


# The id of the request being served (log lines and audit records carry it).
current_request: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "current_request", default=None)
current_origin: contextvars.ContextVar[Origin | None] = contextvars.ContextVar(
    "current_origin", default=None)
# Who works when no request is served: "service" in the API process, "cli" or
# "doctor" in commands (app/cli.py sets it).
current_tool: contextvars.ContextVar[str] = contextvars.ContextVar("current_tool",
                                                                   default=SERVICE)


def identify(username: str, uuid: str | None = None) -> None:
    """The request's caller is now known (a token checked, a password bound)."""
    origin = current_origin.get()
    if origin is not None:
        origin.actor, origin.actor_id = username, uuid


def describe() -> dict[str, str]:
    """The current origin as plain fields (the audit marker's content)."""
    origin = current_origin.get()
    if origin is None:
        return {"actor": current_tool.get()}
    dialect, route = origin.route()
    facts = {"actor": origin.actor, "actor_id": origin.actor_id or "",
             "request": origin.request_id, "dialect": dialect, "route": route,
             "client": origin.client}
    return {k: v for k, v in facts.items() if v and v != "-"}


def changing() -> bool:
    """Whether the request being served may change something (Origin.changes)."""
    origin = current_origin.get()
    return origin is not None and origin.changes()
