"""Email codes in people's entries: find who awaits one, count attempts, confirm."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ldap3 import MODIFY_ADD, MODIFY_INCREMENT, MODIFY_REPLACE

from app.directory import names
from app.directory.controls import POST_READ, assertion, post_read
from app.directory.errors import ASSERTION_FAILED, NO_SUCH_ATTRIBUTE, NO_SUCH_OBJECT, SUCCESS
from app.directory.names import Tree
from app.directory.operations import Ldap
from app.directory.schema import (
    DISABLED,
    EMAIL_CODE_ATTRIBUTES,
    ENABLE,
    USERDIR_CLASS,
    disabled_by,
    email_code_changes,
    parse_time,
    values,
)
from app.domain import NotFound

CODE_HASH = "userdirEmailCodeHash"
ATTEMPTS = "userdirEmailCodeAttempts"
AWAITING_SIGN_UP = "(userdirEmailVerified=FALSE)"


@dataclass(frozen=True)
class CodeState:
    """A person's email verification as stored."""

    dn: str
    mail: str | None
    pending: str | None
    verified: bool | None  # None: never asked to verify (made by another API or tool)
    stored: str | None
    expires: datetime | None
    attempts: int
    locked: bool = False  # disabled (schema.is_disabled)
    created: datetime | None = None
    has_class: bool = True  # userdirPerson, which the code attributes need

    @property
    def address(self) -> str | None:
        """Where his code goes: the pending new address, else an unverified sign-up's mail."""
        if self.pending:
            return self.pending
        return self.mail if self.verified is False else None

    @property
    def awaits_sign_up(self) -> bool:
        """A sign-up, locked until its address is confirmed, as made (an admin
        who disabled or enabled it since has decided otherwise)."""
        return self.verified is False and self.locked and not self.pending

    @classmethod
    def read(cls, dn: str, entry: Mapping[str, Any]) -> CodeState:
        """From an entry a search or a read returned."""
        return cls.of(dn, {a: values(entry, a) for a in EMAIL_CODE_ATTRIBUTES})

    @classmethod
    def of(cls, dn: str, attributes: Mapping[str, Sequence[Any]]) -> CodeState:
        found = {name.lower(): [str(v) for v in vals] for name, vals in attributes.items()}

        def first(name: str) -> str | None:
            got = found.get(name.lower())
            return got[0] if got else None

        verified = first("userdirEmailVerified")
        attempts = first(ATTEMPTS)
        return cls(dn=dn, mail=first("mail"), pending=first("userdirPendingEmail"),
                   verified=None if verified is None else verified == "TRUE",
                   stored=first(CODE_HASH), expires=parse_time(first("userdirEmailCodeExpiry")),
                   attempts=int(attempts) if attempts and attempts.isdigit() else 0,
                   locked=disabled_by(first("pwdAccountLockedTime"), first("pwdEndTime")),
                   created=parse_time(first("createTimestamp")),
                   has_class=USERDIR_CLASS in {c.lower() for c in found.get("objectclass", [])})


class EmailCodeStore:
    def __init__(self, ldap: Ldap, tree: Tree) -> None:
        self.ldap = ldap
        self.tree = tree

    def awaiting(self, address: str) -> list[CodeState]:
        """People whose code goes to `address` (normally one), in DN order."""
        entries, _ = self.ldap.search(
            self.tree.people,
            names.all_of("(objectClass=inetOrgPerson)",
                         names.any_of(names.equals("userdirPendingEmail", address),
                                      names.equals("mail", address))),
            EMAIL_CODE_ATTRIBUTES, size_limit=10, subject="user",
        )
        states = [CodeState.read(e["dn"], e) for e in entries]
        return sorted((s for s in states if (s.address or "").lower() == address.lower()),
                      key=lambda s: s.dn)

    def claimed(self, address: str, except_dn: str) -> bool:
        """Does anyone else hold this address, or wait to confirm it?"""
        entries, _ = self.ldap.search(
            self.tree.base,
            names.all_of("(objectClass=inetOrgPerson)",
                         names.any_of(names.equals("userdirPendingEmail", address),
                                      names.equals("mail", address))),
            ["1.1"], size_limit=2,
        )
        me = names.normalise_dn(except_dn)
        return any(names.normalise_dn(e["dn"]) != me for e in entries)

    def state(self, dn: str) -> CodeState:
        entry = self.ldap.read(dn, EMAIL_CODE_ATTRIBUTES, subject="user")
        if entry is None:
            raise NotFound("user not found")
        return CodeState.read(dn, entry)

    def reissue(self, state: CodeState, stored: str, expires: datetime,
                pending: str | None = None) -> bool:
        """A new code in place of the one read in `state` (which stops
        working at once), for `pending` if given. False, nothing done: the
        code changed since it was read, say a parallel request sent one."""
        changes = email_code_changes(stored, expires, pending=pending)
        if not state.has_class:  # a person an LDAP tool made
            changes = {"objectClass": [(MODIFY_ADD, [USERDIR_CLASS])], **changes}
        return self._if_code_is(state, changes)

    def count_attempt(self, dn: str) -> CodeState | None:
        """Count one attempt (RFC 4525 increment) and read the code it was
        counted against (RFC 4527 post-read), as one atomic operation: the
        comparison then uses exactly the code whose counter went up, even if
        a new code is issued at the same moment. None: there is no code."""
        result = self.ldap.modify(
            dn, {ATTEMPTS: [(MODIFY_INCREMENT, [1])]},
            controls=[post_read(EMAIL_CODE_ATTRIBUTES)], tolerate=(NO_SUCH_ATTRIBUTE,),
            subject="user",
        )
        if result["result"] == NO_SUCH_ATTRIBUTE:
            return None
        state = CodeState.of(dn, result["controls"][POST_READ]["value"]["result"])
        return state if state.stored else None

    def confirm(self, state: CodeState) -> bool:
        """Mark the address verified (the pending one becomes mail), drop the
        code, and unlock a sign-up that was waiting for this; only if the code
        is still the one checked (RFC 4528 assertion). False: it was replaced."""
        changes = self._without_code()
        changes["userdirEmailVerified"] = [(MODIFY_REPLACE, ["TRUE"])]
        if state.pending:
            # slapo-unique refuses this if someone took the address meanwhile.
            changes["mail"] = [(MODIFY_REPLACE, [state.pending])]
            changes["userdirPendingEmail"] = [(MODIFY_REPLACE, [])]
        if state.verified is False:
            changes.update(ENABLE)
        return self._if_code_is(state, changes)

    def disable_awaiting(self, dn: str) -> bool:
        """Lock a sign-up that still awaits its code and end the wait, in one
        modify: code and unverified mark dropped, so neither the code already
        mailed nor a resent one can unlock it again. False (nothing done) if
        it no longer awaits one, say it was verified meanwhile."""
        changes = self._without_code()
        changes["userdirEmailVerified"] = [(MODIFY_REPLACE, [])]
        changes["pwdEndTime"] = [(MODIFY_REPLACE, [DISABLED])]
        result = self.ldap.modify(dn, changes, controls=[assertion(AWAITING_SIGN_UP)],
                                  tolerate=(ASSERTION_FAILED,), subject="user")
        return bool(result["result"] != ASSERTION_FAILED)

    def drop_sign_up(self, state: CodeState, *, keep_members_of: str) -> bool:
        """Delete a sign-up that awaits its code, if it is still as read (no
        new code sent, not verified, enabled or disabled meanwhile) and no
        member of group `keep_members_of` (the admins: never deleted so)."""
        unchanged = names.all_of(AWAITING_SIGN_UP,
                                 names.equals("pwdEndTime", DISABLED),
                                 names.negate(names.equals("memberOf", keep_members_of)),
                                 self._code_is(state))
        result = self.ldap.delete(state.dn, controls=[assertion(unchanged)],
                                  tolerate=(ASSERTION_FAILED, NO_SUCH_OBJECT), subject="user")
        return result == SUCCESS  # else changed, or someone else dropped it first

    def withdraw(self, dn: str, pending: str) -> None:
        """Drop the code and the pending address, if that is still `pending`."""
        changes = self._without_code()
        changes["userdirPendingEmail"] = [(MODIFY_REPLACE, [])]
        self.ldap.modify(dn, changes,
                         controls=[assertion(names.equals("userdirPendingEmail", pending))],
                         tolerate=(ASSERTION_FAILED,), subject="email")

    def void(self, state: CodeState) -> None:
        """Drop a used-up or expired code, unless a new one replaced it
        meanwhile. Its expiry stays: it tells when the code was sent, which
        limits how soon another may be (see EmailCodes.wait)."""
        changes = self._without_code()
        del changes["userdirEmailCodeExpiry"]
        self._if_code_is(state, changes)

    def _if_code_is(self, state: CodeState,
                    changes: dict[str, list[tuple[str, list[str]]]]) -> bool:
        # slapo-unique checks a new mail with an internal search that copies
        # the operation, Assertion control included (unique.c: `nop = *op`),
        # and a search's assertion is evaluated against its base, here the
        # base DN. That entry is no person, so it passes this filter, which
        # for the person himself still demands the code.
        still = names.any_of(self._code_is(state), names.negate("(objectClass=inetOrgPerson)"))
        result = self.ldap.modify(state.dn, changes, controls=[assertion(still)],
                                  tolerate=(ASSERTION_FAILED,), subject="email")
        return bool(result["result"] != ASSERTION_FAILED)

    @staticmethod
    def _code_is(state: CodeState) -> str:
        """A filter: the entry holds the code of `state`, or none if it had none."""
        if state.stored:
            return names.equals(CODE_HASH, state.stored)
        return names.negate(f"({CODE_HASH}=*)")

    @staticmethod
    def _without_code() -> dict[str, list[tuple[str, list[str]]]]:
        # A replace with no values removes the attribute, and is no error if
        # it is already gone (RFC 4511 §4.6).
        return {a: [(MODIFY_REPLACE, [])]
                for a in (CODE_HASH, "userdirEmailCodeExpiry", ATTEMPTS)}
