"""`userdir init`: set up an existing OpenLDAP for userdir, over LDAP, from ldif/.

The embedded mode builds a whole new slapd with slapadd; an existing server
already has its global settings, its config database and maybe other
databases. Here only what userdir needs is added, through cn=config: the
schema files it lacks, the modules it lacks, and one new back-mdb database
for the base DN (with userdir's overlays, indexes and ACLs), and with
--log-directory the audit log's (slapo-accesslog, cn=accesslog). The base tree is
then added through that database's root DN, so ppolicy hashes the service
account's password like any other; the root DN's password is removed again
afterwards (it would sit in cn=config unhashed), leaving the service account
as the one writer.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ldap3 import (
    BASE,
    LEVEL,
    MODIFY_ADD,
    MODIFY_DELETE,
    MODIFY_REPLACE,
    NONE,
    SAFE_SYNC,
    Connection,
    Server,
)

from app import embedded, replication
from app.config import Config

MODULE_ARGUMENTS = re.compile(r"^(\{\d+\})?(\S+).*$")
# ldif/config.ldif's databases: the directory's, then the access log's.
MAIN_DATABASE, LOG_DATABASE = "olcDatabase={1}mdb,cn=config", "olcDatabase={2}mdb,cn=config"
LOG_SUFFIX = "cn=accesslog"


class ProvisioningError(Exception):
    pass


@dataclass
class Record:
    dn: str
    attributes: dict[str, list[str]] = field(default_factory=dict)

    def first(self, name: str) -> str:
        return self.attributes[name][0]


def parse_ldif(text: str, base: Path) -> Iterator[Record]:
    """Records of an LDIF file (RFC 2849 subset: continuations, comments,
    base64 values) with slapadd's `include: file://...` lines expanded."""
    unfolded = re.sub(r"\n ", "", text.replace("\r\n", "\n"))
    for block in re.split(r"\n\s*\n", unfolded):
        lines = [line for line in block.splitlines() if line and not line.startswith("#")]
        if not lines:
            continue
        if lines[0].startswith("include:"):
            for line in lines:
                path = Path(line.split(":", 1)[1].strip().removeprefix("file://"))
                yield from parse_ldif(path.read_text(), path.parent)
            continue
        record: Record | None = None
        for line in lines:
            name, value = _attribute(line)
            if record is None:
                if name.lower() != "dn":
                    raise ProvisioningError(f"LDIF record without dn: {line!r}")
                record = Record(value)
            elif name.lower() == "include":
                raise ProvisioningError("include: inside a record")
            else:
                record.attributes.setdefault(name, []).append(value)
        if record is not None:
            yield record


def _attribute(line: str) -> tuple[str, str]:
    name, _, value = line.partition(":")
    if value.startswith(":"):
        return name, base64.b64decode(value[1:].strip()).decode()
    return name, value.strip()


@dataclass
class Result:
    added_schemas: list[str]
    added_modules: list[str]
    database_dn: str
    service_password: str
    importer_password: str = ""
    audit_database: str | None = None  # the access log's, when --log-directory was given
    replicator_password: str = ""  # what consumers bind with (ldif/consumer.ldif)


def provision(config: Config, config_dn: str, config_password: str,
              db_directory: str, log_directory: str | None = None,
              consumer_of: str | None = None, replicator_password: str | None = None) -> Result:
    """With `log_directory` (on the server, owned by slapd), the audit log
    too: slapo-accesslog on the new database and its own database there.
    With `consumer_of` (the provider's URL) a read replica: the database
    gets ldif/consumer.ldif's changes and no tree of its own."""
    base_dn = config.ldap.base_dn
    server = Server(config.ldap.url, get_info=NONE, connect_timeout=config.ldap.connect_timeout)
    admin = Connection(server, config_dn, config_password, client_strategy=SAFE_SYNC,
                       raise_exceptions=False)
    _, result, _, _ = admin.bind()
    if result["result"] != 0:
        raise ProvisioningError(f"cannot bind as {config_dn}: {result['description']}")
    try:
        if _database_for(admin, base_dn):
            raise ProvisioningError(
                f"the server already has a database for {base_dn}; `userdir init` only "
                "creates a new one (configure an existing one by hand, see README)")
        if log_directory and _database_for(admin, LOG_SUFFIX):
            raise ProvisioningError(
                f"the server already has a database for {LOG_SUFFIX}; run `userdir init` "
                "without --log-directory (no audit log) or remove it")
        ldif_dir = embedded.find_ldif_dir()
        root_password = secrets.token_urlsafe(24)
        service_password = config.ldap.bind_password or secrets.token_urlsafe(24)
        importer_password = secrets.token_urlsafe(24)  # `userdir import`'s identity
        replicator_password = replicator_password or secrets.token_urlsafe(24)
        values = {
            "BASE_DN": base_dn, "ROOT_DN": embedded.root_dn(base_dn),
            "ROOT_PW_HASH": root_password,  # only until the tree is added
            "SERVICE_DN": config.bind_dn, "SERVICE_PW_HASH": service_password,
            "IMPORTER_DN": embedded.importer_dn(base_dn), "IMPORTER_PW_HASH": importer_password,
            "REPLICATOR_DN": embedded.replicator_dn(base_dn),
            "REPLICATOR_PW_HASH": replicator_password,
            "DECOY_PW_HASH": secrets.token_urlsafe(24),
            "PLACEHOLDER_DN": embedded.placeholder_dn(base_dn),
            "DB_DIR": db_directory, "LOG_DB_DIR": log_directory or "unused",
            "LOG_PURGE": embedded.purge_spec(config.audit.retention_days),
            # Only in the global and config-database records, which are not
            # applied: the server keeps its own.
            "PEERCRED_DN": "unused", "RUN_DIR": "unused",
            "LDIF_DIR": str(ldif_dir.resolve()),
            "LAST_UID_NUMBER": str(embedded.FIRST_UID_NUMBER - 1),
        }
        text = embedded.render(ldif_dir / "config.ldif", values)
        if consumer_of:
            text = _as_consumer(text, ldif_dir, values, consumer_of, replicator_password)
        records = list(parse_ldif(text, ldif_dir))
        schemas = _add_schemas(admin, [r for r in records if ",cn=schema,cn=config" in r.dn])
        modules = _add_modules(admin, next(r for r in records if r.dn.startswith("cn=module")))
        _set_password_hash(admin, next(r for r in records if "frontend" in r.dn))
        databases = {r.first("olcSuffix"): r for r in records if "olcSuffix" in r.attributes}
        # A consumer starts copying once its overlays (memberof) are there;
        # slapd takes olcUpdateRef only after olcSyncrepl.
        following = {name: databases[base_dn].attributes.pop(name, [])
                     for name in ("olcSyncrepl", "olcUpdateRef")}
        database = _add_database(admin, databases[base_dn])
        # The log database first: an online olcAccessLogDB must name an existing one.
        audit = _add_database(admin, databases[LOG_SUFFIX]) if log_directory else None
        for record in (r for r in records if r.dn.startswith("olcOverlay")):
            overlay, _, on = record.dn.partition(",")
            if on == MAIN_DATABASE and (audit or "accesslog" not in overlay):
                record.dn = f"{overlay},{database}"
            elif on == LOG_DATABASE and audit:
                record.dn = f"{overlay},{audit}"
            else:
                continue
            _add(admin, record)
        if consumer_of:
            _add_chain(admin, records)
            _modify(admin, database, {name: [(MODIFY_ADD, values)]
                                      for name, values in following.items()})
        else:
            _add_tree(config, values, root_password)
        _, result, _, _ = admin.modify(database, {"olcRootPW": [(MODIFY_DELETE, [])]})
        if result["result"] != 0:
            raise ProvisioningError(f"removing the temporary root password: {result['message']}")
    finally:
        admin.unbind()
    if consumer_of:  # the accounts are the provider's, and so are their passwords
        return Result(schemas, modules, database, "", "", audit, replicator_password)
    # Beside service.password, where `userdir import` looks for it (mode 0600).
    embedded.write_secret(config.data_dir / "importer.password", importer_password)
    embedded.write_secret(config.data_dir / "replicator.password", replicator_password)
    return Result(schemas, modules, database, service_password, importer_password, audit,
                  replicator_password)


def _database_for(admin: Connection, base_dn: str) -> str | None:
    _, _, entries, _ = admin.search("cn=config", f"(olcSuffix={base_dn})", LEVEL,
                                    attributes=["1.1"])
    found = [e["dn"] for e in entries or [] if e.get("type") == "searchResEntry"]
    return found[0] if found else None


def _add(admin: Connection, record: Record) -> None:
    object_classes = record.attributes.get("objectClass", [])
    attributes = {k: v for k, v in record.attributes.items() if k != "objectClass"}
    _, result, _, _ = admin.add(record.dn, object_classes, attributes)
    if result["result"] != 0:
        raise ProvisioningError(f"adding {record.dn}: {result['description']} "
                                f"{result['message']}".strip())


def _add_schemas(admin: Connection, schemas: list[Record]) -> list[str]:
    _, _, entries, _ = admin.search("cn=schema,cn=config", "(objectClass=olcSchemaConfig)",
                                    LEVEL, attributes=["cn"])
    present = {re.sub(r"^\{\d+\}", "", e["attributes"]["cn"][0]) for e in entries or []
               if e.get("type") == "searchResEntry"}
    added = []
    for schema in schemas:
        name = schema.first("cn")
        if name not in present:
            _add(admin, schema)
            added.append(name)
    return added


def _add_modules(admin: Connection, wanted: Record) -> list[str]:
    _, _, entries, _ = admin.search("cn=config", "(objectClass=olcModuleList)", LEVEL,
                                    attributes=["olcModuleLoad"])
    lists = [e for e in entries or [] if e.get("type") == "searchResEntry"]
    loaded = {_module_name(v) for e in lists for v in e["attributes"].get("olcModuleLoad", [])}
    missing = [m for m in wanted.attributes["olcModuleLoad"] if _module_name(m) not in loaded]
    if missing and lists:
        _, result, _, _ = admin.modify(lists[0]["dn"], {"olcModuleLoad": [(MODIFY_ADD, missing)]})
        if result["result"] != 0:
            raise ProvisioningError(f"loading modules {missing}: {result['message']}")
    elif missing:
        _add(admin, Record("cn=module,cn=config", {
            "objectClass": ["olcModuleList"], "cn": ["module"],
            "olcModulePath": wanted.attributes["olcModulePath"], "olcModuleLoad": missing}))
    return [_module_name(m) for m in missing]


def _module_name(value: str) -> str:
    name = MODULE_ARGUMENTS.sub(r"\2", value.strip())
    return name.removesuffix(".la").removesuffix(".so")


def _set_password_hash(admin: Connection, frontend: Record) -> None:
    _, result, _, _ = admin.modify("olcDatabase={-1}frontend,cn=config", {
        "olcPasswordHash": [(MODIFY_REPLACE, frontend.attributes["olcPasswordHash"])]})
    if result["result"] != 0:
        raise ProvisioningError(f"setting olcPasswordHash: {result['message']}")


def _add_database(admin: Connection, database: Record) -> str:
    database.dn = "olcDatabase=mdb,cn=config"  # slapd picks the next free index
    database.attributes["olcDatabase"] = ["mdb"]
    _add(admin, database)
    found = _database_for(admin, database.first("olcSuffix"))
    if found is None:
        raise ProvisioningError("the new database did not appear in cn=config")
    return found


def _add_tree(config: Config, values: dict[str, str], root_password: str) -> None:
    ldif_dir = embedded.find_ldif_dir()
    base_dn = config.ldap.base_dn
    tree = embedded.suffix_entry(base_dn) + embedded.render(ldif_dir / "base.ldif", values)
    tree += "\n\n" + "".join(embedded.account_type_group(base_dn, t)
                             for t in config.users.account_types)
    root = Connection(Server(config.ldap.url, get_info=NONE), embedded.root_dn(base_dn),
                      root_password,
                      client_strategy=SAFE_SYNC, raise_exceptions=False)
    _, result, _, _ = root.bind()
    if result["result"] != 0:
        raise ProvisioningError(f"cannot bind as the new root DN: {result['description']}")
    try:
        for record in parse_ldif(tree, ldif_dir):
            _, _, found, _ = root.search(record.dn, "(objectClass=*)", BASE, attributes=["1.1"])
            if not any(e.get("type") == "searchResEntry" for e in found or []):
                _add(root, record)
    finally:
        root.unbind()


def _as_consumer(text: str, ldif_dir: Path, values: dict[str, str], provider_url: str,
                 replicator_password: str) -> str:
    """config.ldif with ldif/consumer.ldif's changes (app/replication.py)."""
    try:
        extra = replication.consumer_values(provider_url, replicator_password)
        consumer = embedded.render(ldif_dir / replication.CONSUMER_LDIF, {**values, **extra})
        return replication.consumer_config(text, consumer)
    except replication.ReplicationError as e:
        raise ProvisioningError(f"consumer of {provider_url}: {e}") from e


def _add_chain(admin: Connection, records: list[Record]) -> None:
    """The chain overlay on the frontend (writes sent to this consumer are
    made on the provider), unless the server has one: then it is the
    operator's, and left alone."""
    chain = [r for r in records if r.dn.endswith("olcDatabase={-1}frontend,cn=config")
             and "olcOverlay" in r.dn]
    _, _, found, _ = admin.search("olcDatabase={-1}frontend,cn=config",
                                  "(objectClass=olcChainConfig)", LEVEL, attributes=["1.1"])
    if any(e.get("type") == "searchResEntry" for e in found or []):
        raise ProvisioningError("the server's frontend already has a chain overlay: add "
                                "ldif/consumer.ldif's chain database to it by hand")
    overlay, database = chain  # the overlay, then its back-ldap database
    overlay.dn = "olcOverlay=chain,olcDatabase={-1}frontend,cn=config"
    overlay.attributes["olcOverlay"] = ["chain"]
    _add(admin, overlay)
    _, _, found, _ = admin.search("olcDatabase={-1}frontend,cn=config",
                                  "(objectClass=olcChainConfig)", LEVEL, attributes=["1.1"])
    added = next(e["dn"] for e in found or [] if e.get("type") == "searchResEntry")
    database.dn = f"olcDatabase=ldap,{added}"
    database.attributes["olcDatabase"] = ["ldap"]
    _add(admin, database)


def _modify(admin: Connection, dn: str, changes: dict[str, list[tuple[str, list[str]]]]) -> None:
    _, result, _, _ = admin.modify(dn, changes)
    if result["result"] != 0:
        raise ProvisioningError(f"changing {dn}: {result['description']} "
                                f"{result['message']}".strip())
