"""A real SMTP server for tests (aiosmtpd on a free port) that keeps what it receives."""

from __future__ import annotations

import re
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPProtocol
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from tests.conftest import free_port


class Inbox:
    """aiosmtpd's handler: every delivered message, by recipient."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, EmailMessage]] = []
        self.sessions: list[dict[str, Any]] = []
        self.arrived = threading.Condition()

    async def handle_DATA(self, server: SMTPProtocol, session: Session,  # aiosmtpd's name
                          envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        message = message_from_bytes(content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        with self.arrived:
            for recipient in envelope.rcpt_tos:
                self.messages.append((recipient.lower(), message))
            encrypted = server.transport is not None and (
                server.transport.get_extra_info("ssl_object") is not None)
            self.sessions.append({"tls": encrypted,
                                  "login": session.auth_data if session.authenticated else None})
            self.arrived.notify_all()
        return "250 Message accepted for delivery"

    def take(self, address: str, timeout: float = 10.0) -> EmailMessage:
        """The oldest message to `address` not taken yet, waiting for it if need be."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while True:
                for index, (recipient, message) in enumerate(self.messages):
                    if recipient == address.lower():
                        del self.messages[index]
                        return message
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no mail to {address} within {timeout}s")
                self.arrived.wait(remaining)

    def code_for(self, address: str) -> str:
        """The one-time code of the next message to `address`."""
        body = self.take(address).get_body(("plain",))
        assert body is not None
        found = re.findall(r"\b[0-9]{6}\b", body.get_content())
        assert len(found) == 1, found
        return str(found[0])

    def count_to(self, address: str) -> int:
        with self.arrived:
            return sum(1 for recipient, _ in self.messages if recipient == address.lower())


class Accounts:
    """aiosmtpd's authenticator: one account; records who logged in."""

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self.password = password

    def __call__(self, server: SMTPProtocol, session: Session, envelope: Envelope,
                 mechanism: str, auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login == self.username.encode()
              and auth_data.password == self.password.encode())
        return AuthResult(success=ok, handled=False, auth_data=self.username if ok else None)


@contextmanager
def smtp_server(*, tls_context: ssl.SSLContext | None = None,
                implicit_tls: ssl.SSLContext | None = None,
                accounts: Accounts | None = None) -> Iterator[tuple[int, Inbox]]:
    """Serve on 127.0.0.1 until the block ends: STARTTLS with `tls_context`,
    TLS from the first byte with `implicit_tls`, AUTH LOGIN/PLAIN with `accounts`."""
    inbox = Inbox()
    port = free_port()
    options: dict[str, Any] = {}
    if tls_context is not None:
        options["tls_context"] = tls_context
    if accounts is not None:
        options.update(authenticator=accounts, auth_require_tls=tls_context is not None)
    controller = Controller(inbox, hostname="127.0.0.1", port=port,
                            ssl_context=implicit_tls, **options)
    controller.start()
    try:
        yield port, inbox
    finally:
        controller.stop()
