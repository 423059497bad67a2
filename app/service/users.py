"""Users: reading, creating, changing, logging in, the admin invariant, listing."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Mapping
from datetime import UTC, datetime

import msgspec
from msgspec import UNSET

from app.directory import GroupChanged, PersonEntry, queries
from app.directory import names as n
from app.directory.errors import UniqueViolation
from app.directory.schema import (
    DISABLED,
    first,
    profile_attributes,
    profile_modifications,
    to_principal,
    values,
)
from app.domain import (
    ADMIN,
    TYPE_SORT_KEYS,
    AlreadyExists,
    AuthenticationFailed,
    Busy,
    InvalidInput,
    LastAdmin,
    NewUser,
    NotFound,
    Order,
    Page,
    Principal,
    Profile,
    User,
    UserChanges,
    UserQuery,
    check_profile,
    is_valid_email,
    is_valid_username,
)
from app.service.base import ServiceBase, binds, reads, writes
from app.service.imported import log_in

STALE_STAGING_SECONDS = 60  # a staged entry this old was left by a process that died
STAGE_ATTEMPTS = 5
ADMIN_RETRIES = 20
ACTIVE_ADMINS_LOCK = "active-admins"  # a lock key; never a uuid
LAST_ADMIN = "the directory must keep at least one active admin"


class Users(ServiceBase):
    # --- reading -----------------------------------------------------------

    @reads
    def get_user(self, username: str) -> User:
        return self._user(self._person(username))

    @reads
    def user_by_id(self, user_id: int) -> User:
        return self._user(self._find("uidNumber", str(user_id)))

    @reads
    def user_by_email(self, email: str) -> User:
        return self._user(self._find("mail", email))

    @reads
    def user_by_uuid(self, uuid: str) -> User:
        return self._user(self._find("entryUUID", uuid))

    @reads
    def principal(self, uuid: str) -> Principal:
        """Who holds a token, as the directory says now (NotFound if gone)."""
        return self._principal(uuid)

    @reads
    def principal_and_user(self, uuid: str, username: str) -> tuple[Principal, User | None]:
        """Who holds a token and the user he asks for, in one search: the
        commonest request, one user read by someone signed in, costs one
        directory read. NotFound if the token's user is gone; None if only
        the other one is missing (the caller's guard decides what to say)."""
        if not is_valid_username(username):
            return self._principal(uuid), None
        holder, target = self.directory.people.find_pair(uuid, username)
        if holder is None:
            raise NotFound("user not found")
        return (to_principal(holder.entry, self.group_types),
                self._user(target) if target is not None else None)

    @reads
    def list_users(self, query: UserQuery) -> Page:
        return self._list(query)

    @reads
    def all_users(self, query: UserQuery, chunk: int = 500) -> list[User]:
        """Every match, for the APIs that answer with one array and no paging:
        sorted windows of `chunk` (slapd sorts), never the whole set at once."""
        users: list[User] = []
        while True:
            page = self._list(msgspec.structs.replace(query, offset=len(users), limit=chunk))
            users.extend(page.users)
            if not page.users or len(users) >= page.total:
                return users

    # --- creating ----------------------------------------------------------

    @writes
    def create_user(self, new: NewUser) -> User:
        return self._create(new)

    def _create(self, new: NewUser, extra: Mapping[str, list[str]] | None = None) -> User:
        username = n.Tree.checked_username(new.username)
        account_type = self._checked_type(new.account_type or self.types.default)
        self._checked_password(new.password)
        profile = check_profile(new.profile)
        email = profile.email if isinstance(profile.email, str) else None
        people = self.directory.people
        taken = people.taken(username, email)
        if taken:
            raise AlreadyExists(taken)
        attributes: dict[str, list[str]] = {
            **profile_attributes(profile, username),
            "uid": [username],
            "gidNumber": [str(self.gid_number)],
            "homeDirectory": [f"/home/{username}"],
            "userPassword": [new.password],  # hashed by slapd (olcPPolicyHashCleartext)
            **(extra or {}),
        }
        if not new.active:
            attributes["pwdEndTime"] = [DISABLED]
        staged = self._stage(username, email, attributes)
        try:
            self.directory.groups.add_member(self.group_types.dn_of[account_type], staged)
            dn = people.publish(staged)
        except BaseException:
            people.discard(staged)
            raise
        return self._user(self._by_dn(dn))

    def _stage(self, username: str, email: str | None, attributes: dict[str, list[str]]) -> str:
        """Add the entry in ou=staging with a new uidNumber; its username, id
        and email are held from now on. An id an LDAP tool took between its
        allocation and this add is no "username exists": another is taken."""
        people = self.directory.people
        stale_removed = False
        for _ in range(STAGE_ATTEMPTS):
            attributes["uidNumber"] = [str(people.allocate_uid_number())]
            try:
                return people.stage(username, attributes)
            except UniqueViolation as e:
                taken = people.taken(username, email)
                if taken:
                    raise AlreadyExists(taken) from e
                # Neither name nor address: the id. Allocate another.
            except AlreadyExists as e:
                age = people.staged_since(username)
                if stale_removed or age is None or age < STALE_STAGING_SECONDS:
                    raise AlreadyExists("username") from e
                # Left behind by a process that died mid-create.
                people.discard(self.directory.tree.staged_person(username))
                stale_removed = True
        raise Busy("no free uidNumber could be held; retry")

    # --- changing ----------------------------------------------------------

    @writes
    def update_user(self, username: str, changes: UserChanges, *,
                    account_type: str | None = None, password: str | None = None) -> User:
        """Profile fields, username and, if given, account type and password,
        as one request. All that can be checked beforehand is (values, a
        taken name or address, the type's name, the last admin's demotion),
        so bad input changes nothing; then the password (slapd's policy may
        still refuse it, before anything else changed), the type, the name
        and the fields. Only a race lost to another writer can still leave
        part of it done."""
        person = self._person(username)
        profile = check_profile(changes.profile)
        if isinstance(profile.email, str) and profile.email_verified is UNSET and \
                profile.email.lower() != (self._user(person).email or "").lower():
            # Set directly (by an admin): nobody proved he reads it.
            profile = msgspec.structs.replace(profile, email_verified=False)
        people = self.directory.people
        new_name = None
        if changes.username is not UNSET and changes.username != person.username:
            new_name = n.Tree.checked_username(changes.username)
            if new_name.lower() != person.username.lower() and people.taken(new_name, None):
                raise AlreadyExists("username")
        if isinstance(profile.email, str) and people.taken(None, profile.email,
                                                          besides=person.dn):
            raise AlreadyExists("email")
        if account_type is not None:
            self._checked_type(account_type)
            leaves_admins = ADMIN in self.group_types.memberships(person.member_of) and \
                account_type != ADMIN
            if leaves_admins and not self._admins_remain_without(person.dn)[0]:
                raise LastAdmin(LAST_ADMIN)
        if password is not None:
            people.reset_password(person.dn, self._checked_password(password))
        if account_type is not None:
            with self.directory.locks.hold(person.uuid):
                self._move_to_type(self._by_dn(person.dn), account_type)
        if new_name is not None:
            with self.directory.locks.hold(person.uuid):
                person = self._by_dn(people.rename(person, new_name))
        people.modify(person, profile_modifications(profile, person.username))
        return self._user(self._by_dn(person.dn))

    @writes
    def set_account_type(self, username: str, account_type: str) -> User:
        self._checked_type(account_type)
        person = self._person(username)
        with self.directory.locks.hold(person.uuid):
            person = self._by_dn(person.dn)
            self._move_to_type(person, account_type)
        return self._user(self._by_dn(person.dn))

    async def set_password(self, username: str, new_password: str, *,
                           current: str | None = None) -> None:
        """Replace a password; with `current`, as the user himself (ppolicy's rules
        for users apply and the old password is checked by a bind)."""
        if current is None:
            await self._reset_password(username, new_password)
        else:
            await self._change_own_password(username, current, new_password)

    @writes
    def _reset_password(self, username: str, new_password: str) -> None:
        self._checked_password(new_password)
        self.directory.people.reset_password(self._person(username).dn, new_password)

    @binds
    def _change_own_password(self, username: str, current: str, new_password: str) -> None:
        self._checked_password(new_password)
        person = self._person(username)
        if not current:
            raise AuthenticationFailed()
        try:
            self._checked_password(current)
        except InvalidInput as e:
            raise InvalidInput("current_password", e.message) from e
        self.directory.people.change_own_password(person.dn, current, new_password)
        self.directory.listing.invalidate()

    @writes
    def disable_user(self, username: str) -> User:
        person = self._person(username)
        # Under the lock that leaving the admins holds too, and with the type
        # read under it: two admins disabling each other, or one demoting
        # himself while the other is promoted and disabled, go one after the
        # other, across API processes, and the second sees the first's change.
        with self.directory.locks.hold(ACTIVE_ADMINS_LOCK):
            person = self._by_dn(person.dn)
            if self._type(person) == ADMIN and not self._other_active_admin(person.dn):
                raise LastAdmin(LAST_ADMIN)
            self._disable(person)
        return self._user(self._by_dn(person.dn))

    def _disable(self, person: PersonEntry) -> None:
        # A sign-up still waiting for its code stops waiting: verifying must
        # not undo an admin's decision.
        awaiting = first(person.entry, "userdirEmailVerified") == "FALSE"
        if not (awaiting and self.directory.codes.disable_awaiting(person.dn)):
            self.directory.people.disable(person.dn)

    @writes
    def enable_user(self, username: str) -> User:
        person = self._person(username)
        self.directory.people.enable(person.dn)
        return self._user(self._by_dn(person.dn))

    @writes
    def delete_user(self, username: str) -> None:
        person = self._person(username)
        with self.directory.locks.hold(person.uuid):
            person = self._by_dn(person.dn)
            if ADMIN in self.group_types.memberships(person.member_of):
                # Become an ordinary user first: the admin check and the
                # removal from the admin group are one atomic step, and the
                # user never shows without a type while being deleted.
                self._move_to_type(person, self.types.default)
            self.directory.people.delete(person.dn)

    # --- logging in ----------------------------------------------------------

    @binds
    def authenticate(self, login: str, password: str, *, by: str = "any") -> User:
        """Check a password by binding as the user. Unknown user, wrong password,
        disabled, unverified or locked account: the same AuthenticationFailed,
        at the same cost (OWASP ASVS 6.3.8): every failure costs one search and
        one argon2 verification by slapd, as accounts that cannot log in bind
        the decoy entry (ldif/base.ldif) instead of skipping the hash.

        The user returned carries the password stamp (pwdChangedTime) read
        before the bind: a token issued for it dies with any password change
        that follows, even within the same second (auth.py)."""
        if password:  # an empty one is no password at all: AuthenticationFailed below
            self._checked_password(password)
        person = self._login_target(login, by)
        usable = person is not None and self._may_bind(person)
        stamp = self._user(person).password_stamp if person is not None else ""
        try:
            self.directory.people.check_password(person.dn if usable and person else None,
                                                 password)
        except AuthenticationFailed:
            # Imported with a hash slapd cannot verify (app/service/imported.py):
            # checked here once, then slapd has the password.
            moved = log_in(self.directory, person, password) if usable and person else None
            if moved is None:
                raise
            stamp = moved
        assert person is not None
        user = self._user(self._by_dn(person.dn))
        return msgspec.structs.replace(user, password_stamp=stamp)

    def _login_target(self, login: str, by: str) -> PersonEntry | None:
        """The one person this login names: by username (the RDN's uid, not an
        old uid value an LDAP rename left behind) or by email, in one search."""
        by_name = by in ("any", "username") and is_valid_username(login)
        by_mail = by in ("any", "email") and is_valid_email(login)
        if not (by_name or by_mail):
            return None
        found = self.directory.people.find_login(login if by_name else None,
                                                 login if by_mail else None)
        named = [p for p in found if by_name and n.same_name(p.username, login)]
        mailed = [p for p in found if by_mail and login.lower() in
                  (m.lower() for m in values(p.entry, "mail"))]
        chosen = named or mailed
        return chosen[0] if chosen else None

    def _may_bind(self, person: PersonEntry) -> bool:
        return self._user(person).may_log_in(datetime.now(UTC))

    # --- the admin invariant -----------------------------------------------

    def _move_to_type(self, person: PersonEntry, account_type: str) -> None:
        """Join the new type's group first, then leave the others: a reader
        never sees the user without a type. Leaving `admin` is refused when no
        other admin would remain. Callers hold the user's lock."""
        groups, dn_of = self.directory.groups, self.group_types.dn_of
        current = self.group_types.memberships(person.member_of)
        if current == [account_type]:
            return
        joined = account_type not in current and groups.add_member(dn_of[account_type], person.dn)
        try:
            for old in current:
                if old == ADMIN and account_type != ADMIN:
                    self._leave_admins(person.dn)
                elif old != account_type:
                    groups.remove_member(dn_of[old], person.dn)
        except Exception:  # the last admin, or the lock not had in time: undo the join
            if joined:
                groups.remove_member(dn_of[account_type], person.dn)
            raise

    def _leave_admins(self, dn: str) -> None:
        """Remove `dn` from the admin group if an admin remains, and an
        active one if `dn` is active.

        Two admins demoting or deleting each other at once cannot both
        succeed: the removal carries an Assertion on the entryCSN the members
        were read at (RFC 4528), so the check and the removal are one atomic
        operation, even against LDAP tools; the loser re-reads and finds
        himself the last admin. Whether the others are active is read under
        the lock that disabling an admin holds too: an admin disabled while
        he demotes the other cannot leave only disabled admins behind.
        """
        admin_dn = self.group_types.dn_of[ADMIN]
        with self.directory.locks.hold(ACTIVE_ADMINS_LOCK):
            for _ in range(ADMIN_RETRIES):
                remain, version = self._admins_remain_without(dn)
                if not remain:
                    raise LastAdmin(LAST_ADMIN)
                try:
                    self.directory.groups.remove_member(admin_dn, dn, version=version)
                    return
                except GroupChanged:
                    time.sleep(random.uniform(0.001, 0.02))  # noqa: S311 - jitter, not security
        raise Busy("the admin group keeps changing; retry")

    def _admins_remain_without(self, dn: str) -> tuple[bool, str]:
        """Would an admin remain without `dn` (an active one, if `dn` is
        active), and the version (entryCSN) of the admin group read."""
        admin_dn = self.group_types.dn_of[ADMIN]
        members, version = self.directory.groups.members_and_version(admin_dn)
        me, tree = n.normalise_dn(dn), self.directory.tree
        if not any(n.normalise_dn(m) != me and tree.is_person(m) for m in members):
            return False, version
        active = self.directory.people.active_members(admin_dn)
        return me not in active or bool(active - {me}), version

    def _other_active_admin(self, dn: str) -> bool:
        active = self.directory.people.active_members(self.group_types.dn_of[ADMIN])
        return bool(active - {n.normalise_dn(dn)})

    # --- bootstrap ---------------------------------------------------------

    @writes
    def bootstrap(self, username: str, password: str, email: str) -> str | None:
        """Make sure the type groups and one admin exist. Idempotent; returns the
        admin password when one was generated (to be shown once)."""
        groups = self.directory.groups
        for name in self.types.names:
            if groups.read(self.group_types.dn_of[name]) is None:
                with contextlib.suppress(AlreadyExists):  # another process was first
                    groups.create(name, f"userdir account type {name}")
        members, _ = groups.members_and_version(self.group_types.dn_of[ADMIN])
        if any(self.directory.tree.is_person(m) for m in members):
            return None
        person = self.directory.people.find("uid", username)
        if person is not None:
            with self.directory.locks.hold(person.uuid):
                self._move_to_type(self._by_dn(person.dn), ADMIN)
            return None
        generated = None if password else self.directory.people.random_password()
        profile = Profile(email=email or None) if email else Profile()
        self._create(NewUser(username=username, password=password or generated or "",
                             account_type=ADMIN, profile=profile))
        return generated

    # --- listing -----------------------------------------------------------

    def _list(self, query: UserQuery) -> Page:
        base = queries.user_filter(query, self.group_types)
        orders = (Order(query.sort, query.descending), *query.then)
        by_type = next((i for i, o in enumerate(orders) if o.key not in TYPE_SORT_KEYS),
                       len(orders))
        if not by_type:
            entries, total = self.directory.people.window(
                base, queries.sort_keys(orders), query.offset, query.limit)
            return Page([self._user(p) for p in entries], total)
        # Account types are group memberships, which slapd cannot sort on:
        # list each part's users (sorted by the other keys) one after another.
        keys = queries.sort_keys(orders[by_type:])
        parts = queries.type_partitions(orders[:by_type], self.group_types)
        users: list[User] = []
        total = 0
        for partition in parts:
            part = n.all_of(base, partition)
            want = query.limit - len(users)
            offset = max(query.offset - total, 0)
            entries, count = self.directory.people.window(part, keys, offset, max(want, 1))
            if want > 0:
                users.extend(self._user(p) for p in entries[:want])
            total += count
        return Page(users, total)
