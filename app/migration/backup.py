"""`userdir backup DIR` / `restore DIR`: every database via slapcat, a manifest, and the secrets.

Standard library and app.embedded only, like app/embedded.py: the OpenLDAP
image can run it as `python3 -m app.migration.backup`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app import embedded

MANIFEST = "manifest.json"
SECRETS = ("root.password", "service.password", "importer.password", "replicator.password",
           "jwt-signing-key.pem")
PEERCRED = re.compile(r"gidNumber=\d+\+uidNumber=\d+,cn=peercred,cn=external,cn=auth")


class BackupError(RuntimeError):
    """The backup or restore cannot be done; nothing was changed by it."""


def _slap(tool: str, *args: str) -> str:
    result = subprocess.run([str(embedded.SBIN / tool), *args], capture_output=True,
                            text=True, check=False)
    if result.returncode != 0:
        raise BackupError(f"{tool} {' '.join(args)} failed: {result.stderr.strip()[-800:]}")
    return result.stdout


def _ldif_value(text: str, attribute: str) -> str | None:
    """One attribute's value in an LDIF record, folded lines joined (slapd.d
    wraps at 76 characters: a long suffix or path spans lines)."""
    unfolded = text.replace("\r\n", "\n").replace("\n ", "")
    found = re.search(rf"^{attribute}(::?) (.+)$", unfolded, re.MULTILINE)
    if found is None:
        return None
    value = found.group(2).strip()
    return base64.b64decode(value).decode() if found.group(1) == "::" else value


def databases(config_dir: Path) -> list[dict[str, str]]:
    """The databases slapd.d declares that hold data (mdb: the directory, an
    accesslog...), with their number, suffix and directory."""
    found = []
    for path in sorted((config_dir / "cn=config").glob("olcDatabase={*}mdb.ldif")):
        text = path.read_text()
        number = re.search(r"olcDatabase=\{(\d+)\}", path.name)
        suffix = _ldif_value(text, "olcSuffix")
        if number and suffix:
            found.append({"number": number.group(1), "suffix": suffix,
                          "directory": _ldif_value(text, "olcDbDirectory") or ""})
    return found


def _never_written(directory: str) -> bool:
    """A database slapd has not opened yet (an access log before the first
    start): slapcat cannot open it; it holds nothing."""
    return bool(directory) and not (Path(directory) / "data.mdb").exists()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _counts(path: Path, suffix: str) -> dict[str, int]:
    counts = {"entries": 0, "people": 0, "groups": 0}
    people, groups = f",ou=people,{suffix}".lower(), f",ou=groups,{suffix}".lower()
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("dn: "):
                dn = line[4:].strip().lower()
                counts["entries"] += 1
                counts["people"] += dn.endswith(people)
                counts["groups"] += dn.endswith(groups)
    return counts


def backup(data_dir: Path, target: Path) -> dict[str, Any]:
    """A consistent copy of a running (or stopped) embedded directory: slapcat
    of cn=config and of each database (back-mdb gives slapcat one read
    transaction: a snapshot, even under writes), its secrets, and a manifest
    with counts, checksums and versions. Files are mode 0600: they hold hashes."""
    layout = embedded.Layout(data_dir)
    if not layout.initialised_marker.exists():
        raise BackupError(f"{data_dir}: no initialised directory to back up")
    if target.exists() and any(target.iterdir()):
        raise BackupError(f"{target} is not empty: back up into a new directory")
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(target, 0o700)
    files: dict[str, Any] = {}
    plan = [("config.ldif", "0", "cn=config", "")] + \
        [(f"db{d['number']}.ldif", d["number"], d["suffix"], d["directory"])
         for d in databases(layout.config_dir)]
    for name, number, suffix, directory in plan:
        path = target / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        if not _never_written(directory):
            _slap("slapcat", "-F", str(layout.config_dir), "-n", number, "-o", "ldif_wrap=no",
                  "-l", str(path))
        files[name] = {"database": int(number), "suffix": suffix, "sha256": _sha256(path),
                       "bytes": path.stat().st_size, **_counts(path, suffix)}
    (target / "secrets").mkdir(mode=0o700)
    for secret in SECRETS:
        if (data_dir / secret).is_file():
            embedded.write_secret(target / "secrets" / secret, (data_dir / secret).read_text())
            files[f"secrets/{secret}"] = {"sha256": _sha256(target / "secrets" / secret)}
    manifest = {"format": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "data_dir": str(data_dir.resolve()), "slapd": _slapd_version(),
                "userdir": _userdir_version(), "files": files}
    embedded.write_secret(target / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return manifest


def _slapd_version() -> str:
    result = subprocess.run([str(embedded.SBIN / "slapd"), "-VV"], capture_output=True,
                            text=True, check=False)
    return (result.stderr or result.stdout).strip().splitlines()[0] if \
        (result.stderr or result.stdout).strip() else "unknown"


def _userdir_version() -> str:
    try:
        from importlib.metadata import version
        return version("userdir")
    except Exception:
        return "unknown"


def verify(source: Path) -> dict[str, Any]:
    """The manifest, once every file it names has its recorded checksum."""
    try:
        manifest: dict[str, Any] = json.loads((source / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise BackupError(f"{source}: no readable {MANIFEST}: {e}") from e
    for name, facts in manifest["files"].items():
        path = source / name
        if not path.is_file() or _sha256(path) != facts["sha256"]:
            raise BackupError(f"{path}: missing or changed since the backup (checksum)")
    return manifest


def restore(source: Path, data_dir: Path, *, force: bool = False) -> dict[str, Any]:
    """Load a backup into a stopped, empty data directory (with `force`, one
    that holds a directory: that is moved aside into replaced-<time>/)."""
    manifest = verify(source)
    layout = embedded.Layout(data_dir)
    if _running(layout):
        raise BackupError(f"slapd is running on {data_dir}: stop it (and the API) first")
    # Every database directory inside the data directory (the access log's
    # too): slapadd into one that still holds entries would fail halfway.
    held = [Path(d["directory"]) for d in databases(layout.config_dir)
            if d["directory"]] if layout.config_dir.exists() else []
    inside = [p for p in held if p.resolve().parent == data_dir.resolve()]
    present = [p for p in dict.fromkeys((layout.config_dir, layout.db_dir, layout.log_db_dir,
                                         *inside, layout.initialised_marker,
                                         *(data_dir / s for s in SECRETS))) if p.exists()]
    if present and not force:
        raise BackupError(f"{data_dir} already holds a directory; --force replaces it "
                          "(moving it aside into replaced-<time>/)")
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if present:
        aside = data_dir / time.strftime("replaced-%Y%m%dT%H%M%S")
        aside.mkdir(mode=0o700)
        for path in present:
            shutil.move(str(path), aside / path.name)
    old, new = manifest["data_dir"], str(data_dir.resolve())
    config = (source / "config.ldif").read_text().replace(old + "/", new + "/")
    config = PEERCRED.sub(f"gidNumber={os.getgid()}+uidNumber={os.getuid()},"
                          "cn=peercred,cn=external,cn=auth", config)
    for directory in re.findall(r"^olcDbDirectory: (.+)$", config, re.MULTILINE):
        Path(directory.strip()).mkdir(parents=True, exist_ok=True, mode=0o700)
    layout.config_dir.mkdir(mode=0o700)
    layout.run_dir.mkdir(mode=0o700, exist_ok=True)
    scratch = data_dir / ".restore-config.ldif"
    embedded.write_secret(scratch, config)
    try:
        _slap("slapadd", "-F", str(layout.config_dir), "-n", "0", "-l", str(scratch))
    finally:
        scratch.unlink(missing_ok=True)
    for name, facts in manifest["files"].items():
        if name.startswith("db") and facts["entries"]:
            _slap("slapadd", "-q", "-F", str(layout.config_dir), "-n", str(facts["database"]),
                  "-l", str(source / name))
        elif name.startswith("secrets/"):
            embedded.write_secret(data_dir / name.removeprefix("secrets/"),
                                  (source / name).read_text())
    layout.initialised_marker.write_text("")
    return manifest


def _running(layout: embedded.Layout) -> bool:
    try:
        os.kill(int((layout.run_dir / "slapd.pid").read_text().strip()), 0)
    except (OSError, ValueError):
        return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """`python3 -m app.migration.backup backup|restore DIR [--force]` (the OpenLDAP image)."""
    parser = argparse.ArgumentParser(prog="python3 -m app.migration.backup")
    parser.add_argument("command", choices=["backup", "restore"])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--data-dir", type=Path, default=Path(
        os.environ.get("USERDIR_EMBEDDED__DATA_DIR", ".userdir")))
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.command == "backup":
            print(describe(backup(args.data_dir, args.dir), "backed up into", args.dir))
        else:
            print(describe(restore(args.dir, args.data_dir, force=args.force), "restored from",
                           args.dir))
    except BackupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def describe(manifest: dict[str, Any], done: str, where: Path) -> str:
    files = manifest["files"]
    data = [f for n, f in files.items() if n.startswith("db")]
    people = sum(f.get("people", 0) for f in data)
    entries = sum(f.get("entries", 0) for f in data)
    return (f"{done} {where}: {entries} entries ({people} people) in {len(data)} "
            f"database(s), cn=config, {sum(n.startswith('secrets/') for n in files)} secrets")


if __name__ == "__main__":
    sys.exit(main())
