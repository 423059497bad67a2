"""Failed logins slow down their source, never lock the owner out: per address, per account.

slapd's own answer to guessing used to be a 15-minute lockout after five
failures, which let anyone lock anyone out. Instead, every failed login is
counted here, in memory, under three keys (OWASP ASVS 6.3.1):

- the client address (all accounts): password spraying from one address;
- the account (the login as typed, whether or not it exists, so that a
  throttled answer tells nothing about existence);
- the pair (account, address): which addresses have failed on an account.

Past a free allowance each new failure blocks the address, or the account
for the addresses that already failed on it, for a delay that doubles with
every failure up to a cap. An address that never failed on an account is not
held back by that account's block, so the owner, logging in from his usual
place, gets through while the guessing addresses wait; only when very many
distinct addresses fail on one account (a large botnet) does its block apply
to every address. slapd's password policy adds a short back-off of its own
(pwdMinDelay/pwdMaxDelay, ldif/base.ldif) that protects LDAP binds as well.

Counts live in one API process; several processes each count their own.
Everything here runs on the event loop, never in threads.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from app.domain import Throttled

K = TypeVar("K")
Clock = Callable[[], float]


@dataclass(frozen=True)
class ThrottleRules:
    window: float = 900.0  # seconds in which each allowance below drains away
    address_free: int = 20  # failures from an address (all accounts) before delays
    address_max_delay: float = 900.0
    account_free: int = 5  # failures on one account before its suspects wait
    account_max_delay: float = 300.0
    suspect_after: int = 2  # failures on an account that make an address its suspect
    crowd: int = 50  # distinct failing addresses after which an account's block is for all
    capacity: int = 100_000  # records kept per key kind (least recently failed go first)


@dataclass
class _Record:
    """A leaky bucket of failures: each adds one, `free` drain away per window."""

    score: float = 0.0
    last: float = 0.0
    blocked_until: float = 0.0
    addresses: set[str] = field(default_factory=set)

    def drained(self, now: float, rate: float) -> float:
        return max(0.0, self.score - (now - self.last) * rate)


class _Records(Generic[K]):
    def __init__(self, free: int, window: float, capacity: int) -> None:
        self.free = free
        self.rate = free / window
        self.capacity = capacity
        self._items: OrderedDict[K, _Record] = OrderedDict()

    def get(self, key: K, now: float) -> _Record | None:
        """The record, if it still counts (failures left in it, or a block)."""
        record = self._items.get(key)
        if record is not None and record.drained(now, self.rate) == 0 \
                and record.blocked_until <= now:
            del self._items[key]
            return None
        return record

    def score(self, key: K, now: float) -> float:
        record = self.get(key, now)
        return record.drained(now, self.rate) if record else 0.0

    def fail(self, key: K, now: float, max_delay: float) -> _Record:
        """Count a failure; past the allowance, block for 1, 2, 4... s (at most max_delay)."""
        record = self.get(key, now) or _Record()
        record.score = record.drained(now, self.rate) + 1
        record.last = now
        over = record.score - self.free
        if over > 0:
            record.blocked_until = now + min(max_delay, 2.0 ** min(over - 1, 30))
        self._items[key] = record
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return record

    def forget(self, key: K) -> None:
        self._items.pop(key, None)


class LoginThrottle:
    def __init__(self, rules: ThrottleRules | None = None,
                 clock: Clock = time.monotonic) -> None:
        self.rules = rules = rules or ThrottleRules()
        self.clock = clock
        self._addresses: _Records[str] = _Records(rules.address_free, rules.window,
                                                  rules.capacity)
        self._accounts: _Records[str] = _Records(rules.account_free, rules.window,
                                                 rules.capacity)
        self._pairs: _Records[tuple[str, str]] = _Records(rules.account_free, rules.window,
                                                          rules.capacity)

    def check(self, address: str, login: str) -> None:
        """Throttled (with the seconds to wait) if this attempt must not go on."""
        now, account = self.clock(), _account_key(login)
        waits = [0.0]
        at_address = self._addresses.get(address, now)
        if at_address is not None:
            waits.append(at_address.blocked_until - now)
        on_account = self._accounts.get(account, now)
        if on_account is not None and on_account.blocked_until > now:
            suspect = self._pairs.score((account, address), now) >= self.rules.suspect_after
            if suspect or len(on_account.addresses) >= self.rules.crowd:
                waits.append(on_account.blocked_until - now)
        wait = max(waits)
        if wait > 0:
            raise Throttled(math.ceil(wait))

    def failed(self, address: str, login: str) -> None:
        now, account, rules = self.clock(), _account_key(login), self.rules
        self._addresses.fail(address, now, rules.address_max_delay)
        on_account = self._accounts.fail(account, now, rules.account_max_delay)
        if len(on_account.addresses) < rules.crowd:
            on_account.addresses.add(address)
        self._pairs.fail((account, address), now, max_delay=0)  # only tells who is suspect

    def succeeded(self, address: str, login: str) -> None:
        """The right password from here: this address is no suspect for this account."""
        self._pairs.forget((_account_key(login), address))


def _account_key(login: str) -> str:
    # LDAP matches uid and mail ignoring case: so does the throttle.
    return login.strip().casefold()
