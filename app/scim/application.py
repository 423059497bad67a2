"""scim2-server's ASGI application, as userdir runs it: who may call, URLs, limits, errors."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from scim2_models import (
    ForbiddenException,
    PayloadTooLargeException,
    SCIMException,
    UnauthorizedException,
)
from scim2_server.applications.asgi import ASGIApplication, Receive, Scope
from scim2_server.requests import ScimRequest
from scim2_server.responses import ScimResponse
from scim2_server.service import ScimService

from app.auth import TokenError, bearer_token
from app.domain import DomainError
from app.requests import identify
from app.runtime import Runtime
from app.scim.listing import ScimHandler
from app.scim.requests import completed, rewritten, wants_completion
from app.scim.schemas import Models
from app.scim.storage import DirectoryStorage, scim_errors
from app.service.accounts import Provisioning
from app.service.tokens import PREFIX, ProvisioningTokens

log = logging.getLogger("userdir.scim")


@dataclass(frozen=True)
class Caller:
    """Who called: an admin (by username) or a provisioning token (by name)."""

    kind: str
    name: str


class UserdirScimApplication(ASGIApplication):
    def __init__(self, runtime: Runtime, models: Models, base_url: str) -> None:
        self.accounts = Provisioning.beside(runtime.service)
        storage = DirectoryStorage(self.accounts, models)
        super().__init__(storage, models.provider, ScimService(models.provider))
        self.handler = ScimHandler(self.service, storage)
        self.runtime = runtime
        self.tokens = ProvisioningTokens.beside(runtime.service)
        self.base_url = base_url
        self.max_body = runtime.config.http.max_body_size

    def get_base_url(self, scope: Scope) -> str:  # type: ignore[override]
        # http.public_url, never the Host header a client chooses.
        return self.base_url

    async def read_request(self, scope: Scope, receive: Receive) -> ScimRequest:
        """As scim2-server reads it, but never more than http.max_body_size bytes
        (its own limit is for bulk requests only); more is answered 413."""
        read = 0

        async def limited() -> dict[str, Any]:
            nonlocal read
            message = await receive()
            read += len(message.get("body", b""))
            if read > self.max_body:
                raise _TooLarge()
            return message

        try:
            return rewritten(await super().read_request(scope, limited))
        except _TooLarge:
            return ScimRequest(method="TOO-LARGE", base_url=self.base_url, path="/")

    async def serve(self, request: ScimRequest) -> ScimResponse:
        if request.method == "TOO-LARGE":
            error = PayloadTooLargeException(detail=f"bodies are at most {self.max_body} bytes")
            return self.finalize_response(request, self.service.error_response(error))
        return await super().serve(request)

    async def dispatch_request(self, request: ScimRequest) -> ScimResponse:
        """Authenticate (by a directory read: async, unlike check_auth), then serve."""
        if self.needs_auth(request):
            request.subject = await self.caller(request.header("Authorization"))
        target = wants_completion(request)
        if target == "new":
            request = completed(request, True, self.runtime.config.users.default_account_type)
        elif target is not None:
            with scim_errors():
                current = await self.accounts.account(target)
            request = completed(request, current.state.active,
                                current.state.account_type or "")
        return await self.handler.handle(request)

    async def caller(self, authorization: str | None) -> Caller:
        """An admin's access token, or a provisioning token with the scim scope."""
        try:
            token = bearer_token(authorization)
        except TokenError as e:
            raise UnauthorizedException(detail=e.message) from e
        if token.startswith(PREFIX):
            with scim_errors():
                holder = await self.tokens.token_holder(token)
            if holder is None:
                raise UnauthorizedException(detail="unknown or revoked token")
            if "scim" not in holder.scopes:
                raise ForbiddenException(detail="this token has no scim scope")
            identify(f"token:{holder.name}")  # the audit records' actor
            return Caller("token", holder.name)
        try:
            with scim_errors():
                user = await self.runtime.auth.user_for(token)
        except TokenError as e:
            raise UnauthorizedException(detail=e.message) from e
        if not user.is_admin:
            raise ForbiddenException(detail="admin rights or a provisioning token required")
        return Caller("admin", user.username)

    def handle_exception(self, request: ScimRequest, exception: Exception) -> ScimResponse:
        if isinstance(exception, DomainError):  # raised outside the storage
            try:
                with scim_errors():
                    raise exception
            except SCIMException as translated:
                exception = translated
            except DomainError:
                pass
        return super().handle_exception(request, exception)


class _TooLarge(Exception):
    pass
