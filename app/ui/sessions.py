"""Console sign-ins: a signed cookie naming a server-side session that holds the token pair.

The session follows the token rules exactly, because it *is* a token pair:
every request checks the access token with Authenticator.user_for, which
reads the user from the directory, so a disabled or deleted user, or one
whose password changed (by any route or LDAP tool), is signed out on his
next request. An expired access token is refreshed with the refresh token
(which the same rules guard). Sessions live in a Litestar Store of files
(mode 0600) that the workers of one host share; signing out deletes the
session, so a copied cookie dies with it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

import msgspec
from cryptography.hazmat.primitives import serialization
from litestar import Request
from litestar.datastructures import Cookie
from litestar.stores.file import FileStore

from app.auth import Authenticator, ExpiredToken, SigningKey, TokenPair
from app.domain import DomainError, Principal

COOKIE = "userdir_session"
PATH = "/ui"
SWEEP_EVERY = 600.0  # seconds between removals of expired sessions never read again


class SignedOut(DomainError):
    """No session, or one that has ended: the visitor must sign in (again)."""


class StoredSession(msgspec.Struct, frozen=True):
    access: str
    refresh: str
    ends: float  # Unix time: the session's absolute end


@dataclass(frozen=True)
class Viewer:
    """Who is looking at a page: the user as the directory says now, and his session."""

    user: Principal
    session_id: str


def derived_secret(key: SigningKey, purpose: str) -> bytes:
    """A secret for `purpose` derived from the JWT signing key, which every
    API process and replica already shares: nothing new to distribute."""
    private = key.private_key.private_bytes(serialization.Encoding.DER,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption())
    return hmac.new(private, f"userdir console {purpose}".encode(), hashlib.sha256).digest()


class Sessions:
    def __init__(self, store: FileStore, secret: bytes, lifetime: int, *, secure: bool) -> None:
        self.store = store
        self.secret = secret
        self.lifetime = lifetime
        self.secure = secure

    # --- the cookie: `<id>.<HMAC of id>` -------------------------------------

    def _sign(self, session_id: str) -> str:
        return hmac.new(self.secret, session_id.encode(), hashlib.sha256).hexdigest()

    def session_id(self, cookie: str | None) -> str | None:
        """The id a cookie names, if we signed it; None for anything else."""
        session_id, _, signature = (cookie or "").partition(".")
        if len(session_id) != 64 or not hmac.compare_digest(signature, self._sign(session_id)):
            return None
        return session_id

    def cookie(self, session_id: str | None) -> Cookie:
        """The cookie to set (or, without an id, to delete)."""
        value = f"{session_id}.{self._sign(session_id)}" if session_id else ""
        return Cookie(key=COOKIE, value=value, path=PATH, httponly=True, samesite="lax",
                      secure=self.secure, max_age=self.lifetime if session_id else 0)

    # --- the sessions ---------------------------------------------------------

    async def open(self, pair: TokenPair, previous_cookie: str | None = None) -> str:
        """A new session for a fresh sign-in; an old one of this browser ends
        (a new id at every sign-in: no session fixation)."""
        previous = self.session_id(previous_cookie)
        if previous:
            await self.close(previous)
        session_id = secrets.token_hex(32)
        await self._save(session_id, StoredSession(pair.access, pair.refresh,
                                                   time.time() + self.lifetime))
        return session_id

    async def close(self, session_id: str) -> None:
        await self.store.delete(session_id)

    async def viewer(self, request: Request[Any, Any, Any], auth: Authenticator) -> Viewer:
        """The signed-in user of this request (SignedOut otherwise), read now.
        A session whose user may no longer use his tokens is deleted."""
        session_id = self.session_id(request.cookies.get(COOKIE))
        raw = await self.store.get(session_id) if session_id else None
        if session_id is None or raw is None:
            raise SignedOut("sign in")
        session = msgspec.json.decode(raw, type=StoredSession)
        try:
            if session.ends <= time.time():
                raise SignedOut("the session has ended")
            try:
                user = await auth.user_for(session.access)
            except ExpiredToken:
                pair = await auth.refresh(session.refresh)
                session = msgspec.structs.replace(session, access=pair.access)
                user = await auth.user_for(session.access)
                await self._save(session_id, session)
        except DomainError as e:  # TokenError (disabled, deleted, re-passworded) or SignedOut
            await self.store.delete(session_id)
            raise SignedOut("the session has ended") from e
        return Viewer(user, session_id)

    async def _save(self, session_id: str, session: StoredSession) -> None:
        remaining = max(1, int(session.ends - time.time()))
        await self.store.set(session_id, msgspec.json.encode(session), expires_in=remaining)
