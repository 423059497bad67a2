"""Groups (admins): list, create, delete, members; account-type groups are shown, not changed."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from litestar import Request, Response, get, post
from litestar.params import FromPath
from litestar.response import Template

from app.api import Rt
from app.auth import require_admin
from app.domain import DomainError, SortKey, UserQuery
from app.runtime import Runtime
from app.ui.pages import Current, form, is_htmx, notice, page, problems, see_other
from app.ui.profile import display_name
from app.ui.sessions import Viewer

CANDIDATES = 10  # search results offered for "Add"


async def groups_page(runtime: Runtime, viewer: Viewer, *, status: int = 200,
                      **extra: Any) -> Template:
    require_admin(viewer.user)
    groups = sorted(await runtime.service.list_groups(), key=lambda g: g.name.lower())
    return page("groups.html", viewer, status=status, groups=groups, values={}, errors={},
                notice=None, **extra)


@get("/groups")
async def groups(request: Request[Any, Any, Any], viewer: Current, runtime: Rt) -> Template:
    return await groups_page(runtime, viewer, notice=notice(request))


@post("/groups")
async def create(request: Request[Any, Any, Any], viewer: Current, runtime: Rt) -> Response[Any]:
    require_admin(viewer.user)
    fields = await form(request)
    try:
        group = await runtime.service.create_group(fields.get("name", "").strip(),
                                                   fields.get("description", "").strip() or None)
    except DomainError as e:
        return await groups_page(runtime, viewer, status=422, values=fields,
                                 errors=problems(e))
    return see_other(f"/ui/groups/{quote(group.name)}?notice=group-created")


async def group_page(request: Request[Any, Any, Any], runtime: Runtime, viewer: Viewer,
                     name: str, *, status: int = 200, **extra: Any) -> Template:
    """Members of an ordinary group; an account type's members are the
    people page filtered by it (they may be very many)."""
    require_admin(viewer.user)
    group = await runtime.service.get_group(name)
    q = request.query_params.get("q", "")[:256].strip()
    found = await runtime.service.list_users(UserQuery(
        text=q, sort=SortKey.USERNAME, limit=CANDIDATES)) if q else None
    candidates = [u for u in found.users if u.username not in group.members] if found else []
    context: dict[str, Any] = {
        "group": group, "q": q, "errors": {}, "notice": None,
        "candidates": [{"user": u, "name": display_name(u)} for u in candidates], **extra,
    }
    partial = is_htmx(request) and request.headers.get("hx-target") == "candidates"
    return page("group_candidates.html" if partial else "group.html", viewer, status=status,
                headers={"Vary": "HX-Request"}, **context)


@get("/groups/{name:str}")
async def group(request: Request[Any, Any, Any], name: FromPath[str], viewer: Current,
                runtime: Rt) -> Template:
    return await group_page(request, runtime, viewer, name, notice=notice(request))


@post("/groups/{name:str}/members")
async def add_member(request: Request[Any, Any, Any], name: FromPath[str], viewer: Current,
                     runtime: Rt) -> Response[Any]:
    require_admin(viewer.user)
    username = (await form(request)).get("username", "")
    try:
        await runtime.service.add_group_member(name, username)
    except DomainError as e:
        return await group_page(request, runtime, viewer, name, status=422, errors=problems(e))
    return see_other(f"/ui/groups/{quote(name)}?notice=member-added")


@post("/groups/{name:str}/members/{username:str}/remove")
async def remove_member(request: Request[Any, Any, Any], name: FromPath[str],
                        username: FromPath[str], viewer: Current, runtime: Rt) -> Response[Any]:
    require_admin(viewer.user)
    try:
        await runtime.service.remove_group_member(name, username)
    except DomainError as e:
        return await group_page(request, runtime, viewer, name, status=422, errors=problems(e))
    return see_other(f"/ui/groups/{quote(name)}?notice=member-removed")


@get("/groups/{name:str}/delete")
async def confirm_delete(name: FromPath[str], viewer: Current, runtime: Rt) -> Template:
    require_admin(viewer.user)
    found = await runtime.service.get_group(name)
    return page("confirm.html", viewer, title=f"Delete the group {found.name}?",
                text=f"The group {found.name} will be deleted; its members stay. "
                     "This cannot be undone.",
                action=f"/ui/groups/{quote(found.name)}/delete", button="Delete group",
                back=f"/ui/groups/{quote(found.name)}")


@post("/groups/{name:str}/delete")
async def delete(request: Request[Any, Any, Any], name: FromPath[str], viewer: Current,
                 runtime: Rt) -> Response[Any]:
    require_admin(viewer.user)
    try:
        await runtime.service.delete_group(name)
    except DomainError as e:
        return await group_page(request, runtime, viewer, name, status=422, errors=problems(e))
    return see_other("/ui/groups?notice=group-deleted")


ROUTES = [groups, create, group, add_member, remove_member, confirm_delete, delete]
