"""One login for every dialect: LDAP bind, then ES256 JWTs checked against the directory."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from app import metrics
from app.bulkhead import current_client
from app.domain import (
    AuthenticationFailed,
    DomainError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    Principal,
    Throttled,
    User,
)
from app.lru import Lru
from app.requests import identify
from app.service import UserService
from app.throttle import LoginThrottle

Identity = User | Principal  # anything with uuid, username and account_type

ALGORITHM = "ES256"
VERIFIED_CACHE = 4096
STAMP_MARGIN = 0.1  # seconds: how far apart the API's and slapd's clocks may be
TokenKind = Literal["access", "refresh"]


class TokenError(DomainError):
    """No usable token: each dialect words these its own way."""


class MissingToken(TokenError):
    pass


class MalformedHeader(TokenError):
    """An Authorization header that is not `Bearer <token>`."""


class ExpiredToken(TokenError):
    pass


class InvalidToken(TokenError):
    """Bad signature, wrong algorithm or kind, missing claims, revoked."""


class UnknownUser(InvalidToken):
    """A valid token whose user no longer exists."""


class InactiveUser(TokenError):
    """A valid token whose user has been disabled."""


class SigningKey:
    """An EC P-256 key: the private half signs, the public half is in the JWKS."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        self.private_key = private_key
        self.public_key = private_key.public_key()
        self.jwk = _public_jwk(self.public_key)
        self.kid = _thumbprint(self.jwk)

    @classmethod
    def load_or_create(cls, path: Path) -> SigningKey:
        """Read the PEM at `path`, or generate one there (mode 0600) on first start."""
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
                raise ValueError(f"{path}: not an EC P-256 private key (needed for ES256)")
            return cls(key)
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        return cls(key)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [{**self.jwk, "kid": self.kid, "use": "sig", "alg": ALGORITHM}]}


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str
    expires_in: int


class Authenticator:
    def __init__(self, service: UserService, key: SigningKey, *, issuer: str,
                 access_ttl: int, refresh_ttl: int, leeway: int = 30,
                 throttle: LoginThrottle | None = None) -> None:
        self.service = service
        self.key = key
        self.issuer = issuer
        self.ttl: dict[TokenKind, int] = {"access": access_ttl, "refresh": refresh_ttl}
        self.leeway = leeway
        self.throttle = throttle or LoginThrottle()
        self._verified: Lru[str, dict[str, Any]] = Lru(VERIFIED_CACHE)

    async def login(self, login: str, password: str, *, by: str = "any") -> TokenPair:
        """Bind as the user (AuthenticationFailed otherwise) and issue both
        tokens; a client or account with too many failures is Throttled first,
        before any directory work (app/throttle.py)."""
        address = current_client.get() or "-"
        try:
            self.throttle.attempt(address, login)  # a failure until it proves otherwise
        except Throttled:
            metrics.LOGINS.labels("throttled").inc()
            raise
        try:
            # The only write a login makes (an imported hash handed to slapd)
            # happens once the password is proven: its owner is the caller.
            identify(login)
            user = await self.service.authenticate(login, password, by=by)
            identify(user.username, user.uuid)
            await self._past_stamp_second(user)
        except AuthenticationFailed:
            metrics.LOGINS.labels("failure").inc()
            raise
        except BaseException as e:  # no guess was checked: refused input, unavailable...
            self.throttle.not_counted(address, login)
            metrics.LOGINS.labels("invalid" if isinstance(e, InvalidInput) else "error").inc()
            raise
        self.throttle.succeeded(address, login)
        metrics.LOGINS.labels("success").inc()
        return self.issue_pair(user)

    async def _past_stamp_second(self, user: User) -> None:
        """pwdChangedTime has whole seconds: a token issued within the second
        of its stamp would survive a second change in that same second. So
        such a login waits for that second to end, then makes sure the stamp
        is still the one its password was checked against (else the password
        changed meanwhile: AuthenticationFailed). Assumes the API's and
        slapd's clocks agree to within STAMP_MARGIN (NTP)."""
        changed = user.password_changed
        if changed is None:
            return
        wait = changed.timestamp() + 1 + STAMP_MARGIN - time.time()
        if wait <= 0:
            return
        await asyncio.sleep(min(wait, 1 + STAMP_MARGIN))  # a clock far off waits no longer
        try:
            now = await self.service.principal(user.uuid)
        except NotFound as e:  # deleted meanwhile
            raise AuthenticationFailed() from e
        if now.password_stamp != user.password_stamp:
            raise AuthenticationFailed()

    def issue_pair(self, user: Identity) -> TokenPair:
        return TokenPair(self.issue(user, "access"), self.issue(user, "refresh"),
                         self.ttl["access"])

    def issue(self, user: Identity, kind: TokenKind, stamp: str | None = None) -> str:
        """A token for `user`; it carries the password stamp it was issued
        under (`pwc`: pwdChangedTime as stored), and dies when that changes."""
        now = int(time.time())
        claims = {
            "iss": self.issuer, "sub": user.uuid, "uid": user.username,
            "iat": now, "exp": now + self.ttl[kind], "jti": secrets.token_urlsafe(16),
            "typ": kind, "account_type": user.account_type,
            "pwc": user.password_stamp if stamp is None else stamp,
        }
        return jwt.encode(claims, self.key.private_key, algorithm=ALGORITHM,
                          headers={"kid": self.key.kid})

    def decode(self, token: str, kind: TokenKind = "access") -> dict[str, Any]:
        """Signature, algorithm (pinned), issuer, expiry and kind; no directory access.

        A signature, once verified, stays verified: tokens seen recently skip
        the ECDSA check (a few percent of a request), never the expiry check.
        """
        claims = self._verified.get(token)
        if claims is None:
            claims = self._verify(token)
            self._verified.put(token, claims)
        elif int(claims["exp"]) + self.leeway < time.time():
            raise ExpiredToken("token expired")
        if claims.get("typ") != kind:
            raise InvalidToken(f"not an {kind} token")
        return claims

    def _verify(self, token: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self.key.public_key, algorithms=[ALGORITHM], issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iat", "sub", "iss", "jti", "typ"]},
            )
        except jwt.ExpiredSignatureError as e:
            raise ExpiredToken("token expired") from e
        except jwt.PyJWTError as e:
            raise InvalidToken("invalid token") from e
        return claims

    async def user_for(self, token: str, kind: TokenKind = "access") -> Principal:
        """The token's user, read now: tokens die with the account, a password
        change revokes every token issued before it, roles count as they are now."""
        claims = self.decode(token, kind)
        try:
            user = await self.service.principal(str(claims["sub"]))
        except NotFound as e:
            raise UnknownUser("the token's user no longer exists") from e
        identify(user.username, user.uuid)  # the audit marker's actor
        return _still_valid(user, claims)

    async def user_for_header(self, authorization: str | None) -> Principal:
        return await self.user_for(bearer_token(authorization))

    async def user_and_target(self, authorization: str | None,
                              username: str) -> tuple[Principal, User | None]:
        """As `user_for_header`, and the user named `username` (None if there
        is none) read in the same directory search: for routes that show one
        user, the caller's guard still has the first word."""
        claims = self.decode(bearer_token(authorization))
        try:
            user, target = await self.service.principal_and_user(str(claims["sub"]), username)
        except NotFound as e:
            raise UnknownUser("the token's user no longer exists") from e
        identify(user.username, user.uuid)
        return _still_valid(user, claims), target

    async def refresh(self, refresh_token: str) -> TokenPair:
        claims = self.decode(refresh_token, "refresh")
        user = await self.user_for(refresh_token, "refresh")
        access = self.issue(user, "access", stamp=str(claims.get("pwc", user.password_stamp)))
        return TokenPair(access, refresh_token, self.ttl["access"])


def _still_valid(user: Principal, claims: dict[str, Any]) -> Principal:
    """Exact revocation: a token is valid while the password it was issued
    under is; pwdChangedTime has whole seconds only, so the stamp is compared
    as a value, never as a time (a change in the token's own second counts)."""
    if not user.active:
        raise InactiveUser("user is inactive")
    stamp = claims.get("pwc")
    if stamp is not None:
        if stamp != user.password_stamp:
            raise InvalidToken("token issued before the last password change")
        return user
    # A token from before stamps existed: the same second counts as before.
    changed = user.password_changed
    if changed is not None and int(claims["iat"]) <= int(changed.timestamp()):
        raise InvalidToken("token issued before the last password change")
    return user


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise MissingToken("authentication required")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip() or " " in token.strip():
        raise MalformedHeader("expected `Authorization: Bearer <token>`")
    return token.strip()


# --- guards: each raises PermissionDenied, which every dialect words itself ---

def require_admin(user: Identity) -> None:
    if not user.is_admin:
        raise PermissionDenied("admin rights required")


def require_staff(user: Identity) -> None:
    if not user.is_staff:
        raise PermissionDenied("staff rights required")


def require_self_or_admin(user: Identity, username: str) -> None:
    if not (user.is_admin or user.username.lower() == username.lower()):
        raise PermissionDenied("only the user himself or an admin may do this")


def require_self_or_staff(user: Identity, username: str) -> None:
    if not (user.is_staff or user.username.lower() == username.lower()):
        raise PermissionDenied("only the user himself or staff may do this")


def _public_jwk(key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    numbers = key.public_numbers()
    return {"kty": "EC", "crv": "P-256", "x": _b64(numbers.x.to_bytes(32, "big")),
            "y": _b64(numbers.y.to_bytes(32, "big"))}


def _thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638: SHA-256 over the required members in lexicographic order."""
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")},
                           separators=(",", ":"), sort_keys=True)
    return _b64(hashlib.sha256(canonical.encode()).digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
