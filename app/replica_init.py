"""`userdir init --consumer-of URL`: an existing OpenLDAP made a read replica of a provider."""

from __future__ import annotations

import argparse
from pathlib import Path

from app import embedded
from app.config import Config, ConfigError, read_secret_file
from app.provisioning import provision


def add_arguments(init: argparse.ArgumentParser) -> None:
    init.add_argument(
        "--consumer-of", metavar="URL",
        help="make the server of [ldap] url a read replica of the provider at URL "
             "(ldif/consumer.ldif: delta-syncrepl, chain); it gets no tree of its own")
    init.add_argument(
        "--replicator-password-file", type=Path, metavar="FILE",
        help="the replicator's password: for a provider, the one to set (default: "
             "generated); with --consumer-of, the provider's (its <data_dir>/replicator.password)")


def replicator_password(args: argparse.Namespace) -> str | None:
    path: Path | None = args.replicator_password_file
    return read_secret_file("--replicator-password-file", str(path)) if path else None


def replicator_dn(config: Config) -> str:
    return embedded.replicator_dn(config.ldap.base_dn)


def init_consumer(config: Config, args: argparse.Namespace) -> int:
    """The server at [ldap] url gets userdir's schemas, modules and a database
    that copies the provider's (the API's [ldap] url stays the provider; list
    this server in its [ldap] read_urls). Nothing is bootstrapped here: users,
    the admin and the service account all come from the provider."""
    if config.ldap.embedded:
        raise ConfigError("ldap.url: `userdir init --consumer-of` sets up the server at "
                          "[ldap] url; set it to the new consumer's URL")
    password = replicator_password(args)
    if not password:
        raise ConfigError("--replicator-password-file: required with --consumer-of "
                          "(the provider's <data_dir>/replicator.password)")
    admin_password = read_secret_file("--config-password-file", str(args.config_password_file))
    result = provision(config, args.config_dn, admin_password, args.db_directory,
                       args.log_directory, consumer_of=args.consumer_of,
                       replicator_password=password)
    print(f"database {result.database_dn} for {config.ldap.base_dn} created, a read replica of "
          f"{args.consumer_of} (bound as {replicator_dn(config)}); schemas added: "
          f"{', '.join(result.added_schemas) or 'none'}; modules loaded: "
          f"{', '.join(result.added_modules) or 'none'}")
    print(f"give the API [ldap] url = {args.consumer_of!r} and add {config.ldap.url!r} to "
          f"[ldap] read_urls")
    return 0
