"""The console's emails: an invitation, and a link to set a forgotten password."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from urllib.parse import urlencode

from app.mail import Mail, MailUnavailable
from app.runtime import Runtime
from app.service.invitations import PasswordCode


def password_link(runtime: Runtime, address: str, code: str) -> str:
    """Absolute, from http.public_url (never from the request's Host header)."""
    query = urlencode({"email": address, "code": code})
    return f"{runtime.config.public_url}/ui/password?{query}"


def invitation_lifetime(runtime: Runtime) -> timedelta:
    return timedelta(seconds=runtime.config.ui.invitation_lifetime)


def invitation(runtime: Runtime, address: str, username: str, code: str) -> Mail:
    days = max(1, runtime.config.ui.invitation_lifetime // 86400)
    made = f"An account named {username} was made" if username else "An account was made"
    return Mail(to=address, subject="You are invited",
                body=f"{made} for you.\n\n"
                     f"Choose your password here to start using it:\n"
                     f"{password_link(runtime, address, code)}\n\n"
                     f"Or enter the code {code} on the page. The link works once, "
                     f"for {days} day{'s' if days > 1 else ''}.\n")


def password_reset(runtime: Runtime, address: str, code: str) -> Mail:
    minutes = max(1, runtime.config.mail.code_lifetime // 60)
    return Mail(to=address, subject="Set a new password",
                body=f"Someone asked to set a new password for the account of this address.\n\n"
                     f"Choose it here:\n{password_link(runtime, address, code)}\n\n"
                     f"Or enter the code {code} on the page. It is valid for {minutes} "
                     "minutes and works once. If you did not ask for it, ignore this "
                     "message: your password stays as it is.\n")


def password_letter(runtime: Runtime, found: PasswordCode) -> Mail:
    """An invitation again for one still invited (it is his invitation's code)."""
    if found.invitation:
        return invitation(runtime, found.address, "", found.code)
    return password_reset(runtime, found.address, found.code)


async def send_quietly(runtime: Runtime, mail: Mail) -> None:
    """For answers that must not tell whether anything was sent."""
    with contextlib.suppress(MailUnavailable):  # logged by the mailer
        await runtime.mailer.send(mail)
