"""The people table (search, sort, filters, pages) and the new-user form."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from litestar import Request, Response, get, post
from litestar.response import Template

from app.api import Rt
from app.auth import require_admin, require_staff
from app.domain import DomainError, NewUser, Profile, SortKey, UserQuery
from app.mail import MailUnavailable
from app.ui import mails
from app.ui.pages import Current, form, is_htmx, notice, page, problems, see_other
from app.ui.person import is_invited
from app.ui.profile import display_name

PER_PAGE = 25
MAX_PAGE = 100_000  # slapd's sort takes offsets below 2**31-2; no one pages this far
SORTS = {"username": SortKey.USERNAME, "name": SortKey.DISPLAY_NAME,
         "email": SortKey.EMAIL, "type": SortKey.ACCOUNT_TYPE}
STATUSES = {"active": True, "disabled": False}


def _page_number(text: str) -> int:
    return min(max(int(text), 1), MAX_PAGE) if text.isdigit() and len(text) < 7 else 1


@get("/people")
async def people(request: Request[Any, Any, Any], viewer: Current, runtime: Rt) -> Template:
    """One window of the same slapd-sorted listing as GET /people (server-side
    sort and virtual list view): a page costs the same at 100k users as at
    100. Typing in the search box asks for the table only (htmx)."""
    require_staff(viewer.user)
    asked = request.query_params
    types = runtime.config.users.account_types
    shown = {
        "q": asked.get("q", "")[:256].strip(),
        "type": asked.get("type", "") if asked.get("type", "") in types else "",
        "status": asked.get("status", "") if asked.get("status", "") in STATUSES else "",
        "sort": asked.get("sort", "") if asked.get("sort", "") in SORTS else "username",
        "order": "desc" if asked.get("order") == "desc" else "asc",
    }
    number = _page_number(asked.get("page", "1"))
    found = await runtime.service.list_users(UserQuery(
        text=shown["q"] or None, account_type=shown["type"] or None,
        active=STATUSES.get(shown["status"]), sort=SORTS[shown["sort"]],
        descending=shown["order"] == "desc", offset=(number - 1) * PER_PAGE, limit=PER_PAGE,
        verified_only=not viewer.user.is_admin))

    def link(**changes: Any) -> str:
        query = {k: v for k, v in {**shown, "page": number, **changes}.items() if v}
        return "/ui/people?" + urlencode(query)

    rows = [{"user": u, "name": display_name(u), "invited": is_invited(u)} for u in found.users]
    context: dict[str, Any] = {
        "rows": rows, "total": found.total, "page_number": number, "shown": shown,
        "types": types, "first": (number - 1) * PER_PAGE + 1 if rows else 0,
        "last": (number - 1) * PER_PAGE + len(rows), "link": link,
        "has_next": number * PER_PAGE < found.total, "notice": notice(request),
    }
    partial = is_htmx(request) and request.headers.get("hx-target") == "people-results"
    return page("people_results.html" if partial else "people.html", viewer,
                headers={"Vary": "HX-Request"}, **context)


def new_user_page(viewer: Current, runtime: Rt, *, status: int = 200,
                  values: dict[str, str] | None = None,
                  errors: dict[str, str] | None = None) -> Template:
    return page("new_user.html", viewer, status=status, values=values or {},
                errors=errors or {}, types=runtime.config.users.account_types,
                default_type=runtime.config.users.default_account_type)


@get("/new-user")
async def new_user_form(viewer: Current, runtime: Rt) -> Template:
    require_admin(viewer.user)
    return new_user_page(viewer, runtime)


@post("/new-user")
async def create(request: Request[Any, Any, Any], viewer: Current,
                 runtime: Rt) -> Response[Any]:
    """With a password, or with "Send invitation": then he is created
    disabled, and the link mailed to him sets his password and enables him."""
    require_admin(viewer.user)
    fields = await form(request)
    invite = fields.get("invite") == "on"
    new = NewUser(
        username=fields.get("username", "").strip(), password=fields.get("password", ""),
        account_type=fields.get("account_type") or None,
        profile=Profile(email=fields.get("email", "").strip() or None,
                        first_name=fields.get("first_name", "").strip() or None,
                        last_name=fields.get("last_name", "").strip() or None),
    )
    try:
        if not invite:
            user = await runtime.service.create_user(new)
            return see_other(f"/ui/people/{user.username}?notice=created")
        user, code = await runtime.service.invite_user(new, mails.invitation_lifetime(runtime))
    except DomainError as e:
        return new_user_page(viewer, runtime, status=422, values=fields, errors=problems(e))
    try:
        assert user.email is not None
        await runtime.mailer.send(mails.invitation(runtime, user.email, user.username, code))
    except MailUnavailable:
        # He exists, disabled: "Send invitation" on his page tries again.
        return see_other(f"/ui/people/{user.username}?notice=invite-failed")
    return see_other(f"/ui/people/{user.username}?notice=invited")


ROUTES = [people, new_user_form, create]
