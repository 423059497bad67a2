"""FitTrackee's user API (seed 001, compat/fittrackee.md): Flask-style status bodies."""

from __future__ import annotations

import logging
import math
from datetime import date, datetime
from email.utils import format_datetime
from typing import Any

import msgspec
from litestar import Request, Response, Router, delete, get, patch, post
from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.handlers import BaseRouteHandler
from litestar.openapi import ResponseSpec
from litestar.params import FromPath
from msgspec import Struct

from app.api import DEPENDENCIES, SMALL_BODY, Caller, Rt, malformed_request
from app.api.errors import answer
from app.api.pictures import picture_response
from app.auth import ExpiredToken, InactiveUser, InvalidToken, TokenError, UnknownUser
from app.domain import (
    ADMIN,
    AuthenticationFailed,
    Busy,
    InvalidInput,
    LastAdmin,
    Match,
    NotFound,
    PermissionDenied,
    Principal,
    SortKey,
    Throttled,
    Unavailable,
    User,
    UserQuery,
)
from app.pictures import InvalidPicture, NoPicture
from app.runtime import Runtime

log = logging.getLogger("userdir.api.fittrackee")
ROOTS = ("/users", "/auth")  # under the prefix: what this dialect answers for
PER_PAGE, MAX_PER_PAGE = 10, 50
# order_by -> the listing's sort key; workouts_count is 0 for everyone: creation order.
ORDERS = {"username": SortKey.USERNAME, "created_at": SortKey.ID,
          "workouts_count": SortKey.ID, "admin": SortKey.IS_ADMIN}
NOT_ALLOWED = "You do not have permissions."
LAST_ADMIN_DELETE = "You can not delete your account, no other user has admin rights."
LAST_ADMIN_DEMOTE = "You can not remove admin rights, no other user has admin rights."


class InvalidPayload(Exception):
    """FitTrackee's one answer to any bad input: 400 "Invalid payload."."""


class Problem(Struct):
    status: str
    message: str


class FittrackeeUser(Struct):
    username: str
    email: str | None
    created_at: str | None
    admin: bool
    first_name: str | None
    last_name: str | None
    bio: str | None
    location: str | None
    birth_date: str | None
    picture: bool
    timezone: str
    weekm: bool
    language: str | None
    nb_sports: int
    nb_workouts: int
    sports_list: list[int]
    total_distance: int
    total_duration: str

    @classmethod
    def of(cls, user: User, picture: bool, default_timezone: str,
           private: bool = True) -> FittrackeeUser:
        """`private`: with the email and birth date (else null)."""
        # userdir stores no workouts: the statistics are those of a new user.
        return cls(
            username=user.username, email=user.email if private else None,
            created_at=rfc822(user.created),
            admin=user.is_admin, first_name=user.first_name, last_name=user.last_name,
            bio=user.bio, location=user.location,
            birth_date=rfc822(user.birthday) if private else None,
            picture=picture, timezone=user.timezone or default_timezone, weekm=False,
            language=user.language, nb_sports=0, nb_workouts=0, sports_list=[],
            total_distance=0, total_duration="0:00:00",
        )


ERRORS = {
    status: ResponseSpec(Problem, description=description, generate_examples=False)
    for status, description in {
        400: "Invalid payload.",
        401: "No valid token, or invalid credentials",
        403: "You do not have permissions.",
        404: "User does not exist. / No picture.",
        429: "Too many failed logins from this client or on this account (Retry-After)",
        503: "The directory is unavailable or busy",
    }.items()
}


def rfc822(moment: datetime | date | None) -> str | None:
    """Flask's JSON form of a date: "Sun, 14 Jul 2019 14:09:58 GMT"."""
    if moment is None:
        return None
    if not isinstance(moment, datetime):
        moment = datetime(moment.year, moment.month, moment.day)
    return format_datetime(moment.replace(tzinfo=None), usegmt=False).replace("-0000", "GMT")


async def authenticated(connection: ASGIConnection[Any, Any, Any, Any],
                        _: BaseRouteHandler) -> None:
    """Before the body is read, as FitTrackee's decorator: a token problem is a 401."""
    runtime: Runtime = connection.app.state.runtime
    authorization = connection.headers.get("authorization")
    connection.state.caller = await runtime.auth.user_for_header(authorization)


async def guarded_caller(request: Request[Any, Any, Any]) -> Principal:
    caller: Principal = request.state.caller
    return caller


# --- routes ------------------------------------------------------------------

@post("/auth/login", status_code=200, request_max_body_size=SMALL_BODY,
      responses=ERRORS, summary="Log in by email")
async def login(request: Request[Any, Any, Any], runtime: Rt) -> dict[str, str]:
    body = await json_object(request)
    if not body:
        raise InvalidPayload()
    email, password = body.get("email"), body.get("password")
    if not isinstance(email, str) or not isinstance(password, str):
        raise AuthenticationFailed()
    pair = await runtime.auth.login(email, password, by="email")
    return {"status": "success", "message": "Successfully logged in.", "auth_token": pair.access}


@get("/users", guards=[authenticated], responses=ERRORS, summary="Users, a page at a time")
async def list_users(request: Request[Any, Any, Any], caller: Caller,
                     runtime: Rt) -> dict[str, Any]:
    params = request.query_params
    page = positive_int(params.get("page"), 1)
    per_page = min(positive_int(params.get("per_page"), PER_PAGE), MAX_PER_PAGE)
    order_by, order = params.get("order_by") or "", params.get("order") or "asc"
    sort = ORDERS.get(order_by)
    if sort is None or order not in ("asc", "desc"):
        sort, descending = SortKey.ID, False  # unknown ordering: creation order
    else:
        # Everyone has 0 workouts: all ties, which keep creation order.
        descending = order == "desc" and order_by != "workouts_count"
    query = params.get("q")
    found = await runtime.service.list_users(UserQuery(
        where=Match(field="username", value=query, contains=True) if query else None,
        sort=sort, descending=descending, offset=(page - 1) * per_page, limit=per_page,
        verified_only=not caller.is_admin))
    pages = math.ceil(found.total / per_page)
    return {
        "status": "success",
        "data": {"users": await shaped(runtime, found.users, caller)},
        "pagination": {"has_next": page < pages, "has_prev": page > 1, "page": page,
                       "pages": pages, "total": found.total},
    }


@get("/users/{user_name:str}", responses=ERRORS, summary="One user")
async def get_user(request: Request[Any, Any, Any], user_name: FromPath[str],
                   runtime: Rt) -> dict[str, Any]:
    # Authenticated as the other routes, but the caller and the user come in
    # one directory read (the commonest request).
    caller, user = await runtime.auth.user_and_target(request.headers.get("authorization"),
                                                      user_name)
    if user is None:
        raise NotFound("user not found")
    return {"status": "success", "data": await shaped(runtime, [user], caller)}


@get("/users/{user_name:str}/picture", responses=ERRORS, media_type="image/jpeg",
     summary="The user's picture (no authentication)")
async def get_picture(request: Request[Any, Any, Any], user_name: FromPath[str],
                      runtime: Rt) -> Response[bytes]:
    return picture_response(request, await runtime.service.picture(user_name), user_name)


@patch("/users/{user_name:str}", guards=[authenticated], responses=ERRORS,
       summary="Grant or remove admin rights (admin)")
async def set_admin(request: Request[Any, Any, Any], user_name: FromPath[str], caller: Caller,
                    runtime: Rt) -> dict[str, Any]:
    if not caller.is_admin:
        raise PermissionDenied(NOT_ALLOWED)
    admin = (await json_object(request)).get("admin")
    if not isinstance(admin, bool):  # the origin answered a non-boolean with a 500
        raise InvalidPayload()
    user = await runtime.service.get_user(user_name)
    # `admin` grants or removes admin rights, nothing else: false for a user
    # who is no admin (staff, say) leaves his type alone.
    if admin != user.is_admin:
        account_type = ADMIN if admin else runtime.service.types.default
        user = await runtime.service.set_account_type(user.username, account_type)
    return {"status": "success", "data": await shaped(runtime, [user], caller)}


@delete("/users/{user_name:str}", guards=[authenticated], responses=ERRORS,
        summary="Delete an account (the user himself or an admin)")
async def delete_user(user_name: FromPath[str], caller: Caller, runtime: Rt) -> None:
    target = await runtime.service.get_user(user_name)  # 404 first, as the origin
    if not caller.is_admin and caller.uuid != target.uuid:
        raise PermissionDenied(NOT_ALLOWED)
    await runtime.service.delete_user(target.username)


# --- what the routes share ---------------------------------------------------

async def json_object(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The body as a JSON object ({} when empty); anything else is an invalid payload."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError) as e:
        raise InvalidPayload() from e
    if not isinstance(body, dict):
        raise InvalidPayload()
    return body


def positive_int(raw: str | None, default: int) -> int:
    """page and per_page: the origin crashed (500) on anything not an integer."""
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as e:
        raise InvalidPayload() from e
    if value < 1:
        raise InvalidPayload()
    return value


async def shaped(runtime: Runtime, users: list[User],
                 caller: Principal) -> list[FittrackeeUser]:
    """Users as FitTrackee shows them to `caller`: another user's email and
    birth date only to admins (the directory is shared with other systems),
    unless [fittrackee] expose_private_fields restores the original."""
    pictured = await runtime.service.with_pictures(users)
    settings = runtime.config.fittrackee
    everything = settings.expose_private_fields or caller.is_admin
    return [FittrackeeUser.of(u, u.uuid in pictured, settings.default_timezone,
                              private=everything or u.uuid == caller.uuid) for u in users]


# --- errors: {"status": "error"|"not found", "message": ...} -------------------

def error_response(request: Request[Any, Any, Any], error: Exception) -> Response[Problem]:
    status, kind, message = describe(request, error)
    return answer(request, error, status, Problem(kind, message), log=log)


def describe(request: Request[Any, Any, Any], error: Exception) -> tuple[int, str, str]:
    match error:
        case InvalidPayload() | InvalidInput():
            return 400, "error", "Invalid payload."
        case ExpiredToken():
            return 401, "error", "Signature expired. Please log in again."
        case UnknownUser() | InactiveUser():
            return 401, "error", "Provide a valid auth token."
        case InvalidToken():
            return 401, "error", "Invalid token. Please log in again."
        case TokenError():
            return 401, "error", "Provide a valid auth token."
        case AuthenticationFailed():
            return 401, "error", "Invalid credentials."
        case PermissionDenied():
            return 403, "error", NOT_ALLOWED
        case LastAdmin():
            deleting = request.method == "DELETE"
            return 403, "error", LAST_ADMIN_DELETE if deleting else LAST_ADMIN_DEMOTE
        case NoPicture() | InvalidPicture():
            return 404, "not found", "No picture."
        case NotFound():
            return 404, "not found", "User does not exist."
        case Throttled():
            return 429, "error", f"Too many requests. Please retry in {error.retry_after} s."
        case Busy() | Unavailable():
            return 503, "error", "Service unavailable, please retry."
        case HTTPException() if error.status_code in (404, 405):
            return error.status_code, "not found" if error.status_code == 404 else "error", (
                "Page not found." if error.status_code == 404 else "Method not allowed.")
        case HTTPException() if error.status_code == 413:
            return 413, "error", "Error during picture upload, file size exceeds limit."
    if malformed_request(error):
        return 400, "error", "Invalid payload."
    return 500, "error", "Error. Please try again or contact the administrator."


def router(prefix: str) -> Router:
    return Router(
        path=prefix,
        route_handlers=[login, list_users, get_user, get_picture, set_admin, delete_user],
        dependencies={**DEPENDENCIES, "caller": Provide(guarded_caller)},
        # HTTPException too: the app's own handler for it would win otherwise.
        exception_handlers={Exception: error_response, HTTPException: error_response},
        tags=["fittrackee"],
    )
