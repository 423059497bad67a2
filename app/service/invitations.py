"""Passwords set with an emailed code: invitations of new users, and forgotten passwords."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import NamedTuple

import msgspec

from app.directory import PersonEntry
from app.directory.codes import CodeState
from app.directory.schema import email_code_attributes
from app.domain import (
    Busy,
    InvalidCode,
    InvalidInput,
    NewUser,
    NotFound,
    TooSoon,
    User,
    is_valid_email,
)
from app.service.base import writes
from app.service.users import Users
from app.verification import EmailCodes, code_matches, is_code_shaped

INVALID = "Invalid or expired code."


class PasswordCode(NamedTuple):
    """A code to mail: to `address`; `invitation`: it also accepts an invitation."""

    address: str
    code: str
    invitation: bool


class Invitations(Users):
    """Codes live where email codes do (userdirEmailCode*: hashed, expiring,
    each try counted before the comparison), so the rules are theirs.

    An invitation is a disabled account whose `mail` also waits, as
    userdirPendingEmail, for the code mailed there: unlike a sign-up (which
    has no pending address), it holds its address against sign-ups, and no
    dialect's verify can enable it without a password being set. A reset
    code goes to the `mail` of an enabled account with no pending change.
    """

    def _invitation_rules(self, lifetime: timedelta) -> EmailCodes:
        codes = self.codes
        return EmailCodes(lifetime=lifetime, max_attempts=codes.max_attempts,
                          clock=codes.clock, resend_interval=codes.resend_interval)

    @writes
    def invite_user(self, new: NewUser, lifetime: timedelta) -> tuple[User, str]:
        """Create `new` disabled, with an unusable random password and a code
        (returned, to be mailed) that sets his password and enables him."""
        address = new.profile.email
        if not isinstance(address, str) or not address:
            raise InvalidInput("email", "An invitation needs an email address.")
        issued = self._invitation_rules(lifetime).issue()
        profile = msgspec.structs.replace(new.profile, email_verified=False,
                                          pending_email=address)
        invited = msgspec.structs.replace(new, active=False, profile=profile,
                                          password=self.directory.people.random_password())
        user = self._create(invited, email_code_attributes(issued.stored, issued.expires))
        return user, issued.code

    @writes
    def reinvite(self, username: str, lifetime: timedelta) -> tuple[str, str]:
        """A new invitation code for a user still invited: (address, code).
        InvalidInput if he is not (any more); TooSoon within resend_interval."""
        state = self.directory.codes.state(self._person(username).dn)
        if not _is_invitation(state):
            raise InvalidInput("username", "This user has no open invitation.")
        rules = self._invitation_rules(lifetime)
        if wait := rules.wait(state.expires):
            raise TooSoon(wait)
        code = self._reissue(state, rules)
        if code is None:
            raise Busy("the invitation keeps changing; retry")
        assert state.mail is not None
        return state.mail, code

    @writes
    def start_password_reset(self, email: str,
                             invitation_lifetime: timedelta) -> PasswordCode | None:
        """A code for whoever may set his password through `email`, or None
        (no such account, a disabled one, or a code sent less than
        resend_interval ago): callers answer all alike. An
        invited user gets his invitation again. A pending email change is
        withdrawn first, so that this code can never confirm that address."""
        person = self._by_mail(email)
        if person is None:
            return None
        codes = self.directory.codes
        state = codes.state(person.dn)
        invitation = _is_invitation(state)
        if invitation:
            rules = self._invitation_rules(invitation_lifetime)
        elif state.locked:  # disabled: only an admin decides that it ends
            return None
        else:
            rules = self.codes
            if state.pending:
                codes.withdraw(person.dn, state.pending)
                state = codes.state(person.dn)
        if rules.wait(state.expires):
            return None
        code = self._reissue(state, rules)
        return PasswordCode(state.mail or email, code, invitation) if code else None

    @writes
    def set_password_with_code(self, email: str, code: str, password: str) -> User:
        """Set the password of the account whose code this is: an invitation
        is accepted (enabled, address verified) by the same step; a reset code
        is used up. The try is counted before the comparison, atomically with
        reading the code; a refused password (slapd's policy) keeps the code.
        Wrong, expired, used up or never sent: the same InvalidCode."""
        self._checked_password(password)
        person = self._by_mail(email) if is_code_shaped(code) else None
        if person is None:
            raise InvalidCode(INVALID)
        codes, rules = self.directory.codes, self.codes
        before = codes.state(person.dn)
        invitation = _is_invitation(before)
        if before.stored is None or not (invitation or _is_reset(before)):
            raise InvalidCode(INVALID)
        state = codes.count_attempt(person.dn)
        if state is None or state.stored is None or rules.expired(state.expires) \
                or state.attempts > rules.max_attempts or not code_matches(code, state.stored):
            if state is not None and (rules.used_up(state.attempts)
                                      or rules.expired(state.expires)):
                codes.void(state)
            raise InvalidCode(INVALID)
        # The password first: if slapd refuses it, the code still works.
        self.directory.people.reset_password(person.dn, password)
        if invitation:
            # Verified, enabled, code dropped: one modify, if the code is still this one.
            if not codes.confirm(state):
                raise InvalidCode(INVALID)
        else:
            codes.void(state)
        return self._user(self._by_dn(person.dn))

    @writes
    def generate_password(self, username: str) -> str:
        """Set a new random password (to be shown once) and return it."""
        password = self.directory.people.random_password()
        self.directory.people.reset_password(self._person(username).dn, password)
        return password

    def _by_mail(self, email: str) -> PersonEntry | None:
        if not is_valid_email(email):
            return None
        with contextlib.suppress(NotFound):
            return self._find("mail", email)
        return None

    def _reissue(self, state: CodeState, rules: EmailCodes) -> str | None:
        issued = rules.issue()
        if self.directory.codes.reissue(state, issued.stored, issued.expires):
            return issued.code
        return None  # a parallel request replaced the code first


def _is_invitation(state: CodeState) -> bool:
    """Disabled, unverified, its own mail waiting for the code (invite_user)."""
    return bool(state.locked and state.verified is False and state.mail and state.pending
                and state.pending.lower() == state.mail.lower())


def _is_reset(state: CodeState) -> bool:
    """An enabled account with no email change waiting: a code is a reset code."""
    return not state.locked and not state.pending and state.mail is not None
