"""One typed configuration: a TOML file, then USERDIR_<SECTION>__<KEY> overrides."""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
import urllib.parse
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_origin

import msgspec
from msgspec import Meta, Struct

from app.embedded import Layout

ENV_PREFIX = "USERDIR_"
Port = Annotated[int, Meta(ge=1, le=65535)]
Positive = Annotated[int, Meta(ge=1)]
NonNegative = Annotated[int, Meta(ge=0)]
Seconds = Annotated[float, Meta(gt=0)]
ACCOUNT_TYPE_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key."""


class _Section(Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class HttpConfig(_Section):
    host: str = "127.0.0.1"
    port: Port = 8000
    workers: Annotated[int, Meta(ge=1, le=64)] = 1
    max_body_size: Positive = 1024 * 1024
    # The address clients reach the service at, for absolute URLs in answers.
    public_url: str = ""
    # Peers whose X-Forwarded-For names the client (addresses or networks).
    trusted_proxies: list[str] = msgspec.field(default_factory=list)
    # A request's headers and body must arrive within this many seconds.
    request_timeout: Seconds = 30.0
    # Requests one client (address) may have in progress at once; more: 429 at once.
    client_requests: Annotated[int, Meta(ge=1, le=100_000)] = 8


class LdapConfig(_Section):
    url: str = ""
    base_dn: str = "dc=example,dc=org"
    bind_dn: str = ""
    bind_password: str = ""
    pool_size: Annotated[int, Meta(ge=1, le=64)] = 4
    bind_pool_size: Annotated[int, Meta(ge=1, le=64)] = 1
    queue_limit: Annotated[int, Meta(ge=1, le=100_000)] = 128
    bind_queue_limit: Annotated[int, Meta(ge=1, le=100_000)] = 64
    client_limit: Annotated[int, Meta(ge=1, le=100_000)] = 16
    connect_timeout: Seconds = 2.0
    operation_timeout: Seconds = 4.0
    max_idle: Seconds = 240.0
    # Read replicas (consumers of `url`, ldif/consumer.ldif) that reads may use.
    read_urls: list[str] = msgspec.field(default_factory=list)
    # A consumer further behind the provider than this many seconds is not read from.
    max_lag: Seconds = 1.0

    @property
    def embedded(self) -> bool:
        return not self.url


class EmbeddedConfig(_Section):
    data_dir: str = ".userdir"
    port: Port = 3389


class BootstrapConfig(_Section):
    admin_username: str = "admin"
    admin_password: str = ""
    admin_email: str = ""


class UsersConfig(_Section):
    account_types: list[Annotated[str, Meta(pattern=ACCOUNT_TYPE_PATTERN)]] = msgspec.field(
        default_factory=lambda: ["user", "staff", "admin"]
    )
    default_account_type: str = "user"
    gid_number: Annotated[int, Meta(ge=0)] = 10000


class AuthConfig(_Section):
    issuer: str = "userdir"
    signing_key_file: str = ""
    access_token_ttl: Positive = 900
    refresh_token_ttl: Positive = 14 * 24 * 3600
    leeway: Annotated[int, Meta(ge=0, le=60)] = 30
    max_password_length: Annotated[int, Meta(ge=8, le=65536)] = 1024


class LogConfig(_Section):
    format: Literal["text", "json"] = "text"
    level: Literal["debug", "info", "warning", "error"] = "info"


class MetricsConfig(_Section):
    enabled: bool = True
    token: str = ""


class AuditConfig(_Section):
    # Days slapd keeps audit records; rendered into cn=config when the directory is made.
    retention_days: Annotated[int, Meta(ge=1, le=36500)] = 30
    # Records a page of GET /audit holds at most.
    max_per_page: Annotated[int, Meta(ge=1, le=1000)] = 100


class ThrottleConfig(_Section):
    window: Seconds = 900.0
    address_free: Positive = 20
    address_max_delay: Seconds = 900.0
    account_free: Positive = 5
    account_max_delay: Seconds = 60.0
    trust_days: Seconds = 30.0


class PicturesConfig(_Section):
    max_upload_size: Positive = 5 * 1024 * 1024
    max_side: Annotated[int, Meta(ge=16, le=4096)] = 1024
    thumbnail_side: Annotated[int, Meta(ge=16, le=1024)] = 128
    quality: Annotated[int, Meta(ge=30, le=95)] = 85
    max_pixels: Annotated[int, Meta(ge=1024, le=100_000_000)] = 20_000_000
    decoders: Annotated[int, Meta(ge=1, le=16)] = 1
    decode_queue: Annotated[int, Meta(ge=1, le=1000)] = 8


class ListingConfig(_Section):
    context_ttl: Annotated[float, Meta(ge=0)] = 5.0
    contexts: Annotated[int, Meta(ge=1, le=16)] = 4
    sort_timeout: Seconds = 20.0
    max_per_page: Annotated[int, Meta(ge=1, le=1000)] = 100


class MailConfig(_Section):
    backend: Literal["console", "smtp"] = "console"
    host: str = "localhost"
    port: Port = 587
    security: Literal["none", "starttls", "tls"] = "starttls"
    username: str = ""
    password: str = ""
    from_address: str = "userdir@localhost"
    timeout: Seconds = 10.0
    code_lifetime: Positive = 600
    resend_interval: NonNegative = 60


class UiConfig(_Section):
    enabled: bool = True
    session_lifetime: Positive = 8 * 3600
    session_dir: str = ""
    invitation_lifetime: Positive = 7 * 24 * 3600


class ImporterConfig(_Section):
    # `userdir import`'s identity; empty: cn=importer,ou=services,<base_dn>.
    bind_dn: str = ""
    # Its password; empty: the file <data_dir>/importer.password that init wrote.
    bind_password: str = ""
    # New users per account-type group change (one modify adds them all).
    batch_size: Annotated[int, Meta(ge=1, le=5000)] = 500
    # Connections adding entries at once.
    workers: Annotated[int, Meta(ge=1, le=16)] = 3


class ScimConfig(_Section):
    # Serve SCIM 2.0 at /scim/v2 (identity providers provisioning users and groups).
    enabled: bool = True


class DialectConfig(_Section):
    enabled: bool = True
    prefix: str = "/"


class FittrackeeConfig(DialectConfig):
    # The timezone shown for users who have none (FitTrackee's own default).
    default_timezone: str = "Europe/Paris"
    # Show every user's email and birth date to any signed-in user, as FitTrackee did.
    expose_private_fields: bool = False


def _dialect(prefix: str) -> Any:
    return msgspec.field(default_factory=lambda: DialectConfig(prefix=prefix))


class Config(_Section):
    http: HttpConfig = msgspec.field(default_factory=HttpConfig)
    ldap: LdapConfig = msgspec.field(default_factory=LdapConfig)
    embedded: EmbeddedConfig = msgspec.field(default_factory=EmbeddedConfig)
    bootstrap: BootstrapConfig = msgspec.field(default_factory=BootstrapConfig)
    users: UsersConfig = msgspec.field(default_factory=UsersConfig)
    auth: AuthConfig = msgspec.field(default_factory=AuthConfig)
    throttle: ThrottleConfig = msgspec.field(default_factory=ThrottleConfig)
    log: LogConfig = msgspec.field(default_factory=LogConfig)
    metrics: MetricsConfig = msgspec.field(default_factory=MetricsConfig)
    audit: AuditConfig = msgspec.field(default_factory=AuditConfig)
    listing: ListingConfig = msgspec.field(default_factory=ListingConfig)
    pictures: PicturesConfig = msgspec.field(default_factory=PicturesConfig)
    mail: MailConfig = msgspec.field(default_factory=MailConfig)
    importer: ImporterConfig = msgspec.field(default_factory=ImporterConfig)
    ui: UiConfig = msgspec.field(default_factory=UiConfig)
    scim: ScimConfig = msgspec.field(default_factory=ScimConfig)
    nervai: DialectConfig = _dialect("/")
    fittrackee: FittrackeeConfig = msgspec.field(
        default_factory=lambda: FittrackeeConfig(prefix="/api"))
    ufdl: DialectConfig = _dialect("/v1")
    accounts: DialectConfig = _dialect("/api/v1/accounts")
    library: DialectConfig = _dialect("/api/v1")

    @property
    def data_dir(self) -> Path:
        return Path(self.embedded.data_dir)

    @property
    def public_url(self) -> str:
        """Where clients reach the service (no final slash): http.public_url,
        else the address it listens on. Never the request's Host header,
        which a client chooses."""
        if self.http.public_url:
            return self.http.public_url.rstrip("/")
        host = self.http.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.http.port}"

    @property
    def bind_dn(self) -> str:
        return self.ldap.bind_dn or f"cn=userdir,ou=services,{self.ldap.base_dn}"

    @property
    def ldap_url(self) -> str:
        """The external server, or the embedded slapd on loopback."""
        return self.ldap.url or f"ldap://127.0.0.1:{self.embedded.port}"

    @property
    def bind_password(self) -> str:
        """Given in the config, or generated by the embedded mode into its data dir."""
        if self.ldap.bind_password or not self.ldap.embedded:
            return self.ldap.bind_password
        try:
            return Layout(self.data_dir).read_service_password()
        except OSError as e:
            raise ConfigError(f"embedded directory not initialised in {self.data_dir}: "
                              f"{e.strerror}") from e

    @property
    def session_dir(self) -> Path:
        return Path(self.ui.session_dir or self.data_dir / "ui-sessions")

    @property
    def signing_key_path(self) -> Path:
        return Path(self.auth.signing_key_file or self.data_dir / "jwt-signing-key.pem")


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read the file (if any), apply environment overrides, validate everything."""
    environ = os.environ if environ is None else environ
    path = path or environ.get("USERDIR_CONFIG") or None
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except OSError as e:
            raise ConfigError(f"cannot read config file {path}: {e.strerror}") from e
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {path}: {e}") from e
    try:
        config = msgspec.convert(data, Config)
    except msgspec.ValidationError as e:
        raise ConfigError(f"config file {path}: {_describe(e)}") from e
    for name, value in sorted(environ.items()):
        if name.startswith(ENV_PREFIX) and name != "USERDIR_CONFIG":
            config = _override(config, name, value)
    _check(config)
    return config


def _is_key(config: Config, name: str) -> bool:
    """Does the name itself name a key (auth.signing_key_file), rather than
    the file variant of one?"""
    section_name, _, key = name.removeprefix(ENV_PREFIX).lower().partition("__")
    if section_name not in {f.name for f in msgspec.structs.fields(Config)}:
        return False
    return key in {f.name for f in msgspec.structs.fields(getattr(config, section_name))}


def _override(config: Config, name: str, raw: str) -> Config:
    setting = name
    if name.endswith("_FILE") and not _is_key(config, name):
        # Docker secrets: USERDIR_X__Y_FILE=/run/secrets/y gives y's value.
        setting = name.removesuffix("_FILE")
        raw = read_secret_file(name, raw)
    section_name, sep, key = setting.removeprefix(ENV_PREFIX).lower().partition("__")
    fields = {f.name: f for f in msgspec.structs.fields(Config)}
    if not sep or section_name not in fields:
        raise ConfigError(f"{name}: unknown setting (expected USERDIR_<SECTION>__<KEY>)")
    section = getattr(config, section_name)
    section_fields = {f.name: f for f in msgspec.structs.fields(section)}
    if key not in section_fields:
        raise ConfigError(f"{name}: unknown key {key!r} in section [{section_name}]")
    field_type = section_fields[key].type
    value: Any = raw
    if get_origin(field_type) is list:
        value = [item.strip() for item in raw.split(",") if item.strip()]
    try:
        converted = msgspec.convert(
            {**msgspec.structs.asdict(section), key: value}, type(section), strict=False
        )
    except msgspec.ValidationError as e:
        raise ConfigError(f"{name}: {_describe(e)}") from e
    return msgspec.structs.replace(config, **{section_name: converted})


def read_secret_file(name: str, path: str) -> str:
    """A value kept in a file (a Docker secret); one trailing newline is not part of it."""
    try:
        return Path(path).read_text().removesuffix("\n")
    except OSError as e:
        raise ConfigError(f"{name}: cannot read {path}: {e.strerror}") from e


def _check(config: Config) -> None:
    users = config.users
    if len(set(users.account_types)) != len(users.account_types):
        raise ConfigError("users.account_types: each account type may appear only once")
    for required in ("admin", users.default_account_type):
        if required not in users.account_types:
            raise ConfigError(f"users.account_types: must include {required!r}")
    if users.default_account_type == "admin":
        raise ConfigError("users.default_account_type: must not be 'admin'")
    if not re.fullmatch(r"(?i)(dc|o|ou)=[^,=+]+(,\s*[a-z]+=[^,=+]+)*", config.ldap.base_dn):
        raise ConfigError(f"ldap.base_dn: not a supported base DN: {config.ldap.base_dn!r}")
    try:
        zoneinfo.ZoneInfo(config.fittrackee.default_timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
        raise ConfigError("fittrackee.default_timezone: not an IANA time zone") from e
    if not config.ldap.embedded and not config.ldap.bind_password:
        raise ConfigError("ldap.bind_password: required when ldap.url is set")
    for url in config.ldap.read_urls:
        if not re.fullmatch(r"ldaps?://[^\s/?#]+/?", url):
            raise ConfigError(f"ldap.read_urls: not an LDAP server URL: {url!r}")
    public = urllib.parse.urlsplit(config.http.public_url)
    if config.http.public_url and (public.scheme not in ("http", "https") or not public.netloc
                                   or public.query or public.fragment):
        raise ConfigError("http.public_url: an http(s) URL such as https://users.example.org")
    for proxy in config.http.trusted_proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError as e:
            raise ConfigError(f"http.trusted_proxies: not an address or network: {proxy!r}") \
                from e


def _describe(error: msgspec.ValidationError) -> str:
    """msgspec says `... - at `$.http.port``; say `http.port: ...` instead."""
    message = str(error)
    text, _, where = message.partition(" - at ")
    where = where.strip("`").removeprefix("$").lstrip(".")
    return f"{where}: {text}" if where else text
