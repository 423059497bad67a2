"""One real slapd for the whole session, started from the project's ldif/ on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn

from app import embedded
from app.config import Config, load_config
from app.domain import NewUser, Profile, User
from app.main import create_app
from app.runtime import Runtime
from app.server import uvicorn_settings

BASE_DN = "dc=example,dc=org"
ADMIN = "admin"
ADMIN_PASSWORD = "Admin-Password-42"
PASSWORD = "Correct-Horse-9x"
T = TypeVar("T")
_names = itertools.count()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def client_at(n: int, **kwargs: Any) -> httpx.Client:
    """An HTTP client whose requests come from loopback address 127.0.0.<n>
    (n = 2..254): one of several clients, as the service tells them apart."""
    assert 2 <= n <= 254
    return httpx.Client(transport=httpx.HTTPTransport(local_address=f"127.0.0.{n}"), **kwargs)


def unique(prefix: str = "u") -> str:
    """A username no other test uses (the directory is shared by the session)."""
    return f"{prefix}{os.getpid()}x{next(_names)}"


def native_login(client: Any, username: str, password: str = PASSWORD) -> dict[str, str]:
    """The Authorization header of a native access token (POST /auth/token)."""
    response = client.post("/auth/token", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def released_together(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """Each call on its own thread, all let go at the same moment."""
    barrier = threading.Barrier(len(calls))

    def call(function: Callable[[], httpx.Response]) -> httpx.Response:
        barrier.wait()
        return function()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(call, calls))


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


class SlapdInstance:
    def __init__(self, data_dir: Path, port: int) -> None:
        self.layout = embedded.Layout(data_dir)
        self.process = embedded.Slapd(data_dir, port)
        self.url = self.process.url
        self.service_dn = embedded.service_dn(BASE_DN)
        self.root_dn = embedded.root_dn(BASE_DN)

    @property
    def service_password(self) -> str:
        return self.layout.service_password_file.read_text()

    @property
    def root_password(self) -> str:
        return self.layout.root_password_file.read_text()

    def ldap(self, tool: str, *args: str, bind: str = "service", stdin: str | None = None,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run an OpenLDAP client tool (ldapsearch, ldapadd, ldapwhoami...) against it."""
        credentials: list[str] = []
        if bind == "none":
            pass
        elif bind == "service":
            credentials = ["-D", self.service_dn, "-y", str(self.layout.service_password_file)]
        elif bind == "root":
            credentials = ["-D", self.root_dn, "-y", str(self.layout.root_password_file)]
        result = subprocess.run([tool, "-x", "-H", self.url, *credentials, *args],
                                input=stdin, capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"{tool} failed ({result.returncode}): {result.stderr}")
        return result


def start_slapd(data_dir: Path, extra_ldif: str | None = None) -> SlapdInstance:
    embedded.initialise(data_dir, BASE_DN, ["user", "staff", "admin"])
    if extra_ldif is not None:
        subprocess.run(["slapadd", "-q", "-F", str(data_dir / "slapd.d"), "-b", BASE_DN],
                       input=extra_ldif, text=True, check=True, capture_output=True)
    instance = SlapdInstance(data_dir, free_port())
    instance.process.start()
    return instance


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlapdInstance]:
    instance = start_slapd(tmp_path_factory.mktemp("slapd"))
    try:
        yield instance
    finally:
        instance.process.stop()


def make_config(slapd: SlapdInstance, data_dir: Path, **sections: dict[str, Any]) -> Config:
    environ = {
        "USERDIR_LDAP__URL": slapd.url,
        "USERDIR_LDAP__BASE_DN": BASE_DN,
        "USERDIR_LDAP__BIND_PASSWORD": slapd.service_password,
        "USERDIR_EMBEDDED__DATA_DIR": str(data_dir),
    }
    for section, values in sections.items():
        for key, value in values.items():
            environ[f"USERDIR_{section.upper()}__{key.upper()}"] = str(value)
    return load_config(None, environ)


@pytest.fixture(scope="session")
def config(slapd: SlapdInstance, tmp_path_factory: pytest.TempPathFactory) -> Config:
    return make_config(slapd, tmp_path_factory.mktemp("userdir"))


@pytest.fixture(scope="session")
def bootstrapped(config: Config) -> None:
    runtime = Runtime.build(config)
    try:
        run(runtime.service.bootstrap(ADMIN, ADMIN_PASSWORD, "admin@example.org"))
    finally:
        runtime.close()


@pytest.fixture
def runtime(config: Config, bootstrapped: None) -> Iterator[Runtime]:
    built = Runtime.build(config)
    try:
        yield built
    finally:
        built.close()


def create(runtime: Runtime, username: str | None = None, account_type: str | None = None,
           **profile: Any) -> User:
    return run(runtime.service.create_user(NewUser(
        username=username or unique(), password=PASSWORD, account_type=account_type,
        profile=Profile(**profile))))


@pytest.fixture(scope="module")
def private_slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlapdInstance]:
    """A directory of its own, for tests that need to know exactly who is admin."""
    instance = start_slapd(tmp_path_factory.mktemp("private"))
    try:
        yield instance
    finally:
        instance.process.stop()


@pytest.fixture(scope="module")
def private_config(private_slapd: SlapdInstance,
                   tmp_path_factory: pytest.TempPathFactory) -> Config:
    return make_config(private_slapd, tmp_path_factory.mktemp("private-userdir"),
                       ldap={"pool_size": 8})


@pytest.fixture
def private_runtime(private_config: Config) -> Iterator[Runtime]:
    built = Runtime.build(private_config)
    try:
        run(built.service.bootstrap(ADMIN, ADMIN_PASSWORD, ""))
        yield built
    finally:
        built.close()


class Leaks(logging.Handler):
    """Every log line and every HTTP response body the suite sees, for one
    check at the end: no password used by the tests appears in any of them."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(record.getMessage())


@pytest.fixture(scope="session", autouse=True)
def no_password_leaves() -> Iterator[None]:
    leaks = Leaks()
    root = logging.getLogger()
    root.addHandler(leaks)
    previous_level = root.level
    root.setLevel(logging.DEBUG)
    original_send = httpx.Client.send
    original_async_send = httpx.AsyncClient.send

    sent = [0]

    def record(response: httpx.Response) -> httpx.Response:
        sent[0] += 1
        kind = response.headers.get("content-type", "")
        if kind.startswith(("application/json", "application/problem+json", "text/")):
            response.read()
            leaks.texts.append(response.text)
        return response

    def send(self: httpx.Client, *args: Any, **kwargs: Any) -> httpx.Response:
        return record(original_send(self, *args, **kwargs))

    async def async_send(self: httpx.AsyncClient, *args: Any, **kwargs: Any) -> httpx.Response:
        response = await original_async_send(self, *args, **kwargs)
        await response.aread()
        return record(response)

    httpx.Client.send = send  # type: ignore[method-assign]
    httpx.AsyncClient.send = async_send  # type: ignore[method-assign]
    try:
        yield
    finally:
        httpx.Client.send = original_send  # type: ignore[method-assign]
        httpx.AsyncClient.send = original_async_send  # type: ignore[method-assign]
        root.removeHandler(leaks)
        root.setLevel(previous_level)
    seen = "\n".join(leaks.texts)
    # The recorder works: many answers went by, and most of them are text.
    assert len(leaks.texts) >= sent[0] // 4, (len(leaks.texts), sent[0])
    for secret in (PASSWORD, ADMIN_PASSWORD, "Second-Horse-8y", "Reset-By-Admin-1",
                   "Other-Horse-5", "Third-Horse-6", "Changed-Horse-3",
                   "Audit-Reset-Pass-7"):
        assert secret not in seen, f"a password reached a response or a log line: {secret!r}"
    assert "userPassword:" not in seen and "{ARGON2}" not in seen


@contextlib.contextmanager
def serving(config: Config) -> Iterator[str]:
    """The app under a real uvicorn in a thread, on a free port; its base URL."""
    settings = {**uvicorn_settings(config), "host": "127.0.0.1", "port": free_port(),
                "log_level": "warning"}
    server = uvicorn.Server(uvicorn.Config(create_app(config), **settings))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
