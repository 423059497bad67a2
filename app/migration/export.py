"""`userdir export`: people as LDIF (with hashes, from the data dir), CSV or JSON lines."""

from __future__ import annotations

import base64
import csv
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import TextIO

import msgspec

from app import embedded
from app.config import Config, ConfigError
from app.directory import Directory, Endpoint, queries
from app.directory.imports import pages
from app.directory.schema import EXACT_ATTRIBUTES, USER_ATTRIBUTES, GroupTypes, to_user
from app.domain import AccountTypes, User, UserQuery
from app.migration.ldif import record
from app.migration.progress import Meter

FORMATS = ("ldif", "csv", "jsonl")
# What an export shows of a user; never a password, hash or email code.
COLUMNS = ["id", "username", "email", "first_name", "last_name", "display_name", "phone",
           "address", "location", "language", "bio", "gender", "birthday", "country",
           "timezone", "email_verified", "account_type", "active", "created", "last_login",
           "uuid"]


def user_query(filters: list[str], types: AccountTypes) -> UserQuery:
    """`--filter field=value`, all of which must hold: a profile field, id,
    username, account_type, or active=true|false."""
    exact: list[tuple[str, str]] = []
    active: bool | None = None
    account_type: str | None = None
    for item in filters:
        name, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--filter {item!r}: expected field=value")
        if name == "active":
            active = value.lower() in ("true", "1", "yes", "t")
        elif name == "account_type":
            if value not in types:
                raise ConfigError(f"--filter {item!r}: unknown account type")
            account_type = value
        elif name in EXACT_ATTRIBUTES:
            exact.append((name, value))
        else:
            raise ConfigError(f"--filter {item!r}: cannot filter on {name!r}")
    return UserQuery(exact=tuple(exact), active=active, account_type=account_type)


@contextmanager
def _directory(config: Config) -> Iterator[Directory]:
    endpoint = Endpoint(url=config.ldap_url, bind_dn=config.bind_dn,
                        password=config.bind_password,
                        connect_timeout=config.ldap.connect_timeout,
                        operation_timeout=max(config.ldap.operation_timeout, 30.0))
    directory = Directory(endpoint, config.ldap.base_dn, pool_size=1)
    try:
        yield directory
    finally:
        directory.close()


def run(config: Config, kind: str, filters: list[str], out: TextIO | None = None) -> int:
    out = out or sys.stdout
    types = AccountTypes(config.users.account_types, config.users.default_account_type)
    with _directory(config) as directory:
        groups = GroupTypes(types, {t: directory.tree.group(t) for t in types.names})
        condition = queries.user_filter(user_query(filters, types), groups)
        total = sum(len(p) for p in pages(directory.ldap, directory.tree.people, condition,
                                          ["1.1"]))
        meter = Meter("export", total)
        try:
            if kind == "ldif" and config.ldap.embedded:
                _slapcat(config, condition, out)
                meter.advance(total)
                return 0
            if kind == "ldif":
                print("# exported over LDAP as the service account: no password hashes "
                      "(export on the directory's host, embedded, to include them)",
                      file=sys.stderr)
            writer = csv.DictWriter(out, COLUMNS, extrasaction="ignore") if kind == "csv" \
                else None
            if writer is not None:
                writer.writeheader()
            attributes = ["*", *USER_ATTRIBUTES] if kind == "ldif" else USER_ATTRIBUTES
            for page in pages(directory.ldap, directory.tree.people, condition, attributes):
                for entry in page:
                    if kind == "ldif":
                        raw = {k: v for k, v in entry["raw_attributes"].items()
                               if k != "userdirForeignHash"}
                        out.write(record(entry["dn"], raw))
                        continue
                    row = _fields(to_user(entry, groups))
                    if writer is not None:
                        writer.writerow(row)
                    else:
                        out.write(msgspec.json.encode(row).decode() + "\n")
                meter.advance(len(page))
        finally:
            meter.close()
    return 0


def _fields(user: User) -> dict[str, object]:
    values = {name: getattr(user, name) for name in COLUMNS}
    return {k: v.isoformat() if isinstance(v, (date, datetime)) else v
            for k, v in values.items()}


def _slapcat(config: Config, condition: str, out: TextIO) -> None:
    """The people's entries exactly as stored, hashes and pictures included:
    slapcat reads the database files (it needs the data dir's owner, as
    every secret there does) and is consistent while slapd runs."""
    layout = embedded.Layout(config.data_dir)
    # slapcat takes a filter (-a) or a subtree (-s), not both: people are
    # told from users still being created (ou=staging) by their DN here.
    result = subprocess.run(
        [str(embedded.SBIN / "slapcat"), "-F", str(layout.config_dir), "-b",
         config.ldap.base_dn, "-o", "ldif_wrap=no", "-a", condition],
        capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ConfigError(f"slapcat failed: {result.stderr.strip()[-500:]}")
    people = f",ou=people,{config.ldap.base_dn}".lower()
    for block in result.stdout.split("\n\n"):
        first_line = block.lstrip("\n").split("\n", 1)[0]
        dn = first_line[4:] if first_line.startswith("dn: ") else \
            base64.b64decode(first_line[4:]).decode(errors="replace")
        if block.strip() and dn.strip().lower().endswith(people):
            out.write(block.strip("\n") + "\n\n")
