"""Issue 17 over HTTP: guessing is throttled, nobody is locked out, one client cannot stop the rest.

Several clients are played by loopback source addresses (`client_at`); each
test takes its own addresses, so the throttle's per-address counts of one
test never reach another's.
"""

from __future__ import annotations

import functools
import io
import ipaddress
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from ldap3 import BASE, NONE, SYNC, Connection, Server
from litestar.testing import TestClient
from PIL import Image

from app.api.edge import client_address
from app.directory.errors import Unreachable
from app.domain import NewUser, Profile, Throttled, Unavailable
from app.main import create_app
from app.runtime import Runtime
from app.throttle import LoginThrottle, ThrottleRules
from tests.conftest import (
    ADMIN,
    ADMIN_PASSWORD,
    BASE_DN,
    PASSWORD,
    SlapdInstance,
    client_at,
    create,
    make_config,
    run,
    serving,
    start_slapd,
    unique,
)

Client = TestClient[Any]
DECOY = f"cn=decoy,ou=services,{BASE_DN}"
# Each dialect's login: (path, the field naming the account).
LOGINS = {
    "native": ("/auth/token", "username"),
    "nervai": ("/auth/login", "username"),
    "fittrackee": ("/api/auth/login", "email"),
    "ufdl": ("/v1/auth/obtain", "username"),
    "accounts": ("/api/v1/accounts/token/", "email"),
    "library": ("/api/v1/login", "username"),
}
PROXY = "127.0.0.5"  # the one trusted proxy of the module's server
FLOOD = 40  # concurrent anonymous logins (issue 17's number)


def dn_of(username: str) -> str:
    return f"uid={username},ou=people,{BASE_DN}"


class Failures:
    """Reads pwdFailureTime (each failed bind on an entry adds a value) over
    one connection as the root DN: a bind per read would cost an argon2
    verification each."""

    def __init__(self, slapd: SlapdInstance) -> None:
        self.conn = Connection(Server(slapd.url, get_info=NONE), slapd.root_dn,
                               slapd.root_password, client_strategy=SYNC, auto_bind=True)

    def __call__(self, dn: str) -> set[str]:
        self.conn.search(dn, "(objectClass=*)", BASE, attributes=["pwdFailureTime"])
        found = self.conn.response or []
        return {str(v) for e in found for v in e["raw_attributes"].get("pwdFailureTime", [])}

    def close(self) -> None:
        self.conn.unbind()


@pytest.fixture
def failures(slapd: SlapdInstance) -> Iterator[Failures]:
    reader = Failures(slapd)
    try:
        yield reader
    finally:
        reader.close()


def bind(slapd: SlapdInstance, dn: str, password: str) -> int:
    """The result code of a simple bind (0 bound, 49 refused), in process."""
    conn = Connection(Server(slapd.url, get_info=NONE), dn, password.encode(),
                      client_strategy=SYNC)
    try:
        conn.bind()
        return int(conn.result["result"])
    finally:
        conn.unbind()


def credentials(dialect: str, username: str, password: str) -> dict[str, str]:
    field = LOGINS[dialect][1]
    return {field: f"{username}@example.org" if field == "email" else username,
            "password": password}


def throttled_body(dialect: str, wait: int) -> dict[str, Any]:
    """What each dialect's origin answers when it throttles (issue 17 §1)."""
    drf = {"detail": f"Request was throttled. Expected available in {wait} "
                     f"{'second' if wait == 1 else 'seconds'}."}
    bodies: dict[str, dict[str, Any]] = {
        "native": {"type": "about:blank", "title": "too many requests", "status": 429},
        "nervai": {"message": "The user has sent too many requests in a given amount of time."},
        "fittrackee": {"status": "error", "message": f"Too many requests. Please retry in "
                                                     f"{wait} s."},
        "ufdl": drf,
        "accounts": drf,
        "library": {"message": "Too Many Requests"},
    }
    return bodies[dialect]


def assert_throttled(response: httpx.Response, dialect: str) -> None:
    assert response.status_code == 429, (dialect, response.status_code, response.text)
    wait = int(response.headers["retry-after"])
    assert wait >= 1
    body = response.json()
    expected = throttled_body(dialect, wait)
    if dialect == "native":
        assert response.headers["content-type"].startswith("application/problem+json")
        body = {k: body[k] for k in expected}
    assert body == expected, (dialect, body)


@pytest.fixture(scope="module")
def url(slapd: SlapdInstance, bootstrapped: None,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API under uvicorn with the default throttle, behind one trusted proxy."""
    config = make_config(slapd, tmp_path_factory.mktemp("availability"),
                         http={"trusted_proxies": PROXY})
    with serving(config) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def client(slapd: SlapdInstance, bootstrapped: None,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """In-process, with room for many failures from its one client address:
    for the tests that are not about the throttle."""
    config = make_config(slapd, tmp_path_factory.mktemp("roomy"),
                         throttle={"address_free": 10_000, "account_free": 10_000})
    with TestClient(app=create_app(config)) as test_client:
        yield test_client


def bearer(client: Client | httpx.Client, username: str, password: str = PASSWORD,
           url: str = "") -> dict[str, str]:
    response = client.post(f"{url}/auth/token", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


# --- one request never takes the others down ---------------------------------------

def test_an_oversized_password_takes_nobody_down(client: Client, runtime: Runtime) -> None:
    """Issue 17's first reproduction: a 300,000-byte password made slapd drop
    the connection, which opened the circuit breaker: everyone got 503."""
    victim, bystander = create(runtime), create(runtime)
    headers = bearer(client, bystander.username)
    too_large = {
        "native": {"type": "about:blank", "title": "Request Entity Too Large", "status": 413,
                   "detail": "Request Entity Too Large"},
        "nervai": {"message": "The data value transmitted exceeds the capacity limit."},
        "fittrackee": {"status": "error",
                       "message": "Error during picture upload, file size exceeds limit."},
        "ufdl": {"detail": "Request body is too large."},
        "accounts": {"detail": "Request body is too large."},
        "library": {"message": "Request Entity Too Large"},
    }
    for dialect, (path, _) in LOGINS.items():
        refused = client.post(path, json=credentials(dialect, victim.username, "x" * 300_000))
        assert (refused.status_code, refused.json()) == (413, too_large[dialect]), dialect
        after = client.get(f"/people/{bystander.username}", headers=headers)
        assert after.status_code == 200, (dialect, after.text)
    form = client.post("/api/v1/login", data={"username": victim.username,
                                              "password": "x" * 300_000})
    assert form.status_code == 413
    assert client.get(f"/people/{bystander.username}", headers=headers).status_code == 200


def test_a_dropped_connection_does_not_open_the_breaker(runtime: Runtime) -> None:
    """Below the API's caps: slapd itself closes the connection of a bind whose
    password passes 262,143 bytes. That one bind fails; the breaker, which is
    for a slapd that is away, stays closed."""
    user = create(runtime)
    people = runtime.directory.people
    with pytest.raises(Unavailable) as refused:
        people.check_password(dn_of(user.username), "x" * 300_000)
    assert not isinstance(refused.value, Unreachable)
    runtime.directory.endpoint.breaker.check()  # closed: raises nothing
    assert run(runtime.service.get_user(user.username)).uuid == user.uuid


# --- caps before cost ----------------------------------------------------------------

def test_passwords_over_the_cap_are_refused_before_any_bind(client: Client, runtime: Runtime,
                                                           failures: Failures) -> None:
    """auth.max_password_length counts UTF-8 bytes (1024), on every route
    that takes a password, in that route's words, and no bind is tried."""
    name = unique("cap")
    create(runtime, name, email=f"{name}@example.org")
    account = dn_of(name)
    before = failures(account)
    for password in ("x" * 1025, "\u00e9" * 513):  # 1025 and 1026 bytes
        for dialect, (path, _) in LOGINS.items():
            refused = client.post(path, json=credentials(dialect, name, password))
            assert refused.status_code in (400, 422), (dialect, refused.text)
            assert "password" in refused.text.lower() or dialect == "fittrackee", refused.text
            assert refused.json() != {}, dialect
        form = client.post("/api/v1/login", data={"username": name, "password": password})
        assert form.status_code == 400 and "password" in form.text.lower()
    assert failures(account) == before  # nothing reached slapd
    # At the cap itself the password is checked (by a bind that fails).
    native = client.post("/auth/token", json={"username": name, "password": "x" * 1024})
    assert native.status_code == 401
    assert failures(account) != before


def test_password_changes_over_the_cap_are_refused(client: Client, runtime: Runtime,
                                                   failures: Failures) -> None:
    user = create(runtime)
    mine = bearer(client, user.username)
    admin = bearer(client, ADMIN, ADMIN_PASSWORD)
    long = "\u00e9" * 513
    before = failures(dn_of(user.username))
    native = f"/people/{user.username}/password"
    for body in ({"new_password": long, "current_password": PASSWORD},
                 {"new_password": "Fine-Horse-77", "current_password": long},
                 {"new_password": "x" * 1025, "current_password": PASSWORD}):
        refused = client.put(native, headers=mine, json=body)
        assert refused.status_code in (400, 422), refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
    checks: list[tuple[Callable[..., Any], str, dict[str, Any]]] = [
        (client.put, native, {"new_password": long}),
        (client.post, "/people", {"username": unique(), "password": long}),
        (client.post, "/users", {"username": unique(), "password": long,
                                 "email": f"{unique()}@example.org", "account_type": "user"}),
        (client.post, "/v1/users/create", {"username": unique(), "password": "\u00e9" * 129}),
        (client.patch, f"/v1/users/{user.id}", {"password": "\u00e9" * 129}),
        (client.post, f"/api/v1/users/{user.id}/password", {"password": long}),
        (client.put, "/api/v1/users", {"username": unique(), "password": long,
                                       "email": f"{unique()}@example.org", "name": "N"}),
    ]
    for call, path, body in checks:
        refused = call(path, headers=admin, json=body)
        assert refused.status_code in (400, 422), (path, refused.text)
        assert "password" in refused.text.lower(), (path, refused.text)
    signup = client.post("/api/v1/accounts/users/", json={
        "email": f"{unique()}@example.org", "password": long, "confirm_password": long})
    assert signup.status_code == 400 and "password" in signup.json()
    assert failures(dn_of(user.username)) == before
    assert client.post("/auth/token", json={"username": user.username,
                                            "password": PASSWORD}).status_code == 200


# --- throttling instead of lockout -----------------------------------------------------

def test_guessing_is_throttled_in_each_dialects_words(url: str, runtime: Runtime,
                                                      failures: Failures) -> None:
    """Six wrong passwords on one account from one address: the next try is
    a 429 with Retry-After, in the dialect's words, and binds nothing."""
    for n, dialect in enumerate(LOGINS, start=10):
        name = unique("guessed")
        create(runtime, name, email=f"{name}@example.org")
        with client_at(n) as guesser:
            statuses, throttled = guess_until_throttled(
                functools.partial(_guess, guesser, f"{url}{LOGINS[dialect][0]}",
                                  dialect, name),
                functools.partial(failures, dn_of(name)))
        assert statuses[:6] == [401] * 6, (dialect, statuses)
        assert throttled is not None, (dialect, statuses)
        assert_throttled(throttled, dialect)


def _guess(http: httpx.Client, url: str, dialect: str, name: str, i: int) -> httpx.Response:
    return http.post(url, json=credentials(dialect, name, f"guess-{i}"))


def guess_until_throttled(attempt: Callable[[int], httpx.Response],
                          binds: Callable[[], set[str]],
                          limit: int = 9) -> tuple[list[int], httpx.Response | None]:
    """Statuses of the attempts before the first 429, and that 429 (None if
    none came within `limit` tries), after checking that it bound nothing.
    Blocks start at one second: a slow machine may need an attempt or two
    more, never fewer."""
    statuses: list[int] = []
    for i in range(limit):
        seen = binds()
        response = attempt(i)
        if response.status_code == 429:
            assert binds() == seen  # refused before any bind
            return statuses, response
        statuses.append(response.status_code)
    return statuses, None


def test_the_owner_gets_in_while_guessers_wait(url: str, runtime: Runtime) -> None:
    """Guessers from three addresses: past the account's allowance every
    address waits, the right password included, but the one its owner logged
    in from before (his usual place)."""
    owner = create(runtime)
    body = {"username": owner.username}
    guessers = [client_at(n) for n in (30, 31, 32)]
    try:
        with client_at(33) as home:
            assert home.post(f"{url}/auth/token",
                             json={**body, "password": PASSWORD}).status_code == 200
            # Guess until the account's wait is 8 s (each wait sat out): 1, 2, 4, 8.
            waits: list[int] = []
            for i in range(40):
                wrong = guessers[i % 3].post(f"{url}/auth/token",
                                             json={**body, "password": f"g{i}"})
                assert wrong.status_code in (401, 429), wrong.text
                if wrong.status_code == 429:
                    waits.append(int(wrong.headers["retry-after"]))
                    if waits[-1] >= 8:
                        break
                    time.sleep(waits[-1])
            assert waits and waits[-1] >= 8, waits
            for guesser in guessers:
                assert_throttled(guesser.post(f"{url}/auth/token",
                                              json={**body, "password": "g"}), "native")
            # The right password from a guessing address waits as well, and
            # from a new one (it could be anyone)...
            assert guessers[0].post(f"{url}/auth/token",
                                    json={**body, "password": PASSWORD}).status_code == 429
            with client_at(34) as stranger:
                assert stranger.post(f"{url}/auth/token",
                                     json={**body, "password": PASSWORD}).status_code == 429
            # ...but not from the owner's usual place.
            assert home.post(f"{url}/auth/token",
                             json={**body, "password": PASSWORD}).status_code == 200
        for guesser in guessers:  # and they still wait
            assert guesser.post(f"{url}/auth/token",
                                json={**body, "password": "g"}).status_code == 429
    finally:
        for guesser in guessers:
            guesser.close()


def test_x_forwarded_for_names_the_client_only_behind_a_trusted_proxy(
        url: str, runtime: Runtime) -> None:
    assert client_address("127.0.0.9", "203.0.113.7", []) == "127.0.0.9"
    trusted = [ipaddress.ip_network("10.0.0.0/8")]
    assert client_address("10.1.1.1", "203.0.113.7, 10.2.2.2", trusted) == "203.0.113.7"
    assert client_address("127.0.0.9", "203.0.113.7", trusted) == "127.0.0.9"
    victim = create(runtime)
    body = {"username": victim.username}
    # From an untrusted peer the header is ignored: one client, throttled.
    with client_at(40) as liar:
        statuses, throttled = guess_until_throttled(
            lambda i: liar.post(f"{url}/auth/token", json={**body, "password": f"g{i}"},
                                headers={"X-Forwarded-For": f"198.51.100.{i}"}),
            lambda: set())
    assert statuses[:6] == [401] * 6 and throttled is not None, statuses
    # Through the proxy, each forwarded address is a client of its own: one
    # that guessed at 20 accounts waits, another does not.
    with httpx.Client(transport=httpx.HTTPTransport(local_address=PROXY)) as proxy:
        def login(forwarded: str, name: str) -> int:
            return proxy.post(f"{url}/auth/token", headers={"X-Forwarded-For": forwarded},
                              json={"username": name, "password": "g"}).status_code
        spraying = [login("198.51.100.7", unique("sprayed")) for _ in range(20)]
        assert spraying == [401] * 20, spraying
        # The allowance drains as time passes: a try or two more, never fewer.
        more = [login("198.51.100.7", unique("sprayed")) for _ in range(3)]
        assert 429 in more, more
        assert login("198.51.100.8", unique("sprayed")) == 401


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def allowed(throttle: LoginThrottle, address: str, login: str) -> bool:
    try:
        throttle.check(address, login)
    except Throttled:
        return False
    return True


def test_the_throttle_holds_back_guessers_not_the_owner() -> None:
    clock = Clock()
    throttle = LoginThrottle(ThrottleRules(), clock)
    throttle.succeeded("192.0.2.1", "bob")  # the owner logged in from home once
    for n in range(20):  # 20 addresses guess, each as long as it may
        for _ in range(3):
            if allowed(throttle, f"10.0.0.{n}", "Bob"):
                throttle.failed(f"10.0.0.{n}", "Bob")
            clock.now += 0.1
    assert not any(allowed(throttle, f"10.0.0.{n}", "bob") for n in range(20))
    assert not allowed(throttle, "198.51.100.1", "bob")  # a new place: one of the crowd
    assert allowed(throttle, "192.0.2.1", "bob")  # the owner, at home
    assert allowed(throttle, "10.0.0.1", "alice")  # other accounts are not held back
    # Far past the window, everything is forgotten.
    clock.now += 2 * 900
    assert allowed(throttle, "10.0.0.1", "bob")


def test_guessers_together_get_one_try_a_minute_at_most() -> None:
    """However many addresses guess, past the allowance the account lets one
    failure through per wait, and the wait stops growing at a minute: fewer
    failures reach slapd than its lockout needs (20 in 5 minutes)."""
    clock = Clock()
    throttle = LoginThrottle(ThrottleRules(), clock)
    admitted, start = 0, clock.now
    for n in range(3001):  # a guess every 0.1 s for 5 minutes, each from a new address
        address = f"10.{n // 250}.{n % 250}.1"
        if allowed(throttle, address, "dave"):
            throttle.failed(address, "dave")
            admitted += 1
        clock.now += 0.1
    assert clock.now - start > 299.9
    assert admitted < 20, admitted
    with pytest.raises(Throttled) as caught:
        throttle.check("10.99.0.1", "dave")
    assert caught.value.retry_after <= 60


def test_attempts_in_flight_count_before_their_answer() -> None:
    """Twenty guesses sent at the same moment, each from its own address: they
    are counted as they start, not when slapd has answered, so past the
    account's allowance the others wait (before, all twenty reached slapd,
    enough to lock the account there)."""
    clock = Clock()
    throttle = LoginThrottle(ThrottleRules(), clock)
    throttle.attempt("192.0.2.1", "frank")
    throttle.succeeded("192.0.2.1", "frank")  # the owner, once, from home
    started = 0
    for n in range(20):
        try:
            throttle.attempt(f"10.0.5.{n}", "frank")
            started += 1
        except Throttled:
            pass
    assert started == 6, started  # the allowance (5), and the one whose count opened the block
    throttle.attempt("192.0.2.1", "frank")  # home is not held back...
    throttle.succeeded("192.0.2.1", "frank")  # ...and his success counts as none


def test_trust_lasts_its_days() -> None:
    clock = Clock()
    throttle = LoginThrottle(ThrottleRules(trust_days=30), clock)
    throttle.succeeded("192.0.2.1", "erin")
    for n in range(6):
        throttle.failed(f"10.0.4.{n}", "erin")
    assert allowed(throttle, "192.0.2.1", "Erin ")  # the login as typed, case and spaces aside
    clock.now += 31 * 86_400
    for n in range(6):
        throttle.failed(f"10.0.4.{n}", "erin")
    assert not allowed(throttle, "192.0.2.1", "erin")


def test_one_address_guessing_many_accounts_waits_longer_each_time() -> None:
    clock = Clock()
    throttle = LoginThrottle(ThrottleRules(), clock)
    for n in range(20):
        throttle.failed("10.0.2.1", f"user{n}")
    assert allowed(throttle, "10.0.2.1", "someone")
    waits = []
    for n in range(4):
        throttle.failed("10.0.2.1", f"more{n}")
        with pytest.raises(Throttled) as caught:
            throttle.check("10.0.2.1", "someone-else")
        waits.append(caught.value.retry_after)
        clock.now += waits[-1]
    assert waits == [1, 2, 4, 8]


# --- equal cost ------------------------------------------------------------------------

def test_every_refused_login_answers_and_costs_the_same(client: Client, runtime: Runtime,
                                                        slapd: SlapdInstance,
                                                        failures: Failures) -> None:
    """Unknown user, wrong password, disabled, unverified or locked account:
    one answer per route, and every one costs slapd an argon2 check, on the
    user (a wrong password) or on the decoy (accounts that cannot log in,
    even with the right password)."""
    wrong = create(runtime, email=f"{unique('w')}@example.org")
    disabled = create(runtime, email=f"{unique('d')}@example.org")
    run(runtime.service.disable_user(disabled.username))
    unverified, _ = run(runtime.service.sign_up(NewUser(
        username=unique("s"), password=PASSWORD,
        profile=Profile(email=f"{unique('s')}@example.org"))))
    locked = create(runtime, email=f"{unique('l')}@example.org")
    for _ in range(20):
        bind(slapd, dn_of(locked.username), "wrong-guess")
    assert bind(slapd, dn_of(locked.username), PASSWORD) == 49
    cases = {  # (username, email, password, the entry whose failures prove the bind)
        "unknown": (unique("ghost"), f"{unique('ghost')}@example.org", PASSWORD, DECOY),
        "wrong": (wrong.username, wrong.email, "Not-The-Password-1", dn_of(wrong.username)),
        "disabled": (disabled.username, disabled.email, PASSWORD, DECOY),
        "unverified": (unverified.username, unverified.email, PASSWORD, DECOY),
        "locked": (locked.username, locked.email, PASSWORD, DECOY),
    }
    for dialect, (path, field) in LOGINS.items():
        answers = {}
        for case, (username, email, password, bound) in cases.items():
            before = failures(bound)
            response = client.post(path, json={field: email if field == "email" else username,
                                               "password": password})
            answers[case] = (response.status_code, response.text,
                             response.headers.get("www-authenticate"))
            assert failures(bound) - before, (dialect, case, "no bind")
        assert len(set(answers.values())) == 1, (dialect, answers)
        assert answers["unknown"][0] == 401, (dialect, answers["unknown"])


# --- bulkheads -----------------------------------------------------------------------

def test_a_login_flood_is_refused_at_once_and_others_are_served(
        slapd: SlapdInstance, runtime: Runtime, tmp_path: Path) -> None:
    """Issue 17: 40 anonymous logins made everyone's reads wait behind argon2
    binds. Logins have their own small pool now: past its queue they are
    refused at once (503, Retry-After), and reads do not wait for them."""
    config = make_config(slapd, tmp_path, ldap={"bind_pool_size": 1, "bind_queue_limit": 2})
    reader = create(runtime)
    with serving(config) as base:
        with client_at(50) as own:
            headers = bearer(own, reader.username, url=base)
        start = threading.Barrier(FLOOD + 1)

        def login(n: int) -> httpx.Response:
            with client_at(51 + n, timeout=30) as flooder:
                start.wait()
                return flooder.post(f"{base}/auth/token", json={
                    "username": unique("ghost"), "password": "whatever-it-is"})

        def read() -> httpx.Response:
            with client_at(50, timeout=10) as own:
                start.wait()
                time.sleep(0.05)
                return own.get(f"{base}/people/{reader.username}", headers=headers)

        with ThreadPoolExecutor(FLOOD + 1) as pool:
            reading = pool.submit(read)
            answers = list(pool.map(login, range(FLOOD)))
            assert reading.result().status_code == 200
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {401, 429, 503}, statuses
    busy = [a for a in answers if a.status_code == 503]
    assert busy, statuses
    assert all(int(a.headers["retry-after"]) >= 1 for a in busy)
    assert busy[0].json()["title"] == "busy"


def test_one_client_over_its_share_is_throttled_not_the_others(tmp_path: Path) -> None:
    """With slapd paused, requests queue: one client's beyond its share are
    refused at once (429), beyond the queue everyone's are (503); the queued
    ones are answered when slapd is back."""
    directory = start_slapd(tmp_path / "slapd")
    try:
        config = make_config(directory, tmp_path / "api", ldap={
            "pool_size": 1, "queue_limit": 4, "client_limit": 2, "operation_timeout": 15})
        runtime = Runtime.build(config)
        try:
            run(runtime.service.bootstrap(ADMIN, ADMIN_PASSWORD, ""))
        finally:
            runtime.close()
        with serving(config) as base, httpx.Client() as http:
            headers = bearer(http, ADMIN, ADMIN_PASSWORD, url=base)
            path = f"{base}/people/{ADMIN}"
            assert httpx.get(path, headers=headers).status_code == 200  # a pooled connection
            pending: list[Any] = []
            with ThreadPoolExecutor(8) as pool:

                def later(n: int) -> None:
                    pending.append(pool.submit(_get, n, path, headers))
                    time.sleep(0.5)  # in the pool's queue before the next one

                pid = _slapd_pid(directory)
                os.kill(pid, signal.SIGSTOP)
                try:
                    later(60)  # taken by the one worker, which waits for slapd
                    later(60)
                    later(60)  # two queued: client 60's share
                    over_share = pool.submit(_get, 60, path, headers).result(10)
                    later(61)
                    later(62)  # the queue is full (4)
                    over_queue = pool.submit(_get, 63, path, headers).result(10)
                finally:
                    os.kill(pid, signal.SIGCONT)
                served = [p.result().status_code for p in pending]
    finally:
        directory.process.stop()
    assert over_share.status_code == 429 and over_share.headers["retry-after"] == "1"
    assert over_share.json()["title"] == "too many requests"
    assert over_queue.status_code == 503 and int(over_queue.headers["retry-after"]) >= 1
    assert served == [200] * 5, served


def _get(n: int, path: str, headers: dict[str, str]) -> httpx.Response:
    with client_at(n, timeout=30) as http:
        return http.get(path, headers=headers)


def _slapd_pid(directory: SlapdInstance) -> int:
    process = directory.process.process
    assert process is not None
    return process.pid


# --- pictures ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def largest_picture() -> bytes:
    """4472x4472 (20 MP, just under pictures.max_pixels), in 36 bytes of WebP."""
    out = io.BytesIO()
    Image.new("RGB", (4472, 4472), "teal").save(out, "WEBP", lossless=True, quality=0,
                                                  method=0)
    return out.getvalue()


def test_four_largest_pictures_at_once(url: str, runtime: Runtime,
                                       largest_picture: bytes) -> None:
    users = [create(runtime) for _ in range(4)]
    reader = create(runtime)
    with client_at(70) as http:
        tokens = [bearer(http, u.username, url=url) for u in [*users, reader]]

    def upload(n: int) -> int:
        with client_at(71 + n, timeout=60) as http:
            return http.put(f"{url}/people/{users[n].username}/photo",
                            headers={**tokens[n], "content-type": "image/webp"},
                            content=largest_picture).status_code

    with ThreadPoolExecutor(4) as pool:
        uploading = [pool.submit(upload, n) for n in range(4)]
        time.sleep(0.2)  # the decoder is busy
        with client_at(75, timeout=10) as http:  # answers, not a hang (no measure)
            assert http.get(f"{url}/health").status_code == 200
            assert http.get(f"{url}/people/{reader.username}",
                            headers=tokens[4]).status_code == 200
        uploads = [u.result() for u in uploading]
    assert all(status in (204, 422) for status in uploads), uploads
    with client_at(75) as http:
        bomb = http.put(f"{url}/people/{reader.username}/photo",
                        headers={**tokens[4], "content-type": "image/webp"},
                        content=_webp((4473, 4473)))
        assert bomb.status_code == 422
        assert "PIL" not in bomb.text and "Image" not in bomb.text, bomb.text  # our words only


def _webp(size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, "teal").save(out, "WEBP", lossless=True, quality=0, method=0)
    return out.getvalue()
