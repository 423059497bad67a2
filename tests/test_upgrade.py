"""`userdir upgrade`: a directory made by an older ldif/ reloaded under today's, nothing lost."""

from __future__ import annotations

import base64
import io
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from app import cli, embedded
from app.migration import backup, upgrade
from app.runtime import Runtime
from tests.conftest import (
    BASE_DN,
    PASSWORD,
    SlapdInstance,
    create,
    free_port,
    make_config,
    run,
)

OLD_LDIF = Path(__file__).parent / "fixtures" / "upgrade"  # ldif/ as of 6f61b76, before #22
TYPES = ["user", "staff", "admin"]
PEOPLE = {"alice": "user", "bob": "user", "carol": "admin"}


def old_directory(data: Path) -> SlapdInstance:
    """A directory as `userdir serve` made it before #22: the old ldif/, type
    groups of groupOfNames alone, no importer (nor its password file)."""
    embedded.initialise(data, BASE_DN, [], ldif_dir=OLD_LDIF)
    (data / "importer.password").unlink()
    groups = "".join(f"dn: cn={t},ou=groups,{BASE_DN}\nobjectClass: groupOfNames\ncn: {t}\n"
                     f"member: {embedded.placeholder_dn(BASE_DN)}\n\n" for t in TYPES)
    subprocess.run(["slapadd", "-q", "-F", str(data / "slapd.d"), "-b", BASE_DN], input=groups,
                   text=True, check=True, capture_output=True)
    return SlapdInstance(data, free_port())


def populate(slapd: SlapdInstance) -> None:
    """People added as an LDAP tool adds them: slapd hashes the passwords
    (ppolicy), memberof writes memberOf; a picture each, and a group."""
    jpeg = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 40, 0)).save(jpeg, "JPEG")
    photo = base64.b64encode(jpeg.getvalue()).decode()
    people = "".join(
        f"dn: uid={name},ou=people,{BASE_DN}\nobjectClass: inetOrgPerson\n"
        f"objectClass: posixAccount\nobjectClass: userdirPerson\nuid: {name}\ncn: {name}\n"
        f"sn: {name}\nmail: {name}@example.org\nuidNumber: {10000 + i}\ngidNumber: 10000\n"
        f"homeDirectory: /home/{name}\nuserdirGender: other\nuserPassword: {PASSWORD}\n"
        f"jpegPhoto:: {photo}\n\n" for i, name in enumerate(PEOPLE))
    slapd.ldap("ldapadd", stdin=people)
    joins = "".join(f"dn: cn={t},ou=groups,{BASE_DN}\nchangetype: modify\nadd: member\n"
                    f"member: uid={name},ou=people,{BASE_DN}\n\n" for name, t in PEOPLE.items())
    club = (f"dn: cn=club,ou=groups,{BASE_DN}\nchangetype: add\nobjectClass: groupOfNames\n"
            f"cn: club\nmember: uid=alice,ou=people,{BASE_DN}\n"
            f"member: uid=carol,ou=people,{BASE_DN}\n\n")
    slapd.ldap("ldapmodify", stdin=joins + club)


def snapshot(slapd: SlapdInstance) -> str:
    """People with ids, uuids, pictures and memberships; groups with members."""
    found = slapd.ldap("ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-b", BASE_DN,
                       "(|(objectClass=inetOrgPerson)(objectClass=groupOfNames))", "uid",
                       "uidNumber", "mail", "memberOf", "member", "jpegPhoto", "entryUUID").stdout
    return "\n\n".join(sorted(found.strip().split("\n\n")))


def config_of(slapd: SlapdInstance, *attributes: str) -> str:
    """cn=config as the data dir's owner reads it over ldapi (SASL EXTERNAL)."""
    return subprocess.run(["ldapsearch", "-Q", "-Y", "EXTERNAL", "-H", slapd.layout.ldapi_url,
                           "-LLL", "-o", "ldif-wrap=no", "-b", "cn=config", *attributes],
                          capture_output=True, text=True, check=True).stdout


def binds(slapd: SlapdInstance, dn: str, password_file: Path | None = None) -> bool:
    secret = ["-y", str(password_file)] if password_file else ["-w", PASSWORD]
    return slapd.ldap("ldapwhoami", "-D", dn, *secret, bind="none", check=False).returncode == 0


def test_an_old_directory_is_reloaded_under_todays_ldif(tmp_path: Path) -> None:
    data = tmp_path / "data"
    slapd = old_directory(data)
    slapd.process.start()
    try:
        populate(slapd)
        before = snapshot(slapd)
        assert "olcIndexHash64" not in config_of(slapd, "(objectClass=olcGlobal)")
        with pytest.raises(upgrade.UpgradeError, match="slapd is running"):
            upgrade.upgrade(data, BASE_DN, TYPES)
        dry = upgrade.upgrade(data, BASE_DN, TYPES, dry_run=True)  # allowed while it runs
    finally:
        slapd.process.stop()
    assert "cn=config: olcIndexHash64: on" in dry.plan.added and dry.backup is None
    assert not (data / "backups").exists()

    done = upgrade.upgrade(data, BASE_DN, TYPES, tmp_path / "backup")

    kept = backup.verify(tmp_path / "backup")["files"]["db1.ldif"]
    added = done.plan.entries[BASE_DN].count("\ndn: ") + 1
    assert {"importer", "tokens"} <= {dn.split(",")[0].split("=")[1] for dn in
                                      done.plan.entries[BASE_DN].split("\n") if "dn: " in dn}
    assert done.counts == {"entries": kept["entries"] + added, "people": 3, "groups": 4,
                           "members of user": 3, "members of staff": 1, "members of admin": 2}
    assert any(line.startswith("olcIndexHash64:") for line in done.in_force)
    assert not [p for p in data.iterdir() if p.name.startswith(("replaced-", ".upgrade"))]
    slapd.process.start()
    try:
        assert "olcIndexHash64: on" in config_of(slapd, "(objectClass=olcGlobal)",
                                                 "olcIndexHash64")
        assert "userdirExternalId" in config_of(slapd, "(cn=*userdir)", "olcAttributeTypes")
        assert snapshot(slapd) == before
        assert all(binds(slapd, f"uid={name},ou=people,{BASE_DN}") for name in PEOPLE)
        assert binds(slapd, slapd.service_dn, data / "service.password")
        assert binds(slapd, embedded.importer_dn(BASE_DN), data / "importer.password")
        assert "objectClass: userdirGroup" in slapd.ldap(
            "ldapsearch", "-LLL", "-b", f"cn=user,ou=groups,{BASE_DN}", "objectClass").stdout
        # Today's service works on it: a create and a delete through the overlays.
        runtime = Runtime.build(make_config(slapd, tmp_path / "api"))
        try:
            create(runtime, "dave")
            run(runtime.service.delete_user("bob"))
            assert run(runtime.service.get_user("dave")).account_type == "user"
        finally:
            runtime.close()
    finally:
        slapd.process.stop()
    settings = (data / "slapd.d" / "cn=config.ldif").read_bytes()

    again = upgrade.upgrade(data, BASE_DN, TYPES, tmp_path / "again")

    assert again.plan.up_to_date and again.backup is None and not (tmp_path / "again").exists()
    assert (data / "slapd.d" / "cn=config.ldif").read_bytes() == settings


def test_a_failed_reload_puts_the_directory_back(tmp_path: Path) -> None:
    """Today's ldif/ minus an attribute the data uses: the data cannot be
    loaded under it; the old directory comes back whole, the backup stays."""
    data = tmp_path / "data"
    slapd = old_directory(data)
    slapd.process.start()
    try:
        populate(slapd)
        before = snapshot(slapd)
    finally:
        slapd.process.stop()
    narrower = tmp_path / "ldif"
    shutil.copytree(embedded.find_ldif_dir(), narrower)
    schema = (narrower / "userdir-schema.ldif").read_text()
    (narrower / "userdir-schema.ldif").write_text(schema.replace("userdirGender", "userdirSex"))

    with pytest.raises(upgrade.UpgradeError, match="the directory is as it was"):
        upgrade.upgrade(data, BASE_DN, TYPES, tmp_path / "backup", ldif_dir=narrower)

    assert backup.verify(tmp_path / "backup")
    assert not [p for p in data.iterdir() if p.name.startswith(("replaced-", ".upgrade"))]
    slapd.process.start()
    try:
        assert snapshot(slapd) == before
        assert "olcIndexHash64" not in config_of(slapd, "(objectClass=olcGlobal)")
    finally:
        slapd.process.stop()


def test_an_external_server_gets_the_steps(tmp_path: Path) -> None:
    out = io.StringIO()
    assert upgrade.run(tmp_path, BASE_DN, TYPES, external=True, out=out) == 1
    steps = out.getvalue()
    assert "slapcat -n 0" in steps and "slapmodify -n 0" in steps and BASE_DN in steps
    assert not list(tmp_path.iterdir())


def test_the_command_says_up_to_date(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    embedded.initialise(data, BASE_DN, TYPES)
    settings = tmp_path / "userdir.toml"
    settings.write_text(f'[embedded]\ndata_dir = "{data}"\n[ldap]\nbase_dn = "{BASE_DN}"\n')
    assert cli.main(["--config", str(settings), "upgrade"]) == 0
    assert "up to date with ldif/; nothing changed, no backup taken" in capsys.readouterr().out
