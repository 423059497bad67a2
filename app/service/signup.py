"""Sign-up with an emailed one-time code, email changes and their verification."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

import msgspec

from app.directory.codes import CodeState
from app.directory.schema import email_code_attributes
from app.domain import (
    ADMIN,
    AlreadyExists,
    Busy,
    InvalidCode,
    InvalidInput,
    NewUser,
    NotFound,
    Profile,
    TooSoon,
    User,
    check_profile,
    is_valid_email,
)
from app.service.base import writes
from app.service.users import Users
from app.verification import code_matches, is_code_shaped


class EmailVerification(Users):
    # --- email verification ------------------------------------------------

    @writes
    def sign_up(self, new: NewUser) -> tuple[User, str]:
        """Create a locked, unverified account holding a fresh email code, and
        return the code (to be mailed): until verify_email the account cannot
        log in anywhere, LDAP binds included. A taken username gets a number.
        An address held by a sign-up not verified within the code lifetime
        is free again (resent codes do not extend it): that account goes, so
        nobody can hold another's address by signing up with it."""
        address = new.profile.email
        if not isinstance(address, str):
            raise InvalidInput("email", "This field is required.")
        try:
            return self._sign_up(new)
        except AlreadyExists as e:
            if e.field != "email" or not self._drop_lapsed_sign_up(address):
                raise
        return self._sign_up(new)

    def _sign_up(self, new: NewUser) -> tuple[User, str]:
        issued = self.codes.issue()
        profile = msgspec.structs.replace(new.profile, email_verified=False)
        extra = email_code_attributes(issued.stored, issued.expires)
        for username in _username_candidates(new.username):
            candidate = msgspec.structs.replace(new, username=username, active=False,
                                                profile=profile)
            try:
                return self._create(candidate, extra), issued.code
            except AlreadyExists as e:
                if e.field != "username":
                    raise
        raise AlreadyExists("username")

    def _drop_lapsed_sign_up(self, address: str) -> bool:
        codes, admins = self.directory.codes, self.group_types.dn_of[ADMIN]
        return any(codes.drop_sign_up(state, keep_members_of=admins)
                   for state in codes.awaiting(address)
                   if state.awaits_sign_up and self.codes.lapsed(state.created))

    @writes
    def start_email_change(self, username: str, new_email: str) -> str:
        """Park a new address in userdirPendingEmail with a fresh code for it
        (returned, to be mailed there): mail changes when the code comes back.
        At most one code per resend_interval, whatever the address: TooSoon."""
        person = self._person(username)
        address = check_profile(Profile(email=new_email)).email
        if not isinstance(address, str):
            raise InvalidInput("email", "This field may not be blank.")
        codes = self.directory.codes
        if codes.claimed(address, person.dn):
            raise AlreadyExists("email")
        for _ in range(3):  # a parallel request may replace the code read
            state = codes.state(person.dn)
            if wait := self.codes.wait(state.expires):
                raise TooSoon(wait)
            issued = self.codes.issue()
            if codes.reissue(state, issued.stored, issued.expires, pending=address):
                return issued.code
        raise Busy("the email code keeps changing; retry")

    @writes
    def cancel_email_change(self, username: str, address: str) -> None:
        """Withdraw the code for `address` when it could not be mailed: the
        change did not start, and a retry is not held back by it."""
        self.directory.codes.withdraw(self._person(username).dn, address)

    @writes
    def resend_code(self, email: str) -> tuple[str, str] | None:
        """A new code for whoever awaits one at this address: (address, code)
        to mail, or None when nobody does or the last code went out less than
        resend_interval ago (callers answer all alike)."""
        if not is_valid_email(email):
            return None
        waiting = self.directory.codes.awaiting(email)
        if not waiting or self.codes.wait(waiting[0].expires):
            return None
        issued = self.codes.issue()
        if not self.directory.codes.reissue(waiting[0], issued.stored, issued.expires):
            return None  # a parallel request sent one
        return waiting[0].address or email, issued.code

    @writes
    def verify_email(self, email: str, code: str) -> User:
        """Check a code sent to `email`. Each try is counted before the
        comparison, in one atomic operation with reading the code; the last
        allowed wrong try voids it. On success the address is verified (a
        pending one becomes mail) and a waiting sign-up is unlocked.
        Wrong, expired, used up or never sent: the same InvalidCode."""
        if not (is_valid_email(email) and is_code_shaped(code)):
            raise InvalidCode("Invalid or expired code.")
        for waiting in self.directory.codes.awaiting(email):
            with contextlib.suppress(NotFound):  # deleted meanwhile: no code
                if verified := self._try_code(waiting, email, code):
                    return verified
        raise InvalidCode("Invalid or expired code.")

    def _try_code(self, waiting: CodeState, email: str, code: str) -> User | None:
        codes, rules = self.directory.codes, self.codes
        if waiting.stored is None or (waiting.locked and not waiting.awaits_sign_up):
            # A disabled account finishes no email change: disabled is disabled.
            return None
        if rules.expired(waiting.expires):
            codes.void(waiting)
            return None
        state = codes.count_attempt(waiting.dn)
        if state is None or state.stored is None:
            return None
        usable = (state.attempts <= rules.max_attempts and not rules.expired(state.expires)
                  and (state.address or "").lower() == email.lower())
        if usable and code_matches(code, state.stored):
            if codes.confirm(state):
                return self._user(self._by_dn(state.dn))
        elif rules.used_up(state.attempts):
            codes.void(state)
        return None


def _username_candidates(base: str) -> Iterator[str]:
    """`base`, then base2 to base9, then base with random digits: sign-ups
    whose addresses share a local part still get a username each."""
    base = base[:56]  # room for the digits within the 64 of USERNAME_PATTERN
    yield base
    for number in range(2, 10):
        yield f"{base}{number}"
    for _ in range(10):
        yield f"{base}{secrets.randbelow(10**6)}"
