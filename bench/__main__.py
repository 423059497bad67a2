"""`python -m bench`: seed directories, run the API and raw ldap3 side by side, report ratios.

Every headline figure is a ratio measured in the same run (against raw LDAP,
or against the same request without an attack going on): this machine is
shared and noisy, so absolute figures only give the scale.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shlex
import sys
import tempfile
import time
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
from ldap3 import MODIFY_REPLACE, SAFE_SYNC, Connection, Server
from PIL import Image

from app import embedded
from bench import abuse, audit, faces, profile, replication, report, scale, seed
from bench.processes import ROOT, Api, api_server, environment, free_port, measure, memory_mb
from bench.run import Run, ratio, served_per_second

Q = "bench0001"  # matches bench000100..bench000199 whatever the size
GET_TARGET = 0.8  # GET one user, API ÷ raw ldap3 throughput (issue #22)


def admin_token(api: Api) -> str:
    answer = httpx.post(f"{api.url}/auth/token", timeout=30,
                        json={"username": seed.ADMIN, "password": seed.PASSWORD})
    answer.raise_for_status()
    token: str = answer.json()["access_token"]
    return token


def listing(run: Run, url: str, token: str, ldap: dict[str, Any], size: int,
            path: str, name: str, query: str, raw_filter: str,
            total: int) -> list[float | None]:
    """First, middle and last page of 50, sorted by username; 20 requests each."""
    last = max(1, math.ceil(total / 50))
    p50s: list[float | None] = []
    for label, page in (("first", 1), ("middle", max(1, last // 2)), ("last", last)):
        p50s.append(None)
        with run.scenario(f"{name}, {label} page", size):
            api = measure("bench.load", {
                "base_url": url, "path": f"{path}{query}&page={page}",
                "headers": {"Authorization": f"Bearer {token}"}, "concurrency": 1,
                "duration": run.duration, "requests": 20})
            raw = measure("bench.raw", {**ldap, "op": "window", "offset": (page - 1) * 50,
                                        "filter": raw_filter, "concurrency": 1,
                                        "duration": run.duration, "requests": 20})
            p50 = api["p50_ms"]
            met = p50 is not None and p50 <= 100 and api["errors"] == 0
            run.row(f"{name}, {label} page", size, 1, api, raw, "p50 ≤ 100 ms", met,
                    ratio(p50, raw["p50_ms"]))
            p50s[-1] = p50
    return p50s


def throughput(run: Run, name: str, size: int, workers: int, load: dict[str, Any],
               raw: dict[str, Any], target: float) -> None:
    with run.scenario(name, size, workers):
        api = measure("bench.load", {"duration": run.duration, **load})
        base = measure("bench.raw", {"duration": run.duration, **raw})
        rate = ratio(served_per_second(api), served_per_second(base))
        met = rate is not None and rate >= target and api["errors"] == 0
        run.row(name, size, workers, api, base, f"≥ {target} x raw throughput", met, rate)


def big_jpeg() -> bytes:
    """A 20-megapixel JPEG (5000x4000: pictures.max_pixels, the largest stored
    picture that is served) with some detail, as a camera might give."""
    image = Image.radial_gradient("L").resize((5000, 4000)).convert("RGB")
    out = BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def pictures(run: Run, url: str, ldap: dict[str, Any], size: int) -> None:
    """A 20 MP jpegPhoto written by an LDAP tool: thumbnail first, then ETag → 304."""
    with run.scenario("thumbnail of a 20 MP JPEG, first request", size):
        data = big_jpeg()
        conn = Connection(Server(ldap["url"], get_info=None), ldap["bind_dn"],
                          ldap["password"], client_strategy=SAFE_SYNC, auto_bind=True)
        names = [seed.username(10 + i) for i in range(5)]
        for name in names:
            conn.modify(f"uid={name},{seed.PEOPLE}", {"jpegPhoto": [(MODIFY_REPLACE, [data])]})
        conn.unbind()
        firsts: list[float] = []
        statuses: dict[str, int] = {}
        for name in names:
            started = time.perf_counter()
            response = httpx.get(f"{url}/people/{name}/photo/thumbnail", timeout=30)
            firsts.append((time.perf_counter() - started) * 1000)
            code = str(response.status_code)
            statuses[code] = statuses.get(code, 0) + 1
        etag = response.headers.get("etag", "")
        p50, errors = round(sorted(firsts)[2], 2), len(firsts) - statuses.get("200", 0)
        first = {"requests": len(firsts), "errors": errors, "statuses": statuses,
                 "p50_ms": p50, "p99_ms": round(max(firsts), 2), "per_second": None}
        run.row("thumbnail of a 20 MP JPEG, first request", size, 1, first, None,
                "≤ 60 ms", p50 <= 60 and errors == 0)
    with run.scenario("thumbnail, repeated request (ETag → 304)", size):
        repeat = measure("bench.load", {
            "base_url": url, "path": f"/people/{names[-1]}/photo/thumbnail",
            "headers": {"If-None-Match": etag}, "concurrency": 1, "duration": run.duration,
            "requests": 200, "expect": [304]})
        p50 = repeat["p50_ms"]
        run.row("thumbnail, repeated request (ETag → 304)", size, 1, repeat, None, "≤ 5 ms",
                p50 is not None and p50 <= 5 and repeat["errors"] == 0)


def one_worker(run: Run, api: Api, ldap: dict[str, Any], size: int, full: bool,
               largest: bool) -> None:
    token = admin_token(api)
    auth = {"Authorization": f"Bearer {token}"}
    text = f"(|(uid=*{Q}*)(cn=*{Q}*)(mail=*{Q}*)(givenName=*{Q}*)(sn=*{Q}*))"
    run.listing_p50[size] = listing(
        run, api.url, token, ldap, size, "/people", "native list by username",
        "?sort=username&per_page=50", "(objectClass=inetOrgPerson)", size + 1)
    run.listing_q_p50[size] = listing(
        run, api.url, token, ldap, size, "/people", "native list by username, q",
        f"?sort=username&per_page=50&q={Q}", f"(&(objectClass=inetOrgPerson){text})", 100)
    # fittrackee's q is a substring of the username only.
    run.fittrackee_p50[size] = listing(
        run, api.url, token, ldap, size, "/api/users", "fittrackee list by username",
        "?order_by=username&per_page=50", "(objectClass=inetOrgPerson)", size + 1)
    listing(run, api.url, token, ldap, size, "/api/users", "fittrackee list by username, q",
            f"?order_by=username&per_page=50&q={Q}",
            f"(&(objectClass=inetOrgPerson)(uid=*{Q}*))", 100)
    faces.console(run, api, ldap, size)
    faces.scim(run, api, ldap, size, token, provisioning=full or largest)
    if full:
        user = seed.username(3)
        raw_get = {**ldap, "op": "search", "uid": user, "concurrency": 8}
        throughput(run, "GET one user (native)", size, 1, {
            "base_url": api.url, "path": f"/people/{user}", "headers": auth,
            "concurrency": 8}, raw_get, GET_TARGET)
        throughput(run, "GET one user (fittrackee)", size, 1, {
            "base_url": api.url, "path": f"/api/users/{user}", "headers": auth,
            "concurrency": 8}, raw_get, GET_TARGET)
        with run.scenario("where GET one user's time goes (py-spy)", size):
            run.profile = profile.get_one_user(api, f"/people/{user}", auth, run.duration)
        login_user = seed.username(2)
        throughput(run, "login", size, 1, {
            "base_url": api.url, "path": "/auth/token", "method": "POST",
            "json": {"username": login_user, "password": seed.PASSWORD},
            "concurrency": 4, "expect": [200]},
            {**ldap, "op": "bind", "concurrency": 4,
             "user_dn": f"uid={login_user},{seed.PEOPLE}",
             "user_password": seed.PASSWORD}, 0.8)
        pictures(run, api.url, ldap, size)
    if full or largest:
        # At the largest size too: a new user joins a type group that
        # already has every other user as a member.
        throughput(run, "create user", size, 1, {
            "base_url": api.url, "path": "/people", "method": "POST", "headers": auth,
            "json": {"username": "api{n}", "password": seed.PASSWORD},
            "concurrency": 4, "expect": [201]},
            {**ldap, "op": "create", "concurrency": 4, "tag": size}, 0.5)
    run.rss[size] = memory_mb(api.pid)


def directory_size(slapd: embedded.Slapd) -> dict[str, float | None]:
    """The database on disk (allocated blocks) and slapd's memory, after the
    listing scenarios have read every page."""
    database = slapd.layout.db_dir / "data.mdb"
    pid = slapd.process.pid if slapd.process else None
    return {"db_mb": round(database.stat().st_blocks * 512 / 2**20, 1),
            "slapd_rss_mb": memory_mb(pid) if pid else None}


def one_size(run: Run, size: int, password_hash: str, full: bool, largest: bool,
             with_abuse: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="userdir-bench-") as tmp:
        data = Path(tmp) / "data"
        started = time.perf_counter()
        seed.build(data, size, password_hash)
        seeded = time.perf_counter() - started
        print(f"{size} users seeded in {seeded:.1f} s", flush=True)
        slapd = embedded.Slapd(data, free_port())
        slapd.start()
        run.directory[size] = {"seed_s": round(seeded, 1)}
        log = Path(tmp) / "api.log"
        try:
            password = embedded.Layout(data).read_service_password()
            env = environment(USERDIR_LDAP__URL=slapd.url,
                              USERDIR_LDAP__BIND_PASSWORD=password,
                              USERDIR_EMBEDDED__DATA_DIR=str(Path(tmp) / "api"))
            ldap = {"url": slapd.url, "bind_dn": embedded.service_dn(seed.BASE_DN),
                    "password": password, "people": seed.PEOPLE, "base": seed.BASE_DN}
            with run.scenario("API with one worker", size), api_server(env, 1, log) as api:
                one_worker(run, api, ldap, size, full, largest)
            run.directory[size].update(directory_size(slapd))
            if full:
                with run.scenario("GET one user (native)", size, 2), \
                        api_server(env, 2, log) as api:
                    user = seed.username(3)
                    throughput(run, "GET one user (native)", size, 2, {
                        "base_url": api.url, "path": f"/people/{user}",
                        "headers": {"Authorization": f"Bearer {admin_token(api)}"},
                        "concurrency": 8},
                        {**ldap, "op": "search", "uid": user, "concurrency": 8},
                        GET_TARGET)
            if with_abuse:
                with run.scenario("abuse: API with one worker", size), \
                        api_server(env, 1, log) as api:
                    abuse.run_all(run, api, slapd, size, Path(tmp))
        finally:
            slapd.stop()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--sizes", default=None,
                        help="directory sizes, comma-separated (default 1000,10000,100000)")
    parser.add_argument("--duration", type=float, default=None,
                        help="seconds per throughput measurement (default 8)")
    parser.add_argument("--abuse-window", type=float, default=None,
                        help="seconds the victim is measured, alone and during each attack "
                             "(default 6)")
    parser.add_argument("--no-abuse", action="store_true", help="skip the abuse scenarios")
    parser.add_argument("--no-audit", action="store_true",
                        help="skip measuring the audit log's and the metrics' cost")
    parser.add_argument("--no-replicas", action="store_true",
                        help="skip reads through one and two consumers and their lag")
    parser.add_argument("--no-scale", action="store_true",
                        help="skip create and delete at 1k and 100k users, old and new config")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 1000 users, 2 s measurements, written to "
                             "/tmp/userdir-bench-quick unless --out says otherwise")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    sizes = [int(s) for s in (args.sizes or ("1000" if args.quick else "1000,10000,100000"))
             .split(",")]
    out = args.out or (Path(tempfile.gettempdir()) / "userdir-bench-quick" if args.quick
                       else ROOT / "bench")
    run = Run(args.duration or (2.0 if args.quick else 8.0),
              args.abuse_window or (3.0 if args.quick else 6.0), owner_limit=90.0)
    started, load_at_start = time.perf_counter(), os.getloadavg()[0]
    large_groups = scale.for_bench(args.quick)
    try:
        password_hash = seed.hashed_password()
        for size in sizes:
            with run.scenario("seed and start slapd", size):
                one_size(run, size, password_hash, full=size == sizes[0],
                         largest=size == sizes[-1],
                         with_abuse=size == sizes[0] and not args.no_abuse)
        if not args.no_audit:
            with run.scenario("audit log and metrics, on vs off", sizes[0]):
                audit.run_all(run, password_hash, rounds=2 if args.quick else 3)
        if not args.no_replicas:
            with run.scenario("replicas: provider and two consumers", sizes[0], 2):
                replication.run_all(run, sizes[0], password_hash)
        if not args.no_scale:
            with run.scenario("large groups: create and delete", large_groups.sizes[-1]):
                scale.run_all(run, large_groups, password_hash, args.quick)
    finally:
        # Whatever happened, the figures gathered so far are written.
        meta = {
            "command": " ".join(["python -m bench", shlex.join(sys.argv[1:])]).strip(),
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
                       f"Python {platform.python_version()}",
            "load": [load_at_start, os.getloadavg()[0]],
            "seconds": round(time.perf_counter() - started),
            "sizes": sizes,
        }
        report.write(out, meta, run)
        scale.append(out, large_groups)
        profile.append(out, run.profile)
        print(f"done in {meta['seconds']} s: {out / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
