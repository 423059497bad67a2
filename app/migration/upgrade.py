"""`userdir upgrade`: an embedded directory backed up, reloaded under today's ldif/, verified."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from app import embedded
from app.migration import backup
from app.migration.changes import DB_DIRECTORY, Plan, PlanError, plan
from app.migration.counts import CheckError, comparable, in_ldif, live, records, suffixes

HELP = """\
Bring the embedded directory forward to this version's ldif/: settings that
slapd applies only to a database loaded with them (olcIndexHash64), new schema,
indexes, ACLs, and the entries ldif/ makes that the directory lacks (the
importer identity, new branches, account-type groups). slapd must be stopped
(stop `userdir serve`). It backs up (as `userdir backup`), loads cn=config from
ldif/ with the directory's own secrets and the data from the backup, starts
slapd on a free port to check the counts (entries, people, groups, members of
each account type) and that the service account binds, and stops it. On any
failure the directory is put back as it was. Entries that exist keep their
values (those of ldif/ gain the object classes it added); changes made to
cn=config by hand are replaced by ldif/'s (--dry-run lists every difference,
the backup keeps them). The backup is kept.
A directory already up to date is left alone, without a backup. With
[ldap] url set it prints the steps for that server instead."""


class UpgradeError(RuntimeError):
    """Not done, or undone: the directory is as it was (a backup taken is kept)."""


@dataclass
class Outcome:
    plan: Plan
    backup: Path | None = None
    counts: dict[str, int] = field(default_factory=dict)
    in_force: list[str] = field(default_factory=list)


def upgrade(data_dir: Path, base_dn: str, account_types: Sequence[str],
            backup_dir: Path | None = None, *, log_purge: str | None = None,
            ldif_dir: Path | None = None, dry_run: bool = False) -> Outcome:
    """Back up, reload cn=config from ldif/ and the data from the backup, add the
    missing entries, verify; on any failure put the old directory back. A
    directory already up to date is left alone, and no backup is taken."""
    layout = embedded.Layout(data_dir)
    if not layout.initialised_marker.exists():
        raise UpgradeError(f"{data_dir}: no initialised directory")
    if data_dir.stat().st_uid != os.getuid():
        raise UpgradeError(f"run it as the owner of {data_dir} (uid {data_dir.stat().st_uid}), "
                           "who runs slapd and manages its cn=config")
    # slapcat reads the database of a running slapd as well.
    change = plan(data_dir, base_dn, account_types, log_purge, ldif_dir)
    if change.up_to_date or dry_run:
        return Outcome(change)
    if backup._running(layout):
        raise UpgradeError(f"slapd is running on {data_dir}: stop it (and `userdir serve`) "
                           "first; a change that needs a reload is never applied live")
    target = backup_dir or data_dir / "backups" / time.strftime("upgrade-%Y%m%dT%H%M%S")
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # they hold password hashes
    manifest = backup.backup(data_dir, target)
    data = next(name for name, f in manifest["files"].items()
                if name.startswith("db") and comparable(f["suffix"]) == comparable(base_dn))
    expected = in_ldif(base_dn, account_types, target / data, next(
        (ldif for suffix, ldif in change.entries.items()
         if comparable(suffix) == comparable(base_dn)), ""))
    aside = data_dir / time.strftime("replaced-%Y%m%dT%H%M%S")
    moved = _move_aside(data_dir, [layout.config_dir, *map(Path, DB_DIRECTORY.findall(
        (target / "config.ldif").read_text()))], aside)
    try:
        _load(layout, target, manifest, change)
        counts, in_force = live(layout, base_dn, account_types, _identities(data_dir, base_dn,
                                                                            change))
        if counts != expected:
            raise UpgradeError(f"counts after the reload {counts}, expected {expected}")
    except BaseException as e:
        for directory in [layout.config_dir, *map(Path, DB_DIRECTORY.findall(change.config))]:
            shutil.rmtree(directory, ignore_errors=True)
        for original, kept in moved:
            kept.rename(original)
        aside.rmdir()
        raise UpgradeError(f"{e}; the directory is as it was, the backup kept in {target}") from e
    for name, value in change.secrets.items():
        embedded.write_secret(data_dir / name, value)
    shutil.rmtree(aside)  # the backup is the copy kept
    return Outcome(change, target, counts, in_force)


def _identities(data_dir: Path, base_dn: str, change: Plan) -> dict[str, str]:
    """The root DN and the service identities besides the API's (importer,
    replicator...) with the passwords they will have: each must still bind."""
    found = {f.name: f.read_text() for f in data_dir.glob("*.password")}
    dns = {"root.password": embedded.root_dn(base_dn), "service.password": ""}
    return {dns.get(name) or f"cn={name.removesuffix('.password')},ou=services,{base_dn}": secret
            for name, secret in {**found, **change.secrets}.items() if name != "service.password"}


def _move_aside(data_dir: Path, directories: Sequence[Path],
                aside: Path) -> list[tuple[Path, Path]]:
    """Move slapd.d and the databases' directories into `aside` (same file system)."""
    root = data_dir.resolve()
    resolved = sorted({d.resolve() for d in directories})
    outside = [d for d in resolved if not d.is_relative_to(root)]
    if outside:
        raise UpgradeError(f"a database lives outside {data_dir} ({outside[0]}): "
                           "not one userdir made; reload it by hand (slapcat, slapadd)")
    tops = [d for d in resolved if not any(d != o and d.is_relative_to(o) for o in resolved)]
    aside.mkdir(mode=0o700)
    moved = []
    for directory in tops:
        kept = aside / "_".join(directory.relative_to(root).parts)
        directory.rename(kept)
        moved.append((directory, kept))
    return moved


def _load(layout: embedded.Layout, source: Path, manifest: dict[str, object],
          change: Plan) -> None:
    layout.config_dir.mkdir(mode=0o700)
    for directory in DB_DIRECTORY.findall(change.config):
        Path(directory).mkdir(parents=True, exist_ok=True, mode=0o700)
    scratch = layout.data_dir / ".upgrade-config.ldif"
    embedded.write_secret(scratch, change.config)
    try:
        backup._slap("slapadd", "-F", str(layout.config_dir), "-n", "0", "-l", str(scratch))
    finally:
        scratch.unlink(missing_ok=True)
    numbers = suffixes(layout.config_dir)
    files = manifest["files"]
    assert isinstance(files, dict)
    for name, facts in files.items():
        if name.startswith("db"):
            number = numbers.get(comparable(facts["suffix"]))
            if number is None:
                raise UpgradeError(f"ldif/ has no database for {facts['suffix']} any more")
            _slapadd(layout.config_dir, number, (source / name).open(encoding="utf-8"),
                     change.classes.get(comparable(facts["suffix"]), {}))
    for suffix, ldif in change.entries.items():
        if ldif:
            _slapadd(layout.config_dir, numbers[comparable(suffix)], io.StringIO(ldif), {})


def _slapadd(config_dir: Path, number: str, ldif: TextIO, classes: dict[str, list[str]]) -> None:
    """slapadd -q from `ldif`, giving the entries named in `classes` those object
    classes on the way (slapmodify would give them a new entryUUID)."""
    with ldif, tempfile.TemporaryFile("w+") as errors, subprocess.Popen(
            [str(embedded.SBIN / "slapadd"), "-q", "-F", str(config_dir), "-n", number],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors, text=True) as process:
        assert process.stdin is not None
        with contextlib.suppress(BrokenPipeError), process.stdin:  # slapadd stopped: see below
            for line in ldif:
                process.stdin.write(line)
                if classes and line.startswith("dn: ") and comparable(line[4:]) in classes:
                    process.stdin.writelines(f"objectClass: {c}\n"
                                             for c in classes[comparable(line[4:])])
        process.wait()
        errors.seek(0)
        if process.returncode != 0:
            raise UpgradeError(f"slapadd -n {number} failed: {errors.read()[-800:]}")


def external_steps(base_dn: str) -> str:
    """What to run on a server of its own (ldap.url): userdir reloads only its own.
    TRUE, not on: slapmodify (2.5.13) refuses `on` for olcIndexHash64."""
    return f"""\
[ldap] url is set: userdir reloads only its embedded directory. On the server,
as root (Debian's paths; with a slapd.conf, edit it instead of step 3):
  1. systemctl stop slapd
     mkdir -m 700 /root/userdir-upgrade && cd /root/userdir-upgrade
     slapcat -n 0 -o ldif_wrap=no -l config.ldif
  2. olcIndexHash64 applies to every database of the server: each one is
     reloaded. For each N among `grep -o '^dn: olcDatabase={{[0-9]*}}mdb' config.ldif`:
     slapcat -n N -o ldif_wrap=no -l dbN.ldif
  3. printf '%s\\n' 'dn: cn=config' 'changetype: modify' \\
       'replace: olcIndexHash64' 'olcIndexHash64: TRUE' | slapmodify -n 0
     chown -R openldap:openldap /etc/ldap/slapd.d
  4. For each N, with D its olcDbDirectory (in config.ldif), e.g. the one of {base_dn}:
     mv D D.before-upgrade && install -d -o openldap -g openldap -m 700 D
     slapadd -q -n N -l dbN.ldif && chown -R openldap:openldap D
  5. systemctl start slapd; then `userdir doctor` (counts, memberships);
     keep D.before-upgrade and /root/userdir-upgrade until you are satisfied.
Changes of ldif/ that need no reload (new schema attributes, indexes, the
importer identity and its ACLs) are not in these steps: compare the server's
cn=config with ldif/config.ldif and add them with ldapmodify."""


def describe(outcome: Outcome, data_dir: Path, *, dry_run: bool = False) -> str:
    change = outcome.plan
    if change.up_to_date:
        return f"{data_dir}: up to date with ldif/; nothing changed, no backup taken"
    new = [dn for ldif in change.entries.values() for dn, _ in records(ldif.splitlines())]
    many, wide = (None, None) if dry_run else (20, 110)  # a dry run lists all, whole
    lines = [f"  + {line[:wide]}" for line in change.added[:many]] + \
        [f"  - {line[:wide]}" for line in change.removed[:many]]
    classed = [dn for dns in change.classes.values() for dn in dns]
    what = (f"cn=config from ldif/ ({len(change.added)} values added, {len(change.removed)} "
            f"removed), the data from the backup, {len(new)} new entries"
            f"{': ' + '; '.join(new) if new else ''}, {len(classed)} given new object classes"
            f"{': ' + '; '.join(classed) if classed else ''}")
    if dry_run:
        return "\n".join([f"{data_dir}: `userdir upgrade` would reload {what}", *lines])
    return "\n".join([
        f"upgraded {data_dir}: reloaded {what}", *lines,
        "verified as the service account: " + ", ".join(f"{n} {k}" for k, n in
                                                          outcome.counts.items()),
        "in force: " + ("; ".join(outcome.in_force) or "-"),
        f"backup kept in {outcome.backup} (`userdir restore --force {outcome.backup}` "
        "goes back to it)"])


def run(data_dir: Path, base_dn: str, account_types: Sequence[str], *, external: bool,
        backup_dir: Path | None = None, log_purge: str | None = None, dry_run: bool = False,
        out: TextIO | None = None) -> int:
    """`userdir upgrade`; 1 if not done (an error, or steps printed for an external server)."""
    out = out or sys.stdout
    if external:
        print(external_steps(base_dn), file=out)
        return 1
    try:
        outcome = upgrade(data_dir, base_dn, account_types, backup_dir, log_purge=log_purge,
                          dry_run=dry_run)
    except (UpgradeError, PlanError, CheckError, backup.BackupError,
            embedded.SlapdError) as e:
        print(f"userdir upgrade: {e}", file=sys.stderr)
        return 1
    print(describe(outcome, data_dir, dry_run=dry_run), file=out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python3 -m app.migration.upgrade` (the OpenLDAP image, slapd stopped)."""
    parser = argparse.ArgumentParser(prog="python3 -m app.migration.upgrade")
    parser.add_argument("--data-dir", type=Path, default=Path(
        os.environ.get("USERDIR_EMBEDDED__DATA_DIR", ".userdir")))
    parser.add_argument("--base-dn", default=os.environ.get("USERDIR_LDAP__BASE_DN",
                                                            "dc=example,dc=org"))
    parser.add_argument("--account-types", default=os.environ.get(
        "USERDIR_USERS__ACCOUNT_TYPES", "user,staff,admin"))
    parser.add_argument("--retention-days", type=int, default=int(os.environ.get(
        "USERDIR_AUDIT__RETENTION_DAYS", str(embedded.RETENTION_DAYS))))
    parser.add_argument("--backup-dir", type=Path)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    types = [t.strip() for t in args.account_types.split(",") if t.strip()]
    return run(args.data_dir, args.base_dn, types, external=False, backup_dir=args.backup_dir,
               log_purge=embedded.purge_spec(args.retention_days), dry_run=args.dry_run)


if __name__ == "__main__":
    sys.exit(main())
