"""The ASGI application: routers of the enabled dialects over one Runtime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig

from app.api import routers, unrouted
from app.api.edge import edge
from app.config import Config, load_config
from app.runtime import Runtime


def create_app(config: Config) -> Litestar:
    """Build the app; the directory is connected in the lifespan, not at import."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        runtime = Runtime.build(config)
        app.state.runtime = runtime
        try:
            yield
        finally:
            runtime.close()

    return Litestar(
        route_handlers=routers(config),
        middleware=[edge(config.http.trusted_proxies)],
        lifespan=[lifespan],
        # Requests that match no route: the format of the dialect they aim at.
        exception_handlers={HTTPException: unrouted(config)},
        request_max_body_size=config.http.max_body_size,
        # A form of more parts is a 400 before it is parsed further (app/api/forms.py).
        multipart_form_part_limit=64,
        openapi_config=OpenAPIConfig(
            title="userdir", version="0.1.0",
            description="Users in OpenLDAP, served as several user APIs at once.",
        ),
    )


def app_from_environment() -> Litestar:
    """uvicorn's factory in each worker process: the same USERDIR_CONFIG and
    USERDIR_* variables as the `userdir serve` that started it."""
    return create_app(load_config())
