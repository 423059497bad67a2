"""One person's page: what staff may read and what an admin may change (SPEC, native API rules)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath
from litestar.response import Template

from app.api import Rt, codes
from app.api.native_audit import trail_of
from app.audit import AuditQuery, AuditRecord
from app.auth import require_admin, require_self_or_admin, require_self_or_staff
from app.directory.audit_log import NoAuditLog
from app.domain import DomainError
from app.mail import MailUnavailable
from app.runtime import Runtime
from app.ui import mails
from app.ui.me import me_page
from app.ui.pages import Current, form, notice, page, problems, see_other
from app.ui.profile import FIELDS, changes_from, display_name, upload, values_of
from app.ui.sessions import Viewer


def is_invited(user: Any) -> bool:
    """Still waiting to set his password (app/service/invitations.py)."""
    return bool(not user.active and user.pending_email and user.email
                and user.pending_email.lower() == user.email.lower())


HISTORY = 20  # the newest changes shown; GET /audit?user= has them all


async def history(runtime: Runtime, viewer: Viewer, username: str
                  ) -> tuple[list[AuditRecord], int, str | None]:
    """The newest changes to him, by any client (admins: the audit log is
    theirs), their total, and why there are none to show if the log could
    not be read: the rest of the page (a password just generated) is shown
    whatever becomes of this."""
    if not viewer.user.is_admin:
        return [], 0, None
    try:
        found = await trail_of(runtime).audit(AuditQuery(user=username, limit=HISTORY))
    except NoAuditLog:
        return [], 0, "This directory keeps no audit log."
    except DomainError:
        return [], 0, "The history could not be read just now."
    return found.records, found.total, None


async def person_page(runtime: Runtime, viewer: Viewer, username: str, *, status: int = 200,
                      **extra: Any) -> Template:
    require_self_or_staff(viewer.user, username)
    user = await runtime.service.get_user(username)
    groups = await runtime.service.groups_of(user.username)
    has_picture = bool(await runtime.service.with_pictures([user]))
    changes = await history(runtime, viewer, user.username)
    context: dict[str, Any] = {
        "person": user, "name": display_name(user), "fields": FIELDS,
        "values": values_of(user), "errors": {}, "groups": groups,
        "has_picture": has_picture, "generated": None,
        "types": runtime.config.users.account_types, "invited": is_invited(user),
        "may_edit": viewer.user.is_admin, "notice": None,
        "history": changes[0], "history_total": changes[1], "history_missing": changes[2],
        **extra,
    }
    return page("person.html", viewer, status=status, **context)


@get("/people/{username:str}")
async def show(request: Request[Any, Any, Any], username: FromPath[str], viewer: Current,
               runtime: Rt) -> Response[Any]:
    if username.lower() == viewer.user.username.lower():
        return see_other("/ui/me")
    return await person_page(runtime, viewer, username, notice=notice(request))


@post("/people/{username:str}")
async def save(request: Request[Any, Any, Any], username: FromPath[str], viewer: Current,
               runtime: Rt) -> Response[Any]:
    """Profile fields and account type with one "Save" (admins; an admin's
    new email is set at once, as on every API)."""
    require_admin(viewer.user)
    fields = await form(request)
    try:
        user = await runtime.service.get_user(username)
        new_type = fields.get("account_type") or user.account_type
        await codes.update_user(runtime, viewer.user, user, changes_from(fields),
                                account_type=new_type if new_type != user.account_type else None)
    except DomainError as e:
        return await person_page(runtime, viewer, username, status=422, errors=problems(e),
                                 values={**fields})
    return see_other(f"/ui/people/{username}?notice=saved")


@post("/people/{username:str}/disable")
async def disable(username: FromPath[str], viewer: Current, runtime: Rt) -> Response[Any]:
    require_admin(viewer.user)
    try:
        await runtime.service.disable_user(username)
    except DomainError as e:
        return await person_page(runtime, viewer, username, status=409, errors=problems(e))
    return see_other(f"/ui/people/{username}?notice=disabled")


@post("/people/{username:str}/enable")
async def enable(username: FromPath[str], viewer: Current, runtime: Rt) -> Response[Any]:
    require_admin(viewer.user)
    await runtime.service.enable_user(username)
    return see_other(f"/ui/people/{username}?notice=enabled")


@post("/people/{username:str}/password")
async def reset_password(username: FromPath[str], viewer: Current, runtime: Rt) -> Response[Any]:
    """A generated password, shown on this answer only (never in a URL or a log)."""
    require_admin(viewer.user)
    generated = await runtime.service.generate_password(username)
    return await person_page(runtime, viewer, username, generated=generated)


@post("/people/{username:str}/invite")
async def send_link(username: FromPath[str], viewer: Current, runtime: Rt) -> Response[Any]:
    """An invited user gets his invitation again; anyone else a link to set
    a new password, at the address he has (not one still to be confirmed)."""
    require_admin(viewer.user)
    user = await runtime.service.get_user(username)
    try:
        if is_invited(user):
            address, code = await runtime.service.reinvite(username,
                                                           mails.invitation_lifetime(runtime))
            letter = mails.invitation(runtime, address, user.username, code)
        else:
            found = await runtime.service.start_password_reset(
                user.email or "", mails.invitation_lifetime(runtime))
            if found is None:
                return await person_page(runtime, viewer, username, status=409, errors={
                    "": "No link was sent: the account is disabled or has no email address, "
                        "or one was sent less than a minute ago."})
            letter = mails.password_letter(runtime, found)
        await runtime.mailer.send(letter)
    except (DomainError, MailUnavailable) as e:
        message = problems(e) if isinstance(e, DomainError) else \
            {"": "The email could not be sent. Please try again later."}
        return await person_page(runtime, viewer, username, status=409, errors=message)
    return see_other(f"/ui/people/{username}?notice=invited")


@get("/people/{username:str}/delete")
async def confirm_delete(username: FromPath[str], viewer: Current, runtime: Rt) -> Template:
    require_admin(viewer.user)
    user = await runtime.service.get_user(username)
    return page("confirm.html", viewer, title=f"Delete {user.username}?",
                text=f"The account {user.username} and everything it holds will be deleted. "
                     "This cannot be undone.",
                action=f"/ui/people/{user.username}/delete", button="Delete",
                back=f"/ui/people/{user.username}")


@post("/people/{username:str}/delete")
async def delete(username: FromPath[str], viewer: Current, runtime: Rt) -> Response[Any]:
    require_admin(viewer.user)
    try:
        await runtime.service.delete_user(username)
    except DomainError as e:
        return await person_page(runtime, viewer, username, status=409, errors=problems(e))
    return see_other("/ui/people?notice=deleted")


def back_to(viewer: Viewer, username: str, notice_key: str) -> Response[Any]:
    itself = viewer.user.username.lower() == username.lower()
    return see_other(f"/ui/me?notice={notice_key}" if itself
                     else f"/ui/people/{username}?notice={notice_key}")


async def put_picture(request: Request[Any, Any, Any], username: FromPath[str], viewer: Current,
                      runtime: Rt) -> Response[Any]:
    """The upload, cut to the square chosen in the browser if one was (Pillow
    applies it on the server, on the pictures' pool)."""
    require_self_or_admin(viewer.user, username)
    try:
        raw, crop = await upload(request)
        if crop is None:
            await runtime.service.set_picture(username, raw)
        else:
            await runtime.service.set_cropped_picture(username, raw, crop)
    except DomainError as e:
        if viewer.user.username.lower() == username.lower():
            return await me_page(runtime, viewer, status=422, errors=problems(e))
        return await person_page(runtime, viewer, username, status=422, errors=problems(e))
    return back_to(viewer, username, "picture")


@post("/people/{username:str}/picture/delete")
async def delete_picture(username: FromPath[str], viewer: Current, runtime: Rt) -> Response[Any]:
    require_self_or_admin(viewer.user, username)
    await runtime.service.delete_picture(username)
    return back_to(viewer, username, "picture-removed")


ROUTES = [show, save, disable, enable, reset_password, send_link, confirm_delete, delete,
          delete_picture]
