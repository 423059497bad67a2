"""`userdir init` against a stock OpenLDAP that only has a cn=config admin."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient

from app import cli, embedded
from app.audit import AuditQuery
from app.config import load_config
from app.directory.audit_log import NoAuditLog
from app.domain import NewUser
from app.main import create_app
from app.provisioning import parse_ldif
from app.runtime import Runtime
from app.service.audit import AuditTrail
from tests.conftest import BASE_DN, PASSWORD, free_port, run
from tests.ui_helpers import sign_in

STOCK_CONFIG = """\
dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {run}/slapd.pid

dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: /usr/lib/ldap
olcModuleLoad: {{0}}back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file:///etc/ldap/schema/core.ldif

dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcRootDN: cn=admin,cn=config
olcRootPW: config-secret
"""


@pytest.fixture
def stock(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A slapd as a distribution might ship it: core schema, no database yet."""
    config_dir, run_dir = tmp_path / "slapd.d", tmp_path / "run"
    config_dir.mkdir()
    run_dir.mkdir()
    subprocess.run(["slapadd", "-n0", "-F", str(config_dir)], check=True, capture_output=True,
                   input=STOCK_CONFIG.format(run=run_dir), text=True)
    port = free_port()
    process = subprocess.Popen(["/usr/sbin/slapd", "-F", str(config_dir), "-h",
                                f"ldap://127.0.0.1:{port}/", "-d", "0"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        subprocess.run(["sh", "-c", f"for i in $(seq 50); do ldapsearch -x -H "
                        f"ldap://127.0.0.1:{port} -b '' -s base >/dev/null 2>&1 && exit 0;"
                        " sleep 0.1; done; exit 1"], check=True)
        yield f"ldap://127.0.0.1:{port}", tmp_path
    finally:
        process.terminate()
        process.wait(10)


def test_init_sets_up_a_stock_server(stock: tuple[str, Path],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    url, tmp = stock
    (tmp / "db").mkdir()
    secret = tmp / "config.password"
    secret.write_text("config-secret\n")
    env = {"USERDIR_LDAP__URL": url, "USERDIR_LDAP__BIND_PASSWORD": "x",
           "USERDIR_EMBEDDED__DATA_DIR": str(tmp / "data"),
           "USERDIR_BOOTSTRAP__ADMIN_PASSWORD": "Init-Admin-Pass-1"}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        code = cli.main(["init", "--config-dn", "cn=admin,cn=config", "--config-password-file",
                         str(secret), "--db-directory", str(tmp / "db")])
    output = capsys.readouterr().out
    assert code == 0, output
    assert "schemas added: cosine, nis, inetorgperson, userdir" in output

    # the service can now do everything it does on the embedded slapd
    config = load_config(None, {**env, "USERDIR_LDAP__BIND_PASSWORD_FILE":
                                str(tmp / "data" / "service.password")})
    runtime = Runtime.build(config)
    try:
        admin = run(runtime.service.authenticate("admin", "Init-Admin-Pass-1"))
        assert admin.account_type == "admin"
        user = run(runtime.service.create_user(NewUser(username="inited", password=PASSWORD)))
        assert user.account_type == "user" and user.id == embedded.FIRST_UID_NUMBER + 1
        # made without --log-directory: no audit log, said as such (it was a
        # plain "not found", and an admin's console page of anyone a 404)
        with pytest.raises(NoAuditLog):
            run(AuditTrail.beside(runtime.service).audit(AuditQuery(user="inited")))
    finally:
        runtime.close()
    with TestClient(app=create_app(config)) as client:
        sign_in(client, "admin", "Init-Admin-Pass-1")
        page = client.get("/ui/people/inited")
        assert page.status_code == 200 and "This directory keeps no audit log." in page.text
    # a user's password is hashed by slapd; the root DN has no password left
    dump = subprocess.run(["slapcat", "-F", str(tmp / "slapd.d"), "-b", BASE_DN],
                          capture_output=True, text=True, check=True).stdout
    assert "userPassword:: " in dump and PASSWORD not in dump
    config_dump = subprocess.run(["slapcat", "-F", str(tmp / "slapd.d"), "-n0"],
                                 capture_output=True, text=True, check=True).stdout
    assert "olcRootPW" not in config_dump.split("olcSuffix: dc=example,dc=org")[1].split("\n\n")[0]

    # a second run refuses rather than touching the existing database
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        assert cli.main(["init", "--config-dn", "cn=admin,cn=config", "--config-password-file",
                         str(secret), "--db-directory", str(tmp / "db")]) == 1


def test_parse_ldif_handles_continuations_base64_and_comments(tmp_path: Path) -> None:
    text = ("# c\ndn: cn=a,dc=x\ncn: a\ndescription: long\n  value\nsn:: w6k=\n\n"
            "dn: cn=b,dc=x\ncn: b\n")
    records = list(parse_ldif(text, tmp_path))
    assert [r.dn for r in records] == ["cn=a,dc=x", "cn=b,dc=x"]
    assert records[0].attributes == {"cn": ["a"], "description": ["long value"], "sn": ["é"]}
