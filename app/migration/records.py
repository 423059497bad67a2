"""What an import handles: source rows, the users made of them, and what became of each."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.domain import Profile
from app.migration.hashes import Stored

Value = str | bytes | None


@dataclass
class Row:
    """One record of the source, its fields under userdir's names."""

    line: int
    fields: dict[str, Value]
    problem: str | None = None  # the record could not even be parsed


@dataclass
class Candidate:
    """A user as the import would make him, every value checked."""

    line: int
    username: str
    account_type: str
    active: bool
    profile: Profile
    uid_number: int | None = None
    password: Stored | None = None  # a hash: in userPassword, or userdirForeignHash
    cleartext: str | None = None  # hashed by slapd (ppolicy), online only
    photo: bytes | None = None  # a normalised JPEG
    created: str | None = None  # GeneralizedTime; kept by the offline import only
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Outcome:
    """One line of the report: what became of one source record."""

    line: int
    username: str
    status: str  # added, updated, unchanged, resumed, error, warning
    reason: str = ""

    def text(self, source: str) -> str:
        where = f"{source}:{self.line}: {self.username or '-'}: {self.status}"
        return f"{where}: {self.reason}" if self.reason else where
