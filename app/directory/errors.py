"""The one place where ldap3 results and exceptions become domain errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ldap3.core import exceptions as ldap_exceptions

from app.domain import (
    AlreadyExists,
    AuthenticationFailed,
    Busy,
    DomainError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    PolicyViolation,
    Unavailable,
)

SUCCESS = 0
INVALID_CREDENTIALS = 49
NO_SUCH_ATTRIBUTE = 16
ATTRIBUTE_OR_VALUE_EXISTS = 20
NO_SUCH_OBJECT = 32
CONSTRAINT_VIOLATION = 19
INVALID_SYNTAX = 21
INSUFFICIENT_ACCESS = 50
BUSY = 51
UNAVAILABLE = 52
UNWILLING = 53
OBJECT_CLASS_VIOLATION = 65
ALREADY_EXISTS = 68
ASSERTION_FAILED = 122

# ldap3 raises these when the socket, not the server, failed: the connection
# that raised one is dropped and the caller sees Unavailable.
CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    ldap_exceptions.LDAPCommunicationError,
    ldap_exceptions.LDAPSessionTerminatedByServerError,
    ldap_exceptions.LDAPSocketOpenError,
    ldap_exceptions.LDAPSocketReceiveError,
    ldap_exceptions.LDAPSocketSendError,
    ldap_exceptions.LDAPResponseTimeoutError,
    ldap_exceptions.LDAPMaximumRetriesError,
    ldap_exceptions.LDAPStartTLSError,
    OSError,
)


class Unreachable(Unavailable):
    """slapd refused the connection or did not answer in time: every request
    would meet the same, so the breaker opens (pool.py). A connection that
    slapd closed (say, it refused an oversized request) is only Unavailable:
    one request's failure never stops the others."""


class StaleConnection(Unavailable):
    """A pooled connection that had died while idle (slapd restarted):
    nothing reached the new slapd, so a read may be retried at once."""


class LdapResult(DomainError):
    """A result code the gateway handles itself (assertion failed, value exists...)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class UniqueViolation(AlreadyExists):
    """slapo-unique refused a value another entry holds (uid, uidNumber, mail)."""


# ppolicy's and slapo-constraint's refusals, in our words: slapd's own text
# (a filter, an overlay's name) never reaches a client.
POLICY_TEXTS = (
    ("quality", "The password does not meet the password policy (at least 8 characters)."),
    ("too short", "The password does not meet the password policy (at least 8 characters)."),
    ("history", "The password was used before; choose another one."),
    ("userPassword", "An account has exactly one password."),
)


def raise_for_result(result: dict[str, Any], subject: str = "entry") -> None:
    """Raise the domain error for a non-success LDAP result. The messages are
    ours: slapd's diagnostic text is for its log, not for a client."""
    code = int(result.get("result", 80))
    message = str(result.get("message") or result.get("description") or "")
    if code == SUCCESS:
        return
    if code == NO_SUCH_OBJECT:
        raise NotFound(f"{subject} not found")
    if code == ALREADY_EXISTS:
        raise AlreadyExists(subject)
    if code == CONSTRAINT_VIOLATION:
        if message.startswith("non-unique attributes"):
            raise UniqueViolation(subject)
        raise PolicyViolation(next((text for key, text in POLICY_TEXTS if key in message),
                                   "The directory's policy refused this value."))
    if code == INVALID_CREDENTIALS:
        raise AuthenticationFailed()
    if code == INSUFFICIENT_ACCESS:
        raise PermissionDenied("insufficient access")
    if code == BUSY:
        raise Busy("the directory is busy; retry shortly")
    if code == UNAVAILABLE:
        raise Unavailable("directory unavailable")
    if code in (INVALID_SYNTAX, OBJECT_CLASS_VIOLATION):
        raise InvalidInput(subject, "The directory refused a value of this request.")
    raise LdapResult(code, f"{result.get('description', code)}: {message}")


@contextmanager
def translated() -> Iterator[None]:
    """Turn ldap3's connection-level exceptions into Unavailable, or
    Unreachable when slapd itself is away (refused, or silent past the timeout)."""
    try:
        yield
    except CONNECTION_ERRORS as e:
        if _unreachable(e):
            raise Unreachable("directory unavailable: no answer") from e
        raise Unavailable("directory unavailable: connection lost") from e


def _unreachable(error: Exception) -> bool:
    # ldap3 raises its receive error as a subclass of the socket's own error
    # (TimeoutError when SO_RCVTIMEO expires: slapd stopped answering).
    return isinstance(error, ldap_exceptions.LDAPSocketOpenError | TimeoutError |
                      ldap_exceptions.LDAPResponseTimeoutError | ConnectionRefusedError)
