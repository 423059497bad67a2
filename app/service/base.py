"""What every part of the service shares: the thread pool hop, the directory, helpers."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Concatenate, ParamSpec, TypeVar

from app.directory import Directory, PersonEntry
from app.directory.schema import (
    PRINCIPAL_ATTRIBUTES,
    GroupTypes,
    to_principal,
    to_user,
)
from app.domain import (
    AccountTypes,
    InvalidInput,
    NotFound,
    Principal,
    User,
    is_valid_username,
)
from app.lru import Lru
from app.pictures import Pictures
from app.verification import EmailCodes

P = ParamSpec("P")
T = TypeVar("T")
S = TypeVar("S", bound="ServiceBase")
PICTURE_FLAGS = 10_000  # entries whose picture flag is remembered (~300 bytes each)


def _offloaded(
    invalidates: bool,
) -> Callable[[Callable[Concatenate[S, P], T]],
              Callable[Concatenate[S, P], Coroutine[Any, Any, T]]]:
    def decorate(
        method: Callable[Concatenate[S, P], T],
    ) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T]]:
        async def run(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
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


class ServiceBase:
    """The directory, the account types and the pool every operation runs on."""

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
        # Whether an entry, at a given version, has a picture (see with_pictures).
        self.pictured: Lru[tuple[str, str], bool] = Lru(PICTURE_FLAGS)

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        self.directory.close()

    # --- helpers -----------------------------------------------------------

    def _principal(self, uuid: str) -> Principal:
        person = self.directory.people.find("entryUUID", uuid, PRINCIPAL_ATTRIBUTES)
        if person is None:
            raise NotFound("user not found")
        return to_principal(person.entry, self.group_types)

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
