"""API create and delete at 1k and 100k users, before and after the large-group config.

Beside them, what one write of a group costs at each size (ldap3 as the
service account, slapd's overlays included): a member added to and removed
from the account-type group every user is in (cn=user), and the same for a
group of one (cn=admin). A create writes cn=user twice (the join, then
memberof's rewrite when the rename publishes the user), a delete once.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from ldap3 import MODIFY_ADD, MODIFY_DELETE, NONE, SYNC, Connection, Server

from app import embedded
from bench import seed
from bench.processes import api_server, environment, free_port
from bench.run import Run
from bench.stats import summary


def _without(name: str) -> Callable[[str], str]:
    return lambda text: "".join(line for line in text.splitlines(keepends=True)
                                if not line.startswith(f"{name}:"))


def _with(after: str, line: str) -> Callable[[str], str]:
    """The config with `line` added after the first line starting with `after`."""
    return lambda text: re.sub(f"^({re.escape(after)}.*\n)", f"\\g<1>{line}\n", text,
                               count=1, flags=re.MULTILINE)


def _multival(text: str) -> str:
    return _with("olcSizeLimit:", "olcSortVals: member")(
        _with("olcDbMaxSize:", "olcDbMultival: member 100,10")(text))


# config.ldif as measured: "before" is today's without the large-group setting
# of #22; the others are explorations for `python -m bench.scale --variants`.
VARIANTS: dict[str, Callable[[str], str]] = {
    "before": _without("olcIndexHash64"),
    "after": lambda text: text,
    "multival": _multival,
    # memberof leaves renames and deletes of members to refint (asynchronous).
    "async-refint": lambda text: text.replace("olcMemberOfRefint: TRUE",
                                              "olcMemberOfRefint: FALSE"),
}
LABELS = {"before": "old config (32-bit index hashes)", "after": "new config (hash64)",
          "multival": "hash64, multival, sortvals", "async-refint": "memberof refint off"}
OPERATIONS = ("create", "delete")
# Group writes, timed raw: the big account-type group, and a group of one.
GROUP_WRITES = {"add to cn=user": ("user", MODIFY_ADD),
                "remove from cn=user": ("user", MODIFY_DELETE),
                "add to cn=admin": ("admin", MODIFY_ADD),
                "remove from cn=admin": ("admin", MODIFY_DELETE)}
# Added to both groups and taken out again: a staff member (seed.py), never deleted.
PROBE = seed.username(50)
TARGET = 2.0
Key = tuple[str, int, str]  # operation, size, variant


def ldif_variant(target: Path, variant: str) -> Path:
    """A copy of ldif/ whose config.ldif is the variant's."""
    source = embedded.find_ldif_dir()
    shutil.copytree(source, target)
    config = (source / "config.ldif").read_text()
    changed = VARIANTS[variant](config)
    if variant != "after" and changed == config:
        raise RuntimeError(f"config.ldif has nothing the {variant!r} variant changes")
    (target / "config.ldif").write_text(changed)
    return target


@dataclass
class Directory:
    """One seeded slapd with the API in front of it, signed in as the seeded admin."""

    size: int
    variant: str
    client: httpx.Client
    deletable: Iterator[int]
    ldap: Callable[[], Connection]  # bound as the service, for the raw group writes
    created: list[str] = field(default_factory=list)

    def group_writes(self, times: int) -> dict[str, list[float]]:
        """Each of GROUP_WRITES `times` times (added, then removed: as it was),
        on a connection of its own (one held through the seeding of the
        other directories would meet slapd's idle timeout)."""
        timed: dict[str, list[float]] = {operation: [] for operation in GROUP_WRITES}
        conn = self.ldap()
        try:
            for _ in range(times):
                for operation, (group, change) in GROUP_WRITES.items():
                    dn = f"cn={group},ou=groups,{seed.BASE_DN}"
                    started = time.perf_counter()
                    done = conn.modify(dn, {"member": [(change, [f"uid={PROBE},{seed.PEOPLE}"])]})
                    elapsed = (time.perf_counter() - started) * 1000
                    if not done:
                        raise RuntimeError(f"{operation}: {conn.result}")
                    timed[operation].append(elapsed)
        finally:
            with contextlib.suppress(Exception):
                conn.unbind()
        return timed

    def create(self, name: str) -> float:
        started = time.perf_counter()
        answer = self.client.post("/people", json={"username": name, "password": seed.PASSWORD})
        elapsed = (time.perf_counter() - started) * 1000
        if answer.status_code != 201:
            raise RuntimeError(f"create {name}: {answer.status_code} {answer.text[:200]}")
        return elapsed

    def delete(self) -> float:
        """Delete a seeded member of cn=user from the middle of the directory."""
        name = seed.username(next(self.deletable))
        started = time.perf_counter()
        answer = self.client.delete(f"/people/{name}")
        elapsed = (time.perf_counter() - started) * 1000
        if answer.status_code != 204:
            raise RuntimeError(f"delete {name}: {answer.status_code} {answer.text[:200]}")
        return elapsed


@dataclass
class Results:
    sizes: list[int] = field(default_factory=lambda: [1000, 100_000])
    variants: list[str] = field(default_factory=lambda: ["before", "after"])
    latencies: dict[Key, list[float]] = field(default_factory=dict)
    rounds: list[dict[Key, float]] = field(default_factory=list)

    def p50(self, key: Key) -> float | None:
        values = self.latencies.get(key)
        return round(statistics.median(values), 2) if values else None

    def round_ratios(self, a: Key, b: Key) -> list[float]:
        """a ÷ b in each round where both were measured (the same minute of a noisy machine)."""
        return [round(r[a] / r[b], 2) for r in self.rounds if r.get(a) and r.get(b)]


@contextlib.contextmanager
def started(tmp: Path, size: int, variant: str, password_hash: str) -> Iterator[Directory]:
    data = tmp / f"{variant}-{size}"
    began = time.perf_counter()
    ldif = tmp / f"ldif-{variant}"
    if not ldif.exists():
        ldif_variant(ldif, variant)
    embedded.initialise(data, seed.BASE_DN, [], ldif_dir=ldif)
    seed.build(data, size, password_hash)  # initialised above: it adds the users only
    print(f"  {size} users seeded ({variant}) in {time.perf_counter() - began:.1f} s", flush=True)
    slapd = embedded.Slapd(data, free_port())
    slapd.start()
    try:
        env = environment(USERDIR_LDAP__URL=slapd.url,
                          USERDIR_LDAP__BIND_PASSWORD=embedded.Layout(data).read_service_password(),
                          USERDIR_EMBEDDED__DATA_DIR=str(tmp / f"api-{variant}-{size}"))
        service = (embedded.service_dn(seed.BASE_DN),
                   embedded.Layout(data).read_service_password())

        def ldap() -> Connection:
            return Connection(Server(slapd.url, get_info=NONE), *service,
                              client_strategy=SYNC, auto_bind=True, raise_exceptions=False)
        with api_server(env, 1, tmp / "api.log") as api, \
                httpx.Client(base_url=api.url, timeout=60) as client:
            login = client.post("/auth/token",
                                json={"username": seed.ADMIN, "password": seed.PASSWORD})
            login.raise_for_status()
            client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
            middle = (i for i in range(size // 2, size) if i % 50)  # not staff (seed.py)
            yield Directory(size, variant, client, middle, ldap)
    finally:
        slapd.stop()


def measure(results: Results, rounds: int, per_round: int, password_hash: str) -> Results:
    """Every directory running at once, measured in turns: each round gives
    each of them `per_round` creates then as many deletes, in an order that
    alternates between rounds, so that a busy minute falls on all of them.
    `results` fills as rounds end: what was measured survives a failure."""
    sizes, variants = results.sizes, results.variants
    with tempfile.TemporaryDirectory(prefix="userdir-scale-") as tmp, \
            contextlib.ExitStack() as stack:
        directories = [stack.enter_context(started(Path(tmp), size, variant, password_hash))
                       for size in sizes for variant in variants]
        for directory in directories:  # warm-up: connections, caches, first JWT checks
            directory.create(f"warm{directory.variant}")
            directory.delete()
        for number in range(rounds):
            figures: dict[Key, float] = {}
            order = directories if number % 2 == 0 else directories[::-1]
            for directory in order:
                timed = {"create": [directory.create(f"scale{number}x{i}")
                                    for i in range(per_round)],
                         "delete": [directory.delete() for _ in range(per_round)]}
                timed.update(directory.group_writes(per_round))
                for operation, values in timed.items():
                    key = (operation, directory.size, directory.variant)
                    results.latencies.setdefault(key, []).extend(values)
                    figures[key] = statistics.median(values)
            results.rounds.append(figures)
            print(f"  round {number + 1}/{rounds}: " + ", ".join(
                f"{o} {s} {v} {figures[(o, s, v)]:.0f} ms" for o, s, v in figures
                if o in OPERATIONS), flush=True)
    return results


def for_bench(quick: bool) -> Results:
    """What `make bench` measures: 1k and 100k users (--quick: 1k and 10k),
    before and after the large-group config, and after with memberof
    leaving deletes and renames to refint (README: Large groups)."""
    return Results(sizes=[1000, 10_000 if quick else 100_000],
                   variants=["before", "after", "async-refint"])


def run_all(run: Run, results: Results, password_hash: str, quick: bool) -> None:
    """`make bench`'s part: 5 rounds of 10 creates and deletes (--quick: 2 of 5)."""
    measure(results, 2 if quick else 5, 5 if quick else 10, password_hash)
    record(run, results)


def growth(results: Results, operation: str, variant: str) -> float | None:
    """p50 at the largest size ÷ p50 at the smallest: the median of the rounds' ratios."""
    small, large = min(results.sizes), max(results.sizes)
    ratios = results.round_ratios((operation, large, variant), (operation, small, variant))
    return round(statistics.median(ratios), 2) if ratios else None


def record(run: Run, results: Results) -> None:
    """One row per operation, size and config in the main table; the ratio is
    the growth from the smallest size, the target is the new config's."""
    small, large = min(results.sizes), max(results.sizes)
    for operation in OPERATIONS:
        for variant in results.variants:
            for size in results.sizes:
                values = results.latencies.get((operation, size, variant), [])
                ratio = growth(results, operation, variant) if size == large else None
                judged = variant == "after" and size == large
                run.row(f"{operation} user, one at a time, {LABELS[variant]}", size, 1,
                        summary(values, sum(values) / 1000, 0), None,
                        f"≤ {TARGET:g} x at {small}" if judged else "-",
                        (ratio is not None and ratio <= TARGET) if judged else None, ratio)


def section(results: Results) -> list[str]:
    """RESULTS.md's part on large groups: per-round ratios, which noise moves less."""
    if not results.rounds:
        return []
    small, large = min(results.sizes), max(results.sizes)
    lines = ["", "## Large groups: create and delete at "
             f"{small} and {large} users", "",
             f"Through the API, one request at a time; {len(results.rounds)} interleaved "
             "rounds, every directory running at once. A round's figure is its p50; the "
             "ratios are per round (median, then the range). The old config is today's "
             "ldif/ without olcIndexHash64: a directory made before it and not upgraded "
             "(`userdir upgrade`).", "",
             f"| operation | config | p50 at {small} | p50 at {large} "
             f"| {large} ÷ {small}, per round | target | verdict |",
             "|---|---|---|---|---|---|---|"]
    for operation in OPERATIONS:
        for variant in results.variants:
            per_round = results.round_ratios((operation, large, variant),
                                             (operation, small, variant))
            ratio = growth(results, operation, variant)
            judged = variant == "after"
            verdict = "-" if not judged else \
                "met" if ratio is not None and ratio <= TARGET else "**MISSED**"
            lines.append(f"| {operation} | {LABELS[variant]} "
                         f"| {results.p50((operation, small, variant))} "
                         f"| {results.p50((operation, large, variant))} | {_spread(per_round)} "
                         f"| {f'≤ {TARGET:g}' if judged else '-'} | {verdict} |")
    lines += ["", "What one write of a group costs (ldap3 as the service account, one at a "
              f"time; `{PROBE}` added to the group, then removed: memberof updates his "
              "memberOf each time). cn=user holds every user of the default type, cn=admin "
              "one user.", "",
              f"| write | config | p50 at {small} | p50 at {large} "
              f"| {large} ÷ {small}, per round |", "|---|---|---|---|---|"]
    for operation in GROUP_WRITES:
        for variant in results.variants:
            per_round = results.round_ratios((operation, large, variant),
                                             (operation, small, variant))
            lines.append(f"| {operation} | {LABELS[variant]} "
                         f"| {results.p50((operation, small, variant))} "
                         f"| {results.p50((operation, large, variant))} "
                         f"| {_spread(per_round)} |")
    if "before" in results.variants:
        lines += ["", "| operation | users | new config ÷ old, per round |", "|---|---|---|"]
        for operation in OPERATIONS:
            for size in results.sizes:
                change = results.round_ratios((operation, size, "after"),
                                              (operation, size, "before"))
                lines.append(f"| {operation} | {size} | {_spread(change)} |")
    return lines


def _spread(ratios: list[float]) -> str:
    if not ratios:
        return "-"
    return f"{statistics.median(ratios):.2f} ({min(ratios):.2f} to {max(ratios):.2f})"


def append(out: Path, results: Results) -> None:
    """Add the section to the RESULTS.md bench/report.py has just written."""
    lines = section(results)
    if lines and (out / "RESULTS.md").exists():
        with (out / "RESULTS.md").open("a") as f:
            f.write("\n".join(lines) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bench.scale`: the same measurement alone, printed."""
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--sizes", default="1000,100000")
    parser.add_argument("--variants", default="before,after",
                        help=f"among {', '.join(VARIANTS)}")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=10)
    args = parser.parse_args(argv)
    results = Results([int(s) for s in args.sizes.split(",")], args.variants.split(","))
    measure(results, args.rounds, args.per_round, seed.hashed_password())
    print("\n".join(section(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
