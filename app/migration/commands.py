"""The import, export, backup and restore subcommands: their arguments, and the call each makes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from app.config import Config, ConfigError
from app.migration import backup, export, formats, importer

NAMES = ("import", "export", "backup", "restore")
IMPORT_HELP = """\
Create users from FILE. Formats: csv (a header row of userdir field names;
--map column=field for others), jsonl, ldif (another directory, a slapcat,
lldap), django (manage.py dumpdata JSON of auth.user or a custom user model),
fittrackee (its users table as psql's \\copy ... CSV HEADER writes it), vikunja
(its users table as CSV). Password hashes are kept: those slapd verifies are
stored as they are; others (Django's default PBKDF2...) are checked at the
user's first API login and replaced. Original ids become uidNumbers when free
(a clash is reported, never renumbered). Users already there are left alone
(--update refreshes their fields), so a stopped import is resumed by running
it again. Exit status 0 if every row is in, 1 if some were reported, 130 if
stopped by Ctrl-C (the first one finishes the current batch)."""


def add_parsers(commands: Any) -> None:
    """Add the four subcommands to cli.py's subparsers."""
    load = commands.add_parser("import", help="create users from another system's export",
                               description=IMPORT_HELP,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    load.add_argument("file", type=Path)
    load.add_argument("--format", required=True, choices=formats.FORMATS)
    load.add_argument("--map", action="append", default=[], metavar="COLUMN=FIELD",
                      help="read COLUMN as FIELD (COLUMN= ignores it); repeatable")
    load.add_argument("--pictures-dir", type=Path, help="where picture paths point (fittrackee)")
    load.add_argument("--dry-run", action="store_true", help="check everything, change nothing")
    load.add_argument("--update", action="store_true",
                      help="refresh the fields of users already there (never passwords)")
    load.add_argument("--report", type=Path, help="write each bad row's line and reason here")
    load.add_argument("--offline", action="store_true",
                      help="slapadd into the stopped embedded directory (fastest)")
    dump = commands.add_parser("export", help="write people as ldif, csv or jsonl to stdout")
    dump.add_argument("--format", required=True, choices=export.FORMATS)
    dump.add_argument("--filter", action="append", default=[], metavar="FIELD=VALUE",
                      help="only people with this value (account_type, active, email...)")
    save = commands.add_parser("backup", help="slapcat every database, with a manifest")
    save.add_argument("dir", type=Path)
    load_back = commands.add_parser("restore", help="load a backup into a stopped directory")
    load_back.add_argument("dir", type=Path)
    load_back.add_argument("--force", action="store_true",
                           help="replace the directory there (moved aside, not deleted)")


def run(config: Config, args: argparse.Namespace) -> int:
    """Run one of NAMES; errors of the input are one line on stderr."""
    try:
        if args.command == "import":
            return importer.run(config, importer.Options(
                args.file, args.format, importer.parse_mapping(args.map), args.pictures_dir,
                args.dry_run, args.update, args.report, args.offline))
        if args.command == "export":
            return export.run(config, args.format, args.filter)
        _embedded_only(config, args.command)
        if args.command == "backup":
            print(backup.describe(backup.backup(config.data_dir, args.dir), "backed up into",
                                  args.dir))
        else:
            print(backup.describe(backup.restore(args.dir, config.data_dir, force=args.force),
                                  "restored from", args.dir))
        return 0
    except (backup.BackupError, formats.FormatError, ValueError, OSError) as e:
        print(f"userdir {args.command}: {e}", file=sys.stderr)
        return 1


def _embedded_only(config: Config, command: str) -> None:
    if not config.ldap.embedded:
        raise ConfigError(f"`userdir {command}` works on the embedded directory's data dir; on "
                          "the server of [ldap] url, run it there with its data dir "
                          "(python3 -m app.migration.backup)")
