"""Email codes: the pure rules, then the service against slapd with a clock of the test's own."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.config import Config
from app.domain import (
    AlreadyExists,
    AuthenticationFailed,
    InvalidCode,
    NewUser,
    Profile,
    TooSoon,
)
from app.runtime import Runtime
from app.service import UserService
from app.verification import (
    EmailCodes,
    code_matches,
    hash_code,
    is_code_shaped,
    new_code,
)
from tests.conftest import PASSWORD, SlapdInstance, run, unique


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_codes_are_six_random_digits() -> None:
    codes = {new_code() for _ in range(2000)}
    assert all(is_code_shaped(c) for c in codes)
    assert len(codes) > 1900  # a CSPRNG over a million values: few repeats
    assert any(c.startswith("0") for c in codes)  # leading zeros are kept


def test_only_a_salted_hash_is_kept() -> None:
    stored = hash_code("123456")
    salt, _, digest = stored.partition("$")
    assert "123456" not in stored and len(salt) == 32 and len(digest) == 64
    assert hash_code("123456") != stored  # a new salt each time
    assert code_matches("123456", stored)
    fullwidth = "".join(chr(0xFF10 + int(d)) for d in "123456")
    for wrong in ("123457", "12345", "1234567", " 123456", "", fullwidth):
        assert not code_matches(wrong, stored)
    assert not code_matches("123456", "no-salt-separator")


def test_lifetime_and_attempts() -> None:
    clock = Clock()
    codes = EmailCodes(clock=clock)
    issued = codes.issue()
    assert issued.expires == clock.now + timedelta(minutes=10)
    clock.now += timedelta(minutes=9, seconds=59)
    assert not codes.expired(issued.expires)
    clock.now += timedelta(seconds=1)
    assert codes.expired(issued.expires) and codes.expired(None)
    assert not codes.used_up(4) and codes.used_up(5)
    clock.now = issued.expires - timedelta(minutes=10)  # the moment it was issued
    assert codes.wait(issued.expires) == 60 and codes.wait(None) == 0
    clock.now += timedelta(seconds=59, milliseconds=500)
    assert codes.wait(issued.expires) == 1
    clock.now += timedelta(milliseconds=500)
    assert codes.wait(issued.expires) == 0


def test_a_lowered_lifetime_does_not_hold_codes_back() -> None:
    clock = Clock()
    issued = EmailCodes(clock=clock).issue()  # ten minutes
    shorter = EmailCodes(lifetime=timedelta(minutes=5), clock=clock)
    # Read with the new lifetime, the code seems sent five minutes from now.
    assert shorter.wait(issued.expires) == 0
    clock.now += timedelta(minutes=5, seconds=30)
    assert shorter.wait(issued.expires) == 30


# --- the service, with a clock the test moves ----------------------------------

@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(config: Config, bootstrapped: None, clock: Clock) -> Iterator[UserService]:
    runtime = Runtime.build(config)
    service = UserService(runtime.directory, runtime.service.types,
                          codes=EmailCodes(clock=clock))
    try:
        yield service
    finally:
        service.pools.close()
        runtime.close()


def sign_up(service: UserService) -> tuple[str, str, str]:
    email = f"{unique('v')}@example.org"
    user, code = run(service.sign_up(NewUser(username=email.split("@")[0], password=PASSWORD,
                                             profile=Profile(email=email))))
    return user.username, email, code


def test_a_code_works_until_its_tenth_minute_ends(service: UserService, clock: Clock) -> None:
    _, email, code = sign_up(service)
    clock.now += timedelta(minutes=10)
    with pytest.raises(InvalidCode):
        run(service.verify_email(email, code))
    _, email, code = sign_up(service)
    clock.now += timedelta(minutes=9, seconds=58)
    assert run(service.verify_email(email, code)).email_verified


def test_verification_unlocks_the_sign_up(service: UserService) -> None:
    username, email, code = sign_up(service)
    with pytest.raises(AuthenticationFailed):
        run(service.authenticate(email, PASSWORD, by="email"))
    user = run(service.verify_email(email, code))
    assert user.active and user.email_verified
    assert run(service.authenticate(email, PASSWORD, by="email")).username == username
    with pytest.raises(InvalidCode):  # used once, gone
        run(service.verify_email(email, code))


def test_simultaneous_wrong_codes_are_each_counted(service: UserService,
                                                  slapd: SlapdInstance) -> None:
    """20 wrong codes at once: every one counted atomically, so the code is void
    afterwards and the right one fails too."""
    username, email, code = sign_up(service)
    wrong = [f"{(int(code) + n) % 1_000_000:06d}" for n in range(1, 21)]
    barrier = threading.Barrier(len(wrong))
    failures: list[BaseException] = []

    def attempt(guess: str) -> None:
        barrier.wait()
        try:
            run(service.verify_email(email, guess))
        except InvalidCode as e:
            failures.append(e)

    threads = [threading.Thread(target=attempt, args=(g,)) for g in wrong]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(failures) == len(wrong)
    with pytest.raises(InvalidCode):
        run(service.verify_email(email, code))
    stored = slapd.ldap("ldapsearch", "-LLL", "-b", f"uid={username},ou=people,dc=example,dc=org",
                        "-s", "base", "userdirEmailCodeHash", bind="root").stdout
    assert "userdirEmailCodeHash" not in stored


def test_a_new_code_replaces_the_old_one(service: UserService, clock: Clock) -> None:
    _, email, old = sign_up(service)
    assert run(service.resend_code(email)) is None  # sent a moment ago: not again yet
    clock.now += timedelta(minutes=1)
    found = run(service.resend_code(email))
    assert found is not None
    address, new = found
    assert address == email
    if new != old:
        with pytest.raises(InvalidCode):
            run(service.verify_email(email, old))
    assert run(service.verify_email(email, new)).email_verified
    assert run(service.resend_code(email)) is None  # verified: nothing awaits a code


def test_two_resends_at_once_send_one_code(service: UserService, clock: Clock,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The second of two resend requests reads the code before the first
    replaced it: its replacement is refused, so one code goes out."""
    _, email, _ = sign_up(service)
    clock.now += timedelta(minutes=1)
    codes = service.directory.codes
    awaiting = codes.awaiting
    inner: list[tuple[str, str] | None] = []

    def read_then_let_another_in(address: str) -> Any:
        waiting = awaiting(address)
        if not inner:
            inner.append(None)
            inner[0] = run(service.resend_code(email))  # all of it, between read and write
        return waiting

    monkeypatch.setattr(codes, "awaiting", read_then_let_another_in)
    outer = run(service.resend_code(email))
    assert inner[0] is not None and outer is None
    assert run(service.verify_email(email, inner[0][1])).email_verified


def test_two_email_changes_at_once_send_one_code(service: UserService, clock: Clock,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    username, email, code = sign_up(service)
    run(service.verify_email(email, code))
    first, second = (f"{unique('moved')}@example.org" for _ in range(2))
    codes = service.directory.codes
    state = codes.state
    inner: list[str] = []

    def read_then_let_another_in(dn: str) -> Any:
        read = state(dn)
        if not inner:
            inner.append("")
            inner[0] = run(service.start_email_change(username, first))
        return read

    monkeypatch.setattr(codes, "state", read_then_let_another_in)
    with pytest.raises(TooSoon) as refused:
        run(service.start_email_change(username, second))
    assert refused.value.retry_after == 60
    monkeypatch.undo()
    with pytest.raises(InvalidCode):  # the refused change left no code for its address
        run(service.verify_email(second, inner[0]))
    assert run(service.verify_email(first, inner[0])).email == first


def test_email_changes_wait_their_interval(service: UserService, clock: Clock) -> None:
    """Whatever the address: one code a minute, so a PATCH cannot flood a mailbox."""
    username, email, code = sign_up(service)
    run(service.verify_email(email, code))  # verified at once: the next code may go now
    target = f"{unique('victim')}@example.org"
    assert is_code_shaped(run(service.start_email_change(username, target)))
    clock.now += timedelta(seconds=30)
    for address in (target, f"{unique('other')}@example.org"):
        with pytest.raises(TooSoon) as refused:
            run(service.start_email_change(username, address))
        assert refused.value.retry_after == 30
    clock.now += timedelta(seconds=30)
    assert is_code_shaped(run(service.start_email_change(username, target)))


def test_a_lapsed_sign_up_does_not_hold_its_address(service: UserService, clock: Clock,
                                                    slapd: SlapdInstance) -> None:
    """Whoever signs up with an address he does not own holds it for the
    code lifetime from his sign-up, however often he has the code resent:
    then a sign-up with it replaces the unconfirmed account."""
    clock.now = datetime.now(UTC)  # measured against the entry's createTimestamp
    username, email, _ = sign_up(service)
    again = NewUser(username=username, password="Other-Horse-5", profile=Profile(email=email))
    with pytest.raises(AlreadyExists):
        run(service.sign_up(again))
    clock.now += timedelta(minutes=9)
    resent = run(service.resend_code(email))
    assert resent is not None
    clock.now += timedelta(minutes=1, seconds=1)
    user, fresh = run(service.sign_up(again))  # the resent code lives; the sign-up lapsed
    assert user.username == username and not user.active
    with pytest.raises(InvalidCode):
        run(service.verify_email(email, resent[1]))
    assert run(service.verify_email(email, fresh)).active
    assert run(service.authenticate(email, "Other-Horse-5", by="email")).username == username
    people = slapd.ldap("ldapsearch", "-LLL", "-b", "ou=people,dc=example,dc=org",
                        f"(mail={email})", "1.1").stdout
    assert people.count("dn:") == 1


def test_a_sign_up_an_admin_decided_on_is_kept(service: UserService, clock: Clock) -> None:
    username, email, _ = sign_up(service)
    run(service.enable_user(username))  # let in without the code
    clock.now += timedelta(minutes=10)
    again = NewUser(username=username, password=PASSWORD, profile=Profile(email=email))
    with pytest.raises(AlreadyExists):
        run(service.sign_up(again))
    assert run(service.authenticate(email, PASSWORD, by="email")).username == username


def test_an_ldap_tool_user_changes_his_email(service: UserService, slapd: SlapdInstance) -> None:
    """His entry lacks userdir's object class: the code's attributes bring it."""
    name = unique("tool")
    dn = f"uid={name},ou=people,dc=example,dc=org"
    slapd.ldap("ldapadd", stdin=(f"dn: {dn}\nobjectClass: inetOrgPerson\ncn: {name}\n"
                                 f"sn: Tool\nuid: {name}\nmail: {name}@example.org\n"))
    new = f"{unique('moved')}@example.org"
    code = run(service.start_email_change(name, new))
    assert run(service.verify_email(new, code)).email == new
    assert "userdirPerson" in slapd.ldap("ldapsearch", "-LLL", "-b", dn, "-s", "base",
                                         "objectClass").stdout


def test_a_code_for_an_account_deleted_meanwhile_is_just_invalid(
        service: UserService, monkeypatch: pytest.MonkeyPatch) -> None:
    """The account goes between finding it and counting the try (its sign-up
    lapsed and was replaced, or an admin deleted it): the same InvalidCode
    as any wrong code, not a 'user not found'."""
    username, email, code = sign_up(service)
    codes = service.directory.codes
    count = codes.count_attempt

    def delete_first(dn: str) -> Any:
        run(service.delete_user(username))
        return count(dn)

    monkeypatch.setattr(codes, "count_attempt", delete_first)
    with pytest.raises(InvalidCode):
        run(service.verify_email(email, code))
