"""Availability under abuse (issue 17): a signed-in user's GET alone, then during each attack.

Every attack and the victim's probe run in processes of their own, each
client on its own loopback address (the service keys its throttle and its
fair queues on the address). The victim's "alone" figures are taken right
before each attack, so that each ratio compares two measurements a few
seconds apart on this noisy machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from app.embedded import Slapd
from bench import seed
from bench.processes import Api, Background, CpuMeter, measure, memory_mb, reset_peak
from bench.run import Run, ratio

VICTIM = seed.username(20)
FLOODER = seed.username(21)
UPLOADERS = [seed.username(22 + i) for i in range(4)]
OWNER = seed.username(30)
LOGIN_USERS = [seed.username(200 + i) for i in range(40)]
VICTIM_ADDRESS = "127.0.0.2"
TARGET = 3.0  # during/alone at p50
PICTURE_SIDES = (5000, 4000)  # pictures.max_pixels (20 MP), exactly


def addresses(block: int, count: int) -> list[str]:
    """127.0.<block>.1 … : one loopback address per client."""
    return [f"127.0.{block}.{i}" for i in range(1, count + 1)]


def largest_webp(folder: Path) -> Path:
    """A WebP of pictures.max_pixels: a few hundred bytes on the wire (one
    colour, lossless), 300 MB to decode (README "What the limits cost")."""
    out = BytesIO()
    Image.new("RGB", PICTURE_SIDES, (200, 120, 40)).save(out, "WEBP", lossless=True)
    path = folder / "largest.webp"
    path.write_bytes(out.getvalue())
    return path


def login(api: Api, username: str) -> str:
    answer = httpx.post(f"{api.url}/auth/token", timeout=30,
                        json={"username": username, "password": seed.PASSWORD})
    answer.raise_for_status()
    token: str = answer.json()["access_token"]
    return token


class Abuse:
    def __init__(self, run: Run, api: Api, slapd: Slapd, size: int, folder: Path) -> None:
        self.run, self.api, self.ldap_port = run, api, slapd.port
        self.size, self.folder = size, folder
        self.victim_token = login(api, VICTIM)
        assert slapd.process is not None
        # Where the time goes: on two cores, an attack mostly costs CPU.
        self.cpu = CpuMeter({"API": api.pid, "slapd": slapd.process.pid})

    def probe(self) -> dict[str, Any]:
        return measure("bench.attack", {
            "kind": "probe", "host": "127.0.0.1", "port": self.api.port,
            "source": VICTIM_ADDRESS, "path": f"/people/{VICTIM}",
            "token": self.victim_token, "duration": self.run.abuse_window})

    def during(self, name: str, how: str, spec: Callable[[], dict[str, Any]],
               before: Callable[[], None] | None = None,
               after: Callable[[], str] | None = None) -> None:
        """The victim's probe alone, then while the load `spec()` describes runs."""
        with self.run.scenario(f"abuse: {name}", self.size):
            load_spec = spec()
            self.cpu.start()
            alone = self.probe()
            cpu_alone = self.cpu.stop()
            if before is not None:
                before()
            attack = Background({"host": "127.0.0.1", "port": self.api.port, **load_spec})
            try:
                self.cpu.start()
                busy = self.probe()
                cpu_during = self.cpu.stop()
            finally:
                load = attack.stop()
            extra = after() if after is not None else ""
            p50 = ratio(busy.get("p50_ms"), alone.get("p50_ms"))
            self.run.abuse.append({
                "attack": name, "how": how, "users": self.size, "alone": alone, "during": busy,
                "load": load, "ratio_p50": p50, "cpu_alone": cpu_alone, "cpu_during": cpu_during,
                "ratio_p99": ratio(busy.get("p99_ms"), alone.get("p99_ms")),
                "met": p50 is not None and p50 <= TARGET and busy.get("errors") == 0,
                "notes": extra})
            print(f"  abuse: {name}: victim p50 {alone.get('p50_ms')} → {busy.get('p50_ms')} ms "
                  f"(ratio {p50}), p99 {alone.get('p99_ms')} → {busy.get('p99_ms')} ms; "
                  f"attack answers {load.get('statuses')}; CPU % alone {cpu_alone}, during "
                  f"{cpu_during} {extra}", flush=True)
            time.sleep(1)  # what the attack left queued drains before the next one

    def logins(self) -> None:
        self.during("40 concurrent anonymous logins",
                    "40 clients, each on its own address and with its own account, send the "
                    "right password and a wrong one in turn, each the next as soon as the last "
                    "is answered",
                    lambda: {"kind": "logins", "sources": addresses(1, 40), "users": LOGIN_USERS,
                             "password": seed.PASSWORD})

    def stalls(self) -> None:
        self.during("20 stalled LDAP readers",
                    "20 anonymous LDAP connections each pipeline 100 searches of cn=subschema "
                    "and never read an answer; one that slapd drops is replaced within 0.5 s",
                    lambda: {"kind": "stalls", "ldap_host": "127.0.0.1",
                             "ldap_port": self.ldap_port, "connections": 20, "searches": 100})

    def uploads(self) -> None:
        memory = self.run.memory

        def spec() -> dict[str, Any]:
            return {"kind": "uploads", "picture": str(largest_webp(self.folder)),
                    "uploaders": [{"source": source, "user": user,
                                   "token": login(self.api, user)}
                                  for source, user in zip(addresses(2, 4), UPLOADERS,
                                                          strict=True)]}

        def reset() -> None:
            memory["peak_reset"] = reset_peak(self.api.pid)

        def measure_memory() -> str:
            memory["peak_mb"] = memory_mb(self.api.pid, "VmHWM")
            time.sleep(3)
            memory["after_3s_mb"] = memory_mb(self.api.pid)
            since = "during the uploads" if memory["peak_reset"] else "since the API started"
            return (f"API peak RSS {since} {memory['peak_mb']} MB, "
                    f"{memory['after_3s_mb']} MB 3 s later")

        w, h = PICTURE_SIDES
        self.during("4 parallel maximal picture uploads",
                    f"4 users, each on his own address, replace their picture with a {w}x{h} "
                    "(20 MP, pictures.max_pixels) one-colour lossless WebP, again as soon as "
                    "answered; the API's peak RSS is its VmHWM, reset just before "
                    "(/proc/<pid>/clear_refs)",
                    spec, before=reset, after=measure_memory)

    def half_sent(self) -> None:
        self.during("200 half-sent requests",
                    "200 connections from one address send a login's headers (Content-Length "
                    "1000) and 14 bytes of its body, then nothing; one the server drops is "
                    "replaced within 0.5 s (http.request_timeout, 30 s, is longer than the "
                    "window: none is due)",
                    lambda: {"kind": "half_sent", "source": "127.0.3.1", "connections": 200})

    def flood(self) -> None:
        self.during("listing flood by one user",
                    "one signed-in plain user, from one address, sends fittrackee's "
                    "GET /api/users?per_page=50 on 64 connections, each the next as soon as "
                    "the last is answered",
                    lambda: {"kind": "flood", "source": "127.0.5.1", "connections": 64,
                             "path": "/api/users?per_page=50",
                             "token": login(self.api, FLOODER)})

    def guessing(self) -> None:
        """The owner's login while 20 addresses guess his password."""
        with self.run.scenario("abuse: the owner's login under a guessing attack", self.size):
            result = measure("bench.attack", {
                "kind": "guessing", "host": "127.0.0.1", "port": self.api.port,
                "account": OWNER, "password": seed.PASSWORD, "guessers": addresses(6, 20),
                "owner_source": "127.0.7.1", "owner_start": 3.0, "owner_interval": 10.0,
                "owner_limit": self.run.owner_limit}, timeout=self.run.owner_limit + 120)
            self.run.guessing = {"users": self.size, **result}
            print(f"  abuse: owner's login under guessing: succeeded after "
                  f"{result['owner_succeeded_after_s']} s; attempts {result['owner_attempts']}; "
                  f"guesses answered {result['guesses']['statuses']}", flush=True)


def run_all(run: Run, api: Api, slapd: Slapd, size: int, folder: Path) -> None:
    with run.scenario("abuse: sign in the victim", size):
        if size < len(LOGIN_USERS) + 200:
            raise ValueError(f"the abuse scenarios need {len(LOGIN_USERS) + 200} seeded users")
        abuse = Abuse(run, api, slapd, size, folder)
        abuse.logins()
        abuse.stalls()
        abuse.uploads()
        abuse.half_sent()
        abuse.flood()
        abuse.guessing()
