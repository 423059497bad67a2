"""The accounts API (seed 003, compat/accounts.md): DRF sign-up with an emailed code, simplejwt."""

from __future__ import annotations

import logging
import re
from typing import Any

from litestar import Request, Response, Router, get, patch, post
from litestar.background_tasks import BackgroundTask
from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.handlers import BaseRouteHandler
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody

from app.api import DEPENDENCIES, SMALL_BODY, Caller, Rt, drf, malformed_request
from app.api.accounts_models import (
    AccessBody,
    AccountSummary,
    AccountUser,
    EmailBody,
    FieldErrors,
    Message,
    PatchBody,
    RefreshBody,
    SignedUp,
    SignUpBody,
    TokenBody,
    TokenPairBody,
    UserNotFound,
    VerifyBody,
)
from app.api.codes import change_email, code_mail, send_quietly
from app.api.drf import Detail
from app.api.errors import answer
from app.api.pictures import picture_response
from app.auth import ExpiredToken, InactiveUser, InvalidToken, TokenError, UnknownUser
from app.domain import (
    AlreadyExists,
    AuthenticationFailed,
    Busy,
    InvalidCode,
    InvalidInput,
    NewUser,
    NotFound,
    PermissionDenied,
    PolicyViolation,
    Principal,
    Throttled,
    Unavailable,
    User,
    check_profile,
)
from app.mail import MailUnavailable
from app.pictures import InvalidPicture, NoPicture
from app.runtime import Runtime

log = logging.getLogger("userdir.api.accounts")
ROOTS = ("/users", "/token")  # under the prefix: what this dialect answers for
SENT = "Email sent successfully!"
# DRF reads a request without a body as {}: each body defaults to an empty one.
EMPTY_SIGN_UP = SignUpBody()
EMPTY_PATCH = PatchBody()
EMPTY_VERIFY = VerifyBody()
EMPTY_EMAIL = EmailBody()
EMPTY_TOKEN = TokenBody()
EMPTY_REFRESH = RefreshBody()
ERRORS = {
    status: ResponseSpec(body, description=description, generate_examples=False)
    for status, (body, description) in {
        400: (dict[str, Any], 'Field errors {"<field>": ["<message>"]}, or a malformed body'),
        401: (Detail, "No valid token; wrong credentials, unverified or inactive account"),
        403: (Detail, "Neither the user himself nor an admin"),
        404: (UserNotFound, "No user with this id"),
        405: (Detail, "Method not allowed"),
        413: (Detail, "Body too large"),
        429: (Detail, "Too many failed logins, or an email change within "
                      "mail.resend_interval of the last code"),
        503: (Detail, "The directory or the mail server is unavailable"),
    }.items()
}


# --- sign-up and email verification ------------------------------------------

@post("/users/", status_code=201, responses=ERRORS,
      summary="Sign up (anyone): the account waits for the code emailed to it")
async def sign_up(runtime: Rt, data: JSONBody[SignUpBody] = EMPTY_SIGN_UP) -> SignedUp:
    user = await register(runtime, data.to_new_user())
    return SignedUp(SENT, AccountSummary.of(user))


@post("/users/verify/", status_code=200, request_max_body_size=SMALL_BODY,
      responses=ERRORS,
      summary="Confirm an address with its code: a sign-up, or an email change")
async def verify(runtime: Rt, data: JSONBody[VerifyBody] = EMPTY_VERIFY) -> Message:
    email, otp = data.checked()
    await runtime.service.verify_email(email, otp)
    return Message("Email verified successfully!")


@post("/users/resend-otp/", status_code=200, request_max_body_size=SMALL_BODY,
      responses=ERRORS,
      summary="A new code for an address awaiting one (the same answer for any address)")
async def resend_otp(runtime: Rt, data: JSONBody[EmailBody] = EMPTY_EMAIL) -> Response[Message]:
    found = await runtime.service.resend_code(data.checked())
    # Mailed after the answer is sent, so its timing does not tell whether
    # the address has an account.
    mailing = BackgroundTask(send_quietly, runtime, *found) if found else None
    return Response(Message(SENT), background=mailing)


# --- tokens (simplejwt) ------------------------------------------------------

@post("/token/", status_code=200, request_max_body_size=SMALL_BODY,
      responses=ERRORS, summary="Log in with email and password")
async def obtain_token(runtime: Rt, data: JSONBody[TokenBody] = EMPTY_TOKEN) -> TokenPairBody:
    email, password = data.checked()
    pair = await runtime.auth.login(email, password, by="email")
    return TokenPairBody(refresh=pair.refresh, access=pair.access)


@post("/token/refresh/", status_code=200, request_max_body_size=SMALL_BODY,
      responses=ERRORS,
      summary="A new access token for a refresh token")
async def refresh_token(runtime: Rt,
                        data: JSONBody[RefreshBody] = EMPTY_REFRESH) -> AccessBody:
    pair = await runtime.auth.refresh(data.checked())
    return AccessBody(access=pair.access)


# --- one user ----------------------------------------------------------------

async def signed_in(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """A guard, so that it runs before the body is read: DRF authenticates
    first, so a missing token is a 401 whatever the body holds."""
    runtime: Runtime = connection.app.state.runtime
    authorization = connection.headers.get("authorization")
    connection.state.caller = await runtime.auth.user_for_header(authorization)


async def guarded_caller(request: Request[Any, Any, Any]) -> Principal:
    caller: Principal = request.state.caller
    return caller


@get("/users/{pk:str}/", guards=[signed_in], responses=ERRORS,
     summary="One user (himself or an admin)")
async def retrieve(request: Request[Any, Any, Any], pk: FromPath[str], caller: Caller,
                   runtime: Rt) -> AccountUser:
    user = await permitted_user(runtime, caller, pk)
    return AccountUser.of(user, await photo_url(request, runtime, user))


@patch("/users/{pk:str}/", guards=[signed_in], responses=ERRORS,
       summary="Change profile fields (himself or an admin); a new email waits for its code")
async def update(pk: FromPath[str], caller: Caller, runtime: Rt,
                 data: JSONBody[PatchBody] = EMPTY_PATCH) -> AccountSummary:
    user = await permitted_user(runtime, caller, pk)
    email, changes = data.to_changes()
    if isinstance(email, str) and email.lower() != (user.email or "").lower():
        check_profile(changes.profile)  # a refused PATCH changes nothing, and mails nothing
        await change_email(runtime, user.username, email)
    return AccountSummary.of(await runtime.service.update_user(user.username, changes))


@get("/users/{pk:str}/photo/", responses=ERRORS, media_type="image/jpeg",
     summary="The user's picture (JPEG; anyone, as the native API's)")
async def photo(request: Request[Any, Any, Any], pk: FromPath[str],
                runtime: Rt) -> Response[bytes]:
    user = await runtime.service.user_by_id(parse_pk(pk))
    picture = await runtime.service.picture(user.username)
    return picture_response(request, picture, f"user-{user.id}")


# --- what the routes share ---------------------------------------------------

async def register(runtime: Runtime, new: NewUser) -> User:
    """Create the locked account and mail its code; an account whose code
    cannot be mailed is deleted again, so the sign-up can simply be retried."""
    user, code = await runtime.service.sign_up(new)
    try:
        await runtime.mailer.send(code_mail(runtime, user.email or "", code))
    except MailUnavailable:
        await runtime.service.delete_user(user.username)
        raise
    return user


async def permitted_user(runtime: Runtime, caller: Principal, pk: str) -> User:
    """The user himself or an admin; others get 403 whether the id exists or not."""
    if not caller.is_admin and str(caller.id) != pk:
        raise PermissionDenied("only the user himself or an admin")
    return await runtime.service.user_by_id(parse_pk(pk))


def parse_pk(raw: str) -> int:
    if not re.fullmatch(r"[0-9]{1,18}", raw):
        raise NotFound("User not found")
    return int(raw)


async def photo_url(request: Request[Any, Any, Any], runtime: Runtime, user: User) -> str | None:
    """Absolute, and by id: this dialect never shows a username."""
    if user.uuid not in await runtime.service.with_pictures([user]):
        return None
    users = request.url.path.rstrip("/").rpartition("/")[0]  # this route's .../users
    return f"{runtime.config.public_url}{users}/{user.id}/photo/"


# --- errors: DRF's shapes ----------------------------------------------------

def error_response(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    status, body = describe(request, error)
    headers = {"WWW-Authenticate": 'Bearer realm="api"'} if status == 401 else {}
    return answer(request, error, status, body, log=log, headers=headers)


def describe(request: Request[Any, Any, Any], error: Exception) -> tuple[int, Any]:
    match error:
        case FieldErrors():
            return 400, error.errors
        case InvalidCode():
            return 400, {"otp": ["Invalid or expired code."]}
        case AlreadyExists() if error.field == "email":
            return 400, {"email": ["A user with this email already exists."]}
        case AlreadyExists():  # no free username left for this local part
            return 400, {"email": ["Could not derive a username from this email address."]}
        case PolicyViolation():
            return 400, {"password": [error.message]}
        case InvalidInput():
            return 400, {error.field: [error.message]}
        case TokenError():
            return 401, token_error(request, error)
        case AuthenticationFailed():
            return 401, Detail("No active account found with the given credentials")
        case PermissionDenied():
            return 403, Detail("You do not have permission to perform this action.")
        case NoPicture() | InvalidPicture():
            return 404, Detail("Not found.")
        case NotFound():
            return 404, UserNotFound(error="User not found")
        case Throttled():  # DRF's throttling answer
            return 429, drf.throttled(error.retry_after)
        case MailUnavailable():
            return 503, Detail("The email could not be sent. Please try again later.")
        case Busy() | Unavailable():
            return 503, Detail("Service temporarily unavailable, try again later.")
        case ValidationException() if error.extra:
            return 400, drf.wrong_types(error)
        case HTTPException() if error.status_code < 500:
            return drf.http_error(request, error)
    if malformed_request(error):
        return 400, Detail(f"JSON parse error - {error}")
    return 500, Detail("A server error occurred.")


def token_error(request: Request[Any, Any, Any], error: TokenError) -> Detail:
    """simplejwt's words for each way a token fails."""
    if isinstance(error, InactiveUser):
        return Detail("User is inactive", code="user_inactive")
    if isinstance(error, UnknownUser):
        return Detail("User not found", code="user_not_found")
    if request.url.path.rstrip("/").endswith("/token/refresh"):
        return Detail("Token is invalid or expired", code="token_not_valid")
    if isinstance(error, ExpiredToken | InvalidToken):
        return Detail("Given token not valid for any token type", code="token_not_valid",
                      messages=[{"token_class": "AccessToken", "token_type": "access",
                                 "message": "Token is invalid or expired"}])
    return Detail("Authentication credentials were not provided.")


def router(prefix: str) -> Router:
    return Router(
        path=prefix,
        route_handlers=[sign_up, verify, resend_otp, obtain_token, refresh_token, retrieve,
                        update, photo],
        dependencies={**DEPENDENCIES, "caller": Provide(guarded_caller)},
        # HTTPException too: the app's own handler for it would win otherwise.
        exception_handlers={Exception: error_response, HTTPException: error_response},
        tags=["accounts"],
    )
