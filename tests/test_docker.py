"""docker/: no engine runs here, so check the files themselves and run the
OpenLDAP image's initialisation outside a container, wired as compose wires it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.config import load_config
from app.runtime import Runtime
from tests.conftest import SlapdInstance, free_port, run

ROOT = Path(__file__).parent.parent
DOCKER = ROOT / "docker"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    return loaded


def environment(service: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in service["environment"].items()}


def with_secrets(env: dict[str, str], secrets: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The environment as the container sees it, secrets written to temp files."""
    result = dict(env)
    for key, value in env.items():
        if key.endswith("_FILE"):
            name = Path(value).name
            path = tmp_path / name
            path.write_text(secrets[name] + "\n")  # as `openssl rand ... > file` writes it
            result[key] = str(path)
    return result


def test_compose_services_and_wiring(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"openldap", "api"}
    for service in services.values():
        build = service["build"]
        context = (DOCKER / build["context"]).resolve()
        assert context == ROOT and (context / build["dockerfile"]).is_file()
        assert service["healthcheck"]["test"][0] == "CMD"
        for volume in service["volumes"]:
            assert volume.split(":")[0] in compose["volumes"]
        for secret in service["secrets"]:
            assert secret in compose["secrets"]
        for port in service["ports"]:
            assert port.startswith("127.0.0.1:")
    assert services["api"]["depends_on"]["openldap"]["condition"] == "service_healthy"
    assert "/health" in " ".join(services["api"]["healthcheck"]["test"])
    assert environment(services["api"])["USERDIR_LDAP__URL"] == "ldap://openldap:3389"


def test_no_secret_is_baked_in(compose: dict[str, Any]) -> None:
    for service in compose["services"].values():
        for key, value in environment(service).items():
            if "PASSWORD" in key:
                assert key.endswith("_FILE") and value.startswith("/run/secrets/"), key
    for secret in compose["secrets"].values():
        assert secret["file"].startswith("./secrets/")
    assert "secrets/" in (DOCKER / ".gitignore").read_text()


def test_every_setting_in_compose_is_a_real_key(compose: dict[str, Any], tmp_path: Path) -> None:
    secrets = {"ldap_service_password": "s", "admin_password": "a"}
    for service in compose["services"].values():
        env = with_secrets(environment(service), secrets, tmp_path)
        env.setdefault("USERDIR_LDAP__URL", "ldap://x:1")
        config = load_config(None, env)  # raises on an unknown key or a bad value
        assert config.ldap.bind_password == "s"


def test_dockerfiles() -> None:
    api = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^USER (?!root)\w+", api, re.MULTILINE), "the API must not run as root"
    assert "HEALTHCHECK" in api and "/health" in api
    assert "pip install --no-cache-dir ." in api and "[test]" not in api
    ldap = (DOCKER / "openldap" / "Dockerfile").read_text()
    assert ldap.startswith("#") and "FROM debian:bookworm-slim" in ldap
    assert "slapd" in ldap and "HEALTHCHECK" in ldap
    assert '"app.embedded"' in ldap  # the same initialisation code the tests run
    for dockerfile in (api, ldap):
        for source in re.findall(r"^COPY (.+) \S+$", dockerfile, re.MULTILINE):
            for path in source.split():
                assert (ROOT / path).exists(), path


def test_openldap_entrypoint_initialises_a_volume_the_api_can_use(
        compose: dict[str, Any], tmp_path: Path) -> None:
    secrets = {"ldap_service_password": "shared-Service-Secret-1",
               "admin_password": "Compose-Admin-Pass-2"}
    volume, port = tmp_path / "volume", free_port()
    ldap_env = with_secrets(environment(compose["services"]["openldap"]), secrets, tmp_path)
    ldap_env.update(USERDIR_EMBEDDED__DATA_DIR=str(volume), USERDIR_EMBEDDED__PORT=str(port))
    # The image copies app/embedded.py alone: run it from a copy, not the package.
    image = tmp_path / "image"
    (image / "app").mkdir(parents=True)
    for name in ("__init__.py", "embedded.py"):
        shutil.copy(ROOT / "app" / name, image / "app" / name)
    shutil.copytree(ROOT / "ldif", image / "ldif")
    result = subprocess.run([sys.executable, "-I", "-m", "app.embedded", "init"], cwd=image,
                            env={"PATH": "/usr/bin:/bin", **ldap_env},
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert (volume / "service.password").read_text() == "shared-Service-Secret-1"

    slapd = SlapdInstance(volume, port)
    slapd.process.start()
    try:
        tree = slapd.ldap("ldapsearch", "-LLL", "-b", "dc=example,dc=org", "dn").stdout
        for dn in ("ou=people", "cn=admin,ou=groups", "cn=default,ou=policies"):
            assert f"dn: {dn},dc=example,dc=org" in tree
        api_env = with_secrets(environment(compose["services"]["api"]), secrets, tmp_path)
        api_env.update(USERDIR_LDAP__URL=slapd.url,
                       USERDIR_EMBEDDED__DATA_DIR=str(tmp_path / "api"))
        runtime = Runtime.build(load_config(None, api_env))
        try:
            assert run(runtime.service.bootstrap("admin", runtime.config.bootstrap.admin_password,
                                                 "")) is None  # the given password, none printed
            user = run(runtime.service.authenticate("admin", "Compose-Admin-Pass-2"))
            assert user.account_type == "admin"
        finally:
            runtime.close()
    finally:
        slapd.process.stop()
