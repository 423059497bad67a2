"""Safe to run and re-run: dry runs, reports, --update, a stopped import resumed, offline."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import Config
from app.migration import importer, offline
from app.migration.importer import Options
from app.runtime import Runtime
from tests.conftest import ADMIN, ADMIN_PASSWORD, BASE_DN, SlapdInstance, make_config, run
from tests.conftest import start_slapd as start

PASSWORD = "Imported-Pass-1"
HASH = "{SSHA}vRMjG76fhYemQZwuONrICoeJLnYxMjM0NTY3OA=="  # of PASSWORD, salt 12345678


def people_csv(path: Path, count: int, first_id: int = 70000, prefix: str = "r") -> Path:
    rows = [f"{prefix}{i},{prefix}{i}@example.com,Name{i},{first_id + i},{HASH}"
            for i in range(count)]
    path.write_text("username,email,first_name,id,password_hash\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlapdInstance]:
    instance = start(tmp_path_factory.mktemp("runs"))
    try:
        yield instance
    finally:
        instance.process.stop()


@pytest.fixture(scope="module")
def config(slapd: SlapdInstance, tmp_path_factory: pytest.TempPathFactory) -> Config:
    config = make_config(slapd, tmp_path_factory.mktemp("runs-data"), importer={
        "bind_password": slapd.layout.importer_password_file.read_text(), "batch_size": 3})
    runtime = Runtime.build(config)
    try:
        run(runtime.service.bootstrap(ADMIN, ADMIN_PASSWORD, ""))
    finally:
        runtime.close()
    return config


def people(slapd: SlapdInstance) -> int:
    found = slapd.ldap("ldapsearch", "-LLL", "-b", f"ou=people,{BASE_DN}", "(uid=*)", "1.1")
    return found.stdout.count("dn: ")


def imported(config: Config, source: Path, **options: object) -> tuple[int, str]:
    out = io.StringIO()
    status = importer.run(config, Options(source, "csv", **options), out)  # type: ignore[arg-type]
    return status, out.getvalue()


def test_dry_run_changes_nothing_and_reports(slapd: SlapdInstance, config: Config,
                                             tmp_path: Path) -> None:
    source = people_csv(tmp_path / "a.csv", 5)
    source.write_text(source.read_text() + "bad user,x@example.com,X,,\n")
    before = people(slapd)
    status, said = imported(config, source, dry_run=True, report=tmp_path / "r.txt")
    assert status == 1 and "would add 5" in said
    assert people(slapd) == before
    assert (tmp_path / "r.txt").read_text().startswith("a.csv:7: bad user: error: invalid")


def test_rerun_changes_nothing_and_update_refreshes(slapd: SlapdInstance, config: Config,
                                                    tmp_path: Path) -> None:
    source = people_csv(tmp_path / "b.csv", 4, first_id=71000)
    assert imported(config, source)[0] == 0
    stamp = slapd.ldap("ldapsearch", "-LLL", "-b", f"uid=r0,ou=people,{BASE_DN}",
                       "modifyTimestamp", "entryCSN").stdout
    status, said = imported(config, source)
    assert status == 0 and "added 0" in said and "4 unchanged" in said
    status, said = imported(config, source, update=True)
    assert "4 unchanged" in said  # the same values: no write at all
    assert slapd.ldap("ldapsearch", "-LLL", "-b", f"uid=r0,ou=people,{BASE_DN}",
                      "modifyTimestamp", "entryCSN").stdout == stamp
    source.write_text(source.read_text().replace("Name1,", "Renamed,"))
    status, said = imported(config, source, update=True)
    assert "1 updated" in said
    runtime = Runtime.build(config)
    try:
        assert run(runtime.service.get_user("r1")).first_name == "Renamed"
        assert run(runtime.service.get_user("r1")).id == 71001
    finally:
        runtime.close()


def test_id_clash_is_reported_not_renumbered(config: Config, tmp_path: Path) -> None:
    first = tmp_path / "c.csv"
    first.write_text(f"username,id,password_hash\nholder,72000,{HASH}\n")
    assert imported(config, first)[0] == 0
    clash = tmp_path / "d.csv"
    clash.write_text(f"username,id,password_hash\nother,72000,{HASH}\n")
    status, _ = imported(config, clash, report=tmp_path / "r.txt")
    assert status == 1
    assert "id 72000 is held by holder" in (tmp_path / "r.txt").read_text()


def test_stopped_import_resumes(slapd: SlapdInstance, config: Config, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    source = people_csv(tmp_path / "e.csv", 8, first_id=73000, prefix="s")

    class StopAfterOneBatch:
        asked = 0

        @property
        def requested(self) -> bool:
            self.asked += 1
            return self.asked > 1

    @contextlib.contextmanager
    def ctrl_c() -> Iterator[StopAfterOneBatch]:
        yield StopAfterOneBatch()

    monkeypatch.setattr(importer, "interruptible", ctrl_c)
    before = people(slapd)
    assert imported(config, source)[0] == 130
    assert people(slapd) == before + 3  # one batch, whole: each with its type
    monkeypatch.undo()
    status, said = imported(config, source)
    assert status == 0 and "added 5" in said and "3 unchanged" in said
    groups = slapd.ldap("ldapsearch", "-LLL", "-b", f"cn=user,ou=groups,{BASE_DN}",
                        "member").stdout
    assert all(f"uid=s{i},ou=people" in groups.replace("\n ", "") for i in range(8))


def test_user_left_without_type_joins_it(slapd: SlapdInstance, config: Config,
                                         tmp_path: Path) -> None:
    slapd.ldap("ldapadd", stdin=(
        f"dn: uid=orphan,ou=people,{BASE_DN}\nobjectClass: inetOrgPerson\n"
        "objectClass: posixAccount\nuid: orphan\ncn: orphan\nsn: orphan\nuidNumber: 74000\n"
        "gidNumber: 10000\nhomeDirectory: /home/orphan\n"))
    source = tmp_path / "f.csv"
    source.write_text(f"username,account_type,password_hash\norphan,staff,{HASH}\n")
    status, said = imported(config, source)
    assert status == 0 and "1 resumed" in said
    groups = slapd.ldap("ldapsearch", "-LLL", "-b", f"cn=staff,ou=groups,{BASE_DN}", "member")
    assert "uid=orphan" in groups.stdout


def test_offline_import_into_a_stopped_directory(tmp_path: Path) -> None:
    instance = start(tmp_path / "off")
    instance.process.stop()
    config = make_config(instance, tmp_path / "off")  # data dir = the embedded one
    config = Config(**{**{f: getattr(config, f) for f in config.__struct_fields__},
                       "ldap": type(config.ldap)(base_dn=BASE_DN)})
    assert not offline.running(instance.layout)
    source = tmp_path / "g.csv"
    rows = [f"r{i},{HASH}," for i in range(6)] + ["clear,,Clear-Text-Pass-1"]
    source.write_text("username,password_hash,password\n" + "\n".join(rows) + "\n")
    status, said = imported(config, source, offline=True, report=tmp_path / "r.txt")
    assert status == 1 and "added 6" in said
    assert "cleartext password needs the online import" in (tmp_path / "r.txt").read_text()
    instance.process.start()
    try:
        assert instance.ldap("ldapwhoami", "-D", f"uid=r3,ou=people,{BASE_DN}", "-w", PASSWORD,
                             bind="none").returncode == 0
        member_of = instance.ldap("ldapsearch", "-LLL", "-b", f"uid=r3,ou=people,{BASE_DN}",
                                  "memberOf", "uidNumber").stdout
        assert "cn=user,ou=groups" in member_of and "uidNumber: 10003" in member_of
        counter = instance.ldap("ldapsearch", "-LLL", "-b", f"cn=uidNumber,ou=counters,{BASE_DN}",
                                "uidNumber").stdout
        assert "uidNumber: 10005" in counter
    finally:
        instance.process.stop()
