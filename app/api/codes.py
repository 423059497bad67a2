"""Emailed codes for every dialect: an address is someone's only once he proves he reads it.

A new email given by anyone but an admin waits in userdirPendingEmail with a
code mailed to it (service: start_email_change); `mail` changes when the code
comes back (verify_email). Until then the address holds nothing: no login
by it, no "this email is taken" for its real owner. An admin may set an
address directly; it then reads as unverified unless he says otherwise.
"""

from __future__ import annotations

import contextlib

import msgspec
from msgspec import UNSET

from app.domain import Principal, User, UserChanges, check_profile
from app.mail import Mail, MailUnavailable
from app.runtime import Runtime


def code_mail(runtime: Runtime, address: str, code: str) -> Mail:
    minutes = max(1, runtime.config.mail.code_lifetime // 60)
    return Mail(to=address, subject="Your verification code",
                body=f"Your verification code is {code}.\n\n"
                     f"It is valid for {minutes} minutes. If you did not ask for it, "
                     "ignore this message.\n")


async def change_email(runtime: Runtime, username: str, address: str) -> None:
    """The code goes to the new address; mail changes once it comes back. If
    it cannot be mailed, nothing waits (MailUnavailable) and a retry may come
    at once."""
    code = await runtime.service.start_email_change(username, address)
    try:
        await runtime.mailer.send(code_mail(runtime, address, code))
    except MailUnavailable:
        await runtime.service.cancel_email_change(username, address)
        raise


async def send_quietly(runtime: Runtime, address: str, code: str) -> None:
    # Logged by the mailer; the client was answered alike either way.
    with contextlib.suppress(MailUnavailable):
        await runtime.mailer.send(code_mail(runtime, address, code))


async def update_user(runtime: Runtime, caller: Principal, user: User, changes: UserChanges,
                      **options: str | None) -> User:
    """Apply `changes` to `user` as `caller` may: an admin's new email is set
    at once, anyone else's waits for its code (mailed there first, so that a
    refused change mails nothing: the other fields are checked before)."""
    email = changes.profile.email
    new_address = isinstance(email, str) and email.lower() != (user.email or "").lower()
    if new_address and not caller.is_admin:
        assert isinstance(email, str)
        changes = msgspec.structs.replace(
            changes, profile=msgspec.structs.replace(changes.profile, email=UNSET))
        check_profile(changes.profile)
        await change_email(runtime, user.username, email)
    return await runtime.service.update_user(user.username, changes, **options)
