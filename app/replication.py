"""Read replicas, slapd's side: ldif/consumer.ldif turns a userdir cn=config into a consumer's.

Every userdir slapd can be a provider (ldif/config.ldif: syncprov on the
directory and on its access log, and a replicator account). A consumer is
the same configuration plus the changes in ldif/consumer.ldif: delta-syncrepl
from the provider as the replicator, referrals and the chain overlay for
writes, and the outcome of binds forwarded to the provider. The embedded
mode and the OpenLDAP image apply them to the config text before `slapadd
-n0` (slapmodify mangles an overlay added under the frontend: it wrote
`olcDatabase={-1}over.ldif` on 2.5.13); `userdir init --consumer-of` parses
the same text and adds it over LDAP.

Standard library only, like app/embedded.py: the OpenLDAP image runs it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

CONSUMER_LDIF = "consumer.ldif"


class ReplicationError(ValueError):
    """ldif/consumer.ldif asks for a change this module cannot make."""


@dataclass
class Change:
    """One record of an LDIF change file (RFC 2849): an add, or a modify
    whose parts are (operation, attribute, values)."""

    dn: str
    kind: str
    lines: list[str] = field(default_factory=list)  # an add's attribute lines
    parts: list[tuple[str, str, list[str]]] = field(default_factory=list)


def consumer_values(provider_url: str, replicator_password: str) -> dict[str, str]:
    """The placeholders ldif/consumer.ldif needs besides config.ldif's."""
    if not re.fullmatch(r"ldaps?://[^\s\"]+", provider_url):
        raise ReplicationError(f"not an LDAP URL: {provider_url!r}")
    if not replicator_password or re.search(r"[\s\"\\]", replicator_password):
        # It is written into olcSyncrepl between double quotes.
        raise ReplicationError("the replicator password must be given, without spaces, "
                               "quotes or backslashes")
    return {"PROVIDER_URL": provider_url, "REPLICATOR_PW": replicator_password}


def changes(text: str) -> list[Change]:
    """The change records of an LDIF text (comments dropped, lines unfolded)."""
    unfolded = re.sub(r"\n[ \t]", "", text.replace("\r\n", "\n"))
    found = []
    for block in re.split(r"\n\s*\n", unfolded):
        lines = [line for line in block.splitlines() if line and not line.startswith("#")]
        if not lines:
            continue
        dn, kind = _value(lines[0], "dn"), _value(lines[1], "changetype")
        change = Change(dn, kind)
        if kind == "add":
            change.lines = lines[2:]
        elif kind == "modify":
            for part in "\n".join(lines[2:]).split("\n-"):
                head, *values = [line for line in part.strip("\n").splitlines() if line]
                operation, _, attribute = head.partition(":")
                change.parts.append((operation.strip(), attribute.strip(),
                                     [v.partition(":")[2].strip() for v in values]))
        else:
            raise ReplicationError(f"{dn}: changetype {kind} is not supported")
        found.append(change)
    return found


def _value(line: str, name: str) -> str:
    key, _, value = line.partition(":")
    if key.strip().lower() != name:
        raise ReplicationError(f"expected {name}: in {line!r}")
    return value.strip()


def consumer_config(config: str, consumer: str) -> str:
    """A whole cn=config LDIF (for slapadd -n0) with the consumer's changes made:
    modified records get their new values, added records come last."""
    blocks = re.split(r"\n\s*\n", config.strip("\n"))
    added = []
    for change in changes(consumer):
        if change.kind == "add":
            added.append("\n".join([f"dn: {change.dn}", *change.lines]))
            continue
        index = next((i for i, block in enumerate(blocks)
                      if _dn_of(block) == change.dn.lower()), None)
        if index is None:
            raise ReplicationError(f"{change.dn}: no such record in config.ldif")
        for operation, attribute, values in change.parts:
            if operation not in ("add", "replace"):
                raise ReplicationError(f"{change.dn}: {operation} is not supported")
            block = blocks[index]
            if operation == "replace":
                block = _without(block, attribute)
            blocks[index] = block + "".join(f"\n{attribute}: {v}" for v in values)
    return "\n\n".join(blocks + added) + "\n"


def _dn_of(block: str) -> str | None:
    for line in block.splitlines():
        if line.lower().startswith("dn:"):
            return line[3:].strip().lower()
    return None


def _without(block: str, attribute: str) -> str:
    """The record without any value of `attribute` (continuation lines included)."""
    kept: list[str] = []
    dropping = False
    for line in block.splitlines():
        if line[:1] in (" ", "\t") and dropping:
            continue
        dropping = line.split(":", 1)[0].strip().lower() == attribute.lower()
        if not dropping:
            kept.append(line)
    return "\n".join(kept)
