"""The ASGI application: routers of the enabled dialects over one Runtime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig

from app import scim, ui
from app.api import routers, unrouted
from app.api.edge import Edge
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

    app = Litestar(
        route_handlers=[*routers(config), *ui.routers(config),
                        *([scim.mount(config)] if config.scim.enabled else [])],
        # The console's lifespan runs after (inside) the runtime's: it needs its key.
        lifespan=[lifespan, *ui.lifespans(config)],
        template_config=ui.templates(config),
        # Requests that match no route: the format of the dialect they aim at.
        exception_handlers={HTTPException: unrouted(config)},
        request_max_body_size=config.http.max_body_size,
        # Logging is configured once, by app/logs.py: Litestar would replace it.
        logging_config=None,
        # A form of more parts is a 400 before it is parsed further (app/api/forms.py).
        multipart_form_part_limit=64,
        openapi_config=OpenAPIConfig(
            title="userdir", version="0.1.0",
            description="Users in OpenLDAP, served as several user APIs at once.",
        ),
    )
    # Around everything, unrouted requests (404, 405) included: Litestar's
    # own middleware only wraps the route handlers.
    app.asgi_handler = Edge(app.asgi_handler, config.http.trusted_proxies,
                            config.http.client_requests,
                            count_requests=config.metrics.enabled)
    return app


def app_from_environment() -> Litestar:
    """uvicorn's factory in each worker process: the same USERDIR_CONFIG and
    USERDIR_* variables as the `userdir serve` that started it."""
    from app.server import tune_interpreter

    tune_interpreter()
    return create_app(load_config())
