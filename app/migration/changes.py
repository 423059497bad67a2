"""What today's ldif/ changes in an embedded directory: cn=config, and the entries ldif/ makes."""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from app import embedded
from app.migration import backup
from app.migration.counts import classes, comparable, records, suffixes

# Written by slapd on every entry: two configs differing only there are the same.
OPERATIONAL = frozenset({"entryuuid", "creatorsname", "createtimestamp", "entrycsn",
                         "modifiersname", "modifytimestamp", "structuralobjectclass"})
SCRATCH = ".upgrade-scratch"
ROOT_PW = re.compile(r"^olcRootPW::? .*$", re.MULTILINE)
DB_DIRECTORY = re.compile(r"^olcDbDirectory: (.+)$", re.MULTILINE)


class PlanError(RuntimeError):
    """The directory is not one these settings describe."""


@dataclass
class Plan:
    """What the current ldif/ changes in this directory."""

    config: str  # the new cn=config, as slapcat writes it, with this directory's paths
    added: list[str]  # "dn: attribute: value" of the new config that the current lacks
    removed: list[str]
    entries: dict[str, str]  # suffix: LDIF of the entries ldif/ makes that are missing
    # comparable suffix: {comparable DN: object classes an entry of ldif/'s lacks}
    classes: dict[str, dict[str, list[str]]]
    secrets: dict[str, str] = field(default_factory=dict)  # files to write with those

    @property
    def up_to_date(self) -> bool:
        return not (self.added or self.removed or any(self.entries.values())
                    or any(self.classes.values()))


def _slapcat(config_dir: Path, number: str) -> str:
    return backup._slap("slapcat", "-F", str(config_dir), "-n", number, "-o", "ldif_wrap=no")


def _classes(lines: list[str]) -> list[str]:
    return [line[13:].strip() for line in lines if line.lower().startswith("objectclass: ")]


def _lacking(made: list[tuple[str, list[str]]],
             held: dict[str, set[str]]) -> dict[str, list[str]]:
    """The object classes an entry of ldif/'s gained since this one was made
    (the type groups' userdirGroup); nothing else of an existing entry changes."""
    found = {}
    for dn, rest in made:
        have = held.get(comparable(dn))
        wanted = [c for c in _classes(rest) if have is not None and c.lower() not in have]
        if wanted:
            found[comparable(dn)] = wanted
    return found


def _holds_data(config: str, number: str) -> bool:
    """Whether database `number` of a slapcat'd cn=config has been written to
    (slapd.d's own files fold long lines: read slapcat's unwrapped ones)."""
    for dn, rest in records(config.splitlines()):
        if dn == f"olcDatabase={{{number}}}mdb,cn=config":
            found = DB_DIRECTORY.search("\n".join(rest))
            return found is not None and (Path(found.group(1)) / "data.mdb").exists()
    return False


def _difference(current: str, target: str) -> tuple[list[str], list[str]]:
    def lines(text: str) -> set[str]:
        return {f"{dn}: {line}" for dn, rest in records(text.splitlines())
                for line in rest if line.partition(":")[0].lower() not in OPERATIONAL}
    old, new = lines(current), lines(target)
    return sorted(new - old), sorted(old - new)


def plan(data_dir: Path, base_dn: str, account_types: Sequence[str],
         log_purge: str | None = None, ldif_dir: Path | None = None) -> Plan:
    """Make a new directory from ldif/ beside this one (initialise, as on a first
    start, so that nothing ldif/ needs is missed), then compare: its cn=config,
    with this directory's paths and root password, against the current one; its
    entries (base tree, account-type groups) against those this one has."""
    layout = embedded.Layout(data_dir)
    numbers = suffixes(layout.config_dir)
    if comparable(base_dn) not in numbers:
        raise PlanError(f"{data_dir} holds {', '.join(numbers) or 'no database'}, "
                        f"not the base DN {base_dn} ([ldap] base_dn)")
    scratch = data_dir / SCRATCH
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        embedded.initialise(scratch, base_dn, account_types,
                            ldif_dir=ldif_dir, service_password=layout.read_service_password(),
                            log_purge=log_purge)
        current = _slapcat(layout.config_dir, "0")
        fresh = _slapcat(scratch / "slapd.d", "0")
        target = fresh.replace(str(scratch.resolve()), str(data_dir.resolve()))
        root_pw = ROOT_PW.search(current)
        if root_pw:  # the root password file stays valid
            target = ROOT_PW.sub(lambda _: root_pw.group(0), target)
        added, removed = _difference(current, target)
        entries, lacking, fresh_dns = {}, {}, set()
        for database in backup.databases(scratch / "slapd.d"):
            if not _holds_data(fresh, database["number"]):
                continue  # never written (an empty audit log): slapcat cannot open it
            made = list(records(_slapcat(scratch / "slapd.d", database["number"]).splitlines()))
            number = numbers.get(comparable(database["suffix"]))
            held = {} if number is None else \
                classes(layout.config_dir, number, {comparable(dn) for dn, _ in made})
            missing = [(dn, rest) for dn, rest in made if comparable(dn) not in held]
            fresh_dns |= {comparable(dn) for dn, _ in missing}
            entries[database["suffix"]] = "".join(
                "\n".join([f"dn: {dn}", *rest]) + "\n\n" for dn, rest in missing)
            lacking[comparable(database["suffix"])] = _lacking(made, held)
        # An identity added (the importer, the replicator...) comes with its new password.
        secrets = {f.name: f.read_text() for f in scratch.glob("*.password")
                   if comparable(f"cn={f.stem},ou=services,{base_dn}") in fresh_dns}
        return Plan(target, added, removed, entries, lacking, secrets)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
