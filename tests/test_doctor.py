"""`userdir doctor`: each state a foreign LDAP client can leave, found, repaired, then gone."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from app import doctor
from app.cli import main
from app.config import Config
from app.domain import NewUser
from app.runtime import Runtime
from app.service.users import LAST_ADMIN
from tests.conftest import (
    ADMIN,
    ADMIN_PASSWORD,
    BASE_DN,
    PASSWORD,
    SlapdInstance,
    make_config,
    run,
    start_slapd,
)

PEOPLE, GROUPS = f"ou=people,{BASE_DN}", f"ou=groups,{BASE_DN}"
PLACEHOLDER = f"cn=nobody,{BASE_DN}"
COUNTER = f"cn=uidNumber,ou=counters,{BASE_DN}"


@pytest.fixture
def slapd(tmp_path: Path) -> Iterator[SlapdInstance]:
    """A directory of its own: no other test's users show up in its findings."""
    instance = start_slapd(tmp_path / "slapd")
    try:
        yield instance
    finally:
        instance.process.stop()


def configured(slapd: SlapdInstance, data_dir: Path, **sections: dict[str, str]) -> Config:
    config = make_config(slapd, data_dir, **sections)
    runtime = Runtime.build(config)
    try:
        run(runtime.service.bootstrap(ADMIN, ADMIN_PASSWORD, ""))
    finally:
        runtime.close()
    return config


@pytest.fixture
def config(slapd: SlapdInstance, tmp_path: Path) -> Config:
    return configured(slapd, tmp_path / "api")


def add(slapd: SlapdInstance, ldif: str, *options: str) -> None:
    slapd.ldap("ldapadd", *options, bind="root", stdin=ldif)


def person(name: str, *extra: str, number: int | None = None, userdir: bool = True,
           types: tuple[str, ...] = ("user",), branch: str = PEOPLE) -> str:
    """A person as ldapadd makes one (with `number`, a posixAccount too),
    then added to these account types' groups, as ldapmodify does."""
    dn = f"uid={name},{branch}"
    lines = [f"dn: {dn}", "objectClass: inetOrgPerson", f"uid: {name}", f"cn: {name}",
             f"sn: {name}", "userPassword: Tool-Made-Pass-7", *extra]
    if number is not None:
        lines += ["objectClass: posixAccount", f"uidNumber: {number}", "gidNumber: 10000",
                  f"homeDirectory: /home/{name}"]
    if userdir:
        lines.append("objectClass: userdirPerson")
    for group in types:
        lines += ["", f"dn: cn={group},{GROUPS}", "changetype: modify", "add: member",
                  f"member: {dn}"]
    return "\n".join(lines) + "\n\n"


def lock(name: str, expiry: str) -> str:
    """A lock entry as app/directory/locks.py writes one, its lease ending at `expiry`."""
    return (f"dn: cn={name},ou=locks,{BASE_DN}\nobjectClass: applicationProcess\ncn: {name}\n"
            f"description: {expiry} 0123456789abcdef\n\n")


def join(slapd: SlapdInstance, group: str, member: str) -> None:
    add(slapd, f"dn: cn={group},{GROUPS}\nchangetype: modify\nadd: member\nmember: {member}\n")


def read(slapd: SlapdInstance, dn: str, *attributes: str) -> dict[str, list[str]]:
    """An entry as ldapsearch shows it to the service account ({} if missing)."""
    found: dict[str, list[str]] = {}
    out = slapd.ldap("ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-s", "base", "-b", dn,
                     "(objectClass=*)", *attributes, check=False).stdout
    for name, _, value in (line.partition(": ") for line in out.splitlines()[1:] if line):
        found.setdefault(name, []).append(value)
    return found


def examine(config: Config) -> list[doctor.Finding]:
    with doctor.opened(config) as checkup:
        return checkup.examine()


def fix(config: Config, *, repair: bool = True) -> tuple[int, str]:
    """`userdir doctor --fix` (or without --fix): its exit status and output."""
    out = io.StringIO()
    return doctor.run(config, fix=repair, out=out), out.getvalue()


def kinds(findings: list[doctor.Finding]) -> list[tuple[str, str]]:
    return [(f.kind, f.dn) for f in findings]


def test_a_consistent_directory_has_no_findings(slapd: SlapdInstance, config: Config) -> None:
    # The admin was made by the API (bootstrap): its users are as the doctor wants them.
    assert fix(config, repair=False) == (0, "doctor: directory consistent\n")


def test_a_user_without_a_type_joins_the_default(slapd: SlapdInstance, config: Config) -> None:
    group, dn = f"cn=user,{GROUPS}", f"uid=typeless,{PEOPLE}"
    slapd.ldap("ldapdelete", group, bind="root")  # the default's group is made again first
    add(slapd, person("typeless", number=5000, types=()))
    assert kinds(examine(config)) == [("type-group-missing", group), ("no-type", dn)]
    status, out = fix(config)
    assert status == 0, out
    assert "fixed: joined 'user'" in out
    assert read(slapd, dn, "memberOf")["memberOf"] == [group]
    assert read(slapd, group, "member")["member"] == [PLACEHOLDER, dn]
    assert examine(config) == []


def test_several_types_keep_the_highest(slapd: SlapdInstance, config: Config) -> None:
    add(slapd, person("twice", number=5001, types=("user", "admin"))
        + person("thrice", number=5002, types=("user", "staff", "admin")))
    twice, thrice = f"uid=twice,{PEOPLE}", f"uid=thrice,{PEOPLE}"
    findings = examine(config)
    assert kinds(findings) == [("several-types", twice), ("several-types", thrice)]
    assert "keep 'admin' (the highest)" in findings[0].line()
    assert fix(config)[0] == 0
    for dn in (twice, thrice):
        assert read(slapd, dn, "memberOf")["memberOf"] == [f"cn=admin,{GROUPS}"]
    assert examine(config) == []


def test_several_types_never_remove_the_last_admin(slapd: SlapdInstance,
                                                   tmp_path: Path) -> None:
    # Here staff ranks above admin: keeping the highest would demote the only admin.
    config = configured(slapd, tmp_path / "api", users={"account_types": "user,admin,staff"})
    admin = f"uid={ADMIN},{PEOPLE}"
    join(slapd, "staff", admin)
    status, out = fix(config)
    assert status == 1 and f"NOT fixed: {LAST_ADMIN}" in out
    assert f"cn=admin,{GROUPS}" in read(slapd, admin, "memberOf")["memberOf"]
    assert kinds(examine(config)) == [("several-types", admin)]


def test_a_person_without_posix_gets_a_new_number(slapd: SlapdInstance, config: Config) -> None:
    add(slapd, person("bare", userdir=False))
    add(slapd, person("almost", number=5003, userdir=False))
    bare, almost = f"uid=bare,{PEOPLE}", f"uid=almost,{PEOPLE}"
    findings = examine(config)
    assert kinds(findings) == [("incomplete", bare), ("incomplete", almost)]
    assert findings[0].problem == \
        "lacks objectClass posixAccount, objectClass userdirPerson, uidNumber"
    assert findings[1].problem == "lacks objectClass userdirPerson"
    assert fix(config)[0] == 0
    entry = read(slapd, bare, "objectClass", "uidNumber", "gidNumber", "homeDirectory")
    assert {"posixAccount", "userdirPerson"} <= set(entry["objectClass"])
    assert entry["uidNumber"] == read(slapd, COUNTER, "uidNumber")["uidNumber"] == ["10001"]
    assert (entry["gidNumber"], entry["homeDirectory"]) == (["10000"], ["/home/bare"])
    assert read(slapd, almost, "uidNumber")["uidNumber"] == ["5003"]
    assert examine(config) == []


def test_two_doctors_never_number_one_entry_twice(slapd: SlapdInstance,
                                                  config: Config) -> None:
    add(slapd, person("raced", userdir=False))
    with doctor.opened(config) as first, doctor.opened(config) as second:
        mine, theirs = first.examine(), second.examine()  # both see it unnumbered
        first.repair(mine[0])
        second.repair(theirs[0])
    assert (mine[0].fixed, theirs[0].fixed, theirs[0].outcome) == (True, False, doctor.CHANGED)
    number = read(slapd, f"uid=raced,{PEOPLE}", "uidNumber")["uidNumber"]
    assert len(number) == 1 and f"uidNumber {number[0]}" in str(mine[0].outcome)
    assert examine(config) == []


def test_the_counter_moves_up_to_the_highest_number(slapd: SlapdInstance,
                                                    config: Config) -> None:
    add(slapd, person("high", number=20000))  # 10000 apart: the admin's uidNumber
    findings = examine(config)
    assert kinds(findings) == [("counter-behind", COUNTER)]
    assert findings[0].problem == "at 10000 while uidNumber 20000 is in use"
    assert fix(config)[0] == 0
    assert read(slapd, COUNTER, "uidNumber")["uidNumber"] == ["20000"]
    runtime = Runtime.build(config)
    try:  # the API's next user gets the next number
        made = run(runtime.service.create_user(NewUser(username="next", password=PASSWORD)))
    finally:
        runtime.close()
    assert made.id == 20001
    assert examine(config) == []


def test_dangling_members_are_removed(slapd: SlapdInstance, config: Config) -> None:
    ghost, admin = f"uid=ghost,{PEOPLE}", f"uid={ADMIN},{PEOPLE}"
    add(slapd, f"dn: cn=team,{GROUPS}\nobjectClass: groupOfNames\ncn: team\nmember: {ghost}\n\n"
               f"dn: cn=crew,{GROUPS}\nobjectClass: groupOfNames\ncn: crew\n"
               f"member: {admin}\nmember: {ghost}\n")
    join(slapd, "staff", f"uid=Spectre,{PEOPLE}")
    assert sorted(kinds(examine(config))) == [("dangling-member", f"cn={g},{GROUPS}")
                                    for g in ("crew", "staff", "team")]
    assert fix(config)[0] == 0
    assert read(slapd, f"cn=team,{GROUPS}", "member")["member"] == [PLACEHOLDER]
    assert read(slapd, f"cn=crew,{GROUPS}", "member")["member"] == [admin]
    assert read(slapd, f"cn=staff,{GROUPS}", "member")["member"] == [PLACEHOLDER]
    assert examine(config) == []


def test_stale_staging_entries_and_expired_locks_go(slapd: SlapdInstance,
                                                    config: Config) -> None:
    staging, locks = f"ou=staging,{BASE_DN}", f"ou=locks,{BASE_DN}"
    # -e relax: as a dump restored with its timestamps (slapd's own are read-only).
    add(slapd, person("abandoned", "createTimestamp: 20200101000000Z", branch=staging),
        "-e", "relax")
    add(slapd, person("creating", branch=staging))
    add(slapd, lock("expired", "20200101000000Z") + lock("held", "29990101000000Z"))
    assert kinds(examine(config)) == [("stale-staging", f"uid=abandoned,{staging}"),
                                      ("expired-lock", f"cn=expired,{locks}")]
    assert fix(config)[0] == 0
    assert read(slapd, f"uid=abandoned,{staging}") == {}
    assert read(slapd, f"cn=expired,{locks}") == {}
    assert read(slapd, f"uid=creating,{staging}", "uid") == {"uid": ["creating"]}
    assert read(slapd, f"cn=held,{locks}", "cn") == {"cn": ["held"]}
    assert examine(config) == []


def test_a_user_disabled_the_old_way_stays_disabled(slapd: SlapdInstance,
                                                    config: Config) -> None:
    dn = f"uid=locked,{PEOPLE}"
    add(slapd, person("locked", number=5004))
    slapd.ldap("ldapmodify", bind="root", stdin=f"dn: {dn}\nchangetype: modify\n"
               "replace: pwdAccountLockedTime\npwdAccountLockedTime: 000001010000Z\n")
    assert kinds(examine(config)) == [("old-disable", dn)]
    assert fix(config)[0] == 0
    assert read(slapd, dn, "pwdEndTime")["pwdEndTime"] == ["19700101000000Z"]
    # A password reset deletes pwdAccountLockedTime (ppolicy), not pwdEndTime.
    slapd.ldap("ldappasswd", "-s", "Reset-Tool-Pass-8", dn)
    assert "pwdAccountLockedTime" not in read(slapd, dn, "pwdAccountLockedTime")
    assert slapd.ldap("ldapwhoami", "-D", dn, "-w", "Reset-Tool-Pass-8", bind="none",
                      check=False).returncode == 49  # invalid credentials: still disabled
    assert examine(config) == []


def test_an_old_uid_left_by_ldapmodrdn_is_removed(slapd: SlapdInstance, config: Config) -> None:
    add(slapd, person("before", number=5005))
    slapd.ldap("ldapmodrdn", f"uid=before,{PEOPLE}", "uid=after", bind="root")  # no -r
    dn = f"uid=after,{PEOPLE}"
    assert sorted(read(slapd, dn, "uid")["uid"]) == ["after", "before"]
    findings = examine(config)
    assert kinds(findings) == [("old-uid", dn)]
    assert findings[0].problem == "uid also holds before"
    assert fix(config)[0] == 0
    assert read(slapd, dn, "uid")["uid"] == ["after"]
    assert examine(config) == []


def test_the_command_through_argparse(slapd: SlapdInstance, config: Config, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "userdir.toml"
    path.write_text(f'[ldap]\nurl = "{slapd.url}"\nbase_dn = "{BASE_DN}"\n'
                    f'bind_password = "{slapd.service_password}"\n'
                    f'[embedded]\ndata_dir = "{tmp_path / "api"}"\n')
    add(slapd, person("typeless", number=5006, types=()))
    assert main(["--config", str(path), "doctor"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [f"user without a type: uid=typeless,{PEOPLE}: in no account-type group; "
                   "--fix: join 'user' (users.default_account_type)",
                   "doctor: 1 finding (1 user without a type); run `userdir doctor --fix`"]
    assert main(["--config", str(path), "doctor", "--fix", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["kind"] == "no-type" and lines[0]["fixed"] is True
    assert lines[-1]["remaining"] == 0 and lines[-1]["fixed"] == 1
    assert main(["--config", str(path), "doctor"]) == 0
    assert capsys.readouterr().out == "doctor: directory consistent\n"


def test_serve_logs_one_line_at_start_up(slapd: SlapdInstance, config: Config,
                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="userdir.doctor")
    assert doctor.log_summary(config) == "doctor: directory consistent"
    add(slapd, person("one", number=5007, types=()) + person("two", number=5008, types=()))
    add(slapd, lock("expired", "20200101000000Z"))
    doctor.check_in_background(config).join(timeout=30)
    assert [r.message for r in caplog.records if r.name == "userdir.doctor"][-1] == \
        "doctor: 3 findings (2 users without a type, 1 expired lock); run `userdir doctor --fix`"
    assert len(examine(config)) == 3  # it only looked
