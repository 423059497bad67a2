"""What the audit log and the metrics cost: the same API with each on and off.

Audit: creates and profile changes through the API on a slapd built from
ldif/ as shipped, against the same slapd configuration without the
accesslog overlay (its database stays, unused), each pair measured
`rounds` times, alternating, and compared by medians.

Metrics: GET one user with metrics.enabled on and off (off counts nothing,
app/api/edge.py): two APIs on one slapd, loaded at the same time, so that
whatever else the machine does slows both alike, each started first in
turn; the verdict is the median of ten rounds' ratios. The machine is
shared and noisy: loaded one after the other, the same API differed by up
to 35% between neighbouring 2 s bursts and 20% between 8 s rounds a minute
apart; side by side, two identical APIs still differ by up to 10% in a
round. A request's counting costs far less (~10 µs of its ~2 ms of CPU;
py-spy: 0.3% of the API's time).
"""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from app import embedded
from bench import seed
from bench.processes import Api, api_server, environment, free_port, measure
from bench.run import Run, ratio, served_per_second

METRICS_TARGET = 0.95
ACCESSLOG_OVERLAY = re.compile(r"^dn: olcOverlay=\{\d+\}accesslog,.*?(?:\n\n|\Z)",
                               re.MULTILINE | re.DOTALL)


def without_audit(target: Path) -> Path:
    """A copy of ldif/ whose main database has no accesslog overlay."""
    source = embedded.find_ldif_dir()
    shutil.copytree(source, target)
    config = target / "config.ldif"
    stripped, count = ACCESSLOG_OVERLAY.subn("", config.read_text())
    if count != 1:
        raise RuntimeError("ldif/config.ldif: no accesslog overlay found to leave out")
    config.write_text(stripped)
    return target


def build(data: Path, size: int, password_hash: str, ldif_dir: Path) -> None:
    """As bench/seed.py builds a directory, from the given ldif/."""
    embedded.initialise(data, seed.BASE_DN, account_types=[], ldif_dir=ldif_dir)
    slapd_d = str(data / "slapd.d")
    subprocess.run([str(embedded.SBIN / "slapmodify"), "-F", slapd_d, "-b", seed.BASE_DN],
                   check=True, capture_output=True, text=True,
                   input=(f"dn: cn=uidNumber,ou=counters,{seed.BASE_DN}\nchangetype: modify\n"
                          f"replace: uidNumber\nuidNumber: {embedded.FIRST_UID_NUMBER + size}\n"))
    subprocess.run([str(embedded.SBIN / "slapadd"), "-q", "-F", slapd_d, "-b", seed.BASE_DN],
                   check=True, capture_output=True, text=True,
                   input=seed.people_ldif(size, password_hash))


@contextmanager
def serving(data: Path, tmp: Path, **settings: str) -> Iterator[Api]:
    slapd = embedded.Slapd(data, free_port())
    slapd.start()
    try:
        env = environment(USERDIR_LDAP__URL=slapd.url, USERDIR_EMBEDDED__DATA_DIR=str(tmp / "api"),
                          USERDIR_LDAP__BIND_PASSWORD=embedded.Layout(data)
                          .read_service_password(), **settings)
        with api_server(env, 1, tmp / "api.log") as api:
            yield api
    finally:
        slapd.stop()


def token(api: Api) -> dict[str, str]:
    answer = httpx.post(f"{api.url}/auth/token", timeout=30,
                        json={"username": seed.ADMIN, "password": seed.PASSWORD})
    answer.raise_for_status()
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def writes(api: Api, duration: float, round_: int) -> dict[str, dict[str, Any]]:
    auth = token(api)
    create = measure("bench.load", {
        "base_url": api.url, "path": "/people", "method": "POST", "headers": auth,
        "json": {"username": f"au{round_}x{{n}}", "password": seed.PASSWORD},
        "concurrency": 4, "duration": duration, "expect": [201]})
    modify = measure("bench.load", {
        "base_url": api.url, "path": f"/people/{seed.username(7)}", "method": "PATCH",
        "headers": auth, "json": {"first_name": "Name{n}"}, "concurrency": 4,
        "duration": duration, "expect": [200]})
    return {"create": create, "modify": modify}


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run whose throughput is the median (the one shown in the report)."""
    ordered = sorted(runs, key=lambda r: served_per_second(r) or 0.0)
    return ordered[len(ordered) // 2]


def compare(run: Run, name: str, size: int, on: list[dict[str, Any]],
            off: list[dict[str, Any]], target: float) -> None:
    shown_on, shown_off = median_run(on), median_run(off)
    rate = ratio(statistics.median(served_per_second(r) or 0.0 for r in on),
                 statistics.median(served_per_second(r) or 0.0 for r in off))
    met = rate is not None and rate >= target and not any(r["errors"] for r in on + off)
    run.row(name, size, 1, shown_on, shown_off, f"≥ {target} x off", met, rate)


def run_all(run: Run, password_hash: str, size: int = 1000, rounds: int = 3) -> None:
    """Rows: create and modify with audit on vs off, GET with metrics on vs off."""
    with tempfile.TemporaryDirectory(prefix="userdir-bench-audit-") as scratch:
        tmp = Path(scratch)
        ldif = {"on": embedded.find_ldif_dir(), "off": without_audit(tmp / "ldif-off")}
        for variant, ldif_dir in ldif.items():
            build(tmp / variant, size, password_hash, ldif_dir)
        results: dict[str, dict[str, list[dict[str, Any]]]] = {
            "on": {"create": [], "modify": []}, "off": {"create": [], "modify": []}}
        for round_ in range(rounds):
            for variant in ("on", "off") if round_ % 2 == 0 else ("off", "on"):
                with serving(tmp / variant, tmp) as api:
                    for kind, summary in writes(api, run.duration, round_).items():
                        results[variant][kind].append(summary)
        for kind in ("create", "modify"):
            compare(run, f"{kind} user, audit log on vs off", size,
                    results["on"][kind], results["off"][kind], 0.7)
        metrics_side_by_side(run, tmp, size, pairs=10, burst=run.duration / 2)


def metrics_side_by_side(run: Run, tmp: Path, size: int, pairs: int, burst: float) -> None:
    """GET one user on two APIs over one slapd, metrics on and off, loaded
    at the same time, `pairs` times for `burst` seconds."""
    data = tmp / "on"
    slapd = embedded.Slapd(data, free_port())
    slapd.start()
    try:
        common = {"USERDIR_LDAP__URL": slapd.url,
                  "USERDIR_LDAP__BIND_PASSWORD": embedded.Layout(data).read_service_password()}
        with api_server(environment(**common, USERDIR_METRICS__ENABLED="true",
                                    USERDIR_EMBEDDED__DATA_DIR=str(tmp / "api-on")),
                        1, tmp / "api-on.log") as on, \
                api_server(environment(**common, USERDIR_METRICS__ENABLED="false",
                                       USERDIR_EMBEDDED__DATA_DIR=str(tmp / "api-off")),
                           1, tmp / "api-off.log") as off:
            runs: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
            headers = {"on": token(on), "off": token(off)}
            with ThreadPoolExecutor(2) as loads:
                for pair in range(pairs):
                    # Both at once: whatever else the machine does meanwhile
                    # slows both alike; each starts first in turn.
                    order = (("on", on), ("off", off)) if pair % 2 == 0 \
                        else (("off", off), ("on", on))
                    running = {name: loads.submit(measure, "bench.load", {
                        "base_url": api.url, "path": f"/people/{seed.username(3)}",
                        "headers": headers[name], "concurrency": 8, "duration": burst})
                        for name, api in order}
                    for name, future in running.items():
                        runs[name].append(future.result())
    finally:
        slapd.stop()
    rates = [ratio(served_per_second(a), served_per_second(b))
             for a, b in zip(runs["on"], runs["off"], strict=True)]
    known = [r for r in rates if r is not None]
    rate = round(statistics.median(known), 2) if known else None
    met = rate is not None and rate >= METRICS_TARGET and not any(
        r["errors"] for r in runs["on"] + runs["off"])
    run.row("GET one user, metrics on vs off", size, 1, median_run(runs["on"]),
            median_run(runs["off"]), f"≥ {METRICS_TARGET} x off", met, rate)
    run.metrics_pairs = {"burst_s": burst, "ratios": known}
