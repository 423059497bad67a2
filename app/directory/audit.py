"""The audit marker: a write to a person or a group says who asked, in the same operation.

userdir writes as its service account, so slapd's access log alone would
name the service for every API change. Proxied authorization (RFC 4370) would
name the user, but then slapd checks the user's own rights, and users (admins
included) may write nothing but their password over LDAP: every profile
change would fail (tried on 2.5.13: insufficientAccess). So every add and
modify of an entry under ou=people, ou=groups (and ou=staging, where users
are assembled) also replaces `userdirChange` with the request's origin
(app/requests.py) as JSON; slapo-accesslog logs it with the change. A delete
or a rename cannot carry attributes: the marker is written just before it,
tagged `"before"`, and the log's reqOld (olcAccessLogOld, ldif/config.ldif)
holds it. An entry whose classes do not allow the marker gets userdirPerson
or userdirGroup in the same modify; if even that is refused, the write goes
ahead without the marker: the marker never makes a write fail.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ldap3 import MODIFY_ADD, MODIFY_REPLACE
from ldap3.utils.dn import parse_dn

from app.directory.controls import Control
from app.directory.errors import (
    ATTRIBUTE_OR_VALUE_EXISTS,
    INSUFFICIENT_ACCESS,
    NO_SUCH_OBJECT,
    OBJECT_CLASS_VIOLATION,
    LdapResult,
)
from app.directory.names import Tree, normalise_dn
from app.directory.operations import Changes, Ldap
from app.directory.pool import ConnectionPool
from app.requests import describe

MARKER = "userdirChange"
UNDEFINED_ATTRIBUTE = 17  # a directory made before the marker existed: its schema lacks it
log = logging.getLogger("userdir.audit")
# What a second try may meet: the class was added meanwhile, or the writer
# may not change object classes; then the write goes ahead unmarked.
_REFUSED = (OBJECT_CLASS_VIOLATION, ATTRIBUTE_OR_VALUE_EXISTS, INSUFFICIENT_ACCESS)


def marker(before: str | None = None) -> str:
    """The marker's value: "before" first (the reader matches it as a prefix)."""
    facts: dict[str, str] = {"before": before} if before else {}
    return json.dumps({**facts, **describe()}, separators=(",", ":"))


@functools.lru_cache(maxsize=4096)
def parent_of(dn: str) -> str:
    """The normalised DN of an entry's parent (names.normalise_dn's form)."""
    parts = parse_dn(dn, escape=False, strip=True)[1:]
    return ",".join(f"{attr.lower()}={value.lower()}" for attr, value, _ in parts)


class AuditedLdap(Ldap):
    """Ldap whose writes to people and groups carry the marker."""

    def __init__(self, pool: ConnectionPool, tree: Tree) -> None:
        super().__init__(pool)
        self.tree = tree
        self._classes = {normalise_dn(tree.people): "userdirPerson",
                         normalise_dn(tree.groups): "userdirGroup"}
        self._staging = normalise_dn(tree.staging)
        self.marking = True

    def _class_for(self, dn: str) -> str | None:
        """The auxiliary class that allows the marker on this entry, if it is audited."""
        return self._classes.get(parent_of(dn)) if self.marking else None

    def _unknown_marker(self) -> None:
        """Stop marking, once, where slapd's schema has no userdirChange."""
        if self.marking:
            self.marking = False
            log.warning("the directory's schema has no %s: audit records of API changes name "
                        "the service account, not the caller", MARKER)

    def add(self, dn: str, object_classes: Sequence[str], attributes: Mapping[str, Any],
            subject: str = "entry") -> None:
        staged = parent_of(dn) == self._staging and self.marking
        needed = "userdirPerson" if staged else self._class_for(dn)
        if needed is None or MARKER in attributes:
            super().add(dn, object_classes, attributes, subject)
            return
        classes = list(object_classes)
        if needed.lower() not in {c.lower() for c in classes}:
            classes.append(needed)
        try:
            super().add(dn, classes, {**attributes, MARKER: [marker()]}, subject)
        except LdapResult as e:
            if e.code != UNDEFINED_ATTRIBUTE:
                raise
            self._unknown_marker()
            super().add(dn, object_classes, attributes, subject)

    def modify(self, dn: str, changes: Changes, *, controls: Sequence[Control] | None = None,
               tolerate: Iterable[int] = (), subject: str = "entry") -> dict[str, Any]:
        tolerated = tuple(tolerate)
        needed = self._class_for(dn)
        if needed is None or MARKER in changes or OBJECT_CLASS_VIOLATION in tolerated:
            return super().modify(dn, changes, controls=controls, tolerate=tolerated,
                                  subject=subject)
        marked = {**changes, MARKER: [(MODIFY_REPLACE, [marker()])]}
        result = super().modify(dn, marked, controls=controls,
                                tolerate=(*tolerated, OBJECT_CLASS_VIOLATION, UNDEFINED_ATTRIBUTE),
                                subject=subject)
        if result["result"] == UNDEFINED_ATTRIBUTE and UNDEFINED_ATTRIBUTE not in tolerated:
            self._unknown_marker()
            return super().modify(dn, changes, controls=controls, tolerate=tolerated,
                                  subject=subject)
        if result["result"] != OBJECT_CLASS_VIOLATION:
            return result
        result = super().modify(dn, _with_class(marked, needed), controls=controls,
                                tolerate=(*tolerated, *_REFUSED), subject=subject)
        if result["result"] not in _REFUSED or result["result"] in tolerated:
            return result
        return super().modify(dn, changes, controls=controls, tolerate=tolerated,
                              subject=subject)

    def delete(self, dn: str, *, controls: Sequence[Control] | None = None,
               tolerate: Iterable[int] = (), subject: str = "entry") -> int:
        self._announce(dn, "delete")
        return super().delete(dn, controls=controls, tolerate=tolerate, subject=subject)

    def rename(self, dn: str, new_rdn: str, new_superior: str | None = None,
               subject: str = "entry") -> None:
        self._announce(dn, "rename")  # a publish from ou=staging is not announced
        super().rename(dn, new_rdn, new_superior, subject)

    def _announce(self, dn: str, operation: str) -> None:
        """Write the marker of the delete or rename about to happen (its
        failure, the entry gone meanwhile included, is the operation's to meet)."""
        needed = self._class_for(dn)
        if needed is None:
            return
        announced: Changes = {MARKER: [(MODIFY_REPLACE, [marker(operation)])]}
        result = Ldap.modify(self, dn, announced,
                             tolerate=(NO_SUCH_OBJECT, UNDEFINED_ATTRIBUTE, *_REFUSED))
        if result["result"] == UNDEFINED_ATTRIBUTE:
            self._unknown_marker()
        elif result["result"] == OBJECT_CLASS_VIOLATION:
            Ldap.modify(self, dn, _with_class(announced, needed),
                        tolerate=(NO_SUCH_OBJECT, *_REFUSED))


def _with_class(changes: Changes, needed: str) -> Changes:
    """The same changes, adding the auxiliary class (unless they add it already)."""
    operations = list(changes.get("objectClass", []))
    if not any(op == MODIFY_ADD and needed.lower() in {str(v).lower() for v in vals}
               for op, vals in operations):
        operations.insert(0, (MODIFY_ADD, [needed]))
    return {**changes, "objectClass": operations}
