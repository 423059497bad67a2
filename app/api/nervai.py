"""The NervAI Engine's user API (seed 000, compat/nervai.md): flask-restx bodies and errors."""

from __future__ import annotations

import contextlib
import logging
import re
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Request, Response, Router, delete, get, post
from litestar.connection import ASGIConnection
from litestar.exceptions import HTTPException, ValidationException
from litestar.handlers import BaseRouteHandler
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody

from app.api import DEPENDENCIES, SMALL_BODY, Rt, malformed_request
from app.api.errors import answer
from app.api.nervai_models import (
    VALIDATION_FAILED,
    Availability,
    BadRequest,
    Credentials,
    DeleteBody,
    LoginResponse,
    Message,
    NervaiUser,
    NewUserBody,
    PayloadInvalid,
    TypeBody,
    required,
)
from app.api.pictures import picture_response
from app.auth import TokenError, require_admin
from app.domain import (
    AlreadyExists,
    AuthenticationFailed,
    Busy,
    InvalidInput,
    LastAdmin,
    NotFound,
    PermissionDenied,
    PolicyViolation,
    SortKey,
    Throttled,
    Unavailable,
    User,
    UserQuery,
    is_valid_username,
)
from app.pictures import InvalidPicture, NoPicture
from app.runtime import Runtime

log = logging.getLogger("userdir.api.nervai")
ROOTS = ("/users", "/auth/login")  # under the prefix: what this dialect answers for
# Werkzeug's default descriptions: what a Flask app answers for these statuses.
WERKZEUG = {
    400: "The browser (or proxy) sent a request that this server could not understand.",
    404: "The requested URL was not found on the server. If you entered the URL manually "
         "please check your spelling and try again.",
    405: "The method is not allowed for the requested URL.",
    413: "The data value transmitted exceeds the capacity limit.",
    415: "The server does not support the media type transmitted in the request.",
    429: "The user has sent too many requests in a given amount of time.",
    500: "The server encountered an internal error and was unable to complete your request. "
         "Either the server is overloaded or there is an error in the application.",
    503: "The server is temporarily unable to service your request due to maintenance "
         "downtime or capacity problems. Please try again later.",
}


ERRORS = {
    status: ResponseSpec(Message, description=description, generate_examples=False)
    for status, description in {
        400: "Missing, blank or invalid field; unknown user (delete); the last admin",
        401: "No valid token, or wrong credentials",
        403: "Admin rights required",
        404: "No such user or picture",
        413: "Body too large",
        429: "Too many failed logins from this client or on this account (Retry-After)",
        503: "The directory is unavailable or busy",
    }.items()
}


# --- routes ------------------------------------------------------------------

async def admins_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """A guard, so that it runs before the body is read: like flask-restx's
    decorators, a missing token is a 401 and a non-admin a 403 whatever the body."""
    runtime: Runtime = connection.app.state.runtime
    require_admin(await runtime.auth.user_for_header(connection.headers.get("authorization")))


@post("/auth/login", status_code=200, request_max_body_size=SMALL_BODY,
      responses=ERRORS, summary="Log in")
async def login(data: JSONBody[Credentials], runtime: Rt) -> LoginResponse:
    given = required(username=data.username, password=data.password)
    pair = await runtime.auth.login(given["username"], given["password"], by="username")
    return LoginResponse(pair.access, expires_in=pair.expires_in)


@post("/users", status_code=201, guards=[admins_only], responses=ERRORS,
      summary="Create a user (admin)")
async def create_user(data: JSONBody[NewUserBody], runtime: Rt) -> NervaiUser:
    new = data.to_domain(runtime.service.types)
    return NervaiUser.of(await runtime.service.create_user(new))


@get("/users", guards=[admins_only], responses=ERRORS, summary="All users (admin)")
async def list_users(runtime: Rt) -> list[NervaiUser]:
    users = await runtime.service.all_users(UserQuery(sort=SortKey.ID))
    return [NervaiUser.of(user) for user in users]


@delete("/users", status_code=200, guards=[admins_only], responses=ERRORS,
        summary="Delete a user named in the body {username} or in ?username= (admin)")
async def delete_user(request: Request[Any, Any, Any], runtime: Rt,
                      username: FromQuery[str | None] = None) -> Message:
    name = required(username=username or (await delete_body(request)).username)["username"]
    await runtime.service.delete_user(name)
    return Message("User successfully deleted.")


@get("/users/check/{username:str}", responses=ERRORS, summary="Is this username free?")
async def check_username(username: FromPath[str], runtime: Rt) -> Availability:
    return await availability(runtime, username)


async def availability(runtime: Runtime, username: str) -> Availability:
    available = is_valid_username(username) and not await exists(runtime, username)
    return Availability(username, available)


@post("/users/{user_id:str}/type", status_code=200, guards=[admins_only], responses=ERRORS,
      summary="Change the account type; user_id is the numeric id or the username (admin)")
async def change_type(user_id: FromPath[str], data: JSONBody[TypeBody],
                      runtime: Rt) -> NervaiUser:
    account_type = data.to_domain(runtime.service.types)
    user = await user_by_id_or_name(runtime, user_id)
    return NervaiUser.of(await runtime.service.set_account_type(user.username, account_type))


# A user named "check": /users/check/... is also the availability check's
# path. As in the original (Flask), a POST there is his type change, and the
# picture routes, which end in a slash where the check does not, are his.
CHECK = "check"


@post("/users/check/type", status_code=200, guards=[admins_only], responses=ERRORS,
      summary="Change the account type of the user named check (admin)")
async def change_type_of_check(data: JSONBody[TypeBody], runtime: Rt) -> NervaiUser:
    account_type = data.to_domain(runtime.service.types)
    return NervaiUser.of(await runtime.service.set_account_type(CHECK, account_type))


@get("/users/check/type", responses=ERRORS, summary="Is the username type free?")
async def check_type(runtime: Rt) -> Availability:
    # The POST route above is static, so Litestar sends no GET here to the check.
    return await availability(runtime, "type")


@get(["/users/check/profile_picture", "/users/check/thumbnail"], responses=ERRORS,
     summary="The picture of the user named check (with a final slash), or whether "
             "profile_picture / thumbnail is a free username (without)")
async def check_or_picture_of_check(request: Request[Any, Any, Any],
                                    runtime: Rt) -> Response[Any]:
    # Litestar strips the final slash from scope["path"]; the server's raw_path
    # keeps it (httpx's test transport adds the query string to it).
    raw = request.scope.get("raw_path", b"")
    name = request.url.path.rstrip("/").rpartition("/")[2]
    if not raw.split(b"?")[0].endswith(b"/"):
        return Response(await availability(runtime, name))
    return await picture_of(request, runtime, CHECK, thumbnail=name == "thumbnail")


@get("/users/{username:str}/profile_picture", responses=ERRORS, media_type="image/jpeg",
     summary="The profile picture (JPEG)")
async def profile_picture(request: Request[Any, Any, Any], username: FromPath[str],
                          runtime: Rt) -> Response[bytes]:
    return await picture_of(request, runtime, username, thumbnail=False)


@get("/users/{username:str}/thumbnail", responses=ERRORS, media_type="image/jpeg",
     summary="The profile picture's thumbnail (JPEG)")
async def thumbnail(request: Request[Any, Any, Any], username: FromPath[str],
                    runtime: Rt) -> Response[bytes]:
    return await picture_of(request, runtime, username, thumbnail=True)


async def picture_of(request: Request[Any, Any, Any], runtime: Runtime, username: str, *,
                     thumbnail: bool) -> Response[bytes]:
    if thumbnail:
        picture = await runtime.service.thumbnail(username)
        return picture_response(request, picture, f"{username}-thumbnail")
    return picture_response(request, await runtime.service.picture(username), username)


# --- what the routes share ---------------------------------------------------

async def delete_body(request: Request[Any, Any, Any]) -> DeleteBody:
    """The optional JSON body of a DELETE (the username may come in the query instead)."""
    raw = await request.body()
    return msgspec.json.decode(raw, type=DeleteBody) if raw.strip() else DeleteBody()




async def exists(runtime: Runtime, username: str) -> bool:
    try:
        await runtime.service.get_user(username)
    except NotFound:
        return False
    return True


async def user_by_id_or_name(runtime: Runtime, user_id: str) -> User:
    """The seed calls it a user id; clients send either the number or the username."""
    if re.fullmatch(r"[0-9]{1,18}", user_id):
        with contextlib.suppress(NotFound):
            return await runtime.service.user_by_id(int(user_id))
    return await runtime.service.get_user(user_id)


# --- errors: {"message": ...} (and "errors" for fields), as flask-restx -------

def error_response(request: Request[Any, Any, Any], error: Exception) -> Response[Message]:
    status, body = describe(request, error)
    return answer(request, error, status, body, log=log)


def describe(request: Request[Any, Any, Any], error: Exception) -> tuple[int, Message]:
    deleting = request.method == "DELETE"
    match error:
        case PayloadInvalid():
            return 400, Message(VALIDATION_FAILED, error.errors)
        case BadRequest():
            return 400, Message(error.message)
        case InvalidInput():
            return 400, Message(VALIDATION_FAILED, {error.field: error.message})
        case PolicyViolation():
            return 400, Message(error.message)
        case AlreadyExists():
            return 400, Message(f"The {error.field} is already taken.")
        case LastAdmin():
            verb = "delete" if deleting else "demote"
            return 400, Message(f"Cannot {verb} the last admin.")
        case TokenError():
            return 401, Message("Authentication required.")
        case AuthenticationFailed():
            return 401, Message("Invalid username or password.")
        case PermissionDenied():
            return 403, Message("Admin rights required.")
        case NoPicture() | InvalidPicture():
            return 404, Message("No picture.")
        case NotFound():
            # compat: an unknown user is a 400 on delete (the seed lists no 404 there).
            return (400 if deleting else 404), Message("User does not exist.")
        case Throttled():
            return 429, Message(WERKZEUG[429])
        case Busy() | Unavailable():
            return 503, Message(WERKZEUG[503])
        case ValidationException() if fields_of(error):
            return 400, Message(VALIDATION_FAILED, fields_of(error))
        case HTTPException() if error.status_code < 500:
            return error.status_code, Message(werkzeug_text(error.status_code))
    if malformed_request(error):
        return 400, Message(WERKZEUG[400])
    return 500, Message(WERKZEUG[500])


def fields_of(error: ValidationException) -> dict[str, str]:
    """Litestar's per-field errors of a body (a body that is no object has none)."""
    extra = error.extra if isinstance(error.extra, list) else []
    return {str(e["key"]): str(e["message"]) for e in extra
            if isinstance(e, dict) and e.get("source") == "body" and e.get("key") != "data"}


def werkzeug_text(status: int) -> str:
    return WERKZEUG.get(status) or HTTPStatus(status).phrase


def router(prefix: str) -> Router:
    return Router(
        path=prefix,
        route_handlers=[login, create_user, list_users, delete_user, check_username,
                        change_type, profile_picture, thumbnail, change_type_of_check,
                        check_type, check_or_picture_of_check],
        dependencies=DEPENDENCIES,
        # HTTPException too: the app's own handler for it would win otherwise.
        exception_handlers={Exception: error_response, HTTPException: error_response},
        tags=["nervai"],
    )
