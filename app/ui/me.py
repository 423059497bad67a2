"""Self-service: a user's own profile, email, password and picture."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.response import Template

from app.api import Rt, codes
from app.bulkhead import current_client
from app.domain import AuthenticationFailed, DomainError, InvalidCode
from app.mail import MailUnavailable
from app.runtime import Runtime
from app.ui.pages import ConsoleState, Current, form, notice, page, problems, see_other
from app.ui.profile import FIELDS, changes_from, display_name, values_of
from app.ui.sessions import Viewer

MAIL_FAILED = {"": "The email could not be sent. Please try again later."}


async def me_page(runtime: Runtime, viewer: Viewer, *, status: int = 200,
                  **extra: Any) -> Template:
    user = await runtime.service.user_by_uuid(viewer.user.uuid)
    groups = await runtime.service.groups_of(user.username)
    has_picture = bool(await runtime.service.with_pictures([user]))
    context: dict[str, Any] = {
        "person": user, "name": display_name(user), "fields": FIELDS,
        "values": values_of(user), "errors": {}, "groups": groups,
        "has_picture": has_picture, "notice": None, **extra,
    }
    return page("me.html", viewer, status=status, **context)


@get("/me")
async def show(request: Request[Any, Any, Any], viewer: Current, runtime: Rt) -> Template:
    return await me_page(runtime, viewer, notice=notice(request))


@post("/me")
async def save(request: Request[Any, Any, Any], viewer: Current, runtime: Rt) -> Response[Any]:
    """A new email waits for the code mailed to it (app/api/codes.py), as on every API."""
    fields = await form(request)
    user = await runtime.service.user_by_uuid(viewer.user.uuid)
    try:
        changed = await codes.update_user(runtime, viewer.user, user, changes_from(fields))
    except DomainError as e:
        return await me_page(runtime, viewer, status=422, errors=problems(e), values=fields)
    except MailUnavailable:
        return await me_page(runtime, viewer, status=503, errors=MAIL_FAILED, values=fields)
    waiting = changed.pending_email and changed.pending_email != user.pending_email
    return see_other("/ui/me?notice=email-code" if waiting else "/ui/me?notice=saved")


@post("/me/email/verify")
async def verify_email(request: Request[Any, Any, Any], viewer: Current,
                       runtime: Rt) -> Response[Any]:
    code = (await form(request)).get("code", "").strip()
    user = await runtime.service.user_by_uuid(viewer.user.uuid)
    try:
        if not user.pending_email:
            raise InvalidCode("no new email waits for a code")
        await runtime.service.verify_email(user.pending_email, code)
    except DomainError as e:
        return await me_page(runtime, viewer, status=422, errors=problems(e))
    return see_other("/ui/me?notice=email-verified")


@post("/me/email/resend")
async def resend_code(viewer: Current, runtime: Rt) -> Response[Any]:
    user = await runtime.service.user_by_uuid(viewer.user.uuid)
    try:
        if user.pending_email:
            await codes.change_email(runtime, user.username, user.pending_email)
    except DomainError as e:
        return await me_page(runtime, viewer, status=429, errors=problems(e))
    except MailUnavailable:
        return await me_page(runtime, viewer, status=503, errors=MAIL_FAILED)
    return see_other("/ui/me?notice=email-code")


@post("/me/password")
async def change_password(request: Request[Any, Any, Any], viewer: Current,
                          runtime: Rt) -> Response[Any]:
    """Checked by a bind with the current password, and throttled as a login
    is (a stolen session must not become a way to guess it). Every token and
    session of the user ends with the change, this one included: he signs
    in again with the new password."""
    fields = await form(request)
    username, address = viewer.user.username, current_client.get() or "-"
    throttle = runtime.auth.throttle
    try:
        throttle.check(address, username)
        await runtime.service.set_password(username, fields.get("new_password", ""),
                                           current=fields.get("current_password", ""))
    except AuthenticationFailed as e:
        throttle.failed(address, username)
        return await me_page(runtime, viewer, status=422, errors=problems(e))
    except DomainError as e:
        return await me_page(runtime, viewer, status=422, errors=problems(e))
    state: ConsoleState = request.app.state.console
    await state.sessions.close(viewer.session_id)
    response = see_other("/ui/login?notice=password-changed")
    response.set_cookie(state.sessions.cookie(None))
    return response


ROUTES = [show, save, verify_email, resend_code, change_password]
