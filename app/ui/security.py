"""What guards every console request: a bounded form read, then Litestar's CSRF check."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.config.csrf import CSRFConfig
from litestar.enums import ScopeType
from litestar.middleware.csrf import CSRFMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send
from litestar.utils.scope.state import ScopeState

from app.api.forms import URLENCODED, form_fields, media_type

# No inline script or style anywhere: every script and style sheet is a file
# under /ui/static. Pictures may also be data: URLs (Pico's icons are inline
# SVGs in its style sheet) and blob: URLs (the preview of a chosen picture).
CSP = "; ".join([
    "default-src 'self'",
    "img-src 'self' data: blob:",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",  # frame-ancestors, for browsers that predate it
    "Referrer-Policy": "same-origin",  # reset links carry their code in the URL
    "Cross-Origin-Opener-Policy": "same-origin",
}
CSRF_COOKIE = "userdir_csrf"
CSRF_FIELD = "_csrf_token"  # the name Litestar's middleware and csrf_input use


def csrf_config(secret: str, *, secure: bool) -> CSRFConfig:
    """Double-submit: the token in a cookie for /ui only, and in every form
    (or the X-CSRFToken header of htmx requests). HttpOnly: pages get the
    token from the server, scripts never read the cookie."""
    return CSRFConfig(secret=secret, cookie_name=CSRF_COOKIE, cookie_path="/ui",
                      cookie_secure=secure, cookie_httponly=True, cookie_samesite="lax")


class ConsoleForms:
    """Router middleware of the console: reads a urlencoded body as app/api/forms.py
    does (at most 32 fields, large ones off the event loop, nothing cached)
    and hands it to Litestar as the parsed form, so that its CSRF middleware,
    which runs next, finds the token without parsing the body again with its
    own parser (which keeps every distinct body it parsed in a cache).

    The CSRF middleware is built at the first request: its secret derives
    from the signing key, which the lifespan loads (app/ui/__init__.py)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._csrf: CSRFMiddleware | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "POST":
            request: Request[Any, Any, Any] = Request(scope, receive)
            if media_type(request) == URLENCODED:
                ScopeState.from_scope(scope).form = dict(await form_fields(request))
        if self._csrf is None:
            self._csrf = CSRFMiddleware(self.app, scope["litestar_app"].state.console.csrf)
        await self._csrf(scope, receive, send)
