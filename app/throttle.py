"""Failed logins slow down their source, never lock the owner out: per address, per account.

slapd's own answer to guessing used to be a 15-minute lockout after five
failures, which let anyone lock anyone out. Instead, every failed login is
counted here, in memory, under two keys (OWASP ASVS 6.3.1):

- the client address (all accounts): password spraying from one address;
- the account (the login as typed, whether or not it exists, so that a
  throttled answer tells nothing about existence).

Past a free allowance each new failure blocks the address, or the account,
for a delay that doubles with every failure up to a cap. An account's block
holds back every address except those its owner logged in from before (the
right password, within `trust_days`): the owner, at his usual place, is never
held back by guesses from elsewhere, however many addresses they come from,
while the guessers together get at most one try per `account_max_delay`.

That rate matters for the owner too: slapd's password policy (ldif/base.ldif)
locks an account for a minute after ten failed binds in five minutes, for
LDAP tools as much as for the API, and during that minute no bind succeeds,
not even his. The account's cap keeps failures from HTTP below that rate once
an attack is under way, so such a lock happens at most at its start: the
owner waits a minute at worst. From a new place during a sustained attack
from many addresses he is one of the crowd, and may wait longer.

Counts live in one API process; several processes each count their own.
Everything here runs on the event loop, never in threads.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from app.domain import Throttled

K = TypeVar("K")
Clock = Callable[[], float]
DAY = 86_400.0


@dataclass(frozen=True)
class ThrottleRules:
    window: float = 900.0  # seconds in which each allowance below drains away
    address_free: int = 20  # failures from an address (all accounts) before delays
    address_max_delay: float = 900.0
    account_free: int = 5  # failures on one account before its (untrusted) callers wait
    account_max_delay: float = 60.0
    trust_days: float = 30.0  # how long a successful login makes its address trusted
    capacity: int = 100_000  # records kept per kind (least recently used go first)


@dataclass
class _Record:
    """A leaky bucket of failures: each adds one, `free` drain away per window."""

    score: float = 0.0
    last: float = 0.0
    blocked_until: float = 0.0

    def drained(self, now: float, rate: float) -> float:
        return max(0.0, self.score - (now - self.last) * rate)


class _Bounded(Generic[K]):
    """An OrderedDict that forgets the least recently used past `capacity`."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.items: OrderedDict[K, float] = OrderedDict()

    def put(self, key: K, value: float) -> None:
        self.items[key] = value
        self.items.move_to_end(key)
        while len(self.items) > self.capacity:
            self.items.popitem(last=False)


class _Records(Generic[K]):
    def __init__(self, free: int, window: float, capacity: int) -> None:
        self.free = free
        self.rate = free / window
        self.capacity = capacity
        self._items: OrderedDict[K, _Record] = OrderedDict()

    def blocked_until(self, key: K, now: float) -> float:
        record = self._items.get(key)
        if record is None:
            return 0.0
        if record.drained(now, self.rate) == 0 and record.blocked_until <= now:
            del self._items[key]  # nothing left in it
            return 0.0
        return record.blocked_until

    def fail(self, key: K, now: float, max_delay: float) -> None:
        """Count a failure; past the allowance, block for 1, 2, 4... s (at most max_delay)."""
        record = self._items.get(key) or _Record()
        record.score = record.drained(now, self.rate) + 1
        record.last = now
        over = record.score - self.free
        if over > 0:
            record.blocked_until = now + min(max_delay, 2.0 ** min(over - 1, 30))
        self._items[key] = record
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def refund(self, key: K, now: float) -> None:
        """Take back a failure counted ahead (it was no failure): its block
        goes too if the allowance is no longer exceeded."""
        record = self._items.get(key)
        if record is None:
            return
        record.score = max(0.0, record.drained(now, self.rate) - 1)
        record.last = now
        if record.score <= self.free:
            record.blocked_until = min(record.blocked_until, now)


class LoginThrottle:
    def __init__(self, rules: ThrottleRules | None = None,
                 clock: Clock = time.monotonic) -> None:
        self.rules = rules = rules or ThrottleRules()
        self.clock = clock
        self._addresses: _Records[str] = _Records(rules.address_free, rules.window,
                                                  rules.capacity)
        self._accounts: _Records[str] = _Records(rules.account_free, rules.window,
                                                 rules.capacity)
        self._trusted: _Bounded[tuple[str, str]] = _Bounded(rules.capacity)

    def attempt(self, address: str, login: str) -> None:
        """Throttled (with the seconds to wait) if this attempt must not go
        on; else it is counted as a failure at once, until `succeeded` or
        `not_counted` takes it back: twenty guesses sent at the same moment
        are twenty attempts in flight, not twenty first tries."""
        self.check(address, login)
        self.failed(address, login)

    def check(self, address: str, login: str) -> None:
        """Throttled (with the seconds to wait) if an attempt must not go on now."""
        now, account = self.clock(), _account_key(login)
        wait = self._addresses.blocked_until(address, now) - now
        if not self._is_trusted(account, address, now):
            wait = max(wait, self._accounts.blocked_until(account, now) - now)
        if wait > 0:
            raise Throttled(math.ceil(wait))

    def failed(self, address: str, login: str) -> None:
        now, rules = self.clock(), self.rules
        self._addresses.fail(address, now, rules.address_max_delay)
        self._accounts.fail(_account_key(login), now, rules.account_max_delay)

    def not_counted(self, address: str, login: str) -> None:
        """An attempt that was no guess after all (say, a refused input)."""
        now = self.clock()
        self._addresses.refund(address, now)
        self._accounts.refund(_account_key(login), now)

    def succeeded(self, address: str, login: str) -> None:
        """The right password from here: not a failure, and this address is
        trusted for this account from now on."""
        self.not_counted(address, login)
        self._trusted.put((_account_key(login), address), self.clock())

    def _is_trusted(self, account: str, address: str, now: float) -> bool:
        since = self._trusted.items.get((account, address))
        return since is not None and now - since < self.rules.trust_days * DAY


def _account_key(login: str) -> str:
    # LDAP matches uid and mail ignoring case: so does the throttle.
    return login.strip().casefold()
