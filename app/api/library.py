"""The Library book manager's user API (seed 004, compat/library.md): echo's {"message"} errors."""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any, TypeVar

import msgspec
from litestar import Request, Response, Router, delete, get, post, put
from litestar.exceptions import HTTPException
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery
from msgspec import Struct

from app.api import DEPENDENCIES, SMALL_BODY, Caller, Rt, malformed_request
from app.api.errors import answer
from app.api.forms import BadForm, form_fields, is_form
from app.api.library_models import (
    LibraryUser,
    LoginPayload,
    Message,
    PasswordPayload,
    Refused,
    Token,
    UserPayload,
)
from app.auth import MalformedHeader, MissingToken, TokenError, require_admin
from app.domain import (
    AlreadyExists,
    AuthenticationFailed,
    Busy,
    Combine,
    InvalidInput,
    LastAdmin,
    Match,
    NotFound,
    PermissionDenied,
    PolicyViolation,
    SortKey,
    Throttled,
    Unavailable,
    User,
    UserQuery,
)
from app.runtime import Runtime

log = logging.getLogger("userdir.api.library")
ROOTS = ("/users", "/login")  # under the prefix: what this dialect answers for
S = TypeVar("S", bound=Struct)
ERRORS = {
    status: ResponseSpec(Message, description=description, generate_examples=False)
    for status, description in {
        400: "Missing or malformed token header; bad id; missing or invalid fields",
        401: "Invalid or expired token; wrong credentials",
        403: "Not an admin (or not the user himself)",
        404: "No user with this id",
        413: "Body too large",
        429: "Too many failed logins from this client or on this account (Retry-After)",
        503: "The directory is unavailable or busy",
    }.items()
}


# --- routes ------------------------------------------------------------------

@post("/login", status_code=200, request_max_body_size=SMALL_BODY,
      responses=ERRORS, summary="Log in (JSON or form)")
async def login(request: Request[Any, Any, Any], runtime: Rt) -> Token:
    given = await fields(request, LoginPayload)
    if given is None or not given.username or not given.password:
        raise Refused("Please provide a username and password.")
    pair = await runtime.auth.login(given.username, given.password, by="username")
    return Token(pair.access)


@get("/users", responses=ERRORS, summary="All users; `s` filters on username or name (admin)")
async def list_users(caller: Caller, runtime: Rt, s: FromQuery[str] = "") -> list[LibraryUser]:
    require_admin(caller)
    users = await runtime.service.all_users(UserQuery(where=name_filter(s), sort=SortKey.ID))
    return [LibraryUser.of(user) for user in users]


@put("/users", status_code=200, responses=ERRORS,
     summary="Create a user: a JSON user, or a form field `user` holding one (admin)")
async def create_user(request: Request[Any, Any, Any], caller: Caller,
                      runtime: Rt) -> LibraryUser:
    require_admin(caller)
    new = (await user_payload(request)).to_new_user()
    return LibraryUser.of(await runtime.service.create_user(new))


@get("/users/{user_id:str}", responses=ERRORS, summary="One user (admin)")
async def get_user(user_id: FromPath[str], caller: Caller, runtime: Rt) -> LibraryUser:
    require_admin(caller)
    return LibraryUser.of(await runtime.service.user_by_id(parse_id(user_id)))


@post("/users/{user_id:str}", status_code=200, responses=ERRORS,
      summary="Change name, username, email or isAdmin, where given (admin)")
async def update_user(request: Request[Any, Any, Any], user_id: FromPath[str], caller: Caller,
                      runtime: Rt) -> LibraryUser:
    require_admin(caller)
    target = parse_id(user_id)
    payload = await user_payload(request)
    user = await runtime.service.user_by_id(target)
    return LibraryUser.of(await apply_update(runtime, user, payload))


@delete("/users/{user_id:str}", status_code=200, responses=ERRORS, summary="Delete (admin)")
async def delete_user(user_id: FromPath[str], caller: Caller, runtime: Rt) -> Message:
    require_admin(caller)
    user = await runtime.service.user_by_id(parse_id(user_id))
    await runtime.service.delete_user(user.username)
    return Message("success")


@post("/users/{user_id:str}/password", status_code=200, responses=ERRORS,
      summary="Set a password: an admin for anyone, a user for himself (JSON or form)")
async def set_password(request: Request[Any, Any, Any], user_id: FromPath[str],
                       caller: Caller, runtime: Rt) -> Message:
    target = parse_id(user_id)
    if not caller.is_admin and caller.id != target:
        raise PermissionDenied("only an admin may change another user's password")
    given = await fields(request, PasswordPayload)
    if given is None or not given.password:
        raise Refused("Please provide a password.")
    user = await runtime.service.user_by_id(target)
    # The seed asks for no current password, not even from the user himself.
    await runtime.service.set_password(user.username, given.password)
    return Message("The password was updated successfully")


# --- what the routes share ---------------------------------------------------

def parse_id(raw: str) -> int:
    """Go's strconv.ParseInt: an optional sign and decimal digits."""
    if not re.fullmatch(r"[+-]?[0-9]{1,18}", raw):
        raise Refused("User ID is invalid.")
    return int(raw)


async def fields(request: Request[Any, Any, Any], kind: type[S]) -> S | None:
    """A JSON body or the same fields as form values (echo's Bind takes either);
    None when neither parses."""
    try:
        if is_form(request):
            return msgspec.convert(await form_fields(request), kind)
        return msgspec.json.decode(await request.body(), type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError,
            BadForm):
        return None


async def user_payload(request: Request[Any, Any, Any]) -> UserPayload:
    """The user of a request: the JSON body, or a form field `user` holding it (seed)."""
    raw: str | bytes | None
    try:
        raw = (await form_fields(request)).get("user") if is_form(request) \
            else await request.body()
        return msgspec.json.decode(raw or b"", type=UserPayload)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, BadForm) as e:
        raise Refused("No user model provided.") from e


def name_filter(term: str) -> Combine | None:
    """`s`: a substring of the username or of the display name."""
    if not term:
        return None
    return Combine(parts=(Match(field="username", value=term, contains=True),
                          Match(field="display_name", value=term, contains=True)), any=True)


async def apply_update(runtime: Runtime, user: User, payload: UserPayload) -> User:
    """Fields and account type as one update: bad input, a taken name or
    address, or the last admin's demotion changes nothing."""
    account_type = payload.account_type(user, runtime.service.types.default)
    return await runtime.service.update_user(user.username, payload.changes(),
                                             account_type=account_type)


# --- errors: always {"message": ...} -----------------------------------------

def error_response(request: Request[Any, Any, Any], error: Exception) -> Response[Message]:
    status, message = describe(request, error)
    return answer(request, error, status, Message(message), log=log)


def describe(request: Request[Any, Any, Any], error: Exception) -> tuple[int, str]:
    match error:
        case Refused():
            return error.status, error.message
        case MissingToken() | MalformedHeader():
            # echo's JWT middleware: no usable header is the client's 400.
            return 400, "Missing or invalid jwt in the request header"
        case TokenError():
            return 401, "Unauthorized"
        case AuthenticationFailed():
            return 401, "Wrong username or password."
        case PermissionDenied():
            return 403, "Forbidden"
        case NotFound():
            return 404, "The user does not exist."
        case AlreadyExists():
            what = "email address" if error.field == "email" else error.field
            return 400, f"A user with this {what} already exists."
        case LastAdmin():
            verb = "delete" if request.method == "DELETE" else "remove"
            return 400, f"Cannot {verb} the last admin."
        case InvalidInput() | PolicyViolation():
            # The origin answered 500 for what its database refused.
            return 400, error.message
        case Throttled():  # echo's ErrTooManyRequests
            return 429, HTTPStatus.TOO_MANY_REQUESTS.phrase
        case Busy() | Unavailable():
            return 503, HTTPStatus.SERVICE_UNAVAILABLE.phrase
        case HTTPException() if error.status_code < 500:
            return error.status_code, HTTPStatus(error.status_code).phrase
    if malformed_request(error):
        return 400, HTTPStatus.BAD_REQUEST.phrase
    return 500, HTTPStatus.INTERNAL_SERVER_ERROR.phrase


def router(prefix: str) -> Router:
    return Router(
        path=prefix,
        route_handlers=[login, list_users, create_user, get_user, update_user, delete_user,
                        set_password],
        dependencies=DEPENDENCIES,
        # HTTPException too: the app's own handler for it would win otherwise.
        exception_handlers={Exception: error_response, HTTPException: error_response},
        tags=["library"],
    )
