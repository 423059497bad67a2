"""`userdir import` of each system's sample file: users, ids, types, passwords that work."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.config import Config
from app.domain import AuthenticationFailed
from app.migration import importer
from app.migration.importer import Options
from app.runtime import Runtime
from app.service import users
from tests.conftest import (
    ADMIN,
    ADMIN_PASSWORD,
    BASE_DN,
    SlapdInstance,
    make_config,
    run,
    serving,
    start_slapd,
)

FIXTURES = Path(__file__).parent / "fixtures" / "migration"
PASSWORD = "Imported-Pass-1"
PEOPLE = f"ou=people,{BASE_DN}"
# Whether authenticate falls back to imported hashes (app/service/imported.py).
HOOKED = hasattr(users, "log_in")


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlapdInstance]:
    instance = start_slapd(tmp_path_factory.mktemp("import"))
    try:
        yield instance
    finally:
        instance.process.stop()


def config_for(slapd: SlapdInstance, data_dir: Path, **importer_settings: object) -> Config:
    return make_config(slapd, data_dir, importer={
        "bind_password": slapd.layout.importer_password_file.read_text(), **importer_settings})


@pytest.fixture(scope="module")
def config(directory: SlapdInstance, tmp_path_factory: pytest.TempPathFactory) -> Config:
    config = config_for(directory, tmp_path_factory.mktemp("import-data"), batch_size=2)
    runtime = Runtime.build(config)
    try:
        run(runtime.service.bootstrap(ADMIN, ADMIN_PASSWORD, ""))
    finally:
        runtime.close()
    return config


def load(config: Config, name: str, kind: str, tmp_path: Path, **options: object) -> tuple[
        int, list[str]]:
    report = tmp_path / f"{name}.report"
    status = importer.run(config, Options(FIXTURES / name, kind, report=report,
                                          **options))  # type: ignore[arg-type]
    return status, report.read_text().splitlines()


def binds(slapd: SlapdInstance, username: str, password: str = PASSWORD) -> bool:
    return slapd.ldap("ldapwhoami", "-D", f"uid={username},{PEOPLE}", "-w", password,
                      bind="none", check=False).returncode == 0


def test_django_dump_keeps_ids_types_and_passwords(
        directory: SlapdInstance, config: Config, tmp_path: Path) -> None:
    status, report = load(config, "django.json", "django", tmp_path)
    assert status == 1  # one bad row
    assert any(":70:" in line or "bad name!" in line for line in report), report
    runtime = Runtime.build(config)
    try:
        ada = run(runtime.service.get_user("dj_admin"))
        assert (ada.id, ada.account_type, ada.first_name, ada.email) == \
            (7, "admin", "Ada", "ada@example.net")
        assert run(runtime.service.get_user("dj_argon")).account_type == "staff"
        assert not run(runtime.service.get_user("dj_bcrypt")).active
    finally:
        runtime.close()
    # Django's argon2, and PBKDF2 with a 16-byte salt: slapd verifies them on bind.
    assert binds(directory, "dj_argon") and binds(directory, "dj_short_salt")
    assert not binds(directory, "dj_argon", "wrong-password")
    # Default PBKDF2 (22-character salt): no LDAP bind before the first API login.
    assert not binds(directory, "dj_admin")


def test_foreign_hash_is_replaced_at_first_login(directory: SlapdInstance, config: Config,
                                                 tmp_path: Path) -> None:
    load(config, "django.json", "django", tmp_path)
    from app.service import imported
    runtime = Runtime.build(config)
    try:
        person = runtime.directory.people.find("uid", "dj_admin")
        assert person is not None
        assert imported.log_in(runtime.directory, person, "Wrong-Pass-1") is None
        stamp = imported.log_in(runtime.directory, person, PASSWORD)
        assert stamp  # the new pwdChangedTime
        assert imported.log_in(runtime.directory, person, PASSWORD) is None  # hash gone
    finally:
        runtime.close()
    assert binds(directory, "dj_admin")  # now slapd has it (argon2)
    hashes = directory.ldap("ldapsearch", "-LLL", "-b", f"uid=dj_admin,{PEOPLE}",
                            "userdirForeignHash", "userPassword", bind="root").stdout
    assert "userdirForeignHash" not in hashes and "userPassword" in hashes


@pytest.mark.skipif(not HOOKED, reason="authenticate does not call app/service/imported.py yet")
def test_http_login_with_django_default_hash(config: Config, tmp_path: Path) -> None:
    load(config, "django.json", "django", tmp_path)
    with serving(config) as url:
        answer = httpx.post(f"{url}/auth/token",
                            json={"username": "dj_admin", "password": PASSWORD})
        assert answer.status_code == 200, answer.text


def test_fittrackee_and_vikunja_bcrypt_log_in_over_http_and_ldap(
        directory: SlapdInstance, config: Config, tmp_path: Path) -> None:
    status, report = load(config, "fittrackee.csv", "fittrackee", tmp_path,
                          pictures_dir=FIXTURES / "pictures")
    assert status == 1 and any("ft_dup" in line and "line 2" in line for line in report)
    assert load(config, "vikunja.csv", "vikunja", tmp_path)[0] == 0
    assert binds(directory, "ft_runner") and binds(directory, "vk_gopher")  # $2b$, Go's $2a$
    assert not binds(directory, "vk_locked")  # disabled (status 2)
    with serving(config) as url:
        token = httpx.post(f"{url}/api/auth/login",
                           json={"email": "runner@example.net", "password": PASSWORD})
        assert token.status_code == 200, token.text
        runner = httpx.get(f"{url}/api/users/ft_runner",
                           headers={"Authorization": f"Bearer {token.json()['auth_token']}"})
        data = runner.json()["data"]
        user = data[0] if isinstance(data, list) else data["users"][0]
        assert user["admin"] is True and user["picture"] is True and user["location"] == "Lyon"
        assert httpx.post(f"{url}/auth/token", json={
            "username": "vk_gopher", "password": PASSWORD}).status_code == 200


def test_csv_with_map_ldif_and_jsonl(directory: SlapdInstance, config: Config,
                                     tmp_path: Path) -> None:
    status, report = load(config, "users.csv", "csv", tmp_path, mapping={
        "login": "username", "mail": "email"})
    assert status == 1 and any("csv_badtype" in r and "account_type" in r for r in report)
    assert any("csv_nohash" in r and "warning" in r for r in report)
    assert binds(directory, "csv_plain")  # {SSHA}
    status, report = load(config, "directory.ldif", "ldif", tmp_path)
    assert status == 0, report
    assert binds(directory, "ld_carol")  # $2y$
    status, report = load(config, "users.jsonl", "jsonl", tmp_path)
    assert any(":2:" in r and "email" in r for r in report)
    assert any(":3:" in r and "JSON" in r for r in report)
    assert binds(directory, "js_one")  # a cleartext password, hashed by slapd
    runtime = Runtime.build(config)
    try:
        carol = run(runtime.service.get_user("ld_carol"))
        assert carol.id == 5001 and carol.last_name == "Kent"
        assert run(runtime.service.picture("ld_carol")).data[:2] == b"\xff\xd8"
        assert run(runtime.service.get_user("csv_werkzeug")).id == 41
        with pytest.raises(AuthenticationFailed):
            run(runtime.service.authenticate("csv_nohash", PASSWORD))
    finally:
        runtime.close()
