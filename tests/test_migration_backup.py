"""Backup, wipe, restore: the same users, ids, groups, pictures and passwords; and exports."""

from __future__ import annotations

import io
import json
import shutil
import stat
from pathlib import Path

import pytest

from app import embedded
from app.config import Config
from app.migration import backup, export
from app.runtime import Runtime
from tests.conftest import (
    ADMIN,
    ADMIN_PASSWORD,
    BASE_DN,
    PASSWORD,
    SlapdInstance,
    create,
    free_port,
    make_config,
    run,
    start_slapd,
)

JPEG_START = b"\xff\xd8"


def snapshot(slapd: SlapdInstance) -> str:
    """Users with ids and memberships, groups with members, pictures: as LDAP shows them."""
    found = slapd.ldap("ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-S", "", "-b", BASE_DN,
                       "(|(objectClass=inetOrgPerson)(objectClass=groupOfNames))",
                       "uid", "uidNumber", "mail", "memberOf", "member", "jpegPhoto",
                       "entryUUID").stdout
    return "\n\n".join(sorted(found.strip().split("\n\n")))


def test_backup_wipe_restore(tmp_path: Path) -> None:
    data = tmp_path / "data"
    slapd = start_slapd(data)
    try:
        config = make_config(slapd, tmp_path / "api")
        runtime = Runtime.build(config)
        try:
            run(runtime.service.bootstrap(ADMIN, ADMIN_PASSWORD, ""))
            user = create(runtime, "kept", email="kept@example.org")
            run(runtime.service.create_group("club"))
            run(runtime.service.add_group_member("club", "kept"))
            png = io.BytesIO()
            from PIL import Image
            Image.new("RGB", (20, 20), (0, 90, 200)).save(png, "PNG")
            run(runtime.service.set_picture("kept", png.getvalue()))
        finally:
            runtime.close()
        before = snapshot(slapd)
        manifest = backup.backup(data, tmp_path / "backup")
        with pytest.raises(backup.BackupError, match="not empty"):
            backup.backup(data, tmp_path / "backup")
    finally:
        slapd.process.stop()
    files = manifest["files"]
    assert files["db1.ldif"]["people"] == 2 and files["config.ldif"]["entries"] > 10
    assert stat.S_IMODE((tmp_path / "backup" / "db1.ldif").stat().st_mode) == 0o600
    with pytest.raises(backup.BackupError, match="--force"):
        backup.restore(tmp_path / "backup", data)
    shutil.rmtree(data)  # the wipe
    backup.restore(tmp_path / "backup", data)
    again = SlapdInstance(data, free_port())
    again.process.start()
    try:
        assert snapshot(again) == before
        assert "uidNumber" in before and "jpegPhoto" in before and "cn=club" in before
        dn = f"uid=kept,ou=people,{BASE_DN}"
        assert again.ldap("ldapwhoami", "-D", dn, "-w", PASSWORD, bind="none").returncode == 0
        config = make_config(again, tmp_path / "api")
        runtime = Runtime.build(config)
        try:
            restored = run(runtime.service.get_user("kept"))
            assert (restored.id, restored.uuid) == (user.id, user.uuid)
            assert run(runtime.service.picture("kept")).data[:2] == JPEG_START
        finally:
            runtime.close()
    finally:
        again.process.stop()
    # A changed file is refused before anything is touched.
    (tmp_path / "backup" / "db1.ldif").write_text("tampered")
    with pytest.raises(backup.BackupError, match="checksum"):
        backup.restore(tmp_path / "backup", tmp_path / "elsewhere")


def test_a_directory_never_started_backs_up_and_restores_over_itself(tmp_path: Path) -> None:
    """Its access log was never opened (slapcat cannot open it: the backup
    failed); restoring with --force over a directory moves its access log
    aside too (slapadd into one holding entries failed halfway)."""
    data = tmp_path / "data"
    embedded.initialise(data, BASE_DN, ["user", "staff", "admin"])
    manifest = backup.backup(data, tmp_path / "fresh")
    log = manifest["files"]["db2.ldif"]
    assert (log["suffix"], log["entries"]) == ("cn=accesslog", 0)
    assert manifest["files"]["db1.ldif"]["entries"] > 0
    assert "secrets/replicator.password" in manifest["files"]
    slapd = SlapdInstance(data, free_port())
    slapd.process.start()
    try:  # a write, so the access log holds a record
        slapd.ldap("ldapadd", bind="root", stdin=(
            f"dn: cn=extra,ou=groups,{BASE_DN}\nobjectClass: groupOfNames\ncn: extra\n"
            f"member: cn=extra,ou=groups,{BASE_DN}\n"))
        full = backup.backup(data, tmp_path / "full")
    finally:
        slapd.process.stop()
    assert full["files"]["db2.ldif"]["entries"] > 0
    backup.restore(tmp_path / "full", data, force=True)
    again = SlapdInstance(data, free_port())
    again.process.start()
    try:
        found = again.ldap("ldapsearch", "-LLL", "-b", f"ou=groups,{BASE_DN}", "(cn=extra)", "cn")
        assert "cn: extra" in found.stdout
    finally:
        again.process.stop()


def test_the_suffix_of_a_folded_slapd_d_line_is_read_whole(tmp_path: Path) -> None:
    folder = tmp_path / "cn=config"
    folder.mkdir()
    (folder / "olcDatabase={1}mdb.ldif").write_text(
        "dn: olcDatabase={1}mdb\nolcSuffix: dc=a-rather-long-organisation-name,dc=exampl\n"
        " e,dc=org\nolcDbDirectory:: L3Zhci9saWIvbGRhcC91c2VyZGly\n")
    assert backup.databases(tmp_path) == [{
        "number": "1", "suffix": "dc=a-rather-long-organisation-name,dc=example,dc=org",
        "directory": "/var/lib/ldap/userdir"}]


def test_exports(slapd: SlapdInstance, config: Config, bootstrapped: None,
                 tmp_path: Path) -> None:
    runtime = Runtime.build(config)
    try:
        create(runtime, "exported", email="exported@example.org", first_name="Ex")
    finally:
        runtime.close()
    out = io.StringIO()
    export.run(config, "jsonl", ["username=exported"], out)
    (row,) = [json.loads(line) for line in out.getvalue().splitlines()]
    assert row["email"] == "exported@example.org" and row["account_type"] == "user"
    out = io.StringIO()
    export.run(config, "csv", ["account_type=admin"], out)
    assert out.getvalue().startswith("id,username,email") and "\nadmin" not in out.getvalue()
    assert ",admin," in out.getvalue()
    out = io.StringIO()
    export.run(config, "ldif", ["username=exported"], out)  # over LDAP: no hashes
    assert "dn: uid=exported,ou=people" in out.getvalue()
    assert "userPassword" not in out.getvalue()
    embedded = make_config(slapd, slapd.layout.data_dir)
    embedded = Config(**{**{f: getattr(embedded, f) for f in embedded.__struct_fields__},
                         "ldap": type(embedded.ldap)(base_dn=BASE_DN,
                                                     bind_password=slapd.service_password),
                         "embedded": type(embedded.embedded)(
                             data_dir=str(slapd.layout.data_dir), port=slapd.process.port)})
    out = io.StringIO()
    export.run(embedded, "ldif", ["username=exported"], out)  # slapcat: hashes included
    assert "userPassword:: " in out.getvalue()
