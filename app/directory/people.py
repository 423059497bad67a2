"""People entries: find, assemble in staging and publish, modify, lock, passwords."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ldap3 import MODIFY_ADD, MODIFY_INCREMENT, MODIFY_REPLACE
from ldap3.protocol.rfc3062 import PasswdModifyRequestValue

from app.directory import names, queries
from app.directory.controls import POST_READ, SortKey, post_read
from app.directory.errors import (
    ATTRIBUTE_OR_VALUE_EXISTS,
    UniqueViolation,
    raise_for_result,
    translated,
)
from app.directory.listing import Listing
from app.directory.names import Tree
from app.directory.operations import Entry, Ldap
from app.directory.pool import Endpoint, close_quietly, execute
from app.directory.schema import (
    DISABLED,
    ENABLE,
    PERSON_CLASSES,
    USER_ATTRIBUTES,
    USERDIR_ATTRIBUTES,
    USERDIR_CLASS,
    first,
    parse_time,
    username_of,
    values,
)
from app.domain import AuthenticationFailed, Busy, NotFound

PASSWORD_MODIFY = "1.3.6.1.4.1.4203.1.11.1"  # noqa: S105 - RFC 3062 OID
POLICY_SECONDS = 60.0
UID_SKIPS = 100  # taken uidNumbers skipped in a row before giving up


@dataclass(frozen=True)
class PersonEntry:
    """A person as stored: its DN and raw entry (for mapping and follow-up writes)."""

    dn: str
    entry: Entry

    @property
    def uuid(self) -> str:
        return first(self.entry, "entryUUID") or ""

    @property
    def username(self) -> str:
        return username_of(self.entry)

    @property
    def member_of(self) -> list[str]:
        return values(self.entry, "memberOf")

    @property
    def object_classes(self) -> set[str]:
        return {c.lower() for c in values(self.entry, "objectClass")}


class People:
    def __init__(self, ldap: Ldap, tree: Tree, endpoint: Endpoint, listing: Listing) -> None:
        self.ldap = ldap
        self.tree = tree
        self.endpoint = endpoint
        self.listing = listing
        self._lockout: tuple[float, timedelta | None] = (0.0, None)
        self._step = 1  # the uidNumber counter's increment (see allocate_uid_number)

    def lockout_duration(self) -> timedelta | None:
        """The default password policy's pwdLockoutDuration (None: 0, locks
        last until an admin lifts them), read again at most once a minute."""
        read_at, duration = self._lockout
        if time.monotonic() - read_at < POLICY_SECONDS:
            return duration
        entry = self.ldap.read(self.tree.default_policy, ["pwdLockoutDuration"])
        seconds = first(entry, "pwdLockoutDuration") if entry else None
        duration = timedelta(seconds=int(seconds)) if seconds and seconds.isdigit() \
            and int(seconds) > 0 else None
        self._lockout = (time.monotonic(), duration)
        return duration

    # --- reading -----------------------------------------------------------

    def find(self, attribute: str, value: str,
             attributes: list[str] = USER_ATTRIBUTES) -> PersonEntry | None:
        """The person whose `attribute` equals `value` (uid, mail, uidNumber,
        entryUUID). By uid: the person so named (the RDN's uid), not one
        holding the value as an old name an LDAP rename left behind."""
        wanted = attributes if attribute != "uid" or "uid" in attributes else \
            [*attributes, "uid"]
        entries, _ = self.ldap.search(
            self.tree.people, names.all_of("(objectClass=inetOrgPerson)",
                                           names.equals(attribute, value)),
            wanted, size_limit=4, subject="user",
        )
        people = [PersonEntry(e["dn"], e) for e in entries]
        if attribute == "uid":
            people = [p for p in people if names.same_name(p.username, value)]
        return people[0] if people else None

    def find_login(self, username: str | None, email: str | None) -> list[PersonEntry]:
        """People holding this uid or this mail (a login names either), in one search."""
        wanted = [names.equals(a, v) for a, v in (("uid", username), ("mail", email)) if v]
        entries, _ = self.ldap.search(
            self.tree.people, names.all_of("(objectClass=inetOrgPerson)", names.any_of(*wanted)),
            USER_ATTRIBUTES, size_limit=4, subject="user",
        )
        return [PersonEntry(e["dn"], e) for e in entries]

    def find_pair(self, uuid: str, username: str) -> tuple[PersonEntry | None,
                                                            PersonEntry | None]:
        """The person with entryUUID `uuid` and the one named `username`, in
        one search (they may be the same entry). Names compare as slapd's
        caseIgnoreMatch does (names.same_name), so a name an LDAP tool wrote
        in full-width letters is found by its plain form, as by every read."""
        entries, _ = self.ldap.search(
            self.tree.people,
            names.all_of("(objectClass=inetOrgPerson)",
                         names.any_of(names.equals("entryUUID", uuid),
                                      names.equals("uid", username))),
            USER_ATTRIBUTES, size_limit=4, subject="user",
        )
        by_uuid = by_name = None
        for entry in entries:
            person = PersonEntry(entry["dn"], entry)
            if person.uuid.lower() == uuid.lower():
                by_uuid = person
            if names.same_name(person.username, username):
                by_name = person
        return by_uuid, by_name

    def by_dn(self, dn: str) -> PersonEntry | None:
        entry = self.ldap.read(dn, USER_ATTRIBUTES, subject="user")
        return PersonEntry(dn, entry) if entry else None

    def window(self, filter_string: str, keys: list[SortKey], offset: int,
               limit: int) -> tuple[list[PersonEntry], int]:
        """One sorted window of the people matching a filter, and how many match."""
        entries, total = self.listing.window(self.tree.people, filter_string, keys,
                                             USER_ATTRIBUTES, offset, limit)
        return [PersonEntry(e["dn"], e) for e in entries], total

    def active_members(self, group_dn: str, limit: int = 2) -> set[str]:
        """Up to `limit` enabled members of a group (normalised DNs): enough
        to tell whether one other than a given person is among them."""
        entries, _ = self.ldap.search(
            self.tree.people,
            names.all_of(names.equals("memberOf", group_dn), queries.active_filter(True)),
            ["1.1"], size_limit=limit,
        )
        return {names.normalise_dn(e["dn"]) for e in entries}

    def taken(self, username: str | None, email: str | None, *,
              besides: str | None = None) -> str | None:
        """Which of username/email a person (published or being created)
        holds, other than the one at DN `besides`."""
        me = names.normalise_dn(besides) if besides else None
        for attribute, value in (("uid", username), ("mail", email)):
            if value is None:
                continue
            entries, _ = self.ldap.search(
                self.tree.base, names.all_of("(objectClass=inetOrgPerson)",
                                             names.equals(attribute, value)),
                ["1.1"], size_limit=2,
            )
            if any(names.normalise_dn(e["dn"]) != me for e in entries):
                return "username" if attribute == "uid" else "email"
        return None

    # --- creating ----------------------------------------------------------

    def allocate_uid_number(self) -> int:
        """RFC 4525 increment + RFC 4527 post-read: one atomic operation, never
        handed out twice. A number an LDAP tool gave someone meanwhile is
        skipped (slapo-unique would refuse it anyway)."""
        for _ in range(UID_SKIPS):
            try:
                result = self.ldap.modify(
                    self.tree.uid_counter, {"uidNumber": [(MODIFY_INCREMENT, [self._step])]},
                    controls=[post_read(["uidNumber"])], subject="uidNumber counter",
                )
            except UniqueViolation:
                # slapo-unique (2.5.13) checks an increment's amount as if it
                # were the new value: with a person holding uidNumber 1 (say,
                # imported from /etc/passwd), step by the smallest amount nobody
                # holds; the numbers stepped over are never handed out.
                self._step = self._free_step()
                continue
            number = int(result["controls"][POST_READ]["value"]["result"]["uidNumber"][0])
            if not self.uid_number_taken(number):
                return number
        raise Busy(f"the next {UID_SKIPS} uidNumbers are all taken: the counter is behind "
                   "(`userdir doctor --fix` moves it)")

    def _free_step(self) -> int:
        for step in range(1, UID_SKIPS):
            if not self.uid_number_taken(step):
                return step
        raise Busy("every small uidNumber is taken: the counter cannot be incremented")

    def uid_number_taken(self, number: int) -> bool:
        entries, _ = self.ldap.search(
            self.tree.base, names.all_of("(objectClass=inetOrgPerson)",
                                         names.equals("uidNumber", str(number))),
            ["1.1"], size_limit=1,
        )
        return bool(entries)

    def stage(self, username: str, attributes: Mapping[str, Any]) -> str:
        """Add the complete entry where only the service can see it."""
        dn = self.tree.staged_person(username)
        self.ldap.add(dn, PERSON_CLASSES, attributes, subject="username")
        return dn

    def publish(self, staged_dn: str) -> str:
        """Move a staged entry into ou=people: it appears there whole, in one modrdn."""
        rdn = staged_dn.split(",", 1)[0]
        self.ldap.rename(staged_dn, rdn, new_superior=self.tree.people, subject="username")
        return f"{rdn},{self.tree.people}"

    def staged_since(self, username: str) -> float | None:
        """Seconds since a staged entry for this username was made, if there is one."""
        entry = self.ldap.read(self.tree.staged_person(username), ["createTimestamp"])
        if entry is None:
            return None
        created = parse_time(first(entry, "createTimestamp"))
        if created is None:
            return None
        return (datetime.now(UTC) - created).total_seconds()

    def discard(self, dn: str) -> None:
        """Delete an entry, ignoring that it may already be gone."""
        with contextlib.suppress(NotFound):
            self.ldap.delete(dn, subject="user")

    # --- changing ----------------------------------------------------------

    def modify(self, person: PersonEntry, changes: dict[str, list[tuple[str, list[Any]]]]) -> None:
        if not changes:
            return
        if USERDIR_ATTRIBUTES & set(changes) and USERDIR_CLASS not in person.object_classes:
            with_class = {"objectClass": [(MODIFY_ADD, ["userdirPerson"])], **changes}
            result = self.ldap.modify(person.dn, with_class, subject="email",
                                      tolerate=(ATTRIBUTE_OR_VALUE_EXISTS,))
            if result["result"] != ATTRIBUTE_OR_VALUE_EXISTS:
                return
            # Someone (the doctor, a tool) added the class since it was read.
        self.ldap.modify(person.dn, changes, subject="email")

    def rename(self, person: PersonEntry, new_username: str) -> str:
        """Change the username: the RDN (when it is uid; memberof keeps the
        memberships), then, in one modify, uid to exactly the new name (no
        old value an LDAP rename left behind stays), and the values that
        stood in for the old name: homeDirectory /home/<name>, and sn and cn
        where no name was known."""
        old, new = person.username, Tree.checked_username(new_username)
        dn = person.dn
        if dn.split("=", 1)[0].strip().lower() == "uid":
            new_rdn = f"uid={names.rdn_value(new)}"
            self.ldap.rename(dn, new_rdn, subject="username")
            dn = f"{new_rdn},{dn.split(',', 1)[1]}"
        changes: dict[str, list[tuple[str, list[Any]]]] = {"uid": [(MODIFY_REPLACE, [new])]}
        stand_ins = {"homeDirectory": f"/home/{old}", "sn": old, "cn": old}
        for attribute, stand_in in stand_ins.items():
            if values(person.entry, attribute) == [stand_in]:
                changes[attribute] = [(MODIFY_REPLACE, [stand_in.replace(old, new)])]
        self.ldap.modify(dn, changes, subject="username")
        return dn

    def photo(self, dn: str) -> bytes | None:
        entry = self.ldap.read(dn, ["jpegPhoto"], subject="user")
        if entry is None:
            raise NotFound("user not found")
        found = entry["raw_attributes"].get("jpegPhoto") or []
        return bytes(found[0]) if found else None

    def set_photo(self, dn: str, jpeg: bytes | None) -> None:
        self.ldap.modify(dn, {"jpegPhoto": [(MODIFY_REPLACE, [jpeg] if jpeg else [])]},
                         subject="user")

    def photos(self, uuids: list[str]) -> dict[str, bytes]:
        """The jpegPhoto of those of these entries that have one, in one search."""
        if not uuids:
            return {}
        entries, _ = self.ldap.search(
            self.tree.people,
            names.all_of("(jpegPhoto=*)", names.any_of(*(names.equals("entryUUID", u)
                                                         for u in uuids))),
            ["entryUUID", "jpegPhoto"], subject="user",
        )
        return {first(e, "entryUUID") or "": bytes(e["raw_attributes"]["jpegPhoto"][0])
                for e in entries if e["raw_attributes"].get("jpegPhoto")}

    def disable(self, dn: str) -> None:
        self.ldap.modify(dn, {"pwdEndTime": [(MODIFY_REPLACE, [DISABLED])]}, subject="user")

    def enable(self, dn: str) -> None:
        """Remove every way the account is disabled (ours, and other tools')."""
        self.ldap.modify(dn, ENABLE, subject="user")

    def delete(self, dn: str) -> None:
        self.ldap.delete(dn, subject="user")

    # --- passwords and binds ----------------------------------------------

    def reset_password(self, dn: str, new_password: str) -> None:
        """A Modify replacing userPassword with the cleartext, as the service:
        ppolicy checks its quality, hashes it (olcPPolicyHashCleartext, with
        olcPasswordHash's {ARGON2}), stamps pwdChangedTime and clears the
        failure count and a lockout, as it did for the Password Modify
        exop (RFC 3062) used before; unlike the exop, a Modify carries the
        audit marker in the same operation (app/directory/audit.py)."""
        self.ldap.modify(dn, {"userPassword": [(MODIFY_REPLACE, [new_password])]},
                         subject="user")

    def change_own_password(self, dn: str, old_password: str, new_password: str) -> None:
        """RFC 3062 as the user himself, on his own short-lived connection."""
        conn = self.endpoint.connect(dn, old_password)
        try:
            with translated():
                result, _ = execute(
                    conn, "extended", PASSWORD_MODIFY,
                    _password_request(dn, old_password, new_password))
            raise_for_result(result, "user")
        finally:
            close_quietly(conn)

    def check_password(self, dn: str | None, password: str) -> None:
        """A simple bind on a fresh connection, so ppolicy (lockout, disabled,
        pwdLastSuccess) applies. Unknown users bind the decoy entry, which
        costs the same hash verification and always fails."""
        if not password:
            # An empty password is an unauthenticated bind (RFC 4513 §5.1.2).
            raise AuthenticationFailed()
        close_quietly(self.endpoint.connect(dn or self.tree.decoy, password))
        if dn is None:
            raise AuthenticationFailed()

    @staticmethod
    def random_password() -> str:
        return secrets.token_urlsafe(18)


def _password_request(dn: str, old: str | None, new: str) -> PasswdModifyRequestValue:
    request = PasswdModifyRequestValue()
    request["userIdentity"] = dn
    if old is not None:
        request["oldPasswd"] = old
    request["newPasswd"] = new
    return request

