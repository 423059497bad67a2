"""The import into a running directory, bound as the importer identity."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from app import embedded
from app.config import Config, ConfigError, read_secret_file
from app.directory import Directory, Endpoint
from app.directory.imports import ImportTarget, deferred_sync
from app.directory.schema import values
from app.domain import AccountTypes, AlreadyExists, DomainError, UserChanges
from app.migration.plan import Known, Plan, assign_ids, attributes, differences, types_of
from app.migration.progress import Interrupt, Meter
from app.migration.records import Candidate, Outcome
from app.service import UserService
from app.service.base import Pools


def importer_endpoint(config: Config) -> Endpoint:
    """The importer's DN and password: [importer], else init's password file."""
    settings = config.importer
    password = settings.bind_password
    if not password:
        path = embedded.Layout(config.data_dir).importer_password_file
        if not path.exists():
            raise ConfigError(f"importer.bind_password: not set, and no {path} (written by the "
                              "embedded set-up or `userdir init`)")
        password = read_secret_file("importer password", str(path))
    return Endpoint(url=config.ldap_url,
                    bind_dn=settings.bind_dn or embedded.importer_dn(config.ldap.base_dn),
                    password=password, connect_timeout=config.ldap.connect_timeout,
                    operation_timeout=max(config.ldap.operation_timeout, 30.0))


@contextmanager
def opened(config: Config) -> Iterator[Importer]:
    types = AccountTypes(config.users.account_types, config.users.default_account_type)
    workers = config.importer.workers
    directory = Directory(importer_endpoint(config), config.ldap.base_dn, pool_size=workers + 2)
    service = UserService(directory, types, gid_number=config.users.gid_number,
                          pools=Pools.sized(1, 1))
    ldapi = embedded.Layout(config.data_dir).ldapi_url if config.ldap.embedded else None
    try:
        with deferred_sync(ldapi) if ldapi else contextlib.nullcontext(False):
            yield Importer(service, config.importer.batch_size, workers)
    finally:
        service.close()


class Importer:
    """Adds new users in batches: each entry complete in one Add (password,
    id, profile), then, per batch, one modify adds them all to their
    account-type group. Existing users are left alone, or refreshed through
    the service's own update path (--update)."""

    def __init__(self, service: UserService, batch_size: int, workers: int) -> None:
        self.service = service
        self.directory = service.directory
        self.target = ImportTarget(self.directory.ldap, self.directory.tree)
        self.batch_size = batch_size
        self.workers = workers
        self.type_of_group = types_of(service.types, service.group_types.dn_of)

    def known(self) -> Known:
        found = Known()
        for entry in self.target.people():
            found.add(entry["dn"], (values(entry, "uid") or [""])[0], values(entry, "mail"),
                      next(iter(values(entry, "uidNumber")), None), self.type_of_group,
                      values(entry, "memberOf"))
        return found

    def reserve_ids(self, plan: Plan, known: Known) -> None:
        """Move the counter past the highest id kept, then take a block for
        those without one: the API never hands out an id an import uses."""
        kept = [c.uid_number for c in plan.new if c.uid_number is not None]
        if kept and max(kept) > self.target.counter():
            self.target.move_counter(max(kept))
        held = set(known.ids) | set(kept)
        needed = sum(1 for c in plan.new if c.uid_number is None)
        blocks: list[range] = []
        while needed > sum(1 for n in itertools.chain(*blocks) if n not in held):
            blocks.append(self.target.reserve(needed, held))
        assign_ids(plan.new, itertools.chain(*blocks), held)

    def add(self, plan: Plan, meter: Meter, interrupt: Interrupt) -> int:
        """Add plan.new batch by batch; stop between batches when asked. The
        number of users added."""
        added = 0
        by_type = sorted(plan.new, key=lambda c: self.service.types.names.index(c.account_type))
        with ThreadPoolExecutor(self.workers, thread_name_prefix="import") as pool:
            for _, group in itertools.groupby(by_type, key=lambda c: c.account_type):
                batch_source = list(group)
                for start in range(0, len(batch_source), self.batch_size):
                    if interrupt.requested:
                        return added
                    batch = batch_source[start:start + self.batch_size]
                    problems = list(pool.map(self._add_one, batch))
                    done = [c for c, p in zip(batch, problems, strict=True) if p is None]
                    self._join(batch[0].account_type, done)
                    for candidate, problem in zip(batch, problems, strict=True):
                        if problem:
                            plan.fail(candidate.line, candidate.username, problem)
                    added += len(done)
                    meter.advance(len(batch), len(batch) - len(done))
        return added

    def _add_one(self, candidate: Candidate) -> str | None:
        """None when added; else why not (kept for _problem)."""
        dn = self.directory.tree.person(candidate.username)
        try:
            self.target.add_person(dn, attributes(candidate, self.service.gid_number))
        except AlreadyExists:
            return "username, email or id taken meanwhile (by the API or an LDAP tool)"
        except DomainError as e:
            return e.message or type(e).__name__
        return None

    def _join(self, account_type: str, added: list[Candidate]) -> None:
        tree = self.directory.tree
        self.target.add_members(self.service.group_types.dn_of[account_type],
                                [tree.person(c.username) for c in added])

    def settle(self, candidate: Candidate, dn: str, types: list[str], update: bool) -> Outcome:
        """Someone already there: an entry a stopped import left without its
        type joins it (the import resumes); with `update`, fields, type and
        state follow the row, through the service's own operations."""
        if not types:
            self.target.add_members(self.service.group_types.dn_of[candidate.account_type],
                                    [dn])
            return Outcome(candidate.line, candidate.username, "resumed",
                           f"joined {candidate.account_type!r}")
        if not update:
            return Outcome(candidate.line, candidate.username, "unchanged")
        return self._update(candidate)

    def _update(self, candidate: Candidate) -> Outcome:
        run = asyncio.run
        service, name = self.service, candidate.username
        user = run(service.get_user(name))
        changed = differences(candidate, user)
        new_type = candidate.account_type if candidate.account_type != user.account_type \
            else None
        if changed or new_type:
            run(service.update_user(name, UserChanges(profile=candidate.profile),
                                    account_type=new_type))
        if candidate.active != user.active:
            run(service.enable_user(name) if candidate.active else service.disable_user(name))
            changed.append("active")
        people, dn = self.directory.people, self.directory.tree.person(name)
        if candidate.photo and people.photo(dn) != candidate.photo:
            people.set_photo(dn, candidate.photo)
            changed.append("picture")
        changed += ["account_type"] if new_type else []
        if not changed:
            return Outcome(candidate.line, name, "unchanged")
        return Outcome(candidate.line, name, "updated", ", ".join(changed))

