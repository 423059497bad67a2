"""Imported password hashes: stored as slapd verifies them, or kept and checked in Python."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Literal

# Schemes this slapd verifies on bind (ldif/config.ldif loads pw-sha2 and
# pw-pbkdf2; research notes "Imported password hashes"). {CRYPT} covers
# bcrypt $2a$/$2b$/$2y$, $1$, $5$, $6$ and yescrypt $y$ (glibc's crypt).
LDAP_SCHEMES = frozenset({
    "{CRYPT}", "{SSHA}", "{SHA}", "{SMD5}", "{MD5}", "{SHA256}", "{SSHA256}", "{SHA512}",
    "{SSHA512}", "{PBKDF2}", "{PBKDF2-SHA1}", "{PBKDF2-SHA256}", "{PBKDF2-SHA512}", "{ARGON2}",
})
CRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$", "$1$", "$5$", "$6$", "$y$")
PBKDF2_SALT_BYTES = 16  # pw-pbkdf2 verifies no other salt length
DJANGO_PBKDF2 = {"pbkdf2_sha256": ("sha256", "{PBKDF2-SHA256}"),
                 "pbkdf2_sha1": ("sha1", "{PBKDF2-SHA1}")}
MAX_HASH_LENGTH = 1024  # userdirForeignHash's size in ldif/userdir-schema.ldif
SCRYPT_MAX_MEMORY = 256 * 1024 * 1024


@dataclass(frozen=True)
class Stored:
    """Where a password hash goes: `ldap` in userPassword, as is; `foreign`
    in userdirForeignHash, to be checked at the first API login."""

    kind: Literal["ldap", "foreign"]
    value: str


class UnsupportedHash(ValueError):
    """A hash neither slapd nor userdir can verify; the message names its kind."""


def convert(raw: str) -> Stored:
    """The stored form of a hash from any source system (Django, FitTrackee,
    Vikunja, an LDAP directory, Werkzeug); UnsupportedHash otherwise."""
    value = raw.strip()
    if not value or len(value) > MAX_HASH_LENGTH:
        raise UnsupportedHash("empty or oversized password hash")
    prefix = re.match(r"\{[A-Za-z0-9-]+\}", value)
    if prefix:
        name = prefix.group(0).upper()
        if name not in LDAP_SCHEMES:
            raise UnsupportedHash(f"{name} hashes are not verifiable here")
        return Stored("ldap", name + value[len(name):])
    if value.startswith(CRYPT_PREFIXES):
        return Stored("ldap", "{CRYPT}" + value)
    algorithm, _, rest = value.partition("$")
    if algorithm == "argon2":
        return Stored("ldap", "{ARGON2}$" + rest)  # Django: argon2$argon2id$v=19$...
    if algorithm == "bcrypt" and rest.startswith("$2"):
        return Stored("ldap", "{CRYPT}" + rest)  # Django: bcrypt$$2b$12$...
    if algorithm in DJANGO_PBKDF2:
        return _django_pbkdf2(algorithm, value)
    if algorithm in ("sha1", "md5") and rest.startswith("$") and _is_hex(rest[1:]):
        digest = bytes.fromhex(rest[1:])  # Django's unsalted_sha1/unsalted_md5: sha1$$<hex>
        scheme = "{SHA}" if algorithm == "sha1" else "{MD5}"
        return Stored("ldap", scheme + base64.b64encode(digest).decode())
    if re.fullmatch(r"[0-9a-f]{32}", value):  # Django's oldest unsalted MD5
        return Stored("ldap", "{MD5}" + base64.b64encode(bytes.fromhex(value)).decode())
    if _foreign_kind(value) is not None:
        return Stored("foreign", value)
    raise UnsupportedHash(f"unknown password hash format ({algorithm[:20]!r})")


def _django_pbkdf2(algorithm: str, value: str) -> Stored:
    """pbkdf2_sha256$<iterations>$<salt>$<b64 hash> becomes pw-pbkdf2's
    {PBKDF2-SHA256}<iterations>$<ab64 salt>$<ab64 hash> when its salt is 16
    bytes; Django's default 22-character salt stays foreign."""
    parts = value.split("$")
    if len(parts) != 4 or not parts[1].isdigit():
        raise UnsupportedHash(f"malformed {algorithm} hash")
    _, iterations, salt, encoded = parts
    try:
        digest = base64.b64decode(encoded, validate=True)
    except binascii.Error as e:
        raise UnsupportedHash(f"malformed {algorithm} hash") from e
    salt_bytes = salt.encode()
    if len(salt_bytes) != PBKDF2_SALT_BYTES:
        return Stored("foreign", value)
    scheme = DJANGO_PBKDF2[algorithm][1]
    return Stored("ldap", f"{scheme}{iterations}${_ab64(salt_bytes)}${_ab64(digest)}")


def _ab64(data: bytes) -> str:
    """passlib's "adapted base64", which pw-pbkdf2 reads: `.` for `+`, no padding."""
    return base64.b64encode(data).decode().replace("+", ".").rstrip("=")


def _is_hex(text: str) -> bool:
    return re.fullmatch(r"[0-9a-fA-F]+", text) is not None


def _foreign_kind(value: str) -> str | None:
    for kind in ("pbkdf2_sha256$", "pbkdf2_sha1$", "sha1$", "md5$", "scrypt$", "pbkdf2:",
                 "scrypt:"):
        if value.startswith(kind):
            return kind.rstrip("$:")
    return None


def verify(stored: str, password: str) -> bool:
    """Does `password` match a foreign hash (constant-time comparison)?
    A malformed or unknown one matches nothing."""
    try:
        expected, actual = _digests(stored, password.encode())
    except (ValueError, binascii.Error, OverflowError, MemoryError):
        return False
    return hmac.compare_digest(expected, actual)


def _digests(stored: str, password: bytes) -> tuple[bytes, bytes]:
    """(the digest stored, the digest of `password` made the same way)."""
    if stored.startswith("pbkdf2:"):  # Werkzeug: pbkdf2:sha256:600000$salt$hex
        method, salt, hexdigest = stored.split("$")
        _, name, *rounds = method.split(":")
        expected = bytes.fromhex(hexdigest)
        return expected, hashlib.pbkdf2_hmac(name, password, salt.encode(),
                                             int(rounds[0]) if rounds else 600_000)
    if stored.startswith("scrypt:"):  # Werkzeug: scrypt:32768:8:1$salt$hex
        method, salt, hexdigest = stored.split("$")
        n, r, p = (int(x) for x in method.split(":")[1:4])
        expected = bytes.fromhex(hexdigest)
        return expected, hashlib.scrypt(password, salt=salt.encode(), n=n, r=r, p=p,
                                        maxmem=SCRYPT_MAX_MEMORY, dklen=len(expected))
    algorithm, _, rest = stored.partition("$")
    if algorithm in DJANGO_PBKDF2:  # Django: pbkdf2_sha256$iterations$salt$b64
        iterations, salt, encoded = rest.split("$")
        expected = base64.b64decode(encoded, validate=True)
        return expected, hashlib.pbkdf2_hmac(DJANGO_PBKDF2[algorithm][0], password,
                                             salt.encode(), int(iterations), len(expected))
    if algorithm == "scrypt":  # Django: scrypt$salt$n$r$p$b64
        salt, cost, block, lanes, encoded = rest.split("$")
        expected = base64.b64decode(encoded, validate=True)
        return expected, hashlib.scrypt(password, salt=salt.encode(), n=int(cost),
                                        r=int(block), p=int(lanes), maxmem=SCRYPT_MAX_MEMORY,
                                        dklen=len(expected))
    if algorithm in ("sha1", "md5"):  # Django's salted SHA1/MD5: sha1$salt$hex of salt+password
        salt, hexdigest = rest.split("$")
        return bytes.fromhex(hexdigest), hashlib.new(algorithm, salt.encode() + password).digest()
    raise ValueError("unknown foreign hash")
