"""Provisioning tokens: long-lived bearer tokens an admin makes for an identity provider."""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import threading
import time
from datetime import UTC, datetime

from app.accounts import TokenInfo
from app.directory.tokens import TokenStore, checked_name
from app.domain import AlreadyExists, InvalidInput, Unavailable
from app.service.base import ServiceBase, reads, writes

PREFIX = "udt_"  # tells a provisioning token from a JWT at a glance (and to secret scanners)
SCOPES = ("scim",)
RECORD_EVERY = 60.0  # seconds: last use is recorded at most this often per token and process


def digest(token: str) -> str:
    """SHA-256 is enough for 256 random bits: nothing to guess, nothing to stretch."""
    return hashlib.sha256(token.encode()).hexdigest()


class ProvisioningTokens(ServiceBase):
    """Made (shown once), listed, revoked and checked here; stored hashed in ou=tokens."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.tokens = TokenStore(self.directory)
        self._recorded: dict[str, float] = {}
        self._recording = threading.Lock()

    @writes
    def create_token(self, name: str, scopes: list[str],
                     description: str | None = None) -> tuple[TokenInfo, str]:
        """A new token and its secret, which exists nowhere else afterwards."""
        name = checked_name(name)
        unknown = sorted(set(scopes) - set(SCOPES))
        if not scopes or unknown:
            raise InvalidInput("scope", f"scopes are: {', '.join(SCOPES)}")
        token = PREFIX + secrets.token_urlsafe(32)
        self.tokens.add(name, digest(token), sorted(set(scopes)), description or None)
        created = next((t for t in self.tokens.all() if t.name.lower() == name.lower()), None)
        if created is None:
            raise AlreadyExists("name")
        return created, token

    @reads
    def list_tokens(self) -> list[TokenInfo]:
        return self.tokens.all()

    @writes
    def revoke_token(self, name: str) -> None:
        self.tokens.delete(checked_name(name))

    @reads
    def token_holder(self, token: str) -> TokenInfo | None:
        """The token this secret is, if any; its last use is recorded (within a minute)."""
        if not token.startswith(PREFIX) or len(token) > 128:
            return None
        found = self.tokens.by_digest(digest(token))
        if found is not None and self._due(found.name):
            # A record, not a condition: with the provider away (read
            # replicas), a token still reads from the consumers.
            with contextlib.suppress(Unavailable):
                self.tokens.used(found.name, datetime.now(UTC))
        return found

    def _due(self, name: str) -> bool:
        with self._recording:
            now = time.monotonic()
            if now - self._recorded.get(name, -RECORD_EVERY) < RECORD_EVERY:
                return False
            self._recorded[name] = now
            return True
