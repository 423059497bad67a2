"""slapd killed or frozen under a write load: fail fast, never 500, recover alone."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from ldap3 import SAFE_SYNC, SUBTREE, Connection, Server

from app.runtime import Runtime
from tests.conftest import (
    ADMIN,
    ADMIN_PASSWORD,
    PASSWORD,
    SlapdInstance,
    make_config,
    run,
    serving,
    start_slapd,
)

FAST = 5.0  # SPEC §6: requests fail within this many seconds while slapd is away
TYPE_GROUPS = {f"cn={t},ou=groups,dc=example,dc=org" for t in ("user", "staff", "admin")}


class Api:
    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.headers = {"Authorization": f"Bearer {token}"}


@pytest.fixture
def system(tmp_path: Path) -> Iterator[tuple[SlapdInstance, Api]]:
    slapd = start_slapd(tmp_path / "slapd")
    config = make_config(slapd, tmp_path / "api")
    runtime = Runtime.build(config)
    run(runtime.service.bootstrap(ADMIN, ADMIN_PASSWORD, ""))
    runtime.close()
    try:
        with serving(config) as url:
            token = httpx.post(f"{url}/auth/token", json={"username": ADMIN,
                                                          "password": ADMIN_PASSWORD})
            yield slapd, Api(url, token.json()["access_token"])
    finally:
        if slapd.process.process is not None:
            os.kill(slapd.process.process.pid, signal.SIGCONT)
        slapd.process.stop()


class Load:
    """Threads creating users without pause, recording every answer."""

    def __init__(self, api: Api, threads: int = 4) -> None:
        self.api = api
        self.answers: list[tuple[float, int, float, str]] = []  # (start, status, secs, type)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.work, args=(i,)) for i in range(threads)]
        self.lock = threading.Lock()

    def work(self, index: int) -> None:
        n = 0
        with httpx.Client(base_url=self.api.url, timeout=30) as client:
            while not self.stop.is_set():
                n += 1
                started = time.monotonic()
                response = client.post("/people", headers=self.api.headers, json={
                    "username": f"load{index}x{n}", "password": PASSWORD})
                with self.lock:
                    self.answers.append((started, response.status_code,
                                         time.monotonic() - started,
                                         response.headers.get("content-type", "")))

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)


def wait_until(condition: Any, seconds: float) -> float:
    """Seconds it took for condition() to hold; fails after `seconds`."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, "did not happen in time"
        time.sleep(0.1)
    return time.monotonic() - started


def healthy(api: Api) -> bool:
    return httpx.get(f"{api.url}/health", timeout=10).status_code == 200


def creates(api: Api) -> bool:
    name = f"probe{time.monotonic_ns()}"
    response = httpx.post(f"{api.url}/people", headers=api.headers, timeout=10,
                          json={"username": name, "password": PASSWORD})
    return response.status_code == 201


def check_answers(load: Load) -> None:
    statuses = {status for _, status, _, _ in load.answers}
    assert statuses <= {201, 503}, statuses  # never a 500, never anything else
    slow = [secs for _, status, secs, _ in load.answers if status == 503 and secs > FAST]
    assert not slow, f"503s took up to {max(slow):.1f} s"
    assert all(kind.startswith("application/problem+json")
               for _, status, _, kind in load.answers if status == 503)
    assert 503 in statuses and 201 in statuses


def scan(slapd: SlapdInstance) -> None:
    """No half-created user, no dangling membership, ids unique."""
    conn = Connection(Server(slapd.url), slapd.root_dn, slapd.root_password,
                      client_strategy=SAFE_SYNC, auto_bind=True)
    _, _, people, _ = conn.search("ou=people,dc=example,dc=org", "(objectClass=inetOrgPerson)",
                                  SUBTREE, attributes=["memberOf", "userPassword", "uidNumber"])
    people = [e for e in people if e["type"] == "searchResEntry"]
    dns = {e["dn"].lower() for e in people}
    for entry in people:
        attributes = entry["attributes"]
        assert len(TYPE_GROUPS & set(attributes["memberOf"])) == 1, entry["dn"]
        assert attributes["userPassword"], entry["dn"]
    numbers = [e["attributes"]["uidNumber"] for e in people]
    assert len(numbers) == len(set(numbers))
    _, _, groups, _ = conn.search("ou=groups,dc=example,dc=org", "(objectClass=groupOfNames)",
                                  SUBTREE, attributes=["member"])
    for group in (g for g in groups if g["type"] == "searchResEntry"):
        for member in group["attributes"]["member"]:
            if member.lower().endswith("ou=people,dc=example,dc=org"):
                assert member.lower() in dns, f"{group['dn']} keeps {member}"
    conn.unbind()


def test_slapd_frozen_then_thawed(system: tuple[SlapdInstance, Api]) -> None:
    slapd, api = system
    assert slapd.process.process is not None
    pid = slapd.process.process.pid
    with Load(api) as load:
        time.sleep(1)
        os.kill(pid, signal.SIGSTOP)
        wait_until(lambda: not healthy(api), 3)
        health = httpx.get(f"{api.url}/health", timeout=10)
        assert health.json() == {"status": "degraded", "ldap": "unreachable"}
        time.sleep(FAST + 1)
        os.kill(pid, signal.SIGCONT)
        assert wait_until(lambda: healthy(api) and creates(api), 5) <= 5
        time.sleep(1)
    check_answers(load)
    scan(slapd)


def test_slapd_killed_then_restarted(system: tuple[SlapdInstance, Api]) -> None:
    slapd, api = system
    assert slapd.process.process is not None
    with Load(api) as load:
        time.sleep(1)
        slapd.process.process.kill()
        slapd.process.process.wait()
        slapd.process.process = None
        wait_until(lambda: not healthy(api), 3)
        time.sleep(2)
        slapd.process.start()  # same data, same port
        assert wait_until(lambda: healthy(api) and creates(api), 5) <= 5
        time.sleep(1)
    check_answers(load)
    scan(slapd)
