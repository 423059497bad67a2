"""Signing in and out, and setting a password with an emailed code (invitation or forgotten)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.background_tasks import BackgroundTask
from litestar.response import Template

from app.api import Rt
from app.domain import (
    AccountTypes,
    AuthenticationFailed,
    DomainError,
    InvalidInput,
    Throttled,
)
from app.ui import mails
from app.ui.pages import (
    ConsoleState,
    Current,
    form,
    notice,
    page,
    problems,
    see_other,
)
from app.ui.sessions import COOKIE

INVALID_LOGIN = "Invalid username or password"


def landing(account_type: str) -> str:
    """Staff and admins work on people; everyone else on his own account."""
    return "/ui/people" if AccountTypes.is_staff(account_type) else "/ui/me"


@get("/")
async def home(viewer: Current) -> Response[Any]:
    return see_other(landing(viewer.user.account_type))


@get("/login")
async def login_page(request: Request[Any, Any, Any]) -> Template:
    return page("login.html", None, notice=notice(request), login="", error=None)


@post("/login")
async def sign_in(request: Request[Any, Any, Any], runtime: Rt) -> Response[Any]:
    """Through runtime.auth.login, as every API's login: the same throttling
    (per address and account, before any directory work) and one answer
    for an unknown user, a wrong password and an account that cannot log in."""
    fields = await form(request)
    login = fields.get("login", "").strip()
    try:
        pair = await runtime.auth.login(login, fields.get("password", ""), by="any")
    except Throttled as e:
        return page("login.html", None, status=429, headers={"Retry-After": str(e.retry_after)},
                    login=login, error=f"Too many attempts. Try again in {e.retry_after} seconds.",
                    notice=None)
    except (AuthenticationFailed, InvalidInput):
        return page("login.html", None, status=422, login=login, error=INVALID_LOGIN,
                    notice=None)
    state: ConsoleState = request.app.state.console
    session_id = await state.sessions.open(pair, request.cookies.get(COOKIE))
    response = see_other(landing(runtime.auth.decode(pair.access)["account_type"]))
    response.set_cookie(state.sessions.cookie(session_id))
    return response


@post("/logout")
async def sign_out(request: Request[Any, Any, Any]) -> Response[Any]:
    """Ends the session for good (it is deleted, not just forgotten by the browser)."""
    state: ConsoleState = request.app.state.console
    session_id = state.sessions.session_id(request.cookies.get(COOKIE))
    if session_id:
        await state.sessions.close(session_id)
    response = see_other("/ui/login?notice=signed-out")
    response.set_cookie(state.sessions.cookie(None))
    return response


@get("/forgot")
async def forgot_page() -> Template:
    return page("forgot.html", None, email="")


@post("/forgot")
async def forgot(request: Request[Any, Any, Any], runtime: Rt) -> Response[Any]:
    """The same answer whether or not the address has an account, and the
    mail leaves after it; at most one code per mail.resend_interval."""
    email = (await form(request)).get("email", "").strip()
    found = await runtime.service.start_password_reset(email, mails.invitation_lifetime(runtime))
    response = see_other("/ui/login?notice=reset-sent")
    if found is not None:
        response.background = BackgroundTask(mails.send_quietly, runtime,
                                             mails.password_letter(runtime, found))
    return response


@get("/password")
async def password_page(request: Request[Any, Any, Any]) -> Template:
    """Where an invitation or reset link lands: the address and code come from it."""
    query = request.query_params
    return page("password.html", None, email=query.get("email", ""),
                code=query.get("code", ""), errors={})


@post("/password")
async def set_password(request: Request[Any, Any, Any], runtime: Rt) -> Response[Any]:
    fields = await form(request)
    email, code = fields.get("email", "").strip(), fields.get("code", "").strip()
    try:
        await runtime.service.set_password_with_code(email, code, fields.get("new_password", ""))
    except DomainError as e:
        return page("password.html", None, status=422, email=email, code=code,
                    errors=problems(e))
    return see_other("/ui/login?notice=password-set")


ROUTES = [home, login_page, sign_in, sign_out, forgot_page, forgot, password_page, set_password]
