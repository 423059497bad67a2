"""Ordinary groups as identity providers write them (SCIM): members by id, whole states."""

from __future__ import annotations

from collections.abc import Sequence

from app.accounts import Listing, Team, VersionMismatch, checked_text
from app.directory import names as n
from app.directory.accounts import PERSON_FILTER, AccountStore, team_of
from app.directory.controls import CASE_IGNORE_ORDERING, SortKey
from app.directory.operations import Entry
from app.directory.schema import first
from app.directory.scim_filters import GROUP_SORTS, TRUE, group_translator, sort_keys
from app.domain import AlreadyExists, InvalidInput, NotFound
from app.service.base import reads, writes
from app.service.groups import Groups


class Teams(Groups):
    """Account-type groups are never teams: they change only with a user's type."""

    store: AccountStore

    @reads
    def team(self, uuid: str, with_members: bool = True) -> Team:
        return self._teams([self._team_entry(uuid)], with_members)[0]

    @reads
    def teams(self, listing: Listing) -> tuple[list[Team], int]:
        """One sorted window (slapd's sort and VLV) of the groups a filter keeps."""
        tree = self.directory.tree
        translator = group_translator(
            lambda u: self.store.dn_by_id(tree.people, u, PERSON_FILTER), tree.person)
        where = translator.filter(listing.where) if listing.where is not None else TRUE
        ordinary = n.negate(n.any_of(*(n.equals("cn", t) for t in self.types.names)))
        keys = sort_keys(listing.sort_by, listing.descending, GROUP_SORTS,
                         SortKey("cn", CASE_IGNORE_ORDERING))
        entries, total = self.store.team_window(n.all_of(ordinary, where), keys,
                                                listing.offset, listing.limit)
        return self._teams(entries, listing.with_members), total

    @writes
    def create_team(self, name: str, external_id: str | None, member_ids: Sequence[str]) -> Team:
        self._ordinary_group(name)
        external_id = checked_text("external_id", external_id)
        dn = self.store.add_team(name, external_id, self._member_dns(member_ids))
        return self._teams([self._existing(self.store.team_at(dn))], True)[0]

    @writes
    def replace_team(self, uuid: str, name: str, external_id: str | None,
                     member_ids: Sequence[str], version: str | None) -> Team:
        """Members and externalId in one modify (with the version check), then the name."""
        entry = self._team_entry(uuid)
        current_version = first(entry, "entryCSN") or ""
        if version and version != current_version:
            raise VersionMismatch("the resource changed since that version")
        renamed = name != (first(entry, "cn") or "")
        if renamed:
            self._ordinary_group(name)
            other = self.store.team_at(self.directory.tree.group(name))
            if other is not None and n.normalise_dn(other["dn"]) != n.normalise_dn(entry["dn"]):
                raise AlreadyExists("displayName")
        changes = self.store.team_changes(entry, checked_text("external_id", external_id),
                                          self._member_dns(member_ids))
        self.store.modify_team(entry["dn"], changes, current_version)
        if renamed:
            self.store.rename_team(entry["dn"], name)
        return self._teams([self._team_entry(uuid)], True)[0]

    async def delete_team(self, uuid: str, version: str | None) -> None:
        team = await self.team(uuid, with_members=False)
        if version and version != team.version:
            raise VersionMismatch("the resource changed since that version")
        await self.delete_group(team.name)

    def _team_entry(self, uuid: str) -> Entry:
        return self._existing(self.store.team(uuid))

    def _existing(self, entry: Entry | None) -> Entry:
        if entry is None or n.normalise_dn(entry["dn"]) in self._type_dns:
            raise NotFound("group not found")
        return entry

    def _member_dns(self, member_ids: Sequence[str]) -> list[str]:
        wanted = list(dict.fromkeys(member_ids))
        found = self.store.people_dns(wanted)
        missing = [uuid for uuid in wanted if uuid.lower() not in found]
        if missing:
            raise InvalidInput("members", f"no user has the id {missing[0]!r}")
        return [found[uuid.lower()] for uuid in wanted]

    def _teams(self, entries: list[Entry], with_members: bool) -> list[Team]:
        members = self.store.members_by_group([e["dn"] for e in entries]) if with_members \
            else {}
        return [team_of(e, members.get(n.normalise_dn(e["dn"]), [])) for e in entries]

