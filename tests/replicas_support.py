"""A provider and its consumers started from ldif/ on free loopback ports; API processes on them.

Each slapd is a real one in a temporary directory, made by the same
app/embedded.py code as the embedded mode and the OpenLDAP image (a consumer
with `consumer_of`: ldif/consumer.ldif), and stopped by its pid. API
processes are `python -m app.cli serve`, stopped by pid too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import ldap3

from app import embedded
from app.directory.freshness import Csns, covers, read_csns
from tests.conftest import BASE_DN, SlapdInstance, free_port

REPLICATOR_PASSWORD = "Replicator-Secret-7"
ROOT = Path(__file__).parent.parent
START_SECONDS = 60.0  # a guard against a hang, not a measure


def start_provider(data_dir: Path) -> SlapdInstance:
    embedded.initialise(data_dir, BASE_DN, ["user", "staff", "admin"],
                        replicator_password=REPLICATOR_PASSWORD)
    instance = SlapdInstance(data_dir, free_port())
    instance.process.start()
    return instance


def start_consumer(data_dir: Path, provider: SlapdInstance) -> SlapdInstance:
    """A read replica of `provider`, holding its whole tree once it returns."""
    embedded.initialise(data_dir, BASE_DN, ["user", "staff", "admin"],
                        service_password=provider.service_password,
                        replicator_password=REPLICATOR_PASSWORD, consumer_of=provider.url)
    instance = SlapdInstance(data_dir, free_port())
    instance.process.start()
    wait_until(lambda: caught_up(instance, provider), "the consumer's first copy")
    return instance


def restart(instance: SlapdInstance) -> None:
    """Start a stopped slapd again on its own port and data."""
    instance.process = embedded.Slapd(instance.layout.data_dir, instance.process.port)
    instance.process.start()


def stop(instance: SlapdInstance) -> None:
    instance.process.stop()


def wait_until(condition: Callable[[], bool], what: str, seconds: float = START_SECONDS) -> None:
    """Poll until `condition` holds; fail (saying what) only past a generous guard."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.02)


def connect(instance: SlapdInstance) -> ldap3.Connection:
    return ldap3.Connection(instance.url, instance.service_dn, instance.service_password,
                            auto_bind=True, receive_timeout=10)


def context_csns(instance: SlapdInstance) -> Csns:
    conn = connect(instance)
    try:
        return read_csns(conn, BASE_DN)
    finally:
        conn.unbind()


def caught_up(consumer: SlapdInstance, provider: SlapdInstance) -> bool:
    """Does the consumer hold every change the provider holds now?"""
    try:
        wanted = context_csns(provider)
        return bool(wanted) and covers(context_csns(consumer), wanted)
    except ldap3.core.exceptions.LDAPException:
        return False


def entry(instance: SlapdInstance, dn: str, *attributes: str) -> dict[str, Any] | None:
    conn = connect(instance)
    try:
        conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=list(attributes) or ["*"])
        found = [e for e in conn.response or [] if e.get("type") == "searchResEntry"]
        return dict(found[0]["attributes"]) if found else None
    finally:
        conn.unbind()


def people(instance: SlapdInstance, *attributes: str) -> list[dict[str, Any]]:
    """Every person, with the attributes asked for (paged: no size limit)."""
    conn = connect(instance)
    try:
        found = conn.extend.standard.paged_search(
            f"ou=people,{BASE_DN}", "(objectClass=inetOrgPerson)", attributes=list(attributes),
            paged_size=500, generator=False)
        return [dict(e["attributes"]) for e in found if e.get("type") == "searchResEntry"]
    finally:
        conn.unbind()


@dataclass
class ApiProcess:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def api_processes(environs: list[dict[str, str]], logs: list[Path]) -> Iterator[list[ApiProcess]]:
    """`userdir serve` in processes of their own (started together), each on a
    free port, until the block ends."""
    apis: list[ApiProcess] = []
    try:
        for environ, log in zip(environs, logs, strict=True):
            port = free_port()
            env = {**os.environ, **environ, "USERDIR_HTTP__HOST": "127.0.0.1",
                   "USERDIR_HTTP__PORT": str(port)}
            with open(log, "ab") as out:
                process = subprocess.Popen([sys.executable, "-m", "app.cli", "serve"], cwd=ROOT,
                                           env=env, stdin=subprocess.DEVNULL, stdout=out,
                                           stderr=subprocess.STDOUT, start_new_session=True)
            apis.append(ApiProcess(f"http://127.0.0.1:{port}", process, log))
        for api in apis:
            wait_until(lambda a=api: _healthy(a), f"the API process ({api.log})")
        yield apis
    finally:
        for api in apis:
            api.stop()


def _healthy(api: ApiProcess) -> bool:
    assert api.process.poll() is None, api.log.read_text()[-3000:]
    try:
        return httpx.get(f"{api.url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
