"""docker/compose.cluster.yaml, read as YAML (no engine needed): valid settings, and the
provider, consumers and API processes wired to each other as README "Read replicas" says."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from app import embedded
from app.config import load_config

ROOT = Path(__file__).parent.parent
CLUSTER_FILE = ROOT / "docker" / "compose.cluster.yaml"
SECRETS = "/run/secrets/"


@pytest.fixture(scope="module")
def cluster() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CLUSTER_FILE.read_text())
    return loaded


def _services(cluster: dict[str, Any], image: str) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in cluster["services"].items() if s["image"].startswith(image)}


def _option(command: list[str], name: str) -> str | None:
    return command[command.index(name) + 1] if name in command else None


def test_the_file_suits_compose_v1_and_v2(cluster: dict[str, Any]) -> None:
    assert "name" not in cluster  # docker-compose 1.29 refuses it; -p names the project
    assert "secrets/" in (ROOT / "docker" / ".gitignore").read_text()
    for service in cluster["services"].values():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:")  # loopback unless the operator says otherwise


def test_every_setting_is_a_real_key(cluster: dict[str, Any], tmp_path: Path) -> None:
    for name in ("ldap_service_password", "ldap_replicator_password", "admin_password"):
        (tmp_path / name).write_text("s")
    for name, service in cluster["services"].items():
        env = {key: str(value).replace(SECRETS, f"{tmp_path}/")
               for key, value in service["environment"].items()}
        env.setdefault("USERDIR_LDAP__URL", "ldap://x:1")
        config = load_config(None, env)
        assert config.ldap.bind_password == "s", name


def test_openldap_commands_are_the_entrypoints_options(cluster: dict[str, Any]) -> None:
    dockerfile = (ROOT / "docker" / "openldap" / "Dockerfile").read_text()
    entrypoint = re.search(r'ENTRYPOINT \["python3", "-m", "app.embedded", (.*)\]', dockerfile)
    assert entrypoint is not None
    fixed = [a.strip(' "') for a in entrypoint.group(1).split(",")]
    for service in _services(cluster, "userdir-openldap").values():
        embedded.parser({}).parse_args([*fixed, *service.get("command", [])])  # exits if not
    # the image holds every module app/embedded.py imports
    imported = re.findall(r"^from app import (\w+)", (ROOT / "app" / "embedded.py").read_text(),
                          re.MULTILINE)
    for module in imported:
        assert f"app/{module}.py" in dockerfile, module


def test_one_provider_and_consumers_that_follow_it(cluster: dict[str, Any]) -> None:
    openldap = _services(cluster, "userdir-openldap")
    providers = {n for n, s in openldap.items() if "--consumer-of" not in s.get("command", [])}
    assert len(providers) == 1  # one writer: two writable providers break uniqueness
    provider = next(iter(providers))
    consumers = set(openldap) - providers
    assert len(consumers) == 2
    secret = None
    for name, service in openldap.items():
        command = service.get("command", [])
        password_file = _option(command, "--replicator-password-file")
        assert password_file is not None and password_file.startswith(SECRETS), name
        assert password_file.removeprefix(SECRETS) in service["secrets"], name
        assert secret in (None, password_file), "one replicator password for all"
        secret = password_file
        if name in consumers:
            assert _option(command, "--consumer-of") == f"ldap://{provider}:3389"
            assert service["depends_on"][provider]["condition"] == "service_healthy"
    volumes = [v.split(":")[0] for s in cluster["services"].values() for v in s["volumes"]]
    assert len(volumes) == len(set(volumes))  # no two servers share data


def test_api_processes_write_to_the_provider_and_read_from_consumers(
        cluster: dict[str, Any]) -> None:
    openldap = _services(cluster, "userdir-openldap")
    consumers = {n for n, s in openldap.items() if "--consumer-of" in s.get("command", [])}
    provider = next(iter(set(openldap) - consumers))
    apis = _services(cluster, "userdir-api")
    assert len(apis) == 2
    read, keys = set(), set()
    for name, api in apis.items():
        env = api["environment"]
        assert env["USERDIR_LDAP__URL"] == f"ldap://{provider}:3389", name
        urls = [u.strip() for u in env["USERDIR_LDAP__READ_URLS"].split(",")]
        hosts = {re.sub(r"^ldap://([^:/]+).*$", r"\1", u) for u in urls}
        assert hosts <= consumers, name
        read |= hosts
        keys.add(env["USERDIR_AUTH__SIGNING_KEY_FILE"])
        assert env["USERDIR_AUTH__SIGNING_KEY_FILE"].removeprefix(SECRETS) in api["secrets"]
        assert provider in api["depends_on"] or any(
            other in api["depends_on"] for other in apis)
    assert read == consumers  # every consumer serves someone
    assert len(keys) == 1  # a token from one API process is good on the other
    declared = cluster["secrets"]
    for service in cluster["services"].values():
        assert set(service["secrets"]) <= set(declared)
