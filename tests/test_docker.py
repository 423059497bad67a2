"""docker/ for real: build both images, run docker/compose.yaml under a throwaway
project, and check what the README promises of it.

A Docker engine is needed: one that answers is used as it is; otherwise, as
root on Debian, Debian's docker.io and docker-compose are installed and a
plain `dockerd` is started for this module and stopped after it (by pid). Not
root and no engine: the module is skipped, and says why. Where Docker Hub
cannot be reached, docker/base-images.sh makes the base image from Debian's
packages (debootstrap, about 2 minutes, once). Runs of this module are
serialised across checkouts on the machine by a lock file, since they share
the engine and the image names.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import ldap3
import pytest
import yaml

from app.config import load_config
from tests.conftest import free_port

ROOT = Path(__file__).parent.parent
DOCKER = ROOT / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
IMAGES = {"openldap": "userdir-openldap:latest", "api": "userdir-api:latest"}
BASE_DN = "dc=example,dc=org"
EXTRA_CA_DIR = Path("/usr/local/share/ca-certificates")
LOCK = Path(tempfile.gettempdir()) / "userdir-docker-test.lock"
BASE_IMAGE = "debian:bookworm-slim"
BUILD_TIMEOUT = 1800  # a cold build: base image, apt and pip downloads
HEALTHY_TIMEOUT = 180


# --- the compose file, read as YAML (no engine needed) -----------------------

@pytest.fixture(scope="module")
def compose_yaml() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def test_compose_file_suits_compose_v1_and_v2(compose_yaml: dict[str, Any]) -> None:
    # Debian's docker-compose 1.29 refuses a top-level `name:`: the project
    # name comes from -p.
    assert "name" not in compose_yaml
    assert "secrets/" in (DOCKER / ".gitignore").read_text()


def test_every_setting_in_compose_is_a_real_key(compose_yaml: dict[str, Any],
                                               tmp_path: Path) -> None:
    """The API refuses an unknown key at start (the live test shows that); the
    OpenLDAP container reads only a few and would ignore a misspelt one."""
    (tmp_path / "ldap_service_password").write_text("s")
    (tmp_path / "admin_password").write_text("a")
    for service in compose_yaml["services"].values():
        env = {key: str(value).replace("/run/secrets", str(tmp_path))
               for key, value in service["environment"].items()}
        env.setdefault("USERDIR_LDAP__URL", "ldap://x:1")
        assert load_config(None, env).ldap.bind_password == "s"


# --- the engine ---------------------------------------------------------------

def _run(args: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 120,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(args), env=env, capture_output=True, text=True,
                            timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args[:4])}… exited with {result.returncode}:\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def _answers(command: Sequence[str]) -> bool:
    try:
        return _run(command, check=False, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _compose_command() -> list[str] | None:
    """Compose v2 (`docker compose`) where installed, else v1 (`docker-compose`)."""
    if shutil.which("docker") and _answers(["docker", "compose", "version"]):
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def _missing_packages(engine_runs: bool) -> list[str]:
    """The Debian packages still needed for an engine and a compose command."""
    missing = []
    if not (engine_runs or (shutil.which("dockerd") and shutil.which("docker"))):
        missing.append("docker.io")
    if _compose_command() is None:
        missing.append("docker-compose")
    return missing


def _install(packages: list[str]) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", *packages]
    if _run(install, env=env, check=False, timeout=900).returncode != 0:
        _run(["apt-get", "update"], env=env, timeout=600)
        _run(install, env=env, timeout=900)


def _start_dockerd(log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        process = subprocess.Popen(["dockerd"], stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 90
    while not _answers(["docker", "info"]):
        if process.poll() is not None or time.monotonic() > deadline:
            _stop(process)
            raise AssertionError("dockerd did not start:\n" + log_path.read_text()[-3000:])
        time.sleep(1)
    return process


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    try:
        lock = os.open(LOCK, os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError:  # another user's lock file: nothing to share with them anyway
        yield
        return
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
    finally:
        os.close(lock)


@contextlib.contextmanager
def _engine(log_path: Path) -> Iterator[list[str]]:
    """An engine that answers and a compose command, for the duration."""
    engine_runs = shutil.which("docker") is not None and _answers(["docker", "info"])
    missing = _missing_packages(engine_runs)
    if missing and (os.geteuid() != 0 or not shutil.which("apt-get")):
        pytest.skip(f"Docker: Debian's {' '.join(missing)} missing, and only root installs "
                    "them (apt-get install)")
    if not engine_runs and os.geteuid() != 0:
        pytest.skip("Docker: no engine answers, and only root may start dockerd")
    if missing:
        _install(missing)
    started = None if engine_runs else _start_dockerd(log_path)
    try:
        compose = _compose_command()
        assert compose is not None
        yield compose
    finally:
        if started is not None:
            _stop(started)


def _ensure_base_image() -> None:
    """Pulled, or made from Debian's packages (debootstrap, as root)."""
    if _answers(["docker", "image", "inspect", BASE_IMAGE]):
        return
    if not shutil.which("debootstrap") and os.geteuid() == 0 and shutil.which("apt-get"):
        _install(["debootstrap"])
    _run(["sh", str(DOCKER / "base-images.sh")], timeout=BUILD_TIMEOUT)


# --- the deployment -----------------------------------------------------------

def _extra_ca_certificates() -> str:
    """This machine's own CA certificates (a TLS-intercepting proxy's), for pip."""
    if not EXTRA_CA_DIR.is_dir():
        return ""
    return "".join(path.read_text() for path in sorted(EXTRA_CA_DIR.rglob("*.crt")))


def _has_buildkit(docker: str) -> bool:
    if _answers([docker, "buildx", "version"]):
        return True
    version = _run([docker, "version", "--format", "{{.Client.Version}}"], check=False).stdout
    major = re.match(r"(\d+)\.", version)
    return major is not None and int(major.group(1)) < 23  # built in before 23.0


def _build_environment(compose: list[str]) -> dict[str, str]:
    """BuildKit where the docker CLI has it: it reads docker/*.dockerignore, so
    the build context is a few files rather than the whole checkout (.venv)."""
    if compose[0] == "docker":
        return {}  # Compose v2 builds with BuildKit
    for docker in dict.fromkeys(filter(None, [shutil.which("docker"), "/usr/bin/docker"])):
        if Path(docker).exists() and _has_buildkit(docker):
            path = f"{Path(docker).parent}{os.pathsep}{os.environ.get('PATH', '')}"
            return {"COMPOSE_DOCKER_CLI_BUILD": "1", "DOCKER_BUILDKIT": "1", "PATH": path}
    return {"COMPOSE_DOCKER_CLI_BUILD": "1", "DOCKER_BUILDKIT": "0"}


def _random_secret(size: int) -> str:
    """As the README makes them: `openssl rand -base64 N | tr -d '\\n'`."""
    return base64.b64encode(secrets.token_bytes(size)).decode()


@dataclass
class Deployment:
    compose: list[str]
    project: str
    env: dict[str, str]
    http_port: int
    ldap_port: int
    secrets: dict[str, str]
    extra_ca: str
    volumes_before: set[str] = field(default_factory=set)
    removed: bool = False

    def __call__(self, *args: str, timeout: float = 300,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return _run([*self.compose, "-p", self.project, "-f", str(COMPOSE_FILE), *args],
                    env={**self.env, **(env or {})}, timeout=timeout)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def container(self, service: str) -> str:
        container_id = self("ps", "-q", service).stdout.strip()
        assert container_id, f"no {service} container"
        return container_id

    def up(self) -> None:
        try:
            self("up", "-d", timeout=HEALTHY_TIMEOUT)
            deadline = time.monotonic() + HEALTHY_TIMEOUT
            for service in IMAGES:
                while (status := self.health(service)) != "healthy":
                    assert status in ("starting", ""), f"{service} is {status}"
                    assert time.monotonic() < deadline, f"{service} not healthy in time"
                    time.sleep(1)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.logs()[-4000:]}") from None

    def health(self, service: str) -> str:
        return _run(["docker", "inspect", "-f", "{{if .State.Health}}{{.State.Health.Status}}"
                     "{{end}}", self.container(service)]).stdout.strip()

    def logs(self) -> str:
        try:
            return self("logs", "--no-color", timeout=60).stdout
        except AssertionError as e:
            return str(e)

    def login(self, username: str, password: str) -> httpx.Response:
        return httpx.post(f"{self.url}/auth/token", timeout=30,
                          json={"username": username, "password": password})

    def admin_token(self) -> str:
        response = self.login("admin", self.secrets["admin_password"])
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    def ldap_bind(self, username: str, password: str) -> bool:
        server = ldap3.Server("127.0.0.1", port=self.ldap_port, connect_timeout=10)
        connection = ldap3.Connection(server, f"uid={username},ou=people,{BASE_DN}", password)
        try:
            return bool(connection.bind())
        finally:
            connection.unbind()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    work = tmp_path_factory.mktemp("docker")
    with _machine_lock(), _engine(work / "dockerd.log") as compose:
        secret_dir = work / "secrets"
        secret_dir.mkdir()
        values = {"ldap_service_password": _random_secret(24),
                  "admin_password": _random_secret(18)}
        for name, value in values.items():
            (secret_dir / name).write_text(value)
            (secret_dir / name).chmod(0o644)  # as the README says: the containers' users read them
        http_port, ldap_port = free_port(), free_port()
        env = {**os.environ, "HTTP_PORT": str(http_port), "LDAP_PORT": str(ldap_port),
               "SECRETS_DIR": str(secret_dir), "EXTRA_CA_CERTS": _extra_ca_certificates()}
        deployment = Deployment(compose, f"userdir-test-{secrets.token_hex(4)}", env,
                                http_port, ldap_port, values, env["EXTRA_CA_CERTS"])
        deployment.volumes_before = set(_run(["docker", "volume", "ls", "-q"]).stdout.split())
        _ensure_base_image()
        deployment("build", timeout=BUILD_TIMEOUT, env=_build_environment(compose))
        for image in IMAGES.values():  # the builds these replaced
            _run(["docker", "image", "prune", "--force", "--filter",
                  f"label=org.opencontainers.image.title={image.partition(':')[0]}"])
        try:
            deployment.up()
            yield deployment
        finally:
            if not deployment.removed:
                with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                    deployment("down", "-v", "--remove-orphans")


# --- what the README promises -------------------------------------------------

def test_health_and_the_readme_admin_login(deployment: Deployment) -> None:
    health = httpx.get(f"{deployment.url}/health", timeout=30)
    assert (health.status_code, health.json()["status"]) == (200, "ok")
    assert "server" not in health.headers  # app/server.py's settings, not uvicorn's defaults
    me = httpx.get(f"{deployment.url}/auth/me", timeout=30,
                   headers={"authorization": f"Bearer {deployment.admin_token()}"})
    assert (me.status_code, me.json()["account_type"]) == (200, "admin")


def _create_user(deployment: Deployment, token: str) -> tuple[str, str]:
    username, password = f"dock{secrets.token_hex(3)}", f"Docker-{secrets.token_urlsafe(12)}"
    response = httpx.post(f"{deployment.url}/people", timeout=30,
                          headers={"authorization": f"Bearer {token}"},
                          json={"username": username, "password": password})
    assert response.status_code == 201, response.text
    return username, password


def test_a_user_created_over_http_binds_over_ldap(deployment: Deployment) -> None:
    username, password = _create_user(deployment, deployment.admin_token())
    assert deployment.ldap_bind(username, password)
    assert not deployment.ldap_bind(username, password + "x")


def test_the_ldap_image_can_back_up_and_plan_an_upgrade(deployment: Deployment) -> None:
    """The image's standard-library tools (README "Backups", "Upgrading an
    existing directory") are in it and run as its unprivileged user."""
    backed = deployment("exec", "-T", "openldap", "python3", "-m", "app.migration.backup",
                        "backup", "/var/lib/userdir/backups/test")
    assert "backed up into" in backed.stdout, backed.stdout + backed.stderr
    planned = deployment("exec", "-T", "openldap", "python3", "-m", "app.migration.upgrade",
                         "--dry-run")
    assert "up to date" in planned.stdout, planned.stdout + planned.stderr


def test_containers_are_healthy_non_root_and_published_on_loopback(
        deployment: Deployment) -> None:
    for service in IMAGES:
        container = deployment.container(service)
        assert deployment.health(service) == "healthy"
        processes = _run(["docker", "top", container, "-eo", "pid,uid,args"]).stdout
        assert len(processes.splitlines()) > 1, processes
        for line in processes.splitlines()[1:]:
            _, uid, command = line.split(maxsplit=2)
            assert uid != "0", f"{service} runs {command} as root"
        inspected = json.loads(_run(["docker", "inspect", container]).stdout)[0]
        bindings = [b for ports in inspected["NetworkSettings"]["Ports"].values() if ports
                    for b in ports]
        assert bindings and {b["HostIp"] for b in bindings} == {"127.0.0.1"}


def _pem_bodies(pem: str) -> list[str]:
    """One distinctive line of each certificate (its first base64 line after the header)."""
    return [m.group(1) for m in re.finditer(r"-----BEGIN CERTIFICATE-----\s*\n(\S+)", pem)]


def _files_containing(image: str, needles: Sequence[str]) -> list[str]:
    """Every file of the image (all layers, as a container sees them) holding a needle."""
    if not needles:
        return []
    container = _run(["docker", "create", image]).stdout.strip()
    found = []
    try:
        with subprocess.Popen(["docker", "export", container], stdout=subprocess.PIPE) as export:
            assert export.stdout is not None
            with tarfile.open(fileobj=export.stdout, mode="r|") as tar:
                for member in tar:
                    if not member.isfile() or member.size > 64 << 20:
                        continue
                    data = tar.extractfile(member)
                    assert data is not None
                    content = data.read()
                    found += [member.name for needle in needles if needle.encode() in content]
    finally:
        _run(["docker", "rm", "--force", "--volumes", container])
    return found


def test_no_secret_nor_build_certificate_in_the_images(deployment: Deployment) -> None:
    secret_values = list(deployment.secrets.values())
    certificates = _pem_bodies(deployment.extra_ca)
    for service, image in IMAGES.items():
        history = _run(["docker", "history", "--no-trunc", "--format", "{{.CreatedBy}}",
                        image]).stdout
        inspected = _run(["docker", "image", "inspect", image]).stdout
        for needle in secret_values + certificates:
            assert needle not in history, f"{image}: docker history shows it"
            assert needle not in inspected, f"{image}: docker image inspect shows it"
        container_env = _run(["docker", "inspect", "-f", "{{json .Config.Env}}",
                              deployment.container(service)]).stdout
        assert not any(value in container_env for value in secret_values)
        # The CA certificates pip trusted while building stay in the build stage.
        assert _files_containing(image, certificates) == []


def test_the_runtime_images_hold_no_build_tools(deployment: Deployment) -> None:
    for image in IMAGES.values():
        # No compiler, no pip, not the test extra, no build-time CA certificate.
        probe = ("for tool in pip pip3 gcc cc make; do command -v $tool; done; "
                 "for module in pip setuptools pytest; do python3 -c \"import $module\" "
                 "2>/dev/null && echo python module $module; done; "
                 "ls /usr/local/share/ca-certificates")
        found = _run(["docker", "run", "--rm", "--entrypoint", "sh", image, "-c", probe],
                     check=False)
        assert found.stdout.strip() == "", f"{image}: {found.stdout}"


def test_logs_are_readable_and_keep_secrets(deployment: Deployment) -> None:
    logs = deployment.logs()
    assert re.search(r"^openldap\S*\s+\| slapd listening on ldap://0\.0\.0\.0:3389$", logs,
                     re.MULTILINE), logs[-2000:]
    assert re.search(r"^api\S*\s+\| .*Uvicorn running on http://0\.0\.0\.0:8000", logs,
                     re.MULTILINE), logs[-2000:]
    assert "Traceback" not in logs, logs[-4000:]
    for value in deployment.secrets.values():
        assert value not in logs


def test_down_then_up_keeps_users_and_the_signing_key(deployment: Deployment) -> None:
    token = deployment.admin_token()
    username, password = _create_user(deployment, token)
    keys = httpx.get(f"{deployment.url}/.well-known/jwks.json", timeout=30).json()
    deployment("down")
    deployment.up()
    assert httpx.get(f"{deployment.url}/.well-known/jwks.json", timeout=30).json() == keys
    me = httpx.get(f"{deployment.url}/auth/me", timeout=30,
                   headers={"authorization": f"Bearer {token}"})
    assert me.status_code == 200, me.text  # a token issued before still verifies
    assert deployment.login(username, password).status_code == 200
    assert deployment.ldap_bind(username, password)


def test_down_v_leaves_nothing(deployment: Deployment) -> None:
    deployment("down", "-v", "--remove-orphans")
    deployment.removed = True
    label = f"label=com.docker.compose.project={deployment.project}"
    assert _run(["docker", "ps", "-aq", "--filter", label]).stdout.strip() == ""
    for kind in ("volume", "network"):
        names = _run(["docker", kind, "ls", "--format", "{{.Name}}"]).stdout.split()
        assert [n for n in names if n.startswith(f"{deployment.project}_")] == []
        assert _run(["docker", kind, "ls", "-q", "--filter", label]).stdout.strip() == ""
    # Nor any anonymous volume, of the project or of this module's own containers.
    assert set(_run(["docker", "volume", "ls", "-q"]).stdout.split()) <= deployment.volumes_before
