"""Accounts as identity providers write them (SCIM): whole states, checked, then applied."""

from __future__ import annotations

import msgspec

from app.accounts import (
    Account,
    AccountState,
    Listing,
    VersionMismatch,
    checked_phone,
    checked_text,
)
from app.directory import PersonEntry
from app.directory import names as n
from app.directory.accounts import (
    EXTRA_ATTRIBUTES,
    PERSON_FILTER,
    TEAM_FILTER,
    AccountStore,
    account_state,
    extras_changes,
    password_change,
)
from app.directory.controls import SortKey
from app.directory.schema import ENABLE, first, profile_modifications
from app.directory.scim_filters import TRUE, USER_SORTS, sort_keys, user_translator
from app.domain import (
    ADMIN,
    AlreadyExists,
    InvalidInput,
    LastAdmin,
    NewUser,
    NotFound,
    Profile,
    check_profile,
)
from app.service.base import reads, writes
from app.service.teams import Teams
from app.service.users import ACTIVE_ADMINS_LOCK, LAST_ADMIN, Users

# AccountState field -> the domain Profile field it is (the rest are extras).
PROFILE_FIELDS = ("email", "first_name", "last_name", "display_name", "language", "timezone")


class Provisioning(Teams, Users):
    """Every operation here is one request of an identity provider, trusted as
    an admin is: everything it asks is checked before the first write (values,
    taken names and addresses, ids it refers to, the last admin), then applied.
    An address it gives is set at once and counts as verified: the
    organisation's own directory is where it comes from, so no code is mailed."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.store = AccountStore(self.directory)

    # --- reading -----------------------------------------------------------

    @reads
    def account(self, uuid: str) -> Account:
        return self._accounts([self._account_entry(uuid)])[0]

    @reads
    def accounts(self, listing: Listing) -> tuple[list[Account], int]:
        """One sorted window (slapd's sort and VLV) of the accounts a filter keeps."""
        tree, store = self.directory.tree, self.store
        types = {n.normalise_dn(dn) for dn in self.group_types.dn_of.values()}

        def team_dn(uuid: str) -> str | None:
            dn = store.dn_by_id(tree.groups, uuid, TEAM_FILTER)
            return dn if dn and n.normalise_dn(dn) not in types else None

        translator = user_translator(
            self.group_types, lambda u: store.dn_by_id(tree.people, u, PERSON_FILTER),
            team_dn, tree.group)
        where = translator.filter(listing.where) if listing.where is not None else TRUE
        keys = sort_keys(listing.sort_by, listing.descending, USER_SORTS, SortKey("uidNumber"))
        people, total = store.people_window(where, keys, listing.offset, listing.limit,
                                            few=listing.where is not None)
        return self._accounts(people), total

    def _account_entry(self, uuid: str) -> PersonEntry:
        person = self.store.person(uuid)
        if person is None:
            raise NotFound("user not found")
        return person

    def _accounts(self, people: list[PersonEntry]) -> list[Account]:
        """Accounts with their manager's id and their ordinary groups: two
        searches for the whole page, whatever its size."""
        managers = self.store.ids_of_people(
            m for p in people if (m := first(p.entry, "manager")))
        types = {n.normalise_dn(dn) for dn in self.group_types.dn_of.values()}
        teams = self.store.teams_named(
            dn for p in people for dn in p.member_of if n.normalise_dn(dn) not in types)
        accounts = []
        for person in people:
            user = self._user(person)
            manager_dn = first(person.entry, "manager")
            manager = managers.get(n.normalise_dn(manager_dn)) if manager_dn else None
            groups = tuple(sorted((teams[key] for dn in person.member_of
                                   if (key := n.normalise_dn(dn)) in teams),
                                  key=lambda g: g.name.lower()))
            state = account_state(person.entry, user, manager.uuid if manager else None)
            accounts.append(Account.of(user, state, groups))
        return accounts

    # --- creating and replacing ----------------------------------------------

    @writes
    def create_account(self, state: AccountState) -> Account:
        profile, extras = self._checked(state, None)
        new = NewUser(username=state.username, account_type=state.account_type,
                      password=state.password or self.directory.people.random_password(),
                      active=state.active, profile=profile)
        user = self._create(new, {EXTRA_ATTRIBUTES[f]: [v] for f, v in extras.items() if v})
        return self._accounts([self._account_entry(user.uuid)])[0]

    @writes
    def replace_account(self, uuid: str, state: AccountState, version: str | None) -> Account:
        """The account becomes `state` (a PUT, or a PATCH applied to what was
        read). Only a race lost to another writer can leave part of it done:
        the fields, the password and the version check are one modify; the
        type, the lock state and the username follow, each already checked."""
        person = self._account_entry(uuid)
        current_version = first(person.entry, "entryCSN") or ""
        if version and version != current_version:
            raise VersionMismatch("the resource changed since that version")
        current = self._accounts([person])[0].state
        user = self._user(person)
        profile, extras = self._checked(state, current)
        new_name = state.username if state.username != user.username else None
        if new_name is not None:
            n.Tree.checked_username(new_name)
            if new_name.lower() != user.username.lower() and \
                    self.directory.people.taken(new_name, None):
                raise AlreadyExists("username")
        if isinstance(profile.email, str) and \
                self.directory.people.taken(None, profile.email, besides=person.dn):
            raise AlreadyExists("email")
        account_type = state.account_type if state.account_type not in (
            None, user.account_type) else None
        if account_type is not None:
            self._checked_type(account_type)
            if user.account_type == ADMIN and not self._admins_remain_without(person.dn)[0]:
                raise LastAdmin(LAST_ADMIN)
        disabling = user.active and not state.active
        if disabling and user.is_admin and account_type is None and \
                not self._other_active_admin(person.dn):
            raise LastAdmin(LAST_ADMIN)
        changes = {**profile_modifications(profile, user.username),
                   **extras_changes(person.entry, extras)}
        if state.password is not None:
            # Hashed by slapd (olcPPolicyHashCleartext) and checked by its
            # password policy within this same modify: refused, nothing changes.
            changes.update(password_change(self._checked_password(state.password)))
        if state.active and not user.active:
            changes.update(ENABLE)
        self.store.modify_person(person, changes, current_version)
        if account_type is not None:
            with self.directory.locks.hold(uuid):
                self._move_to_type(self._by_dn(person.dn), account_type)
        if disabling:
            with self.directory.locks.hold(ACTIVE_ADMINS_LOCK):
                latest = self._by_dn(person.dn)
                if self._type(latest) == ADMIN and not self._other_active_admin(person.dn):
                    raise LastAdmin(LAST_ADMIN)
                self._disable(latest)
        dn = person.dn
        if new_name is not None:
            with self.directory.locks.hold(uuid):
                dn = self.directory.people.rename(self._by_dn(dn), new_name)
        return self._accounts([self._account_entry(uuid)])[0]

    async def delete_account(self, uuid: str, version: str | None) -> None:
        account = await self.account(uuid)
        if version and version != account.version:
            raise VersionMismatch("the resource changed since that version")
        await self.delete_user(account.state.username)

    def _checked(self, state: AccountState,
                 current: AccountState | None) -> tuple[Profile, dict[str, str | None]]:
        """The domain profile and the extra fields `state` asks for, checked;
        against `current`, only what changes (None: remove it)."""
        address = state.address
        wanted: dict[str, object] = {
            **{f: getattr(state, f) for f in PROFILE_FIELDS},
            "phone": state.phones.get("work"), "address": address.formatted,
            "location": address.locality, "country": address.country}
        before: dict[str, object] = {}
        if current is not None:
            before = {**{f: getattr(current, f) for f in PROFILE_FIELDS},
                      "phone": current.phones.get("work"), "address": current.address.formatted,
                      "location": current.address.locality,
                      "country": current.address.country}
        given = {f: v for f, v in wanted.items() if current is None or before.get(f) != v}
        if isinstance(given.get("email"), str):
            given["email_verified"] = True  # see the class docstring
        profile = check_profile(msgspec.convert(given, Profile)) if given else Profile()
        for kind, number in state.phones.items():
            checked_phone(kind, number)
        extras = {
            "title": checked_text("title", state.title),
            "mobile": state.phones.get("mobile"), "home": state.phones.get("home"),
            "fax": state.phones.get("fax"),
            "street": checked_text("street", address.street),
            "region": checked_text("region", address.region),
            "postal_code": checked_text("postal_code", address.postal_code),
            "employee_number": checked_text("employee_number", state.employee_number),
            "department": checked_text("department", state.department),
            "external_id": checked_text("external_id", state.external_id),
            "locale": checked_text("locale", state.locale),
            "manager": self._manager_dn(state.manager),
        }
        return profile, extras

    def _manager_dn(self, uuid: str | None) -> str | None:
        if uuid is None:
            return None
        dn = self.store.dn_by_id(self.directory.tree.people, uuid, PERSON_FILTER)
        if dn is None:
            raise InvalidInput("manager", f"no user has the id {uuid!r}")
        return dn

