"""A local slapd built from the project's ldif/ files: initialise once, start, stop.

Standard library only: the OpenLDAP Docker image runs this module with a bare
`python3 -m app.embedded`, and the test suite starts its slapd through it too.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from app import replication

SBIN = Path("/usr/sbin")
DEBIAN_PACKAGES = "slapd ldap-utils"
FIRST_UID_NUMBER = 10000
RETENTION_DAYS = 30  # audit.retention_days' default
SECRET_SCHEME = "{SSHA}"  # noqa: S105 - a hash scheme, for the services' random secrets
_READY_TIMEOUT = 15.0


class SlapdError(RuntimeError):
    """slapd is missing, could not be initialised, or did not start."""


def find_ldif_dir() -> Path:
    """The ldif/ directory: beside the package in a checkout, inside it in a wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "ldif", here / "ldif"):
        if (candidate / "config.ldif").is_file():
            return candidate
    raise SlapdError(f"no ldif/ directory found next to {here}")


def require_slapd() -> None:
    for tool in ("slapd", "slapadd", "slappasswd"):
        if not (SBIN / tool).exists():
            raise SlapdError(
                f"OpenLDAP's {tool} is not installed: run `apt-get install {DEBIAN_PACKAGES}`"
            )


@dataclass(frozen=True)
class Layout:
    """Where everything of one slapd lives inside its data directory."""

    data_dir: Path

    @property
    def config_dir(self) -> Path:
        return self.data_dir / "slapd.d"

    @property
    def db_dir(self) -> Path:
        return self.data_dir / "db"

    @property
    def log_db_dir(self) -> Path:
        """The access log (slapo-accesslog's database, cn=accesslog): the audit."""
        return self.data_dir / "accesslog"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def ldapi_path(self) -> Path:
        return self.run_dir / "ldapi"

    @property
    def ldapi_url(self) -> str:
        return "ldapi://" + urllib.parse.quote(str(self.ldapi_path), safe="")

    @property
    def root_password_file(self) -> Path:
        return self.data_dir / "root.password"

    @property
    def service_password_file(self) -> Path:
        return self.data_dir / "service.password"

    @property
    def importer_password_file(self) -> Path:
        return self.data_dir / "importer.password"

    @property
    def replicator_password_file(self) -> Path:
        return self.data_dir / "replicator.password"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "slapd.log"

    @property
    def initialised_marker(self) -> Path:
        return self.data_dir / ".initialised"

    def read_service_password(self) -> str:
        return self.service_password_file.read_text()


def service_dn(base_dn: str) -> str:
    return f"cn=userdir,ou=services,{base_dn}"


def importer_dn(base_dn: str) -> str:
    """`userdir import`'s identity: it may store password hashes as they come."""
    return f"cn=importer,ou=services,{base_dn}"


def replicator_dn(base_dn: str) -> str:
    """Read replicas' identity (ldif/consumer.ldif): syncrepl binds as it."""
    return f"cn=replicator,ou=services,{base_dn}"


def root_dn(base_dn: str) -> str:
    return f"cn=root,{base_dn}"


def placeholder_dn(base_dn: str) -> str:
    """The member a group keeps when it has no real one (groupOfNames MUST member)."""
    return f"cn=nobody,{base_dn}"


def purge_spec(retention_days: int) -> str:
    """olcAccessLogPurge: records older than `retention_days`, looked for daily."""
    return f"{retention_days:02d}+00:00 01+00:00"


def account_type_group_dn(base_dn: str, account_type: str) -> str:
    return f"cn={account_type},ou=groups,{base_dn}"


def initialise(
    data_dir: Path, base_dn: str, account_types: Sequence[str], ldif_dir: Path | None = None,
    service_password: str | None = None, log_purge: str | None = None,
    replicator_password: str | None = None, consumer_of: str | None = None,
) -> bool:
    """Create the config and the base tree unless already done; True if done now.

    `log_purge` is the access log's olcAccessLogPurge (purge_spec: after
    audit.retention_days), rendered into cn=config now.

    The service account's password is generated unless given (a Docker secret
    shared with the API container); so is the replicator's, which a consumer
    (`consumer_of`: its provider's URL; it gets no tree of its own,
    ldif/consumer.ldif) must be given. Nothing is marked initialised before both
    slapadd runs succeed, so an interrupted first start is redone from scratch.
    """
    require_slapd()
    layout = Layout(data_dir)
    if layout.initialised_marker.exists():
        return False
    if consumer_of and not replicator_password:
        raise SlapdError(f"consumer of {consumer_of}: give the provider's replicator password")
    ldif_dir = ldif_dir or find_ldif_dir()
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for stale in (layout.config_dir, layout.db_dir, layout.log_db_dir):
        shutil.rmtree(stale, ignore_errors=True)
    for path in (layout.config_dir, layout.db_dir, layout.log_db_dir, layout.run_dir):
        # run/ may stay from a first start that failed: it is redone whole.
        path.mkdir(mode=0o700, exist_ok=True)
    root_password = _new_secret(layout.root_password_file)
    service_password = _new_secret(layout.service_password_file, service_password)
    importer_password = _new_secret(layout.importer_password_file)
    replicator_password = _new_secret(layout.replicator_password_file, replicator_password)
    values = {
        "BASE_DN": base_dn,
        "ROOT_DN": root_dn(base_dn),
        "ROOT_PW_HASH": _hash_password(root_password, SECRET_SCHEME),
        "SERVICE_DN": service_dn(base_dn),
        "SERVICE_PW_HASH": _hash_password(service_password, SECRET_SCHEME),
        "IMPORTER_DN": importer_dn(base_dn),
        "IMPORTER_PW_HASH": _hash_password(importer_password, SECRET_SCHEME),
        "REPLICATOR_DN": replicator_dn(base_dn),
        "REPLICATOR_PW_HASH": _hash_password(replicator_password, SECRET_SCHEME),
        "DECOY_PW_HASH": _hash_password(secrets.token_urlsafe(24)),
        "PLACEHOLDER_DN": placeholder_dn(base_dn),
        "PEERCRED_DN": f"gidNumber={os.getgid()}+uidNumber={os.getuid()},"
        "cn=peercred,cn=external,cn=auth",
        "DB_DIR": str(layout.db_dir.resolve()),
        "LOG_DB_DIR": str(layout.log_db_dir.resolve()),
        "LOG_PURGE": log_purge or purge_spec(RETENTION_DAYS),
        "RUN_DIR": str(layout.run_dir.resolve()),
        "LDIF_DIR": str(ldif_dir.resolve()),
        "LAST_UID_NUMBER": str(FIRST_UID_NUMBER - 1),
    }
    config = render(ldif_dir / "config.ldif", values)
    if consumer_of:
        config = _as_consumer(config, ldif_dir, values, consumer_of, replicator_password)
    tree = suffix_entry(base_dn) + render(ldif_dir / "base.ldif", values).rstrip("\n") + "\n\n"
    tree += "".join(account_type_group(base_dn, name) for name in account_types)
    _slapadd(["-n0", "-F", str(layout.config_dir)], config)
    if not consumer_of:  # a consumer's tree comes from its provider
        _slapadd(["-q", "-F", str(layout.config_dir), "-b", base_dn], tree)
    layout.initialised_marker.write_text("")
    return True


def _as_consumer(config: str, ldif_dir: Path, values: dict[str, str], provider_url: str,
                 replicator_password: str) -> str:
    try:
        extra = replication.consumer_values(provider_url, replicator_password)
    except replication.ReplicationError as e:
        raise SlapdError(f"consumer of {provider_url}: {e}") from e
    return replication.consumer_config(
        config, render(ldif_dir / replication.CONSUMER_LDIF, {**values, **extra}))


def render(template: Path, values: dict[str, str]) -> str:
    text = template.read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    leftover = sorted(set(re.findall(r"@[A-Z][A-Z_]+@", text)))
    if leftover:
        raise SlapdError(f"{template.name}: no value for {', '.join(leftover)}")
    return text


def suffix_entry(base_dn: str) -> str:
    """The suffix entry; its object class follows the first RDN's attribute."""
    attr, _, value = base_dn.split(",")[0].partition("=")
    classes = {
        "dc": ["dcObject", "organization"],
        "o": ["organization"],
        "ou": ["organizationalUnit"],
    }.get(attr.strip().lower())
    if classes is None or not value:
        raise SlapdError(f"base DN must start with dc=, o= or ou=, not {base_dn!r}")
    lines = [f"dn: {base_dn}", *(f"objectClass: {c}" for c in classes), f"{attr}: {value}"]
    if "organization" in classes and attr.lower() != "o":
        lines.append(f"o: {value}")
    return "\n".join(lines) + "\n\n"


def account_type_group(base_dn: str, name: str) -> str:
    return (
        f"dn: {account_type_group_dn(base_dn, name)}\n"
        "objectClass: groupOfNames\n"
        "objectClass: userdirGroup\n"  # it may carry the audit marker (userdirChange)
        f"cn: {name}\n"
        f"description: userdir account type {name}\n"
        f"member: {placeholder_dn(base_dn)}\n\n"
    )


def _new_secret(path: Path, password: str | None = None) -> str:
    """A password (fresh and random unless given), kept in a 0600 file."""
    password = password or secrets.token_urlsafe(24)
    write_secret(path, password)
    return password


def write_secret(path: Path, value: str) -> None:
    """Mode 0600 from the start, no trailing newline (as `ldapsearch -y` wants it)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value)


def _hash_password(password: str, scheme: str = "{ARGON2}") -> str:
    """Hash with slapd's own slappasswd: slapadd bypasses ppolicy's cleartext hashing.

    The service identities' passwords are long random secrets: a salted SHA
    is as safe for them as argon2 and binds in a millisecond, where argon2
    costs 50-100 ms, paid by every new connection (each sorted listing after
    a write opens one). The decoy stays argon2: it must cost what a user's
    password costs (ldif/base.ldif)."""
    with tempfile.NamedTemporaryFile("w", delete=True) as f:
        os.chmod(f.name, 0o600)
        f.write(password)
        f.flush()
        result = subprocess.run(
            [str(SBIN / "slappasswd"), "-o", "module-path=/usr/lib/ldap", "-o",
             "module-load=argon2 m=19456 t=2 p=1", "-h", scheme, "-T", f.name],
            capture_output=True, text=True, check=False,
        )
    if result.returncode != 0:
        raise SlapdError(f"slappasswd failed: {result.stderr.strip()}")
    return result.stdout.strip()


def _slapadd(args: list[str], ldif: str) -> None:
    result = subprocess.run(
        [str(SBIN / "slapadd"), *args], input=ldif, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SlapdError(f"slapadd {' '.join(args)} failed:\n{result.stderr.strip()}")


class Slapd:
    """A running slapd child process, stopped by pid."""

    def __init__(self, data_dir: Path, port: int, host: str = "127.0.0.1",
                 log_to_file: bool = True) -> None:
        self.layout = Layout(data_dir)
        self.host = host
        self.port = port
        # False: slapd writes to our own stdout/stderr (a container's log).
        self.log_to_file = log_to_file
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ldap://{self.host}:{self.port}"

    def start(self) -> None:
        require_slapd()
        if not self.layout.initialised_marker.exists():
            raise SlapdError(f"{self.layout.data_dir} is not initialised")
        self.layout.run_dir.mkdir(mode=0o700, exist_ok=True)
        self.layout.ldapi_path.unlink(missing_ok=True)
        if _port_open(self.host, self.port):
            raise SlapdError(f"port {self.host}:{self.port} is already in use")
        # Own session: a Ctrl-C in the terminal reaches us, and we stop slapd
        # after the API, instead of both dying at once.
        with open(self.layout.log_file if self.log_to_file else os.devnull, "ab") as file:
            log = file if self.log_to_file else None
            self.process = subprocess.Popen(
                [str(SBIN / "slapd"), "-F", str(self.layout.config_dir), "-h",
                 f"{self.url}/ {self.layout.ldapi_url}", "-d", "0"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            )
        deadline = time.monotonic() + _READY_TIMEOUT
        while not _port_open(self.host, self.port):
            if self.process.poll() is not None:
                raise SlapdError(f"slapd exited with {self.process.returncode}; "
                                 f"see {self.layout.log_file}")
            if time.monotonic() > deadline:
                self.stop()
                raise SlapdError(
                    f"slapd did not listen on {self.url} within {_READY_TIMEOUT:.0f} s")
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> Slapd:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """`python3 -m app.embedded init|run`: the OpenLDAP image's entrypoint.

    Defaults come from the same USERDIR_* variables the API reads, so one
    compose file configures both containers.
    """
    env = os.environ if environ is None else environ
    args = parser(env).parse_args(argv)
    try:
        types = [t.strip() for t in args.account_types.split(",") if t.strip()]
        retention = env.get("USERDIR_AUDIT__RETENTION_DAYS", str(RETENTION_DAYS))
        if not retention.isdigit() or int(retention) < 1:
            raise SlapdError("USERDIR_AUDIT__RETENTION_DAYS: a number of days (1 or more)")
        created = initialise(args.data_dir, args.base_dn, types,
                             service_password=_service_password(env),
                             log_purge=purge_spec(int(retention)),
                             replicator_password=_secret(args.replicator_password_file),
                             consumer_of=args.consumer_of)
        print(f"{args.data_dir}: {'initialised' if created else 'already initialised'}")
        if args.command == "run":
            # In a container: slapd's lines go to `docker compose logs`.
            slapd = Slapd(args.data_dir, args.port, args.host, log_to_file=False)
            slapd.start()
            process = slapd.process
            assert process is not None
            # `docker stop` sends SIGTERM: pass it on and let the wait below
            # return when slapd has shut down (stopping from inside the
            # handler would race with that wait). Installed before we say
            # we listen, so that a SIGTERM right after that is not lost.
            signal.signal(signal.SIGTERM, lambda *_: process.send_signal(signal.SIGTERM))
            print(f"slapd listening on {slapd.url}", flush=True)
            try:
                process.wait()
            except KeyboardInterrupt:
                pass
            finally:
                slapd.stop()
    except SlapdError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    """The entrypoint's options (docker/compose*.yaml pass some as `command:`)."""
    parser = argparse.ArgumentParser(prog="python3 -m app.embedded")
    parser.add_argument("command", choices=["init", "run"])
    parser.add_argument("--data-dir", type=Path,
                        default=Path(env.get("USERDIR_EMBEDDED__DATA_DIR", ".userdir")))
    parser.add_argument("--base-dn", default=env.get("USERDIR_LDAP__BASE_DN", "dc=example,dc=org"))
    parser.add_argument("--account-types",
                        default=env.get("USERDIR_USERS__ACCOUNT_TYPES", "user,staff,admin"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(env.get("USERDIR_EMBEDDED__PORT", "3389")))
    parser.add_argument("--consumer-of", metavar="URL",
                        help="a read replica of the provider at URL (ldif/consumer.ldif)")
    parser.add_argument("--replicator-password-file", type=Path, metavar="FILE",
                        help="the replicator's password: a provider's (else generated), "
                             "the one a consumer binds with (required)")
    return parser


def _service_password(env: Mapping[str, str]) -> str | None:
    """USERDIR_LDAP__BIND_PASSWORD, or the file USERDIR_LDAP__BIND_PASSWORD_FILE names."""
    path = env.get("USERDIR_LDAP__BIND_PASSWORD_FILE")
    if path:
        return _secret(Path(path))
    return env.get("USERDIR_LDAP__BIND_PASSWORD") or None


def _secret(path: Path | None) -> str | None:
    """A file's secret (a Docker secret: one trailing newline is not part of it)."""
    if path is None:
        return None
    try:
        return path.read_text().removesuffix("\n") or None
    except OSError as e:
        raise SlapdError(f"cannot read {path}: {e.strerror}") from e


if __name__ == "__main__":
    sys.exit(main())
