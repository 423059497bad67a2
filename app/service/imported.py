"""The first API login of a user imported with a hash slapd cannot verify."""

from __future__ import annotations

import logging

from app.directory import Directory, PersonEntry
from app.directory.imports import ForeignHashes
from app.directory.schema import first
from app.domain import PolicyViolation
from app.migration import hashes

log = logging.getLogger("userdir.imported")


def log_in(directory: Directory, person: PersonEntry, password: str) -> str | None:
    """Check `password` against the person's imported hash (Django's default
    PBKDF2 with its 22-character salt, Werkzeug's, Django's scrypt or salted
    SHA1: `userdir import` kept them in userdirForeignHash) after the LDAP
    bind failed. None: there is none, or it does not match (the login fails
    as any other). On a match slapd gets the password (hashed argon2) and the
    foreign hash goes, in one modify conditional on that very hash, so from
    now on LDAP binds work too; returns the password stamp (pwdChangedTime)
    to issue tokens under. A password slapd's policy refuses (shorter than
    pwdMinLength) still logs in, and its foreign hash stays until the user
    changes it.

    The comparison is constant-time (hmac.compare_digest) and costs what its
    hash asks (Django: 10^6 PBKDF2 rounds), once per user."""
    foreign = ForeignHashes(directory.ldap)
    stored = foreign.read(person.dn)
    if stored is None or not hashes.verify(stored, password):
        return None
    try:
        stamp = foreign.replace(person.dn, stored, password)
    except PolicyViolation:
        log.warning("imported password of %s kept as imported: slapd's policy refuses it",
                    person.dn)
        return first(person.entry, "pwdChangedTime") or ""
    if stamp is None:  # replaced meanwhile (an admin's reset, a parallel login)
        return None
    directory.listing.invalidate()
    return stamp
