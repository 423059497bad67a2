"""The native API's /tokens: provisioning tokens for identity providers (admins only)."""

from __future__ import annotations

from datetime import datetime

import msgspec
from litestar import delete, get, post
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody

from app.accounts import TokenInfo
from app.api import SMALL_BODY, Caller, Rt
from app.api.native_models import Problem
from app.auth import require_admin
from app.runtime import Runtime
from app.service.tokens import ProvisioningTokens

_services: list[tuple[Runtime, ProvisioningTokens]] = []
# The native API's problem+json answers (native.ERRORS; native imports this module).
ERRORS = {status: ResponseSpec(Problem, description=description,
                               media_type="application/problem+json", generate_examples=False)
          for status, description in {
              400: "Malformed request", 401: "Missing, invalid or expired token",
              403: "Not an admin", 404: "No such token", 409: "A token of that name exists",
              413: "Body too large", 422: "Invalid name or scope",
              429: "Too many requests (Retry-After)",
              503: "The directory is unavailable or busy (Retry-After)"}.items()}


class NewToken(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    scopes: list[str] = msgspec.field(default_factory=lambda: ["scim"])
    description: str | None = None


class TokenOut(msgspec.Struct):
    name: str
    scopes: list[str]
    created: datetime | None
    last_used: datetime | None
    description: str | None

    @classmethod
    def of(cls, info: TokenInfo) -> TokenOut:
        return cls(info.name, list(info.scopes), info.created, info.last_used, info.description)


class CreatedToken(TokenOut):
    # Shown this once: the directory keeps only its SHA-256.
    token: str = ""


def tokens_of(runtime: Runtime) -> ProvisioningTokens:
    if not _services or _services[0][0] is not runtime:
        _services[:] = [(runtime, ProvisioningTokens.beside(runtime.service))]
    return _services[0][1]


@post("/tokens", status_code=201, request_max_body_size=SMALL_BODY, responses=ERRORS,
      summary="Create a provisioning token, shown once (admin)")
async def create_token(data: JSONBody[NewToken], caller: Caller, runtime: Rt) -> CreatedToken:
    require_admin(caller)
    info, secret = await tokens_of(runtime).create_token(data.name, data.scopes,
                                                         data.description)
    return CreatedToken(**msgspec.structs.asdict(TokenOut.of(info)), token=secret)


@get("/tokens", responses=ERRORS,
     summary="List provisioning tokens, never the tokens themselves (admin)")
async def list_tokens(caller: Caller, runtime: Rt) -> list[TokenOut]:
    require_admin(caller)
    return [TokenOut.of(t) for t in await tokens_of(runtime).list_tokens()]


@delete("/tokens/{name:str}", responses=ERRORS,
        summary="Revoke a provisioning token at once (admin)")
async def revoke_token(name: FromPath[str], caller: Caller, runtime: Rt) -> None:
    require_admin(caller)
    await tokens_of(runtime).revoke_token(name)


ROUTES = [create_token, list_tokens, revoke_token]
