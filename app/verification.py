"""One-time email codes: six digits from a CSPRNG, kept only as a salted hash."""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

CODE_DIGITS = 6
MAX_ATTEMPTS = 5
LIFETIME = timedelta(minutes=10)
RESEND_INTERVAL = timedelta(minutes=1)
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def is_code_shaped(text: str) -> bool:
    """Six ASCII digits; anything else cannot match and costs no attempt."""
    return re.fullmatch(rf"[0-9]{{{CODE_DIGITS}}}", text) is not None


def hash_code(code: str, salt: str | None = None) -> str:
    """`salt$hex`: HMAC-SHA256 of the code keyed with a random salt.

    A million codes are quickly tried against any hash, so the hash alone
    protects little: the ACL in ldif/config.ldif keeps it from everyone but
    the service, and the attempt limit bounds online guessing.
    """
    salt = salt or secrets.token_hex(16)
    digest = hmac.new(salt.encode(), code.encode(), hashlib.sha256).hexdigest()
    return f"{salt}${digest}"


def code_matches(code: str, stored: str) -> bool:
    salt, sep, _ = stored.partition("$")
    if not sep or not is_code_shaped(code):
        return False
    return hmac.compare_digest(hash_code(code, salt), stored)


@dataclass(frozen=True)
class IssuedCode:
    code: str  # to be mailed, never stored
    stored: str
    expires: datetime


class EmailCodes:
    """The rules for codes: lifetime, attempts, and the clock they are measured by."""

    def __init__(self, lifetime: timedelta = LIFETIME, max_attempts: int = MAX_ATTEMPTS,
                 clock: Clock = utc_now, resend_interval: timedelta = RESEND_INTERVAL) -> None:
        self.lifetime = lifetime
        self.max_attempts = max_attempts
        self.clock = clock
        self.resend_interval = resend_interval

    def issue(self) -> IssuedCode:
        code = new_code()
        return IssuedCode(code, hash_code(code), self.clock() + self.lifetime)

    def expired(self, expires: datetime | None) -> bool:
        return expires is None or expires <= self.clock()

    def wait(self, expires: datetime | None) -> int:
        """Seconds until another code may follow the one that expires then
        (sent lifetime before it); 0: now. A send time in the future means
        the lifetime was lowered since, and tells nothing: 0."""
        if expires is None:
            return 0
        now = self.clock()
        sent = expires - self.lifetime
        if sent > now:
            return 0
        return max(0, math.ceil((sent + self.resend_interval - now).total_seconds()))

    def lapsed(self, created: datetime | None) -> bool:
        """Was a sign-up made then given a lifetime to verify, and did it pass?"""
        return created is not None and created + self.lifetime <= self.clock()

    def used_up(self, attempts: int) -> bool:
        return attempts >= self.max_attempts
