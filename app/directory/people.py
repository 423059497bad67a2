"""People entries: find, assemble in staging and publish, modify, lock, passwords."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ldap3 import MODIFY_ADD, MODIFY_DELETE, MODIFY_INCREMENT, MODIFY_REPLACE
from ldap3.protocol.rfc3062 import PasswdModifyRequestValue

from app.directory import names
from app.directory.controls import POST_READ, SortKey, post_read
from app.directory.errors import NO_SUCH_ATTRIBUTE, raise_for_result, translated
from app.directory.listing import Listing
from app.directory.names import Tree
from app.directory.operations import Entry, Ldap
from app.directory.pool import Endpoint, close_quietly, execute
from app.directory.schema import (
    LOCKED_FOREVER,
    PERSON_CLASSES,
    USER_ATTRIBUTES,
    USERDIR_ATTRIBUTES,
    USERDIR_CLASS,
    first,
    parse_time,
    values,
)
from app.domain import AuthenticationFailed, NotFound

PASSWORD_MODIFY = "1.3.6.1.4.1.4203.1.11.1"  # noqa: S105 - RFC 3062 OID


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
        return first(self.entry, "uid") or names.first_rdn_value(self.dn)

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

    # --- reading -----------------------------------------------------------

    def find(self, attribute: str, value: str,
             attributes: list[str] = USER_ATTRIBUTES) -> PersonEntry | None:
        """The person whose `attribute` equals `value` (uid, mail, uidNumber, entryUUID)."""
        entries, _ = self.ldap.search(
            self.tree.people, names.all_of("(objectClass=inetOrgPerson)",
                                           names.equals(attribute, value)),
            attributes, size_limit=2, subject="user",
        )
        return PersonEntry(entries[0]["dn"], entries[0]) if entries else None

    def find_pair(self, uuid: str, username: str) -> tuple[PersonEntry | None,
                                                            PersonEntry | None]:
        """The person with entryUUID `uuid` and the one with uid `username`,
        in one search (they may be the same entry).

        slapd matches uid more loosely than Python compares (caseIgnoreMatch
        folds width and spaces), so an entry that is not the first is the
        second; only when the first is all the search found and its uid does
        not equal `username` here does a second search tell (whether it is
        him, loosely, or nobody)."""
        entries, _ = self.ldap.search(
            self.tree.people,
            names.all_of("(objectClass=inetOrgPerson)",
                         names.any_of(names.equals("entryUUID", uuid),
                                      names.equals("uid", username))),
            USER_ATTRIBUTES, size_limit=3, subject="user",
        )
        by_uuid = by_name = None
        for entry in entries:
            person = PersonEntry(entry["dn"], entry)
            if person.uuid.lower() == uuid.lower():
                by_uuid = person
            else:
                by_name = person
        if by_uuid is not None and by_name is None:
            same = username.lower() in (u.lower() for u in values(by_uuid.entry, "uid"))
            by_name = by_uuid if same else self.find("uid", username)
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
            names.all_of(names.equals("memberOf", group_dn),
                         names.negate(names.equals("pwdAccountLockedTime", LOCKED_FOREVER))),
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
        """RFC 4525 increment + RFC 4527 post-read: one atomic operation, never reused."""
        result = self.ldap.modify(
            self.tree.uid_counter, {"uidNumber": [(MODIFY_INCREMENT, [1])]},
            controls=[post_read(["uidNumber"])], subject="uidNumber counter",
        )
        return int(result["controls"][POST_READ]["value"]["result"]["uidNumber"][0])

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
            changes = {"objectClass": [(MODIFY_ADD, ["userdirPerson"])], **changes}
        self.ldap.modify(person.dn, changes, subject="email")

    def rename(self, person: PersonEntry, new_username: str) -> str:
        """Change uid; the RDN too when it is uid. memberof keeps group memberships."""
        rdn_type = person.dn.split("=", 1)[0].strip().lower()
        home = first(person.entry, "homeDirectory")
        if rdn_type == "uid":
            new_rdn = f"uid={names.rdn_value(Tree.checked_username(new_username))}"
            self.ldap.rename(person.dn, new_rdn, subject="username")
            dn = f"{new_rdn},{person.dn.split(',', 1)[1]}"
        else:
            self.ldap.modify(person.dn, {"uid": [(MODIFY_REPLACE, [new_username])]},
                             subject="username")
            dn = person.dn
        if home == f"/home/{person.username}":
            self.ldap.modify(dn, {"homeDirectory": [(MODIFY_REPLACE, [f"/home/{new_username}"])]})
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

    def with_photo(self, uuids: list[str]) -> set[str]:
        """Which of these entries have a jpegPhoto, without transferring any."""
        if not uuids:
            return set()
        entries, _ = self.ldap.search(
            self.tree.people,
            names.all_of("(jpegPhoto=*)", names.any_of(*(names.equals("entryUUID", u)
                                                         for u in uuids))),
            ["entryUUID"], subject="user",
        )
        return {first(e, "entryUUID") or "" for e in entries}

    def lock(self, dn: str) -> None:
        self.ldap.modify(dn, {"pwdAccountLockedTime": [(MODIFY_REPLACE, [LOCKED_FOREVER])]},
                         subject="user")

    def unlock(self, dn: str) -> None:
        self.ldap.modify(dn, {"pwdAccountLockedTime": [(MODIFY_DELETE, [])]},
                         tolerate=(NO_SUCH_ATTRIBUTE,), subject="user")

    def delete(self, dn: str) -> None:
        self.ldap.delete(dn, subject="user")

    # --- passwords and binds ----------------------------------------------

    def reset_password(self, dn: str, new_password: str) -> None:
        """RFC 3062 as the service: slapd hashes (olcPasswordHash) and applies ppolicy."""
        self.ldap.extended(PASSWORD_MODIFY, _password_request(dn, None, new_password),
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

