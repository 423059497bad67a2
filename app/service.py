"""Every user operation, once; every dialect calls these.

Each public method is a coroutine whose body runs, whole, on the directory's
small thread pool (ldap3 blocks and costs ~1 ms of CPU per operation), so the
event loop never waits on LDAP.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import secrets
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Concatenate, ParamSpec, TypeVar

import msgspec
from msgspec import UNSET

from app.directory import Directory, GroupChanged, PersonEntry, queries
from app.directory import names as n
from app.directory.schema import (
    LOCKED_FOREVER,
    PRINCIPAL_ATTRIBUTES,
    GroupTypes,
    email_code_attributes,
    email_code_changes,
    profile_attributes,
    profile_modifications,
    to_principal,
    to_user,
    values,
)
from app.domain import (
    ADMIN,
    AccountTypes,
    AlreadyExists,
    AuthenticationFailed,
    Busy,
    Group,
    InvalidCode,
    InvalidInput,
    LastAdmin,
    NewUser,
    NotFound,
    Order,
    Page,
    Principal,
    Profile,
    SortKey,
    User,
    UserChanges,
    UserQuery,
    check_password,
    check_profile,
    is_valid_email,
    is_valid_username,
)
from app.pictures import Picture, Pictures
from app.verification import EmailCodes, code_matches, is_code_shaped

P = ParamSpec("P")
T = TypeVar("T")
STALE_STAGING_SECONDS = 60
ADMIN_RETRIES = 20


def _offloaded(
    invalidates: bool,
) -> Callable[[Callable[Concatenate[UserService, P], T]],
              Callable[Concatenate[UserService, P], Coroutine[Any, Any, T]]]:
    def decorate(
        method: Callable[Concatenate[UserService, P], T],
    ) -> Callable[Concatenate[UserService, P], Coroutine[Any, Any, T]]:
        async def run(self: UserService, /, *args: P.args, **kwargs: P.kwargs) -> T:
            call = functools.partial(method, self, *args, **kwargs)
            try:
                return await asyncio.get_running_loop().run_in_executor(self.executor, call)
            finally:
                if invalidates:
                    self.directory.listing.invalidate()
        run.__doc__, run.__name__ = method.__doc__, method.__name__
        return run
    return decorate


reads = _offloaded(invalidates=False)
writes = _offloaded(invalidates=True)


class UserService:
    def __init__(self, directory: Directory, types: AccountTypes, *, gid_number: int = 10000,
                 pictures: Pictures | None = None,
                 executor: ThreadPoolExecutor | None = None,
                 codes: EmailCodes | None = None) -> None:
        self.directory = directory
        self.codes = codes or EmailCodes()
        self.pictures = pictures or Pictures()
        self.types = types
        self.gid_number = gid_number
        self.executor = executor or ThreadPoolExecutor(
            max_workers=directory.pool.size, thread_name_prefix="ldap")
        tree = directory.tree
        self.group_types = GroupTypes(types, {t: tree.group(t) for t in types.names})

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        self.directory.close()

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
        person = self.directory.people.find("entryUUID", uuid, PRINCIPAL_ATTRIBUTES)
        if person is None:
            raise NotFound("user not found")
        return to_principal(person.entry, self.group_types)

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
        check_password(new.password)
        profile = check_profile(new.profile)
        email = profile.email if isinstance(profile.email, str) else None
        people = self.directory.people
        taken = people.taken(username, email)
        if taken:
            raise AlreadyExists(taken)
        attributes: dict[str, list[str]] = {
            **profile_attributes(profile, username),
            "uid": [username],
            "uidNumber": [str(people.allocate_uid_number())],
            "gidNumber": [str(self.gid_number)],
            "homeDirectory": [f"/home/{username}"],
            "userPassword": [new.password],  # hashed by slapd (olcPPolicyHashCleartext)
            **(extra or {}),
        }
        if not new.active:
            attributes["pwdAccountLockedTime"] = [LOCKED_FOREVER]
        staged = self._stage(username, email, attributes)
        try:
            self.directory.groups.add_member(self.group_types.dn_of[account_type], staged)
            dn = people.publish(staged)
        except BaseException:
            people.discard(staged)
            raise
        return self._user(self._by_dn(dn))

    def _stage(self, username: str, email: str | None, attributes: dict[str, list[str]]) -> str:
        """Add the entry in ou=staging; its username, id and email are held from now on."""
        people = self.directory.people
        for attempt in (1, 2):
            try:
                return people.stage(username, attributes)
            except AlreadyExists as e:
                if e.message.startswith("non-unique"):
                    raise AlreadyExists(people.taken(username, email) or "username") from e
                age = people.staged_since(username)
                if attempt == 2 or age is None or age < STALE_STAGING_SECONDS:
                    raise AlreadyExists("username") from e
                # Left behind by a process that died mid-create.
                people.discard(self.directory.tree.staged_person(username))
        raise AssertionError("unreachable")

    # --- changing ----------------------------------------------------------

    @writes
    def update_user(self, username: str, changes: UserChanges) -> User:
        person = self._person(username)
        profile = check_profile(changes.profile)
        people = self.directory.people
        if changes.username is not UNSET and changes.username != person.username:
            new_name = n.Tree.checked_username(changes.username)
            if new_name.lower() != person.username.lower() and people.taken(new_name, None):
                raise AlreadyExists("username")
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

    @writes
    def set_password(self, username: str, new_password: str, *, current: str | None = None) -> None:
        """Replace a password; with `current`, as the user himself (ppolicy's rules
        for users apply and the old password is checked by a bind)."""
        check_password(new_password)
        person = self._person(username)
        if current is None:
            self.directory.people.reset_password(person.dn, new_password)
        else:
            if not current:
                raise AuthenticationFailed()
            self.directory.people.change_own_password(person.dn, current, new_password)

    @writes
    def disable_user(self, username: str) -> User:
        person = self._person(username)
        if self._type(person) == ADMIN and not self._other_active_admin(person.dn):
            raise LastAdmin("cannot disable the last active admin")
        self.directory.people.lock(person.dn)
        return self._user(self._by_dn(person.dn))

    @writes
    def enable_user(self, username: str) -> User:
        person = self._person(username)
        self.directory.people.unlock(person.dn)
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

    # --- pictures (jpegPhoto) ----------------------------------------------

    @writes
    def set_picture(self, username: str, raw: bytes) -> None:
        """Normalise an upload (in this worker thread: Pillow is CPU) and store it."""
        person = self._person(username)
        self.directory.people.set_photo(person.dn, self.pictures.normalise(raw))

    @writes
    def delete_picture(self, username: str) -> None:
        self.directory.people.set_photo(self._person(username).dn, None)

    @reads
    def picture(self, username: str) -> Picture:
        return self.pictures.original(self.directory.people.photo(self._person(username).dn))

    @reads
    def thumbnail(self, username: str) -> Picture:
        """The entry's entryCSN says whether it changed since its thumbnail was
        made: an unchanged entry costs one small read, not its picture."""
        if not is_valid_username(username):
            raise NotFound("user not found")
        person = self.directory.people.find("uid", username, ["entryCSN"])
        if person is None:
            raise NotFound("user not found")
        version = (person.dn, *values(person.entry, "entryCSN"))
        return self.pictures.cached_thumbnail(version) or self.pictures.thumbnail(
            self.directory.people.photo(person.dn), version)

    @reads
    def with_pictures(self, users: list[User]) -> set[str]:
        """The uuids of those users who have a picture (one search for all)."""
        return self.directory.people.with_photo([u.uuid for u in users])

    # --- email verification ------------------------------------------------

    @writes
    def sign_up(self, new: NewUser) -> tuple[User, str]:
        """Create a locked, unverified account holding a fresh email code, and
        return the code (to be mailed): until verify_email the account cannot
        log in anywhere, LDAP binds included. A taken username gets a number."""
        if not isinstance(new.profile.email, str):
            raise InvalidInput("email", "This field is required.")
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

    @writes
    def start_email_change(self, username: str, new_email: str) -> str:
        """Park a new address in userdirPendingEmail with a fresh code for it
        (returned, to be mailed there): mail changes when the code comes back."""
        person = self._person(username)
        address = check_profile(Profile(email=new_email)).email
        if not isinstance(address, str):
            raise InvalidInput("email", "This field may not be blank.")
        if self.directory.codes.claimed(address, person.dn):
            raise AlreadyExists("email")
        issued = self.codes.issue()
        self.directory.people.modify(
            person, email_code_changes(issued.stored, issued.expires, pending=address))
        return issued.code

    @writes
    def resend_code(self, email: str) -> tuple[str, str] | None:
        """A new code for whoever awaits one at this address: (address, code)
        to mail, or None when nobody does (callers answer both alike)."""
        if not is_valid_email(email):
            return None
        waiting = self.directory.codes.awaiting(email)
        if not waiting:
            return None
        issued = self.codes.issue()
        self.directory.codes.reissue(waiting[0].dn, issued.stored, issued.expires)
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
        codes, rules = self.directory.codes, self.codes
        for waiting in codes.awaiting(email):
            if waiting.stored is None:
                continue
            if rules.expired(waiting.expires):
                codes.void(waiting)
                continue
            state = codes.count_attempt(waiting.dn)
            if state is None or state.stored is None:
                continue
            usable = (state.attempts <= rules.max_attempts and not rules.expired(state.expires)
                      and (state.address or "").lower() == email.lower())
            if usable and code_matches(code, state.stored):
                if codes.confirm(state):
                    return self._user(self._by_dn(state.dn))
            elif rules.used_up(state.attempts):
                codes.void(state)
        raise InvalidCode("Invalid or expired code.")

    # --- logging in ----------------------------------------------------------

    @reads
    def authenticate(self, login: str, password: str, *, by: str = "any") -> User:
        """Check a password by binding as the user. Unknown user, wrong password,
        disabled or locked account: the same AuthenticationFailed, at the same cost."""
        person = self._login_target(login, by)
        self.directory.people.check_password(person.dn if person else None, password)
        assert person is not None
        return self._user(self._by_dn(person.dn))

    def _login_target(self, login: str, by: str) -> PersonEntry | None:
        people = self.directory.people
        if by in ("any", "username") and is_valid_username(login):
            person = people.find("uid", login)
            if person or by == "username":
                return person
        if by in ("any", "email") and is_valid_email(login):
            return people.find("mail", login)
        return None

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
        except LastAdmin:
            if joined:
                groups.remove_member(dn_of[account_type], person.dn)
            raise

    def _leave_admins(self, dn: str) -> None:
        """Remove `dn` from the admin group if another admin remains.

        The check and the removal are one atomic operation: the removal
        carries an Assertion on the entryCSN the members were read at (RFC
        4528), so two admins demoting or deleting each other at once cannot
        both succeed; the loser re-reads and finds himself the last admin.
        """
        groups, tree = self.directory.groups, self.directory.tree
        admin_dn = self.group_types.dn_of[ADMIN]
        me = n.normalise_dn(dn)
        for _ in range(ADMIN_RETRIES):
            members, version = groups.members_and_version(admin_dn)
            if not any(n.normalise_dn(m) != me and tree.is_person(m) for m in members):
                raise LastAdmin("the directory must keep at least one admin")
            try:
                groups.remove_member(admin_dn, dn, version=version)
                return
            except GroupChanged:
                time.sleep(random.uniform(0.001, 0.02))  # noqa: S311 - jitter, not security
        raise Busy("the admin group keeps changing; retry")

    def _other_active_admin(self, dn: str) -> bool:
        return self.directory.people.other_active_member(self.group_types.dn_of[ADMIN], dn)

    # --- groups ------------------------------------------------------------

    @reads
    def list_groups(self) -> list[Group]:
        return [self._group(e) for e in self.directory.groups.all()]

    @reads
    def get_group(self, name: str) -> Group:
        return self._group(self._group_entry(name))

    @writes
    def create_group(self, name: str, description: str | None = None) -> Group:
        dn = self.directory.groups.create(name, description)
        return self._group(self._group_entry(n.first_rdn_value(dn)))

    @writes
    def delete_group(self, name: str) -> None:
        self._ordinary_group(name)
        self.directory.groups.delete(self.directory.tree.group(name))

    @writes
    def add_group_member(self, name: str, username: str) -> Group:
        self._ordinary_group(name)
        self._group_entry(name)
        self.directory.groups.add_member(self.directory.tree.group(name),
                                         self._person(username).dn)
        return self._group(self._group_entry(name))

    @writes
    def remove_group_member(self, name: str, username: str) -> Group:
        self._ordinary_group(name)
        self._group_entry(name)
        if not self.directory.groups.remove_member(self.directory.tree.group(name),
                                                   self._person(username).dn):
            raise NotFound(f"{username} is not a member of {name}")
        return self._group(self._group_entry(name))

    def _ordinary_group(self, name: str) -> None:
        if name in self.types:
            raise InvalidInput("name", f"{name!r} is an account type; change the user's type")

    def _group_entry(self, name: str) -> dict[str, Any]:
        entry = self.directory.groups.read(self.directory.tree.group(name))
        if entry is None:
            raise NotFound(f"group {name} not found")
        return entry

    def _group(self, entry: dict[str, Any]) -> Group:
        tree = self.directory.tree
        members = [n.first_rdn_value(m) for m in values(entry, "member") if tree.is_person(m)]
        name = values(entry, "cn")[0] if values(entry, "cn") else n.first_rdn_value(entry["dn"])
        description = values(entry, "description")
        return Group(name=name, description=description[0] if description else None,
                     members=members, account_type=name in self.types)

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

    # --- helpers -----------------------------------------------------------

    def _find(self, attribute: str, value: str) -> PersonEntry:
        person = self.directory.people.find(attribute, value)
        if person is None:
            raise NotFound("user not found")
        return person

    def _person(self, username: str) -> PersonEntry:
        if not is_valid_username(username):
            raise NotFound("user not found")
        return self._find("uid", username)

    def _by_dn(self, dn: str) -> PersonEntry:
        person = self.directory.people.by_dn(dn)
        if person is None:
            raise NotFound("user not found")
        return person

    def _type(self, person: PersonEntry) -> str:
        return self.group_types.type_of(person.member_of)

    def _user(self, person: PersonEntry) -> User:
        return to_user(person.entry, self.group_types)

    def _checked_type(self, account_type: str) -> str:
        if account_type not in self.types:
            valid = ", ".join(self.types.names)
            raise InvalidInput("account_type", f"unknown account type (valid: {valid})")
        return account_type

    # --- listing -----------------------------------------------------------

    def _list(self, query: UserQuery) -> Page:
        base = queries.user_filter(query, self.group_types)
        orders = (Order(query.sort, query.descending), *query.then)
        if query.sort is not SortKey.ACCOUNT_TYPE:
            entries, total = self.directory.people.window(
                base, queries.sort_keys(orders), query.offset, query.limit)
            return Page([self._user(p) for p in entries], total)
        # Account types are group memberships, which slapd cannot sort on:
        # list each type's users (sorted by the other keys) one after another.
        keys = queries.sort_keys(orders[1:])
        names = list(reversed(self.types.names) if query.descending else self.types.names)
        users: list[User] = []
        total = 0
        for account_type in names:
            part = n.all_of(base, queries.type_filter(account_type, self.group_types))
            want = query.limit - len(users)
            offset = max(query.offset - total, 0)
            entries, count = self.directory.people.window(part, keys, offset, max(want, 1))
            if want > 0:
                users.extend(self._user(p) for p in entries[:want])
            total += count
        return Page(users, total)


def _username_candidates(base: str) -> Iterator[str]:
    """`base`, then base2 to base9, then base with random digits: sign-ups
    whose addresses share a local part still get a username each."""
    base = base[:56]  # room for the digits within the 64 of USERNAME_PATTERN
    yield base
    for number in range(2, 10):
        yield f"{base}{number}"
    for _ in range(10):
        yield f"{base}{secrets.randbelow(10**6)}"
