"""Email codes: the pure rules, then the service against slapd with a clock of the test's own."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from app.config import Config
from app.domain import AuthenticationFailed, InvalidCode, NewUser, Profile
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
    assert codes.too_soon(issued.expires) and not codes.too_soon(None)
    clock.now += timedelta(seconds=59)
    assert codes.too_soon(issued.expires)
    clock.now += timedelta(seconds=1)
    assert not codes.too_soon(issued.expires)


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
        service.executor.shutdown()
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
