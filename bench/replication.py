"""Read replicas: what read-your-writes costs, and what `make bench` reports.

`python -m bench.replication` alone: what read-your-writes costs (a provider,
a consumer, loopback).

The figures behind app/directory/replicas.py's choice (README "Read
replicas"): how long a consumer takes to hold a write (contextCSN read
without pause from the moment the write returns), what the mark costs (the
provider's contextCSN read after each write), and a user read on the
consumer, on the provider, and right after the reader's own write (the
fallback). A wait-for-the-consumer design would cost the writer's next read
the consumer's lag on top of a consumer read. Ratios and percentiles of one
run: this machine is shared, absolute figures only give the scale.

In `make bench` (run_all): one seeded provider and two consumers; GET one
user and a list page through the API reading from the provider only, from
one consumer and from two (ratios to the provider only), and how long each
consumer takes to hold the provider's newest change while the API creates
users (p50/p99). On one machine the consumers share its cores with the
provider and the API: these rows say what replicas cost here, not the
capacity they add on machines of their own.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from ldap3 import Connection

from app import embedded
from app.bulkhead import current_client
from app.config import load_config
from app.directory.freshness import covers, read_csns
from app.directory.replicas import ReplicatedPool
from app.domain import NewUser
from app.runtime import Runtime
from bench import seed
from bench.processes import api_server, environment, free_port, measure
from bench.run import Run, ratio, served_per_second
from bench.stats import summary

BASE_DN = "dc=example,dc=org"
PASSWORD = "Bench-Replica-1"  # noqa: S105 - the created users' known password
REPLICATOR = "Replicator-Bench-1"


def _slapd(data_dir: Path, consumer_of: str | None = None,
           service_password: str | None = None) -> embedded.Slapd:
    embedded.initialise(data_dir, BASE_DN, ["user", "staff", "admin"],
                        service_password=service_password, replicator_password=REPLICATOR,
                        consumer_of=consumer_of)
    slapd = embedded.Slapd(data_dir, free_port())
    slapd.start()
    return slapd


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    at = {p: ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] for p in (50, 90, 99)}
    return " ".join(f"p{p} {v * 1000:.2f} ms" for p, v in at.items())


def timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replication")
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        provider = _slapd(Path(tmp, "provider"))
        service_password = embedded.Layout(Path(tmp, "provider")).read_service_password()
        consumer = _slapd(Path(tmp, "consumer"), provider.url, service_password)
        try:
            read_your_writes(provider, consumer, service_password, Path(tmp), args.rounds)
        finally:
            consumer.stop()
            provider.stop()
    return 0


def read_your_writes(provider: embedded.Slapd, consumer: embedded.Slapd, service_password: str,
            tmp: Path, rounds: int) -> None:
    config = load_config(None, {
        "USERDIR_LDAP__URL": provider.url, "USERDIR_LDAP__BIND_PASSWORD": service_password,
        "USERDIR_LDAP__READ_URLS": consumer.url, "USERDIR_EMBEDDED__DATA_DIR": str(tmp / "api")})
    runtime = Runtime.build(config)
    service = runtime.service
    pool = runtime.directory.pool
    assert isinstance(pool, ReplicatedPool)
    dn = embedded.service_dn(BASE_DN)
    watch = {name: Connection(slapd.url, dn, service_password, auto_bind=True)
             for name, slapd in (("provider", provider), ("consumer", consumer))}

    def as_client(client: str, call: Callable[[], Any]) -> Any:
        async def scoped() -> Any:
            current_client.set(client)
            return await call()
        return asyncio.run(scoped())

    def create(name: str) -> None:
        as_client("writer", lambda: service.create_user(NewUser(username=name,
                                                                password=PASSWORD)))

    def read(client: str, name: str) -> None:
        as_client(client, lambda: service.get_user(name))

    lags, marks, creates, fallback, other = [], [], [], [], []
    for n in range(rounds):
        creates.append(timed(lambda: create(f"bench{n}")))  # noqa: B023 - called at once
        wanted = read_csns(watch["provider"], BASE_DN)
        written = time.perf_counter()
        while not covers(read_csns(watch["consumer"], BASE_DN), wanted):
            pass
        lags.append(time.perf_counter() - written)
        marks.append(timed(lambda: read_csns(watch["provider"], BASE_DN)))
        create(f"xbench{n}")
        fallback.append(timed(lambda: read("writer", f"xbench{n}")))  # noqa: B023
        other.append(timed(lambda: read("reader", f"bench{n}")))  # noqa: B023
    searches = dict(pool.searches)
    runtime.close()
    print(f"rounds: {rounds}; searches by server: {searches}")
    print(f"create (API, with its mark):     {percentiles(creates)}")
    print(f"consumer holds a write after:    {percentiles(lags)}")
    print(f"mark (provider contextCSN read): {percentiles(marks)}")
    print(f"writer's read right after:       {percentiles(fallback)}")
    print(f"another client's read:           {percentiles(other)}")
    print(f"waiting instead would add:       {statistics.median(lags) * 1000:.2f} ms (median) "
          "to the writer's read")


CONSUMERS = 2
SYNC_WITHIN = 300.0  # seconds a new consumer may take to copy the seeded provider
READ_TARGET = 0.8  # reading from consumers may cost this much of the provider-only rate
LAG_TARGET_MS = 1000.0  # ldap.max_lag's default: a consumer behind it is skipped


def bound(url: str, dn: str, password: str, within: float) -> Connection:
    deadline = time.monotonic() + within
    while True:
        conn = Connection(url, dn, password)
        if conn.bind():
            return conn
        if time.monotonic() > deadline:
            raise RuntimeError(f"could not bind to {url} within {within:.0f} s: {conn.result}")
        time.sleep(0.2)


def wait_until_synced(provider: Connection, consumer: Connection, within: float) -> None:
    wanted = read_csns(provider, BASE_DN)
    deadline = time.monotonic() + within
    while not (wanted and covers(read_csns(consumer, BASE_DN), wanted)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"a consumer did not copy the provider within {within:.0f} s")
        time.sleep(0.2)


def lag_samples(provider: Connection, consumers: list[Connection],
                until: threading.Event) -> list[float]:
    """While `until` is unset: the provider's newest change, then the time
    until each consumer holds it (a lower bound of the true lag: the change
    was made a little before it was read), in ms."""
    samples: list[float] = []
    while not until.is_set():
        wanted = read_csns(provider, BASE_DN)
        seen = time.perf_counter()
        for consumer in consumers:
            while not covers(read_csns(consumer, BASE_DN), wanted):
                if time.perf_counter() - seen > 30:
                    raise RuntimeError("a consumer was 30 s behind the provider")
            samples.append((time.perf_counter() - seen) * 1000)
        time.sleep(0.01)
    return samples


def run_all(run: Run, size: int, password_hash: str) -> None:
    """The rows `make bench` reports (see the module's docstring)."""
    with tempfile.TemporaryDirectory(prefix="userdir-bench-replicas-") as tmp:
        root = Path(tmp)
        seed.build(root / "provider", size, password_hash)
        layout = embedded.Layout(root / "provider")
        service_password = layout.read_service_password()
        provider = embedded.Slapd(root / "provider", free_port())
        provider.start()
        slapds, watches = [provider], []
        try:
            for n in range(CONSUMERS):
                data = root / f"consumer-{n + 1}"
                embedded.initialise(
                    data, BASE_DN, [], service_password=service_password,
                    replicator_password=layout.replicator_password_file.read_text(),
                    consumer_of=provider.url)
                slapds.append(embedded.Slapd(data, free_port()))
                slapds[-1].start()
            dn = embedded.service_dn(BASE_DN)
            # A consumer knows the service account once it has copied it.
            watches = [bound(s.url, dn, service_password, SYNC_WITHIN) for s in slapds]
            for consumer in watches[1:]:
                wait_until_synced(watches[0], consumer, SYNC_WITHIN)
            _reads(run, root, size, provider.url, [s.url for s in slapds[1:]], service_password)
            _lag(run, root, size, provider.url, [s.url for s in slapds[1:]], service_password,
                 watches)
        finally:
            for conn in watches:
                conn.unbind()
            for slapd in reversed(slapds):
                slapd.stop()


def _env(root: Path, provider: str, consumers: list[str], password: str) -> dict[str, str]:
    return environment(USERDIR_LDAP__URL=provider, USERDIR_LDAP__BIND_PASSWORD=password,
                       USERDIR_LDAP__READ_URLS=",".join(consumers),
                       USERDIR_EMBEDDED__DATA_DIR=str(root / "api"))


def _token(url: str) -> dict[str, str]:
    answer = httpx.post(f"{url}/auth/token", timeout=30,
                        json={"username": seed.ADMIN, "password": seed.PASSWORD})
    answer.raise_for_status()
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def _reads(run: Run, root: Path, size: int, provider: str, consumers: list[str],
           password: str) -> None:
    """GET one user and the first list page, 2 workers, 8 clients: from the
    provider only, then from one and two consumers."""
    requests = {"GET one user (native)": f"/people/{seed.username(3)}",
                "native list by username, first page": "/people?sort=username&per_page=50"}
    alone: dict[str, dict[str, Any]] = {}
    for count in range(CONSUMERS + 1):
        where = "provider only" if count == 0 else f"{count} consumer{'s' * (count > 1)}"
        with run.scenario(f"replicas: reads from the {where}", size, 2), \
                api_server(_env(root, provider, consumers[:count], password), 2,
                           root / "api.log") as api:
            headers = _token(api.url)
            for name, path in requests.items():
                served = measure("bench.load", {"base_url": api.url, "path": path,
                                                "headers": headers, "concurrency": 8,
                                                "duration": run.duration})
                scenario = f"replicas: {name}, reads from the {where}"
                if count == 0:
                    alone[name] = served
                    run.row(scenario, size, 2, served, None, "no errors",
                            served["errors"] == 0)
                    continue
                rate = ratio(served_per_second(served), served_per_second(alone[name]))
                run.row(scenario, size, 2, served, None,
                        f"≥ {READ_TARGET} x provider only", served["errors"] == 0
                        and rate is not None and rate >= READ_TARGET, rate)


def _lag(run: Run, root: Path, size: int, provider: str, consumers: list[str], password: str,
         watches: list[Connection]) -> None:
    """Each consumer's lag behind the provider while the API creates users
    (4 clients, through the provider; reads from both consumers)."""
    scenario = "replicas: consumer lag while the API creates users"
    with run.scenario(scenario, size, 2), \
            api_server(_env(root, provider, consumers, password), 2, root / "api.log") as api:
        headers = _token(api.url)
        done = threading.Event()
        found: dict[str, Any] = {}

        def sample() -> None:
            try:
                found["lags"] = lag_samples(watches[0], watches[1:], done)
            except Exception as e:  # reported as the scenario's failure below
                found["error"] = e

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            writes = measure("bench.load", {
                "base_url": api.url, "path": "/people", "method": "POST", "headers": headers,
                "json": {"username": "lag{n}", "password": seed.PASSWORD}, "concurrency": 4,
                "duration": run.duration, "expect": [201]})
        finally:
            done.set()
            sampler.join()
        if "error" in found:
            raise found["error"]
        lags = summary(found["lags"], writes["seconds"], 0)
        p99 = lags["p99_ms"]
        run.row(scenario, size, 2, lags, None,
                f"p99 ≤ {LAG_TARGET_MS:.0f} ms (ldap.max_lag) under {writes['per_second']} "
                f"creates/s, {writes['errors']} failed", writes["errors"] == 0
                and p99 is not None and p99 <= LAG_TARGET_MS)


if __name__ == "__main__":
    raise SystemExit(main())
