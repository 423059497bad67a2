"""Directories of N users loaded with slapadd before slapd starts (seconds, not hours)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from app import embedded

BASE_DN = "dc=example,dc=org"
PEOPLE = f"ou=people,{BASE_DN}"
PASSWORD = "Bench-Password-1"  # noqa: S105 - the seeded users' known password
ADMIN = "benchadmin"
GROUPS = ("user", "staff", "admin")


def username(i: int) -> str:
    return f"bench{i:06d}"


def hashed_password() -> str:
    """One argon2 hash shared by every seeded user: hashing 100k passwords
    would take longer than the whole benchmark."""
    result = subprocess.run(
        [str(embedded.SBIN / "slappasswd"), "-o", "module-path=/usr/lib/ldap", "-o",
         "module-load=argon2 m=19456 t=2 p=1", "-h", "{ARGON2}", "-s", PASSWORD],
        capture_output=True, text=True, check=True)
    return result.stdout.strip()


def people_ldif(count: int, password_hash: str) -> str:
    """Users as userdir makes them, with memberOf written as slapcat would."""
    records = []
    for i in range(count):
        name = username(i)
        account_type = "staff" if i % 50 == 0 else "user"
        records.append(
            f"dn: uid={name},{PEOPLE}\n"
            "objectClass: inetOrgPerson\nobjectClass: posixAccount\nobjectClass: userdirPerson\n"
            f"uid: {name}\ncn: Bench User {i}\ngivenName: Bench\nsn: User{i}\n"
            f"mail: {name}@example.org\nuidNumber: {embedded.FIRST_UID_NUMBER + i}\n"
            f"gidNumber: 10000\nhomeDirectory: /home/{name}\nuserPassword: {password_hash}\n"
            f"memberOf: cn={account_type},ou=groups,{BASE_DN}\n")
    records.append(
        f"dn: uid={ADMIN},{PEOPLE}\n"
        "objectClass: inetOrgPerson\nobjectClass: posixAccount\nobjectClass: userdirPerson\n"
        f"uid: {ADMIN}\ncn: {ADMIN}\nsn: {ADMIN}\nuidNumber: {embedded.FIRST_UID_NUMBER + count}\n"
        f"gidNumber: 10000\nhomeDirectory: /home/{ADMIN}\nuserPassword: {password_hash}\n"
        f"memberOf: cn=admin,ou=groups,{BASE_DN}\n")
    members: dict[str, list[str]] = {g: [embedded.placeholder_dn(BASE_DN)] for g in GROUPS}
    for i in range(count):
        members["staff" if i % 50 == 0 else "user"].append(f"uid={username(i)},{PEOPLE}")
    members["admin"].append(f"uid={ADMIN},{PEOPLE}")
    for group, dns in members.items():
        records.append(f"dn: cn={group},ou=groups,{BASE_DN}\nobjectClass: groupOfNames\n"
                       f"cn: {group}\n" + "".join(f"member: {dn}\n" for dn in dns))
    return "\n".join(records)


def build(data_dir: Path, count: int, password_hash: str) -> None:
    """A fresh data dir: ldif/ as usual (no type groups yet), then the users."""
    embedded.initialise(data_dir, BASE_DN, account_types=[])
    # The uidNumber counter must continue after the seeded ids.
    counter = f"cn=uidNumber,ou=counters,{BASE_DN}"
    subprocess.run([str(embedded.SBIN / "slapmodify"), "-F", str(data_dir / "slapd.d"),
                    "-b", BASE_DN], check=True, capture_output=True, text=True,
                   input=(f"dn: {counter}\nchangetype: modify\nreplace: uidNumber\n"
                          f"uidNumber: {embedded.FIRST_UID_NUMBER + count}\n"))
    subprocess.run([str(embedded.SBIN / "slapadd"), "-q", "-F", str(data_dir / "slapd.d"),
                    "-b", BASE_DN], check=True, capture_output=True, text=True,
                   input=people_ldif(count, password_hash))
