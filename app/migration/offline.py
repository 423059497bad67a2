"""`userdir import --offline`: slapadd into the stopped embedded directory (minutes, not hours)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

from app import embedded
from app.config import Config, ConfigError
from app.directory.names import Tree
from app.domain import AccountTypes
from app.migration.ldif import entries, record
from app.migration.mapping import Mapper
from app.migration.plan import Known, Plan, assign_ids, attributes, make_plan, types_of
from app.migration.records import Row

SLAPD_CLASSES = ["inetOrgPerson", "posixAccount", "userdirPerson"]


def running(layout: embedded.Layout) -> bool:
    """Is a slapd serving this data directory (its pid file names a live process)?"""
    try:
        pid = int((layout.run_dir / "slapd.pid").read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def run(config: Config, rows: Iterable[Row], mapper: Mapper, dry_run: bool) -> Plan:
    """Check the rows against the directory as slapcat reads it, then add the
    new users with slapadd and their type groups and the id counter with
    slapmodify. slapadd applies no overlay: uniqueness is checked here against
    everything slapcat saw, memberOf is written as memberof would, and
    cleartext passwords are refused (ppolicy would have hashed them)."""
    if not config.ldap.embedded:
        raise ConfigError("--offline loads the embedded directory; with [ldap] url, import "
                          "online")
    layout = embedded.Layout(config.data_dir)
    if not layout.initialised_marker.exists():
        raise ConfigError(f"--offline: no embedded directory in {config.data_dir}")
    if running(layout):
        raise ConfigError("--offline: slapd is running on this directory; stop `userdir serve` "
                          "first, or import online")
    tree = Tree(config.ldap.base_dn)
    types = AccountTypes(config.users.account_types, config.users.default_account_type)
    group_dns = {t: tree.group(t) for t in types.names}
    known, counter = _read(layout, config.ldap.base_dn, types_of(types, group_dns))
    plan = make_plan(rows, mapper, known)
    for candidate in [c for c in plan.new if c.cleartext is not None]:
        plan.fail(candidate.line, candidate.username,
                  "a cleartext password needs the online import (slapd hashes it)")
        plan.new.remove(candidate)
    if dry_run or not plan.new:
        return plan
    held = set(known.ids) | {c.uid_number for c in plan.new if c.uid_number is not None}
    assign_ids(plan.new, range(counter + 1, counter + 2 * len(plan.new) + len(held) + 1), held)
    highest = max([counter, *(c.uid_number or 0 for c in plan.new)])
    with tempfile.TemporaryDirectory(prefix="userdir-import-") as scratch:
        people = Path(scratch) / "people.ldif"
        with people.open("w", encoding="utf-8") as f:
            for candidate in plan.new:
                values = attributes(candidate, config.users.gid_number)
                values = {"objectClass": list(SLAPD_CLASSES), **values,
                          "memberOf": [group_dns[candidate.account_type]]}
                if candidate.created:
                    values["createTimestamp"] = [candidate.created]
                f.write(record(tree.person(candidate.username), values))
        _tool("slapadd", layout, config.ldap.base_dn, people)
        changes = Path(scratch) / "groups.ldif"
        with changes.open("w", encoding="utf-8") as f:
            for name, dn in group_dns.items():
                members = [tree.person(c.username) for c in plan.new if c.account_type == name]
                if members:
                    f.write(f"dn: {dn}\nchangetype: modify\nadd: member\n"
                            + "".join(f"member: {m}\n" for m in members) + "\n")
            f.write(f"dn: {tree.uid_counter}\nchangetype: modify\nreplace: uidNumber\n"
                    f"uidNumber: {highest}\n\n")
        _tool("slapmodify", layout, config.ldap.base_dn, changes)
    return plan


def _read(layout: embedded.Layout, base_dn: str,
          type_of_group: dict[str, str]) -> tuple[Known, int]:
    """Everyone in the directory, and the id counter, read by slapcat."""
    result = subprocess.run(
        [str(embedded.SBIN / "slapcat"), "-F", str(layout.config_dir), "-b", base_dn,
         "-o", "ldif_wrap=no", "-a",
         "(|(objectClass=inetOrgPerson)(objectClass=userdirCounter))"],
        capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ConfigError(f"slapcat failed: {result.stderr.strip()[-500:]}")
    known, counter = Known(), embedded.FIRST_UID_NUMBER - 1
    for _, found in entries(result.stdout.splitlines()):
        values: dict[str, list[str]] = {}
        for name, value in found:
            values.setdefault(name.lower(), []).append(value.decode(errors="replace"))
        if "userdircounter" in (c.lower() for c in values.get("objectclass", [])):
            counter = int(values.get("uidnumber", [str(counter)])[0])
            continue
        known.add(values["dn"][0], (values.get("uid") or [""])[0], values.get("mail", []),
                  next(iter(values.get("uidnumber", [])), None), type_of_group,
                  values.get("memberof", []))
    return known, counter


def _tool(name: str, layout: embedded.Layout, base_dn: str, ldif: Path) -> None:
    # -q: no consistency checks during the load, which is what makes it fast.
    args = ["-q"] if name == "slapadd" else []
    result = subprocess.run(
        [str(embedded.SBIN / name), *args, "-F", str(layout.config_dir), "-b", base_dn,
         "-l", str(ldif)],
        capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ConfigError(f"{name} failed: {result.stderr.strip()[-1000:]}")
