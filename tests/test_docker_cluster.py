"""docker/compose.cluster.yaml for real: a provider, two consumers and two API processes
under a throwaway project, with the engine tests/test_docker.py finds or starts (and
skipped, saying why, where it can do neither). The images are the same as compose.yaml's."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import ldap3
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import free_port
from tests.test_docker import (
    BASE_DN,
    BUILD_TIMEOUT,
    DOCKER,
    HEALTHY_TIMEOUT,
    _build_environment,
    _engine,
    _ensure_base_image,
    _extra_ca_certificates,
    _machine_lock,
    _random_secret,
    _run,
)

CLUSTER_FILE = DOCKER / "compose.cluster.yaml"
SERVICES = ("provider", "consumer-1", "consumer-2", "api-1", "api-2")
PASSWORD = "Cluster-Horse-9x"


@dataclass
class Cluster:
    compose: list[str]
    project: str
    env: dict[str, str]
    http_ports: tuple[int, int]
    ldap_port: int
    admin_password: str

    def __call__(self, *args: str, timeout: float = 300,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return _run([*self.compose, "-p", self.project, "-f", str(CLUSTER_FILE), *args],
                    env={**self.env, **(env or {})}, timeout=timeout)

    def url(self, n: int) -> str:
        return f"http://127.0.0.1:{self.http_ports[n]}"

    def health(self, service: str) -> str:
        container = self("ps", "-q", service).stdout.strip()
        if not container:
            return ""
        return _run(["docker", "inspect", "-f", "{{if .State.Health}}{{.State.Health.Status}}"
                     "{{end}}", container]).stdout.strip()

    def up(self) -> None:
        try:
            self("up", "-d", timeout=HEALTHY_TIMEOUT * 2)
            deadline = time.monotonic() + HEALTHY_TIMEOUT
            for service in SERVICES:
                while (status := self.health(service)) != "healthy":
                    assert status in ("starting", ""), f"{service} is {status}"
                    assert time.monotonic() < deadline, f"{service} not healthy in time"
                    time.sleep(1)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self('logs', '--no-color').stdout[-4000:]}") from None


def _signing_key() -> str:
    """As the compose file's header makes it (openssl genpkey ... P-256): PKCS#8 PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    work = tmp_path_factory.mktemp("docker-cluster")
    with _machine_lock(), _engine(work / "dockerd.log") as compose:
        secret_dir = work / "secrets"
        secret_dir.mkdir()
        values = {"ldap_service_password": _random_secret(24),
                  "ldap_replicator_password": _random_secret(24),
                  "admin_password": _random_secret(18), "jwt_signing_key.pem": _signing_key()}
        for name, value in values.items():
            (secret_dir / name).write_text(value)
            (secret_dir / name).chmod(0o644)  # as the header says: the containers' users read them
        ports = (free_port(), free_port())
        ldap_port = free_port()
        env = {**os.environ, "HTTP_PORT": str(ports[0]), "HTTP_PORT_2": str(ports[1]),
               "LDAP_PORT": str(ldap_port), "SECRETS_DIR": str(secret_dir),
               "EXTRA_CA_CERTS": _extra_ca_certificates()}
        cluster = Cluster(compose, f"userdir-cluster-{secrets.token_hex(4)}", env, ports,
                          ldap_port, values["admin_password"])
        _ensure_base_image()
        cluster("build", timeout=BUILD_TIMEOUT, env=_build_environment(compose))
        try:
            cluster.up()
            yield cluster
        finally:
            with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                cluster("down", "-v", "--remove-orphans")


def _until(condition: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.5)


def _bearer(cluster: Cluster, n: int, username: str, password: str) -> dict[str, str]:
    response = httpx.post(f"{cluster.url(n)}/auth/token", timeout=30,
                          json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_a_user_made_through_one_api_is_read_through_the_other(cluster: Cluster) -> None:
    admin = _bearer(cluster, 0, "admin", cluster.admin_password)
    keys = [httpx.get(f"{cluster.url(n)}/.well-known/jwks.json").json() for n in (0, 1)]
    assert keys[0] == keys[1]  # one signing key: a token of one is good on the other
    name = f"cluster{secrets.token_hex(3)}"
    created = httpx.post(f"{cluster.url(0)}/people", headers=admin, timeout=60,
                         json={"username": name, "password": PASSWORD})
    assert created.status_code == 201, created.text
    # api-2 reads from consumer-2: the user is there once replication has brought him
    _until(lambda: httpx.get(f"{cluster.url(1)}/people/{name}", headers=admin,
                             timeout=30).status_code == 200, "replication to consumer-2")
    # the provider's LDAP port: the user binds with his password
    conn = ldap3.Connection(ldap3.Server("127.0.0.1", port=cluster.ldap_port, connect_timeout=10),
                            f"uid={name},ou=people,{BASE_DN}", PASSWORD)
    assert conn.bind()
    conn.unbind()


def test_without_the_provider_reads_carry_on_and_writes_come_back(cluster: Cluster) -> None:
    admin = _bearer(cluster, 0, "admin", cluster.admin_password)
    cluster("stop", "provider", timeout=120)
    try:
        for n in (0, 1):
            read = httpx.get(f"{cluster.url(n)}/people/admin", headers=admin, timeout=30)
            assert read.status_code == 200, \
                f"{read.text}\n{cluster('logs', '--no-color', f'api-{n + 1}').stdout[-3000:]}"
        refused = httpx.post(f"{cluster.url(0)}/people", headers=admin, timeout=60,
                             json={"username": f"away{secrets.token_hex(3)}",
                                   "password": PASSWORD})
        assert refused.status_code == 503, refused.text
    finally:
        cluster("start", "provider", timeout=120)
    _until(lambda: httpx.post(f"{cluster.url(1)}/people", headers=admin, timeout=60, json={
        "username": f"back{secrets.token_hex(3)}", "password": PASSWORD}).status_code == 201,
        "writes to come back")


def test_consumers_hold_no_tree_of_their_own(cluster: Cluster, tmp_path: Path) -> None:
    """A consumer's volume was initialised as a consumer: its configuration
    replicates from the provider as the replicator."""
    container = cluster("ps", "-q", "consumer-1").stdout.strip()
    shown = _run(["docker", "exec", container, "sh", "-c",
                  "cat '/var/lib/userdir/slapd.d/cn=config/olcDatabase={1}mdb.ldif'"]).stdout
    unfolded = shown.replace("\n ", "")
    assert 'provider="ldap://provider:3389"' in unfolded
    assert 'binddn="cn=replicator,ou=services,dc=example,dc=org"' in unfolded
