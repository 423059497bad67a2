"""What ldif/ and `userdir init` make slapd do for the audit: purge, a log on any server, resets."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from app import cli, embedded
from app.audit import AuditQuery
from app.config import Config, load_config
from app.main import create_app
from app.runtime import Runtime
from app.service.audit import AuditTrail
from tests.conftest import ADMIN, ADMIN_PASSWORD, BASE_DN, SlapdInstance, create, free_port, run
from tests.test_audit import PEOPLE, RESET, login
from tests.test_provisioning import stock  # noqa: F401 - a stock slapd, as a fixture

Client = TestClient[Any]


@pytest.fixture(scope="module")
def client(config: Config, bootstrapped: None) -> Iterator[Client]:
    with TestClient(app=create_app(config)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def admin(client: Client) -> dict[str, str]:
    return login(client, ADMIN, ADMIN_PASSWORD)


def test_a_reset_is_a_modify_that_ppolicy_still_checks_hashes_and_stamps(
        client: Client, admin: dict[str, str], runtime: Runtime, slapd: SlapdInstance) -> None:
    name = create(runtime).username
    dn = f"uid={name},{PEOPLE}"
    assert slapd.ldap("ldapwhoami", "-D", dn, "-w", "wrong-one!", bind="none",
                      check=False).returncode == 49  # ppolicy counts it: pwdFailureTime
    slapd.ldap("ldapmodify", bind="root", stdin=(
        f"dn: {dn}\nchangetype: modify\nreplace: pwdAccountLockedTime\n"
        "pwdAccountLockedTime: 20200101000000Z\n"))

    def stored() -> str:
        return slapd.ldap("ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-b", dn, "-s", "base",
                          "userPassword", "pwdChangedTime", "pwdFailureTime",
                          "pwdAccountLockedTime", bind="root").stdout
    before = stored()
    assert "pwdFailureTime" in before and "pwdAccountLockedTime" in before
    refused = client.put(f"/people/{name}/password", headers=admin,
                         json={"new_password": "short"})
    assert refused.status_code == 422 and "policy" in refused.json()["detail"]
    time.sleep(1.1)  # pwdChangedTime has whole seconds
    assert client.put(f"/people/{name}/password", headers=admin,
                      json={"new_password": RESET}).status_code == 204
    after = stored()
    assert "pwdFailureTime" not in after and "pwdAccountLockedTime" not in after
    stamp = [line for line in after.splitlines() if line.startswith("pwdChangedTime")]
    assert stamp and stamp[0] not in before
    hashed = base64.b64decode(after.split("userPassword:: ")[1].split()[0])
    assert hashed.startswith(b"{ARGON2}$argon2") and RESET.encode() not in hashed
    assert slapd.ldap("ldapwhoami", "-D", dn, "-w", RESET, bind="none").returncode == 0


def test_purge_removes_records_past_their_retention(tmp_path: Path) -> None:
    embedded.initialise(tmp_path, BASE_DN, ["user", "staff", "admin"],
                        log_purge="00:00:02 00:00:01")
    slapd = SlapdInstance(tmp_path, free_port())
    slapd.process.start()
    try:
        slapd.ldap("ldapmodify", stdin=f"dn: cn=user,ou=groups,{BASE_DN}\nchangetype: modify\n"
                                        "replace: description\ndescription: purged\n")

        def records() -> str:
            return slapd.ldap("ldapsearch", "-LLL", "-b", "cn=accesslog",
                              f"(reqDN=cn=user,ou=groups,{BASE_DN})", "reqDN").stdout
        assert "reqDN" in records()
        deadline = time.monotonic() + 10
        while "reqDN" in records() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert "reqDN" not in records()
    finally:
        slapd.process.stop()


def test_init_sets_up_the_audit_log_on_an_existing_server(
        stock: tuple[str, Path], capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    url, tmp = stock
    for directory in ("db", "log"):
        (tmp / directory).mkdir()
    secret = tmp / "config.password"
    secret.write_text("config-secret")
    env = {"USERDIR_LDAP__URL": url, "USERDIR_LDAP__BIND_PASSWORD": "x",
           "USERDIR_EMBEDDED__DATA_DIR": str(tmp / "data"),
           "USERDIR_BOOTSTRAP__ADMIN_PASSWORD": ADMIN_PASSWORD}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        assert cli.main(["init", "--config-dn", "cn=admin,cn=config", "--config-password-file",
                         str(secret), "--db-directory", str(tmp / "db"),
                         "--log-directory", str(tmp / "log")]) == 0
    assert "audit log: database olcDatabase={2}mdb,cn=config, records kept 30 days" \
        in capsys.readouterr().out
    config = load_config(None, {**env, "USERDIR_LDAP__BIND_PASSWORD_FILE":
                                str(tmp / "data" / "service.password")})
    runtime = Runtime.build(config)
    try:
        name = create(runtime).username
        page = run(AuditTrail.beside(runtime.service).audit(AuditQuery(user=name)))
        admin = run(AuditTrail.beside(runtime.service).audit(AuditQuery(user=ADMIN)))
    finally:
        runtime.close()
    assert [(r.type, r.who.name) for r in page.records] == [("created", "service")]
    assert [(r.type, r.who.name) for r in admin.records] == [("created", "cli")]  # bootstrap
