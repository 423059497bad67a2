"""UFDL's user API (seed 002, compat/ufdl.md): Django REST Framework with simplejwt."""

from __future__ import annotations

import logging
import re
from typing import Any

import msgspec
from litestar import Request, Response, Router, delete, get, patch, post, put
from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.exceptions import HTTPException, MethodNotAllowedException, ValidationException
from litestar.handlers import BaseRouteHandler
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody

from app.api import DEPENDENCIES, SMALL_BODY, Caller, Rt, codes, drf, malformed_request
from app.api.drf import Detail
from app.api.errors import answer
from app.api.ufdl_models import (
    AccessBody,
    BadFilter,
    Credentials,
    FieldErrors,
    ListBody,
    RefreshBody,
    TokenPairBody,
    UfdlUser,
    Update,
    UserBody,
)
from app.auth import (
    InactiveUser,
    MalformedHeader,
    MissingToken,
    TokenError,
    UnknownUser,
    require_staff,
)
from app.domain import (
    ADMIN,
    AlreadyExists,
    AuthenticationFailed,
    Busy,
    InvalidInput,
    LastAdmin,
    NotFound,
    PermissionDenied,
    PolicyViolation,
    Principal,
    Throttled,
    Unavailable,
    User,
    UserQuery,
)
from app.mail import MailUnavailable
from app.runtime import Runtime

log = logging.getLogger("userdir.api.ufdl")
ROOTS = ("/users", "/auth")  # under the prefix: what this dialect answers for
# DRF reads a request without a body as {}.
EMPTY_CREDENTIALS, EMPTY_REFRESH, EMPTY_USER, EMPTY_LIST = (
    Credentials(), RefreshBody(), UserBody(), ListBody())
TAKEN = {"username": "A user with that username already exists.",
         "email": "A user with that email already exists."}
ERRORS = {
    status: ResponseSpec(body, description=description, generate_examples=False)
    for status, (body, description) in {
        400: (dict[str, Any], 'Field errors {"<field>": ["<message>"]}, or {"detail": ...}'),
        401: (Detail, "No valid token; wrong credentials or inactive account"),
        403: (Detail, "Neither staff nor the user himself"),
        404: (Detail, "No such user"),
        405: (Detail, "Method not allowed"),
        413: (Detail, "Body too large"),
        429: (Detail, "Too many failed logins from this client or on this account"),
        503: (Detail, "The directory is unavailable or busy"),
    }.items()
}


# --- tokens (simplejwt) ------------------------------------------------------

@post("/auth/obtain", status_code=200, request_max_body_size=SMALL_BODY,
      responses=ERRORS, summary="Log in: a token pair")
async def obtain(runtime: Rt,
                 data: JSONBody[Credentials] = EMPTY_CREDENTIALS) -> TokenPairBody:
    username, password = data.checked()
    pair = await runtime.auth.login(username, password, by="username")
    return TokenPairBody(refresh=pair.refresh, access=pair.access)


@post("/auth/refresh", status_code=200, request_max_body_size=SMALL_BODY,
      responses=ERRORS,
      summary="A new access token for a refresh token")
async def refresh(runtime: Rt, data: JSONBody[RefreshBody] = EMPTY_REFRESH) -> AccessBody:
    pair = await runtime.auth.refresh(data.checked())
    return AccessBody(access=pair.access)


# --- users -------------------------------------------------------------------

async def signed_in(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """A guard, so that it runs before the body is read: DRF authenticates and
    checks permissions first, so a 401 or 403 comes whatever the body holds."""
    runtime: Runtime = connection.app.state.runtime
    authorization = connection.headers.get("authorization")
    connection.state.caller = await runtime.auth.user_for_header(authorization)


async def staff_only(connection: ASGIConnection[Any, Any, Any, Any],
                     route: BaseRouteHandler) -> None:
    await signed_in(connection, route)
    require_staff(connection.state.caller)


async def guarded_caller(request: Request[Any, Any, Any]) -> Principal:
    caller: Principal = request.state.caller
    return caller


@post("/users/list", status_code=200, guards=[staff_only], responses=ERRORS,
      summary="Users matching the filter body, sorted by slapd (staff)",
      opt={"reads_only": True})
async def list_users(caller: Caller, runtime: Rt,
                     data: JSONBody[ListBody] = EMPTY_LIST) -> list[UfdlUser]:
    query = msgspec.structs.replace(data.to_query(runtime.service.types),
                                    verified_only=not caller.is_admin)
    users = await runtime.service.all_users(query)
    return [UfdlUser.of(user) for user in users]


@post("/users/create", status_code=201, guards=[staff_only], responses=ERRORS,
      summary="Create a user (staff)")
async def create_user(runtime: Rt, data: JSONBody[UserBody] = EMPTY_USER) -> UfdlUser:
    return UfdlUser.of(await runtime.service.create_user(data.to_new_user()))


@get("/users/{key:str}", guards=[signed_in], responses=ERRORS,
     summary="One user by pk (digits) or by username (staff, or the user himself)")
async def retrieve(key: FromPath[str], caller: Caller, runtime: Rt) -> UfdlUser:
    if not (caller.is_staff or is_self(caller, key)):
        raise PermissionDenied("staff or the user himself")
    if is_pk(key):
        return UfdlUser.of(await runtime.service.user_by_id(pk_of(key)))
    return UfdlUser.of(await runtime.service.get_user(key))


@put("/users/{key:str}", status_code=200, guards=[staff_only], responses=ERRORS,
     summary="Replace a user: username and password required (staff)")
async def replace_user(request: Request[Any, Any, Any], key: FromPath[str], caller: Caller,
                       runtime: Rt, data: JSONBody[UserBody] = EMPTY_USER) -> UfdlUser:
    user = await editable_user(runtime, caller, key, request.method)
    update = data.to_update(partial=False)
    return UfdlUser.of(await apply(runtime, caller, user, update))


@patch("/users/{key:str}", status_code=200, guards=[staff_only], responses=ERRORS,
       summary="Change any subset of a user's fields (staff)")
async def update_user(request: Request[Any, Any, Any], key: FromPath[str], caller: Caller,
                      runtime: Rt, data: JSONBody[UserBody] = EMPTY_USER) -> UfdlUser:
    user = await editable_user(runtime, caller, key, request.method)
    update = data.to_update(partial=True)
    return UfdlUser.of(await apply(runtime, caller, user, update))


@delete("/users/{key:str}", status_code=204, guards=[staff_only], responses=ERRORS,
        summary="Mark a user inactive: no login over the API or LDAP (staff)")
async def deactivate(request: Request[Any, Any, Any], key: FromPath[str], caller: Caller,
                     runtime: Rt) -> None:
    user = await editable_user(runtime, caller, key, request.method)
    await runtime.service.disable_user(user.username)


# --- what the routes share ---------------------------------------------------

def is_pk(key: str) -> bool:
    """A numeric path segment is always a pk, never a username."""
    return re.fullmatch(r"[0-9]+", key) is not None


def pk_of(key: str) -> int:
    if len(key) > 18:  # beyond any uidNumber
        raise NotFound("no such pk")
    return int(key)


def is_self(caller: Principal, key: str) -> bool:
    if is_pk(key):
        return len(key) <= 18 and caller.id == int(key)
    return caller.username.lower() == key.lower()


async def editable_user(runtime: Runtime, caller: Principal, key: str, method: str) -> User:
    """The user a PUT, PATCH or DELETE is for: by pk only (a name serves GET
    alone). Only an admin may change or deactivate an admin: staff could
    otherwise take over an admin account by setting its password."""
    if not is_pk(key):
        raise MethodNotAllowedException(f'Method "{method}" not allowed.')
    user = await runtime.service.user_by_id(pk_of(key))
    if user.is_admin and not caller.is_admin:
        raise PermissionDenied("only an admin may change an admin")
    return user


async def apply(runtime: Runtime, caller: Principal, user: User, update: Update) -> User:
    """What can be checked first is (values, a taken name or address, the
    last active admin's deactivation, the last admin's demotion): refused,
    nothing changes. Then the password (slapd's policy may refuse it, before
    anything else changed), type and fields, and the deactivation last."""
    service = runtime.service
    if update.active is False and user.active and user.is_admin:
        await refuse_last_admin(runtime, user)
    # Staff are no admins: a new email they give waits for its code.
    user = await codes.update_user(runtime, caller, user, update.changes,
                                   account_type=update.account_type(user, service.types),
                                   password=update.password)
    if update.active is not None and update.active != user.active:
        switch = service.enable_user if update.active else service.disable_user
        user = await switch(user.username)
    return user


async def refuse_last_admin(runtime: Runtime, user: User) -> None:
    """A look-ahead only (the service decides, atomically): so that a refused
    deactivation leaves the other fields of the request unapplied too."""
    admins = await runtime.service.list_users(
        UserQuery(account_type=ADMIN, active=True, limit=2))
    if admins.total < 2:
        raise LastAdmin(f"{user.username} is the last active admin")


# --- errors: DRF's shapes ----------------------------------------------------

def error_response(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    status, body = describe(request, error)
    headers = {"WWW-Authenticate": 'Bearer realm="api"'} if status == 401 else {}  # simplejwt's
    return answer(request, error, status, body, log=log, headers=headers)


def describe(request: Request[Any, Any, Any], error: Exception) -> tuple[int, Any]:
    filtering = request.url.path.rstrip("/").endswith("/users/list")
    match error:
        case FieldErrors():
            return 400, error.errors
        case BadFilter():
            return 400, Detail(error.message)
        case AlreadyExists():
            return 400, {error.field: [TAKEN.get(error.field, "This value is already taken.")]}
        case PolicyViolation():
            return 400, {"password": [error.message]}
        case InvalidInput() if filtering:
            return 400, Detail(error.message)
        case InvalidInput():
            field = "is_staff" if error.field == "account_type" else error.field
            return 400, {field: [error.message]}
        case LastAdmin():
            return 400, Detail("The last active admin cannot be made inactive.")
        case TokenError():
            return 401, token_error(request, error)
        case AuthenticationFailed():
            return 401, Detail("No active account found with the given credentials")
        case PermissionDenied():
            return 403, Detail("You do not have permission to perform this action.")
        case NotFound():
            return 404, Detail("Not found.")
        case Throttled():
            return 429, drf.throttled(error.retry_after)
        case MailUnavailable():
            return 503, Detail("The email could not be sent. Please try again later.")
        case Busy() | Unavailable():
            return 503, Detail("Service temporarily unavailable, try again later.")
        case ValidationException() if error.extra:
            if filtering:
                return 400, Detail(wrong_filter(error))
            return 400, drf.wrong_types(error, flags=("is_active", "is_staff"))
        case HTTPException() if error.status_code < 500:
            return drf.http_error(request, error)
    if malformed_request(error):
        return 400, Detail(f"JSON parse error - {error}")
    return 500, Detail("A server error occurred.")


def token_error(request: Request[Any, Any, Any], error: TokenError) -> Detail:
    """simplejwt's words for each way a token fails."""
    if request.url.path.rstrip("/").endswith("/auth/refresh"):
        return Detail("Token is invalid or expired", code="token_not_valid")
    if isinstance(error, InactiveUser):
        return Detail("User is inactive")
    if isinstance(error, UnknownUser):
        return Detail("User not found")
    if isinstance(error, MalformedHeader) and is_bearer(request):
        return Detail("Authorization header must contain two space-delimited values")
    if isinstance(error, MissingToken | MalformedHeader):
        # Another scheme (Basic...) is no credentials at all to simplejwt.
        return Detail("Authentication credentials were not provided.")
    return Detail("Given token not valid for any token type", code="token_not_valid")


def is_bearer(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("authorization", "").split(" ")[0].lower() == "bearer"


def wrong_filter(error: ValidationException) -> str:
    """What is wrong in a list body, and where (msgspec's words)."""
    items = error.extra if isinstance(error.extra, list) else []
    for item in items:
        key, message = str(item.get("key", "")), str(item.get("message", ""))
        where = "" if key in ("", "data") else f" (at {key})"
        return f"Invalid filter body: {message}{where}."
    return "Invalid filter body."


def router(prefix: str) -> Router:
    return Router(
        path=prefix,
        route_handlers=[obtain, refresh, list_users, create_user, retrieve, replace_user,
                        update_user, deactivate],
        dependencies={**DEPENDENCIES, "caller": Provide(guarded_caller)},
        # HTTPException too: the app's own handler for it would win otherwise.
        exception_handlers={Exception: error_response, HTTPException: error_response},
        tags=["ufdl"],
    )
