"""`python -m bench`: seed directories, run the API and raw ldap3 side by side, report ratios.

Every headline figure is a ratio against raw LDAP measured in the same run:
this machine is shared and noisy, so absolute figures only give the scale.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
from ldap3 import MODIFY_REPLACE, SAFE_SYNC, Connection, Server
from PIL import Image

from app import embedded
from bench import report, seed

ROOT = Path(__file__).resolve().parent.parent
Q = "bench0001"  # matches bench000100..bench000199 whatever the size


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(module: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Run a load generator in its own process and return its summary."""
    result = subprocess.run([sys.executable, "-m", module], input=json.dumps(spec),
                            capture_output=True, text=True, check=False, cwd=ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"{module} failed: {result.stderr[-2000:]}")
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


@contextlib.contextmanager
def api_server(env: dict[str, str], workers: int) -> Iterator[tuple[str, int]]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.main:app_from_environment", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
         "--log-level", "warning", "--no-access-log"],
        env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the API did not start")
            time.sleep(0.2)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(30)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


class Run:
    def __init__(self, duration: float) -> None:
        self.duration = duration
        self.rows: list[dict[str, Any]] = []
        self.listing_p50: dict[int, list[float]] = {}
        self.listing_q_p50: dict[int, list[float]] = {}
        self.fittrackee_p50: dict[int, list[float]] = {}
        self.rss: dict[int, float] = {}

    def row(self, scenario: str, size: int, workers: int, api: dict[str, Any],
            raw: dict[str, Any] | None, target: str, met: bool | None,
            ratio: float | None = None) -> None:
        self.rows.append({"scenario": scenario, "users": size, "workers": workers,
                          "api": api, "raw": raw, "ratio": ratio, "target": target,
                          "met": met})
        shown = f"ratio {ratio}" if ratio is not None else ""
        verdict = {True: "ok", False: "MISSED", None: ""}[met]
        print(f"  {scenario} [{size} users, {workers}w]: api p50 {api.get('p50_ms')} ms, "
              f"{api.get('per_second')}/s {shown} {verdict}", flush=True)


def listing(run: Run, url: str, token: str, ldap: dict[str, Any], size: int,
            path: str, name: str, query: str, raw_filter: str, total: int) -> list[float]:
    """First, middle and last page of 50, sorted by username; 20 requests each."""
    last = max(1, math.ceil(total / 50))
    p50s = []
    for label, page in (("first", 1), ("middle", max(1, last // 2)), ("last", last)):
        api = measure("bench.load", {
            "base_url": url, "path": f"{path}{query}&page={page}",
            "headers": {"Authorization": f"Bearer {token}"}, "concurrency": 1,
            "duration": run.duration, "requests": 20})
        raw = measure("bench.raw", {**ldap, "op": "window", "offset": (page - 1) * 50,
                                    "filter": raw_filter, "concurrency": 1,
                                    "duration": run.duration, "requests": 20})
        ratio = round(api["p50_ms"] / raw["p50_ms"], 2) if raw["p50_ms"] else None
        met = api["p50_ms"] <= 100 and api["errors"] == 0
        run.row(f"{name}, {label} page", size, 1, api, raw, "p50 ≤ 100 ms", met, ratio)
        p50s.append(api["p50_ms"])
    return p50s


def throughput(run: Run, name: str, size: int, workers: int, load: dict[str, Any],
               raw: dict[str, Any], target: float) -> None:
    api = measure("bench.load", {"duration": run.duration, **load})
    base = measure("bench.raw", {"duration": run.duration, **raw})
    ratio = round(api["per_second"] / base["per_second"], 2) if base["per_second"] else None
    met = ratio is not None and ratio >= target and api["errors"] == 0
    run.row(name, size, workers, api, base, f"≥ {target} x raw throughput", met, ratio)


def big_jpeg() -> bytes:
    """A 24-megapixel JPEG (6000x4000) with some detail, as a camera might give."""
    image = Image.radial_gradient("L").resize((6000, 4000)).convert("RGB")
    out = BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def pictures(run: Run, url: str, ldap: dict[str, Any], size: int) -> None:
    """A 24 MP jpegPhoto written by an LDAP tool: thumbnail first, then ETag → 304."""
    data = big_jpeg()
    conn = Connection(Server(ldap["url"], get_info=None), ldap["bind_dn"], ldap["password"],
                      client_strategy=SAFE_SYNC, auto_bind=True)
    names = [seed.username(10 + i) for i in range(5)]
    for name in names:
        conn.modify(f"uid={name},{seed.PEOPLE}", {"jpegPhoto": [(MODIFY_REPLACE, [data])]})
    conn.unbind()
    firsts = []
    for name in names:
        started = time.perf_counter()
        response = httpx.get(f"{url}/people/{name}/photo/thumbnail", timeout=30)
        firsts.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    etag = response.headers["etag"]
    first = {"requests": len(firsts), "errors": 0, "p50_ms": round(sorted(firsts)[2], 2),
             "p99_ms": round(max(firsts), 2), "per_second": None}
    run.row("thumbnail of a 24 MP JPEG, first request", size, 1, first, None,
            "≤ 60 ms", first["p50_ms"] <= 60)
    repeat = measure("bench.load", {
        "base_url": url, "path": f"/people/{names[-1]}/photo/thumbnail",
        "headers": {"If-None-Match": etag}, "concurrency": 1, "duration": run.duration,
        "requests": 200, "expect": [304]})
    run.row("thumbnail, repeated request (ETag → 304)", size, 1, repeat, None, "≤ 5 ms",
            repeat["p50_ms"] <= 5 and repeat["errors"] == 0)


def one_size(run: Run, size: int, password_hash: str, full: bool, largest: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="userdir-bench-") as tmp:
        data = Path(tmp) / "data"
        started = time.perf_counter()
        seed.build(data, size, password_hash)
        print(f"{size} users seeded in {time.perf_counter() - started:.1f} s", flush=True)
        slapd = embedded.Slapd(data, free_port())
        slapd.start()
        try:
            password = embedded.Layout(data).read_service_password()
            env = {**os.environ, "USERDIR_LDAP__URL": slapd.url,
                   "USERDIR_LDAP__BIND_PASSWORD": password,
                   "USERDIR_EMBEDDED__DATA_DIR": str(Path(tmp) / "api")}
            env.pop("USERDIR_CONFIG", None)
            ldap = {"url": slapd.url, "bind_dn": embedded.service_dn(seed.BASE_DN),
                    "password": password, "people": seed.PEOPLE, "base": seed.BASE_DN}
            with api_server(env, 1) as (url, pid):
                token = httpx.post(f"{url}/auth/token", json={
                    "username": seed.ADMIN, "password": seed.PASSWORD}).json()["access_token"]
                auth = {"Authorization": f"Bearer {token}"}
                text = f"(|(uid=*{Q}*)(cn=*{Q}*)(mail=*{Q}*)(givenName=*{Q}*)(sn=*{Q}*))"
                run.listing_p50[size] = listing(
                    run, url, token, ldap, size, "/people", "native list by username",
                    "?sort=username&per_page=50", "(objectClass=inetOrgPerson)", size + 1)
                run.listing_q_p50[size] = listing(
                    run, url, token, ldap, size, "/people", "native list by username, q",
                    f"?sort=username&per_page=50&q={Q}",
                    f"(&(objectClass=inetOrgPerson){text})", 100)
                # fittrackee's q is a substring of the username only.
                run.fittrackee_p50[size] = listing(
                    run, url, token, ldap, size, "/api/users", "fittrackee list by username",
                    "?order_by=username&per_page=50", "(objectClass=inetOrgPerson)", size + 1)
                listing(run, url, token, ldap, size, "/api/users",
                        "fittrackee list by username, q", f"?order_by=username&per_page=50&q={Q}",
                        f"(&(objectClass=inetOrgPerson)(uid=*{Q}*))", 100)
                if full:
                    user = seed.username(3)
                    raw_get = {**ldap, "op": "search", "uid": user, "concurrency": 8}
                    throughput(run, "GET one user (native)", size, 1, {
                        "base_url": url, "path": f"/people/{user}", "headers": auth,
                        "concurrency": 8}, raw_get, 0.6)
                    throughput(run, "GET one user (fittrackee)", size, 1, {
                        "base_url": url, "path": f"/api/users/{user}", "headers": auth,
                        "concurrency": 8}, raw_get, 0.6)
                    login_user = seed.username(2)
                    throughput(run, "login", size, 1, {
                        "base_url": url, "path": "/auth/token", "method": "POST",
                        "json": {"username": login_user, "password": seed.PASSWORD},
                        "concurrency": 4, "expect": [200]},
                        {**ldap, "op": "bind", "concurrency": 4,
                         "user_dn": f"uid={login_user},{seed.PEOPLE}",
                         "user_password": seed.PASSWORD}, 0.8)
                    pictures(run, url, ldap, size)
                if full or largest:
                    # At the largest size too: a new user joins a type group
                    # that already has every other user as a member.
                    throughput(run, "create user", size, 1, {
                        "base_url": url, "path": "/people", "method": "POST", "headers": auth,
                        "json": {"username": "api{n}", "password": seed.PASSWORD},
                        "concurrency": 4, "expect": [201]},
                        {**ldap, "op": "create", "concurrency": 4, "tag": size}, 0.5)
                run.rss[size] = rss_mb(pid)
            if full:
                with api_server(env, 2) as (url, _):
                    token = httpx.post(f"{url}/auth/token", json={
                        "username": seed.ADMIN, "password": seed.PASSWORD}).json()["access_token"]
                    user = seed.username(3)
                    throughput(run, "GET one user (native)", size, 2, {
                        "base_url": url, "path": f"/people/{user}",
                        "headers": {"Authorization": f"Bearer {token}"}, "concurrency": 8},
                        {**ldap, "op": "search", "uid": user, "concurrency": 8}, 0.6)
        finally:
            slapd.stop()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--duration", type=float, default=8.0,
                        help="seconds per throughput measurement")
    parser.add_argument("--out", type=Path, default=ROOT / "bench")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    run = Run(args.duration)
    started = time.perf_counter()
    password_hash = seed.hashed_password()
    for size in sizes:
        one_size(run, size, password_hash, full=size == sizes[0], largest=size == sizes[-1])
    meta = {
        "command": " ".join(["python -m bench", shlex.join(sys.argv[1:])]).strip(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
                   f"Python {platform.python_version()}",
        "seconds": round(time.perf_counter() - started),
        "sizes": sizes,
    }
    report.write(args.out, meta, run)
    print(f"done in {meta['seconds']} s: {args.out / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
