"""`userdir import`: read, check everything, then write (or, with --dry-run, only say what)."""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from app.config import Config
from app.domain import AccountTypes
from app.migration import formats, offline, online
from app.migration.mapping import Mapper
from app.migration.plan import Plan, make_plan
from app.migration.progress import Meter, interruptible
from app.migration.records import Outcome
from app.pictures import Pictures, PictureSettings

SHOWN_PROBLEMS = 20  # problems printed when there is no --report file


@dataclass
class Options:
    source: Path
    kind: str
    mapping: dict[str, str] = field(default_factory=dict)
    pictures_dir: Path | None = None
    dry_run: bool = False
    update: bool = False
    report: Path | None = None
    offline: bool = False


def parse_mapping(items: list[str]) -> dict[str, str]:
    """`--map column=field` pairs; `column=` leaves a column out."""
    mapping: dict[str, str] = {}
    for item in items:
        column, sep, name = item.partition("=")
        if not sep or not column.strip():
            raise ValueError(f"--map {item!r}: expected column=field")
        if name.strip() and name.strip() not in formats.FIELDS:
            raise ValueError(f"--map {item!r}: unknown field {name.strip()!r} (fields: "
                             f"{', '.join(sorted(formats.FIELDS))})")
        mapping[column.strip()] = name.strip()
    return mapping


def run(config: Config, options: Options, out: TextIO | None = None) -> int:
    """0: every row in (or already there); 1: some rows reported; 130: stopped by Ctrl-C."""
    out = out or sys.stdout
    types = AccountTypes(config.users.account_types, config.users.default_account_type)
    settings = config.pictures
    mapper = Mapper(types, options.pictures_dir, Pictures(PictureSettings(
        max_side=settings.max_side, thumbnail_side=settings.thumbnail_side,
        quality=settings.quality, max_pixels=settings.max_pixels)))
    rows = formats.read(options.source, options.kind, options.mapping)
    if options.offline:
        return _finish(offline.run(config, rows, mapper, options.dry_run), options, out)
    with online.opened(config) as importer:
        known = importer.known()
        plan = make_plan(rows, mapper, known)
        if options.dry_run:
            return _finish(plan, options, out, dry=True)
        with interruptible() as interrupt:
            importer.reserve_ids(plan, known)
            meter = Meter("import", len(plan.new))
            try:
                added = importer.add(plan, meter, interrupt)
            finally:
                meter.close()
            if interrupt.requested:
                plan.outcomes.append(Outcome(0, "", "stopped",
                                             f"{added} added; run the same import again "
                                             "to go on"))
                _finish(plan, options, out, added=added)
                return 130
            for candidate, person in plan.existing:
                plan.outcomes.append(importer.settle(candidate, person.dn, person.types,
                                                     options.update))
    return _finish(plan, options, out, added=added)


def _finish(plan: Plan, options: Options, out: TextIO, *, dry: bool = False,
            added: int | None = None) -> int:
    source = options.source.name
    problems = [o for o in plan.outcomes if o.status in ("error", "warning", "stopped")]
    if options.report is not None:
        with options.report.open("w", encoding="utf-8") as report:
            for outcome in sorted(problems, key=lambda o: o.line):
                print(outcome.text(source), file=report)
    else:
        for outcome in problems[:SHOWN_PROBLEMS]:
            print(outcome.text(source), file=sys.stderr)
        if len(problems) > SHOWN_PROBLEMS:
            print(f"... {len(problems) - SHOWN_PROBLEMS} more (use --report FILE)",
                  file=sys.stderr)
    print(summary(plan, dry=dry, added=added), file=out)
    return 1 if plan.errors else 0


def summary(plan: Plan, *, dry: bool = False, added: int | None = None) -> str:
    counts = Counter(o.status for o in plan.outcomes)
    if dry:
        head = f"dry run: {plan.rows} rows; would add {len(plan.new)}"
    else:
        head = f"{plan.rows} rows; added {added if added is not None else len(plan.new)}"
    parts = [head] + [f"{counts[s]} {s}" for s in ("updated", "unchanged", "resumed", "error",
                                                     "warning") if counts[s]]
    if dry and plan.existing:
        parts.append(f"{len(plan.existing)} already there")
    return "import: " + ", ".join(parts)
