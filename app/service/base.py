"""What every part of the service shares: the thread pool hop, the directory, helpers."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

from app.bulkhead import Bulkhead, Observer, current_client
from app.directory import Directory, PersonEntry
from app.directory.doctor import Leftovers
from app.directory.schema import (
    PRINCIPAL_ATTRIBUTES,
    GroupTypes,
    first,
    to_principal,
    to_user,
)
from app.domain import (
    MAX_PASSWORD_BYTES,
    AccountTypes,
    DomainError,
    InvalidInput,
    NotFound,
    Principal,
    User,
    check_password,
    is_valid_username,
)
from app.lru import Lru
from app.pictures import Pictures
from app.requests import changing
from app.verification import EmailCodes

P = ParamSpec("P")
T = TypeVar("T")
S = TypeVar("S", bound="ServiceBase")
PICTURE_FLAGS = 10_000  # entries whose picture flag is remembered (~300 bytes each)


@dataclass(frozen=True)
class Pools:
    """The bulkheads service calls run on (app/bulkhead.py): reads and writes,
    password binds (argon2 on slapd: a login flood must not take the threads
    everyone's reads need), and picture decoding (Pillow: memory and CPU)."""

    directory: Bulkhead
    binds: Bulkhead
    pictures: Bulkhead

    @classmethod
    def sized(cls, workers: int, bind_workers: int = 1, *, queue_limit: int = 128,
              bind_queue_limit: int = 64, client_limit: int = 16,
              decoders: int = 1, decode_queue: int = 8,
              observer: Observer | None = None) -> Pools:
        return cls(Bulkhead("directory", workers, queue_limit, client_limit, observer),
                   Bulkhead("login", bind_workers, bind_queue_limit, max(1, client_limit // 4),
                            observer),
                   Bulkhead("picture", decoders, decode_queue, 2, observer))

    def close(self) -> None:
        for pool in (self.directory, self.binds, self.pictures):
            pool.close()


def _offloaded(
    pool: str, invalidates: bool, replicas: bool = False,
) -> Callable[[Callable[Concatenate[S, P], T]],
              Callable[Concatenate[S, P], Coroutine[Any, Any, T]]]:
    def decorate(
        method: Callable[Concatenate[S, P], T],
    ) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T]]:
        async def run(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
            routing, client = self.directory.pool.routing, current_client.get()
            unsafe = changing()  # a POST's caller lookup reads the provider

            def routed() -> T:
                # May its searches go to a read replica, and whose writes does
                # it make (read-your-writes: app/directory/replicas.py)?
                with routing(replicas, client, fresh=unsafe):
                    return method(self, *args, **kwargs)
            try:
                result: T = await getattr(self.pools, pool).run(routed)
                return result
            finally:
                if invalidates:
                    self.directory.listing.invalidate()
        run.__doc__, run.__name__ = method.__doc__, method.__name__
        return run
    return decorate


reads = _offloaded("directory", invalidates=False, replicas=True)
writes = _offloaded("directory", invalidates=True)
# A password checked by a bind as the user: slapd verifies an argon2 hash.
binds = _offloaded("binds", invalidates=False)


class ServiceBase:
    """The directory, the account types and the pools every operation runs on."""

    def __init__(self, directory: Directory, types: AccountTypes, *, gid_number: int = 10000,
                 pictures: Pictures | None = None,
                 pools: Pools | None = None,
                 codes: EmailCodes | None = None,
                 max_password_bytes: int = MAX_PASSWORD_BYTES) -> None:
        self.directory = directory
        self.max_password_bytes = max_password_bytes
        self.codes = codes or EmailCodes()
        self.pictures = pictures or Pictures()
        self.types = types
        self.gid_number = gid_number
        self.pools = pools or Pools.sized(directory.pool.size)
        tree = directory.tree
        self.group_types = GroupTypes(types, {t: tree.group(t) for t in types.names})
        # Whether an entry, at a given version, has a picture (see with_pictures).
        self.pictured: Lru[tuple[str, str], bool] = Lru(PICTURE_FLAGS)

    @classmethod
    def beside(cls: type[S], service: ServiceBase) -> S:
        """A service of this kind sharing the directory and the thread pools
        of the running one (SCIM's, the tokens', the audit's)."""
        return cls(service.directory, service.types, gid_number=service.gid_number,
                   pictures=service.pictures, pools=service.pools, codes=service.codes,
                   max_password_bytes=service.max_password_bytes)

    def close(self) -> None:
        self.pools.close()
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
        person = self._adopted(person)
        return to_user(person.entry, self.group_types, self.directory.people.lockout_duration)

    def _adopted(self, person: PersonEntry) -> PersonEntry:
        """A person an LDAP tool made without a uidNumber (or posixAccount)
        gets one the first time the service shows him, as `userdir doctor
        --fix` would: any id an API shows can then be fetched by it. The
        allocation carries an Assertion (the doctor's), so two readers never
        give one entry two numbers. (A person in no account type is left to
        the doctor, which serve's start-up check reports: joining him to the
        default type on a read would rewrite that large group, one reader at a
        time.) A read that cannot adopt him still shows him as he is."""
        if first(person.entry, "uidNumber") and "posixaccount" in person.object_classes:
            return person
        if not self.directory.tree.is_person(person.dn):
            return person
        with contextlib.suppress(DomainError):
            Leftovers(self.directory.ldap, self.directory.tree).complete(
                person.entry, self.gid_number, self.directory.people.allocate_uid_number)
            return self.directory.people.by_dn(person.dn) or person
        return person

    def _checked_password(self, password: str) -> str:
        check_password(password, self.max_password_bytes)
        return password

    def _checked_type(self, account_type: str) -> str:
        if account_type not in self.types:
            valid = ", ".join(self.types.names)
            raise InvalidInput("account_type", f"unknown account type (valid: {valid})")
        return account_type
