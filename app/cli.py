"""`userdir serve` (embedded slapd, bootstrap, HTTP), `init`, `doctor`, `token`, `audit`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import msgspec

from app import audit_cli, doctor, embedded, logs, replica_init, server, tokens
from app.config import Config, ConfigError, load_config, read_secret_file
from app.domain import DomainError
from app.migration import commands as migration
from app.migration import upgrade
from app.provisioning import ProvisioningError, provision
from app.requests import current_tool
from app.runtime import Runtime

log = logging.getLogger("userdir")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="userdir", description=__doc__)
    parser.add_argument("--config", help="TOML config file (default: $USERDIR_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the API (and the embedded slapd)")
    init = commands.add_parser(
        "init", help="set up the existing OpenLDAP of [ldap] url for userdir, via cn=config")
    init.add_argument("--config-dn", required=True, help="cn=config admin, e.g. cn=admin,cn=config")
    init.add_argument("--config-password-file", required=True, type=Path,
                      help="file holding that admin's password (never on the command line)")
    init.add_argument("--db-directory", required=True,
                      help="directory ON THE SERVER for the new database (exists, owned by slapd)")
    init.add_argument("--log-directory",
                      help="directory ON THE SERVER for the audit log's database (exists, owned "
                           "by slapd); without it, no audit log")
    replica_init.add_arguments(init)
    check = commands.add_parser(
        "doctor", help="list (and with --fix repair) what other LDAP tools left in the directory",
        description=doctor.HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    check.add_argument("--fix", action="store_true", help="repair what is found")
    check.add_argument("--json", action="store_true", help="JSON lines instead of text")
    tokens.add_parser(commands)
    lift = commands.add_parser(
        "upgrade", help="reload the stopped embedded directory under today's ldif/ (backup first)",
        description=upgrade.HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    lift.add_argument("--backup-dir", type=Path, help="default <data_dir>/backups/upgrade-<time>")
    lift.add_argument("--dry-run", action="store_true",
                      help="say what would change; change nothing")
    audit_cli.add_parser(commands)
    migration.add_parsers(commands)
    args = parser.parse_args(argv)
    # Who the audit records name for a command's changes (serve: "service").
    tool = current_tool.set({"serve": "service", "doctor": "doctor"}.get(args.command, "cli"))
    try:
        config = load_config(args.config)
        logs.configure(config.log)
        if args.command == "init" and args.consumer_of:
            return replica_init.init_consumer(config, args)
        if args.command == "init":
            return init_external(config, args.config_dn, args.config_password_file,
                                 args.db_directory, args.log_directory,
                                 replica_init.replicator_password(args))
        if args.command == "doctor":
            return doctor.run(config, fix=args.fix, as_json=args.json)
        if args.command in migration.NAMES:
            return migration.run(config, args)
        if args.command == "audit":
            return audit_cli.run(config, args)
        if args.command == "upgrade":
            return upgrade.run(config.data_dir, config.ldap.base_dn, config.users.account_types,
                               external=not config.ldap.embedded, backup_dir=args.backup_dir,
                               log_purge=embedded.purge_spec(config.audit.retention_days),
                               dry_run=args.dry_run)
        if args.command == "token":
            return tokens.run(config, args)
        return serve(config, args.config)
    except (ConfigError, embedded.SlapdError, DomainError, ProvisioningError) as e:
        print(f"userdir: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        current_tool.reset(tool)


def serve(config: Config, config_path: str | None) -> int:
    # uvicorn re-raises SIGTERM once it has shut down; turn it into SystemExit
    # so that the `finally` below still stops slapd.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    slapd = start_embedded(config) if config.ldap.embedded else None
    try:
        password = asyncio.run(bootstrap(config))
        if password:
            # Shown once: it exists nowhere else (slapd stores only its hash).
            print(f"\n  bootstrap admin {config.bootstrap.admin_username!r} created; "
                  f"password: {password}\n", flush=True)
        doctor.check_in_background(config)
        server.run(config, config_path)
    finally:
        if slapd is not None:
            slapd.stop()
            log.info("slapd stopped")
    return 0


def init_external(config: Config, config_dn: str, password_file: Path, db_directory: str,
                  log_directory: str | None = None, replicator_password: str | None = None) -> int:
    if config.ldap.embedded:
        raise ConfigError("ldap.url: `userdir init` is for an existing server; set its URL")
    password = read_secret_file("--config-password-file", str(password_file))
    result = provision(config, config_dn, password, db_directory, log_directory,
                       replicator_password=replicator_password)
    embedded.write_secret(config.data_dir / "service.password", result.service_password)
    print(f"database {result.database_dn} for {config.ldap.base_dn} created; "
          f"schemas added: {', '.join(result.added_schemas) or 'none'}; "
          f"modules loaded: {', '.join(result.added_modules) or 'none'}")
    print(f"service account {config.bind_dn}: password in {config.data_dir}/service.password; "
          f"run the API with USERDIR_LDAP__BIND_PASSWORD_FILE pointing at it")
    print(f"read replicas bind as {replica_init.replicator_dn(config)}: password in "
          f"{config.data_dir}/replicator.password (`userdir init --consumer-of`)")
    print(f"audit log: database {result.audit_database}, records kept "
          f"{config.audit.retention_days} days" if result.audit_database else
          "audit log: none (give --log-directory to keep one)")
    config = msgspec.structs.replace(config, ldap=msgspec.structs.replace(
        config.ldap, bind_password=result.service_password))
    generated = asyncio.run(bootstrap(config))
    if generated:
        print(f"\n  bootstrap admin {config.bootstrap.admin_username!r} created; "
              f"password: {generated}\n", flush=True)
    return 0


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def start_embedded(config: Config) -> embedded.Slapd:
    created = embedded.initialise(config.data_dir, config.ldap.base_dn, config.users.account_types,
                                  log_purge=embedded.purge_spec(config.audit.retention_days))
    if created:
        log.info("initialised a new directory in %s", config.data_dir)
    slapd = embedded.Slapd(config.data_dir, config.embedded.port)
    slapd.start()
    log.info("slapd listening on %s (data in %s)", slapd.url, config.data_dir)
    return slapd


async def bootstrap(config: Config) -> str | None:
    runtime = Runtime.build(config)
    try:
        return await runtime.service.bootstrap(config.bootstrap.admin_username,
                                               config.bootstrap.admin_password,
                                               config.bootstrap.admin_email)
    finally:
        runtime.close()


if __name__ == "__main__":
    sys.exit(main())
