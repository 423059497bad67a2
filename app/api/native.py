"""userdir's own REST API: every core operation, RFC 9457 problem details for errors."""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Annotated, Any, Literal

from litestar import Request, Response, Router, delete, get, patch, post, put
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from msgspec import UNSET

from app import metrics
from app.api import (
    DEPENDENCIES,
    SMALL_BODY,
    Caller,
    Rt,
    codes,
    malformed_request,
    native_audit,
    native_tokens,
)
from app.api.errors import answer
from app.api.native_models import (
    CodeCheck,
    GroupOut,
    Health,
    NewGroup,
    NewPerson,
    PasswordChange,
    PeoplePage,
    Person,
    PersonPatch,
    Problem,
    RefreshRequest,
    TokenRequest,
    TokenResponse,
    TypeChange,
)
from app.api.pictures import picture_response, read_upload
from app.auth import (
    ExpiredToken,
    InactiveUser,
    TokenError,
    require_admin,
    require_self_or_admin,
    require_self_or_staff,
    require_staff,
)
from app.config import Config
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
    SortKey,
    Throttled,
    Unavailable,
    UserQuery,
)
from app.mail import MailUnavailable
from app.pictures import InvalidPicture, NoPicture

PROBLEM = "application/problem+json"
ERRORS = {
    status: ResponseSpec(Problem, description=description, media_type=PROBLEM,
                         generate_examples=False)
    for status, description in {
        400: "Malformed request (bad JSON, unknown or mistyped fields)",
        401: "Missing, invalid or expired token; wrong credentials; disabled account",
        403: "Authenticated, but not allowed",
        404: "No such user, group or picture",
        409: "Already exists, or the last admin would go",
        413: "Body too large",
        415: "Unsupported media type",
        422: "Invalid value or code, or refused by the password policy",
        429: "Too many attempts (Retry-After)",
        503: "The directory is unavailable or busy (Retry-After)",
    }.items()
}
log = logging.getLogger("userdir.api")


# --- authentication ----------------------------------------------------------

@post("/auth/token", status_code=200, request_max_body_size=SMALL_BODY,
      responses=ERRORS,
      summary="Log in (username or email + password)")
async def issue_token(data: JSONBody[TokenRequest], runtime: Rt) -> TokenResponse:
    login, by = (data.username, "username") if data.username else (data.email or "", "email")
    pair = await runtime.auth.login(login, data.password, by=by)
    return TokenResponse(pair.access, pair.refresh, expires_in=pair.expires_in)


@post("/auth/refresh", status_code=200, request_max_body_size=SMALL_BODY,
      responses=ERRORS,
      summary="A new access token for a refresh token")
async def refresh_token(data: JSONBody[RefreshRequest], runtime: Rt) -> TokenResponse:
    pair = await runtime.auth.refresh(data.refresh_token)
    return TokenResponse(pair.access, pair.refresh, expires_in=pair.expires_in)


@get("/auth/me", responses=ERRORS, summary="The authenticated user")
async def me(caller: Caller, runtime: Rt) -> Person:
    return Person.of(await runtime.service.user_by_uuid(caller.uuid))


@get("/.well-known/jwks.json", responses=ERRORS, summary="Public keys that verify userdir's tokens")
async def jwks(runtime: Rt) -> dict[str, Any]:
    return runtime.auth.key.jwks()


@get("/health", responses=ERRORS, summary="Is the directory answering?")
async def health(runtime: Rt) -> Response[Health]:
    up = await asyncio.to_thread(runtime.directory.ping, 1.0)
    if up:
        return Response(Health("ok", "ok"))
    return Response(Health("degraded", "unreachable"), status_code=503)


@get("/metrics", responses=ERRORS, media_type="text/plain",
     summary="Prometheus metrics (the configured metrics.token, or an admin)")
async def get_metrics(request: Request[Any, Any, Any], runtime: Rt) -> Response[bytes]:
    settings = runtime.config.metrics
    if not settings.enabled:
        raise NotFound("metrics are switched off")
    authorization = request.headers.get("authorization")
    scraper = settings.token and hmac.compare_digest(
        (authorization or "").encode(), f"Bearer {settings.token}".encode())
    if not scraper:
        require_admin(await runtime.auth.user_for_header(authorization))
    body, media_type = metrics.exposition()
    return Response(body, media_type=media_type)


# --- people ------------------------------------------------------------------

SortName = Literal["username", "display_name", "created", "id", "account_type"]


@get("/people", responses=ERRORS, summary="List people (staff)")
async def list_people(
    caller: Caller,
    runtime: Rt,
    q: Annotated[str | None, QueryParameter(
        description="substring of username, name or email", max_length=256)] = None,
    email: Annotated[str | None, QueryParameter(description="exact email")] = None,
    active: Annotated[bool | None, QueryParameter(description="only (in)active users")] = None,
    account_type: Annotated[str | None, QueryParameter(examples=[Example(value="staff")])] = None,
    sort: FromQuery[SortName] = "id",
    order: FromQuery[Literal["asc", "desc"]] = "asc",
    page: Annotated[int, QueryParameter(ge=1, le=1_000_000)] = 1,
    per_page: Annotated[int, QueryParameter(ge=1, le=1000)] = 20,
) -> PeoplePage:
    require_staff(caller)
    per_page = min(per_page, runtime.config.listing.max_per_page)
    query = UserQuery(
        text=q or None, exact=(("email", email),) if email else (), active=active,
        account_type=account_type, sort=SortKey(sort), descending=order == "desc",
        offset=(page - 1) * per_page, limit=per_page, verified_only=not caller.is_admin,
    )
    found = await runtime.service.list_users(query)
    return PeoplePage([Person.of(u) for u in found.users], found.total, page, per_page)


@post("/people", responses=ERRORS, summary="Create a person (admin)")
async def create_person(data: JSONBody[NewPerson], caller: Caller, runtime: Rt) -> Person:
    require_admin(caller)
    return Person.of(await runtime.service.create_user(data.to_domain()))


@get("/people/{username:str}", responses=ERRORS, summary="One person (himself or staff)")
async def get_person(request: Request[Any, Any, Any], username: FromPath[str],
                     runtime: Rt) -> Person:
    # The caller and the person in one directory read (the commonest request).
    caller, person = await runtime.auth.user_and_target(request.headers.get("authorization"),
                                                        username)
    require_self_or_staff(caller, username)
    if person is None:
        raise NotFound("user not found")
    return Person.of(person)


@patch("/people/{username:str}", responses=ERRORS,
       summary="Change profile fields (himself or admin)")
async def patch_person(username: FromPath[str], data: JSONBody[PersonPatch], caller: Caller,
                       runtime: Rt) -> Person:
    require_self_or_admin(caller, username)
    if data.renames() and not caller.is_admin:
        raise PermissionDenied("only an admin may rename a user")
    if data.email_verified is not UNSET and not caller.is_admin:
        raise PermissionDenied("only an admin may mark an address verified")
    user = await runtime.service.get_user(username)
    # A new email from anyone but an admin waits for the code mailed to it.
    return Person.of(await codes.update_user(runtime, caller, user, data.to_domain()))


@post("/people/{username:str}/email/verify", status_code=200, responses=ERRORS,
      request_max_body_size=SMALL_BODY,
      summary="Confirm a new email with the code mailed to it (himself or admin)")
async def verify_email(username: FromPath[str], data: JSONBody[CodeCheck], caller: Caller,
                       runtime: Rt) -> Person:
    require_self_or_admin(caller, username)
    user = await runtime.service.get_user(username)
    if not user.pending_email:
        raise InvalidCode("no new email waits for a code")
    await runtime.service.verify_email(user.pending_email, data.code)
    return Person.of(await runtime.service.get_user(username))


@post("/people/{username:str}/email/resend", status_code=202, responses=ERRORS,
      summary="Mail a new code to the email waiting for one (himself or admin)")
async def resend_email_code(username: FromPath[str], caller: Caller, runtime: Rt) -> Person:
    require_self_or_admin(caller, username)
    user = await runtime.service.get_user(username)
    if not user.pending_email:
        raise NotFound("no new email waits for a code")
    await codes.change_email(runtime, user.username, user.pending_email)
    return Person.of(await runtime.service.get_user(username))


@delete("/people/{username:str}", responses=ERRORS, summary="Delete a person (admin)")
async def delete_person(username: FromPath[str], caller: Caller, runtime: Rt) -> None:
    require_admin(caller)
    await runtime.service.delete_user(username)


@put("/people/{username:str}/type", responses=ERRORS, summary="Set the account type (admin)")
async def set_type(username: FromPath[str], data: JSONBody[TypeChange], caller: Caller,
                   runtime: Rt) -> Person:
    require_admin(caller)
    return Person.of(await runtime.service.set_account_type(username, data.account_type))


@post("/people/{username:str}/disable", responses=ERRORS,
      summary="Disable: no login, no LDAP bind (admin)",
      status_code=200)
async def disable_person(username: FromPath[str], caller: Caller, runtime: Rt) -> Person:
    require_admin(caller)
    return Person.of(await runtime.service.disable_user(username))


@post("/people/{username:str}/enable", responses=ERRORS,
      summary="Enable again (admin)", status_code=200)
async def enable_person(username: FromPath[str], caller: Caller, runtime: Rt) -> Person:
    require_admin(caller)
    return Person.of(await runtime.service.enable_user(username))


@put("/people/{username:str}/password", responses=ERRORS, status_code=204,
     summary="Set a password: himself with the current one, or an admin for another")
async def set_password(username: FromPath[str], data: JSONBody[PasswordChange], caller: Caller,
                       runtime: Rt) -> None:
    require_self_or_admin(caller, username)
    itself = caller.username.lower() == username.lower()
    if itself and data.current_password is None:
        raise InvalidInput("current_password", "the current password is required")
    await runtime.service.set_password(
        username, data.new_password, current=data.current_password if itself else None)


# --- pictures ----------------------------------------------------------------

async def put_photo(request: Request[Any, Any, Any], username: FromPath[str], caller: Caller,
                    runtime: Rt) -> None:
    require_self_or_admin(caller, username)
    await runtime.service.set_picture(username, await read_upload(request))


@delete("/people/{username:str}/photo", responses=ERRORS,
        summary="Remove the picture (himself or admin)")
async def delete_photo(username: FromPath[str], caller: Caller, runtime: Rt) -> None:
    require_self_or_admin(caller, username)
    await runtime.service.delete_picture(username)


@get("/people/{username:str}/photo", responses=ERRORS,
     summary="The picture (JPEG; ETag, If-None-Match)",
     media_type="image/jpeg")
async def get_photo(request: Request[Any, Any, Any], username: FromPath[str],
                    runtime: Rt) -> Response[bytes]:
    picture = await runtime.service.picture(username)
    return picture_response(request, picture, username)


@get("/people/{username:str}/photo/thumbnail", responses=ERRORS,
     summary="The picture's thumbnail (JPEG)",
     media_type="image/jpeg")
async def get_thumbnail(request: Request[Any, Any, Any], username: FromPath[str],
                        runtime: Rt) -> Response[bytes]:
    picture = await runtime.service.thumbnail(username)
    return picture_response(request, picture, f"{username}-thumbnail")


# --- groups ------------------------------------------------------------------

@get("/groups", responses=ERRORS, summary="List groups (staff)")
async def list_groups(caller: Caller, runtime: Rt) -> list[GroupOut]:
    require_staff(caller)
    return [GroupOut.of(g) for g in await runtime.service.list_groups()]


@post("/groups", responses=ERRORS, summary="Create a group (admin)")
async def create_group(data: JSONBody[NewGroup], caller: Caller, runtime: Rt) -> GroupOut:
    require_admin(caller)
    return GroupOut.of(await runtime.service.create_group(data.name, data.description))


@get("/groups/{name:str}", responses=ERRORS, summary="One group (staff)")
async def get_group(name: FromPath[str], caller: Caller, runtime: Rt) -> GroupOut:
    require_staff(caller)
    return GroupOut.of(await runtime.service.get_group(name))


@delete("/groups/{name:str}", responses=ERRORS, summary="Delete a group (admin)")
async def delete_group(name: FromPath[str], caller: Caller, runtime: Rt) -> None:
    require_admin(caller)
    await runtime.service.delete_group(name)


@put("/groups/{name:str}/members/{username:str}", responses=ERRORS, summary="Add a member (admin)")
async def add_member(name: FromPath[str], username: FromPath[str], caller: Caller,
                     runtime: Rt) -> GroupOut:
    require_admin(caller)
    return GroupOut.of(await runtime.service.add_group_member(name, username))


@delete("/groups/{name:str}/members/{username:str}", responses=ERRORS,
        summary="Remove a member (admin)",
        status_code=200)
async def remove_member(name: FromPath[str], username: FromPath[str], caller: Caller,
                        runtime: Rt) -> GroupOut:
    require_admin(caller)
    return GroupOut.of(await runtime.service.remove_group_member(name, username))


# --- errors: RFC 9457 problem details ----------------------------------------

_STATUS: list[tuple[type[Exception], int, str]] = [
    (ExpiredToken, 401, "token expired"),
    (InactiveUser, 401, "account disabled"),
    (TokenError, 401, "authentication required"),
    (AuthenticationFailed, 401, "invalid credentials"),
    (PermissionDenied, 403, "forbidden"),
    (NotFound, 404, "not found"),
    (AlreadyExists, 409, "already exists"),
    (LastAdmin, 409, "last admin"),
    (InvalidInput, 422, "invalid input"),
    (InvalidPicture, 422, "invalid picture"),
    (NoPicture, 404, "no picture"),
    (PolicyViolation, 422, "password policy"),
    (InvalidCode, 422, "invalid code"),
    (Throttled, 429, "too many requests"),
    (Busy, 503, "busy"),
    (Unavailable, 503, "directory unavailable"),
]


def problem(request: Request[Any, Any, Any], error: Exception) -> Response[dict[str, Any]]:
    """Map any error raised below this router to a problem+json response."""
    status, title, detail = 500, "internal error", "unexpected error"
    extra: dict[str, Any] = {}
    headers: dict[str, str] = {}
    if isinstance(error, DomainError):
        for kind, code, name in _STATUS:
            if isinstance(error, kind):
                status, title, detail = code, name, error.message or name
                break
        if isinstance(error, AlreadyExists | InvalidInput):
            extra = {"field": error.field}
        if isinstance(error, AuthenticationFailed):
            detail = "Invalid credentials."
        if isinstance(error, TokenError):
            headers["WWW-Authenticate"] = 'Bearer realm="userdir"'
    elif isinstance(error, MailUnavailable):
        status, title, detail = 503, "mail unavailable", "The email could not be sent."
    elif malformed_request(error):
        status, title, detail = 400, "bad request", "the request is malformed"
        if isinstance(error, ValidationException) and error.extra:
            extra = {"errors": error.extra}
    elif isinstance(error, HTTPException):
        status, title, detail = error.status_code, str(error.detail), str(error.detail)
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    response = answer(request, error, status, body, log=log, headers=headers)
    response.media_type = PROBLEM
    return response


def router(config: Config) -> Router:
    upload = put("/people/{username:str}/photo", status_code=204, responses=ERRORS,
                 request_max_body_size=config.pictures.max_upload_size,
                 summary="Upload a picture: image/jpeg|png|webp body or multipart "
                         "(himself or admin)")(put_photo)
    return Router(
        path="/",
        route_handlers=[
            issue_token, refresh_token, me, jwks, health, get_metrics,
            list_people, create_person, get_person, patch_person, delete_person, set_type,
            disable_person, enable_person, set_password, verify_email, resend_email_code,
            upload, delete_photo, get_photo, get_thumbnail,
            list_groups, create_group, get_group, delete_group, add_member, remove_member,
            *native_tokens.ROUTES, *native_audit.ROUTES,
        ],
        dependencies=DEPENDENCIES,
        exception_handlers={Exception: problem},
        tags=["native"],
    )
