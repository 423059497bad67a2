"""What every console page shares: templates, the viewer, redirects, errors shown as pages."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from litestar import Request, Response
from litestar.config.csrf import CSRFConfig
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException, NotFoundException
from litestar.exceptions import PermissionDeniedException as LitestarForbidden
from litestar.response import Redirect, Template

from app.api import Rt, runtime
from app.api.forms import BadForm
from app.domain import (
    AlreadyExists,
    AuthenticationFailed,
    Busy,
    DomainError,
    InvalidCode,
    InvalidInput,
    LastAdmin,
    NotFound,
    PermissionDenied,
    PolicyViolation,
    Throttled,
    Unavailable,
)
from app.mail import MailUnavailable
from app.pictures import InvalidPicture, NoPicture
from app.ui.security import HEADERS
from app.ui.sessions import COOKIE, Sessions, SignedOut, Viewer

HERE = Path(__file__).parent
STATIC = HERE / "static"
log = logging.getLogger("userdir.ui")

# Fixed texts a redirect may ask for (?notice=...): never text from the URL itself.
NOTICES = {
    "saved": "Saved.", "created": "User created.", "deleted": "User deleted.",
    "disabled": "Account disabled.", "enabled": "Account enabled.",
    "invited": "Invitation sent.",
    "invite-failed": "User created, but the invitation could not be mailed: use "
                     "\"Send invitation\" to try again.", "type": "Account type changed.",
    "picture": "Picture saved.", "picture-removed": "Picture removed.",
    "group-created": "Group created.", "group-deleted": "Group deleted.",
    "member-added": "Member added.", "member-removed": "Member removed.",
    "email-code": "A code was sent to the new address: enter it below to confirm.",
    "email-verified": "Your new email address is confirmed.",
    "signed-out": "You are signed out.",
    "session-ended": "Your session has ended. Please sign in again.",
    "password-changed": "Your password was changed. Sign in with the new one.",
    "password-set": "Your password is set. You can sign in now.",
    "reset-sent": "If an account uses this address, a link to set a new password is on its "
                  "way. It works once.",
}


@dataclass(frozen=True)
class ConsoleState:
    """Built in the lifespan, once the signing key is loaded (app/ui/__init__.py)."""

    sessions: Sessions
    csrf: CSRFConfig


Current = NamedDependency[Viewer]


async def viewer(request: Request[Any, Any, Any], runtime: Rt) -> Viewer:
    """The signed-in user, read from the directory now (SignedOut otherwise)."""
    state: ConsoleState = request.app.state.console
    found = await state.sessions.viewer(request, runtime.auth)
    request.state.viewer = found  # for error pages
    return found


DEPENDENCIES = {"runtime": Provide(runtime), "viewer": Provide(viewer)}


@cache
def static_version() -> str:
    """Part of every static URL, so browsers may cache the files for good."""
    digest = hashlib.sha256()
    for path in sorted(STATIC.iterdir()):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True)
    env.globals["static"] = lambda name: f"/ui/static/{name}?v={static_version()}"
    return env


def page(template: str, viewer: Viewer | None, /, *, status: int = 200,
         headers: dict[str, str] | None = None, **context: Any) -> Template:
    return Template(template_name=template, context={"viewer": viewer, **context},
                    status_code=status, headers={**HEADERS, **(headers or {})})


def see_other(path: str) -> Redirect:
    """After a POST: the browser GETs the page (a reload posts nothing again)."""
    return Redirect(path, status_code=303)


def notice(request: Request[Any, Any, Any]) -> str | None:
    return NOTICES.get(request.query_params.get("notice", ""))


async def form(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The text fields of the request's form (read by security.ConsoleForms)."""
    return {k: v for k, v in (await request.form()).items() if isinstance(v, str)}


def is_htmx(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("hx-request") == "true"


def problems(error: DomainError) -> dict[str, str]:
    """A refused change as messages by form field ("" for the whole form)."""
    if isinstance(error, AlreadyExists):
        what = {"username": "username", "email": "email address"}.get(error.field, error.field)
        return {error.field: f"This {what} is already taken."}
    if isinstance(error, InvalidInput):
        return {error.field: error.message}
    if isinstance(error, PolicyViolation):
        return {"password": f"The password policy refused this password: {error.message}"}
    if isinstance(error, AuthenticationFailed):
        return {"current_password": "The current password is wrong."}
    if isinstance(error, InvalidCode):
        return {"code": "Invalid or expired code."}
    if isinstance(error, LastAdmin):
        return {"": "The directory must keep at least one active admin."}
    if isinstance(error, InvalidPicture):
        return {"picture": "This file is not a JPEG, PNG or WebP picture we can read."}
    if isinstance(error, Throttled):
        return {"": f"Too many attempts. Try again in {error.retry_after} seconds."}
    return {"": error.message or "The change was refused."}


ERRORS: list[tuple[tuple[type[Exception], ...], int, str]] = [
    ((LitestarForbidden,), 403,
     "This form has expired or did not come from this site. Reload the page and try again."),
    ((PermissionDenied,), 403, "You may not do this."),
    ((NotFound, NoPicture, NotFoundException), 404, "There is nothing here."),
    ((Throttled,), 429, "Too many attempts. Please wait a little and try again."),
    ((MailUnavailable,), 503, "The email could not be sent. Please try again later."),
    ((Busy, Unavailable), 503, "The directory is not answering. Please try again shortly."),
    ((BadForm,), 400, "This form could not be read."),
]


def error_page(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    """Every error below the console's router, as a page (or a sign-in)."""
    if isinstance(error, SignedOut):
        return signed_out(request)
    status, text = 500, "Something went wrong on our side."
    for kinds, code, message in ERRORS:
        if isinstance(error, kinds):
            status, text = code, message
            break
    else:
        if isinstance(error, HTTPException) and error.status_code < 500:
            status, text = error.status_code, str(error.detail)
    headers = {"Retry-After": str(error.retry_after)} if isinstance(error, Throttled | Busy) \
        else {}
    if status >= 500:
        log.error("console: %s %s failed: %r", request.method, request.url.path, error,
                  exc_info=not isinstance(error, DomainError | MailUnavailable))
    current = request.state.get("viewer") if hasattr(request, "state") else None
    return page("error.html", current, status=status, headers=headers, message=text,
                status_code=status)


def signed_out(request: Request[Any, Any, Any]) -> Response[Any]:
    """To the sign-in page, saying why if a session ended; the cookie goes."""
    had_session = bool(request.cookies.get(COOKIE))
    target = "/ui/login?notice=session-ended" if had_session else "/ui/login"
    state: ConsoleState = request.app.state.console
    response: Response[Any] = Redirect(target, status_code=303) if not is_htmx(request) \
        else Response(b"", status_code=200, headers={"HX-Redirect": target})
    if had_session:
        response.set_cookie(state.sessions.cookie(None))
    return response
