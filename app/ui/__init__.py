"""The web console at /ui: server-rendered pages over the same service as every API.

Mounted by app/main.py with `routers`, `templates` and `lifespans`: each is
empty when `[ui] enabled = false`. Handlers reach the directory only through
runtime.service, as the dialects do; sessions, CSRF and the page headers
apply to /ui alone (the JSON APIs keep their bearer tokens and no cookies).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from litestar import Litestar, Router, post
from litestar.datastructures import CacheControlHeader
from litestar.exceptions import HTTPException
from litestar.middleware import DefineMiddleware
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.stores.file import FileStore
from litestar.template.config import TemplateConfig

from app.config import Config
from app.runtime import Runtime
from app.ui import groups, me, people, person, signin
from app.ui.pages import DEPENDENCIES, STATIC, ConsoleState, environment, error_page
from app.ui.security import HEADERS, ConsoleForms, csrf_config
from app.ui.sessions import SWEEP_EVERY, Sessions, derived_secret

PREFIX = "/ui"
# Console forms are a few short fields (a bio of 4096 characters, %-encoded, is
# the longest); pictures have their own limit (pictures.max_upload_size).
FORM_BODY = 64 * 1024
Lifespan = Callable[[Litestar], AbstractAsyncContextManager[None]]


def routers(config: Config) -> list[Router]:
    if not config.ui.enabled:
        return []
    upload = post("/people/{username:str}/picture",
                  request_max_body_size=config.pictures.max_upload_size)(person.put_picture)
    pages = Router(
        path=PREFIX,
        route_handlers=[*signin.ROUTES, *people.ROUTES, *person.ROUTES, upload, *me.ROUTES,
                        *groups.ROUTES],
        dependencies=DEPENDENCIES,
        tags=["console"],  # the dialect its requests are counted, logged and audited under
        middleware=[DefineMiddleware(ConsoleForms)],
        # HTTPException too: the app's own handler for it (404s in the dialects' formats)
        # would otherwise be the nearer match.
        exception_handlers={Exception: error_page, HTTPException: error_page},
        response_headers=HEADERS,
        request_max_body_size=FORM_BODY,
        include_in_schema=False,
    )
    # Every static URL carries the files' hash (pages.static_version): cached for good.
    static = create_static_files_router(
        path=f"{PREFIX}/static", directories=[STATIC], name="console-static",
        cache_control=CacheControlHeader(max_age=31536000, public=True),
        include_in_schema=False)
    return [pages, static]


def templates(config: Config) -> TemplateConfig[JinjaTemplateEngine] | None:
    if not config.ui.enabled:
        return None
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(environment()))


def lifespans(config: Config) -> list[Lifespan]:
    return [_lifespan] if config.ui.enabled else []


@asynccontextmanager
async def _lifespan(app: Litestar) -> AsyncIterator[None]:
    """After the runtime's (app/main.py): the secrets derive from its signing key."""
    runtime: Runtime = app.state.runtime
    config = runtime.config
    secure = config.public_url.startswith("https://")
    folder = config.session_dir
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    sessions = Sessions(FileStore(folder), derived_secret(runtime.auth.key, "session"),
                        config.ui.session_lifetime, secure=secure)
    app.state.console = ConsoleState(
        sessions, csrf_config(derived_secret(runtime.auth.key, "csrf").hex(), secure=secure))
    sweeper = asyncio.create_task(_sweep(sessions))
    try:
        yield
    finally:
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper


async def _sweep(sessions: Sessions) -> None:
    """Sessions never read again (the browser closed) would stay on disk."""
    while True:
        await asyncio.sleep(SWEEP_EVERY)
        with contextlib.suppress(OSError):
            await sessions.store.delete_expired()


__all__ = ["lifespans", "routers", "templates"]
