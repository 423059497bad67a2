"""What a directory holds: its DNs and counts, from slapcat or a backup, or live as the service."""

from __future__ import annotations

import base64
import re
import socket
import subprocess
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from app import embedded
from app.migration import backup

SETTINGS = ("olcIndexHash64", "olcDbMultival", "olcSortVals")  # the large-group ones (#22)


class CheckError(RuntimeError):
    """An OpenLDAP tool failed: a bind refused, slapd not answering."""


def comparable(dn: str) -> str:
    return re.sub(r"\s*,\s*", ",", dn.strip().lower())


def records(ldif: Iterable[str]) -> Iterator[tuple[str, list[str]]]:
    """(dn, other lines) of each record of an unwrapped LDIF (slapcat -o ldif_wrap=no)."""
    lines: list[str] = []
    for line in [*ldif, ""]:
        line = line.rstrip("\n")
        if line:
            lines.append(line)
        elif lines:
            name, _, dn = lines[0].partition(": ")
            # RFC 2849: a DN that is not plain ASCII comes base64-encoded ("dn:: ").
            yield (base64.b64decode(dn).decode() if name == "dn:" else dn), lines[1:]
            lines = []


def count(base_dn: str, account_types: Sequence[str],
          entries: Iterable[tuple[str, list[str]]]) -> dict[str, int]:
    """Entries, people, groups, and the members of each account-type group."""
    people, groups = f",ou=people,{comparable(base_dn)}", f",ou=groups,{comparable(base_dn)}"
    types = {comparable(embedded.account_type_group_dn(base_dn, t)): t for t in account_types}
    counts: Counter[str] = Counter(entries=0, people=0, groups=0)
    for dn, rest in entries:
        key = comparable(dn)
        counts["entries"] += 1
        counts["people"] += key.endswith(people)
        counts["groups"] += key.endswith(groups)
        if key in types:
            counts[f"members of {types[key]}"] = sum(1 for line in rest
                                                     if line.lower().startswith("member:"))
    return dict(counts)


def in_ldif(base_dn: str, account_types: Sequence[str], ldif: Path,
            more: str = "") -> dict[str, int]:
    """The counts of a database's slapcat (a backup's dbN.ldif), plus `more` LDIF."""
    with ldif.open(encoding="utf-8", errors="replace") as f:
        return count(base_dn, account_types, [*records(f), *records(more.splitlines())])


def live(layout: embedded.Layout, base_dn: str, account_types: Sequence[str],
         identities: Mapping[str, str]) -> tuple[dict[str, int], list[str]]:
    """Start slapd on a free loopback port and read the counts as the service
    account (so it must still bind); bind as each of `identities` (DN: password);
    read the large-group settings cn=config holds (over ldapi, as the data
    dir's owner). The settings come back as LDIF lines."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    with embedded.Slapd(layout.data_dir, port) as slapd:
        service = ["-x", "-H", slapd.url, "-D", embedded.service_dn(base_dn),
                   "-y", str(layout.service_password_file), "-LLL", "-o", "ldif-wrap=no"]
        found = list(records(_tool("ldapsearch", *service, "-b", base_dn, "1.1").splitlines()))
        groups = {comparable(embedded.account_type_group_dn(base_dn, t)) for t in account_types}
        found = [(dn, rest) if comparable(dn) not in groups else
                 (dn, _tool("ldapsearch", *service, "-b", dn, "-s", "base", "member").splitlines())
                 for dn, rest in found]
        secret = layout.data_dir / ".upgrade-check.password"
        try:
            for dn, password in identities.items():
                embedded.write_secret(secret, password)  # never on a command line
                try:
                    _tool("ldapwhoami", "-x", "-H", slapd.url, "-D", dn, "-y", str(secret))
                except CheckError as e:
                    raise CheckError(f"{dn} cannot bind: {e}") from e
        finally:
            secret.unlink(missing_ok=True)
        settings = _tool("ldapsearch", "-Q", "-Y", "EXTERNAL", "-H", layout.ldapi_url, "-LLL",
                         "-o", "ldif-wrap=no", "-b", "cn=config", "(objectClass=*)", *SETTINGS)
    shown = [line for line in settings.splitlines() if line.partition(":")[0] in SETTINGS]
    return count(base_dn, account_types, found), shown


def suffixes(config_dir: Path) -> dict[str, str]:
    """Database numbers by suffix (comparable), as slapd.d declares them."""
    return {comparable(d["suffix"]): d["number"] for d in backup.databases(config_dir)}


def classes(config_dir: Path, number: str, wanted: set[str]) -> dict[str, set[str]]:
    """The object classes (lower case) of those `wanted` DNs that the database
    holds, read as slapcat streams it (100k entries are 80 MB). A DN slapcat
    writes in base64 is no DN ldif/ makes: such entries are passed over."""
    found: dict[str, set[str]] = {}
    current: set[str] | None = None
    with subprocess.Popen([str(embedded.SBIN / "slapcat"), "-F", str(config_dir), "-n", number,
                           "-o", "ldif_wrap=no"], stdout=subprocess.PIPE, text=True,
                          errors="replace") as process:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("dn: "):
                key = comparable(line[4:])
                current = found.setdefault(key, set()) if key in wanted else None
            elif current is not None and line.lower().startswith("objectclass: "):
                current.add(line[13:].strip().lower())
    if process.returncode != 0:
        raise CheckError(f"slapcat -n {number} failed ({process.returncode})")
    return found


def _tool(name: str, *args: str) -> str:
    result = subprocess.run([name, *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise CheckError(f"{name} failed ({result.returncode}): {result.stderr.strip()[-400:]}")
    return result.stdout
