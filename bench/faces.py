"""The new faces against raw LDAP: the console's people page, SCIM list pages, SCIM provisioning.

Each page is measured as the listing scenarios are (first, middle and last
page, one client, 20 requests each) beside the same slapd window read
directly, so that the figures at 1k and at 100k users compare.
"""

from __future__ import annotations

import math
import re
from typing import Any

import httpx

from bench import seed
from bench.processes import Api, measure
from bench.run import Run, ratio, served_per_second

CONSOLE_PAGE = 25  # app/ui/people.py PER_PAGE
SCIM_PAGE = 100
TARGET_MS = 50
SCIM_RATIO = 1.5
PROVISIONING_RATIO = 0.8


def console_cookie(api: Api) -> str:
    """Signs in on /ui/login as a browser does (CSRF cookie and field) and
    returns the Cookie header the session then sends."""
    with httpx.Client(base_url=api.url, timeout=30) as client:
        form = client.get("/ui/login")
        form.raise_for_status()
        field = re.search(r'name="_csrf_token"\s+value="([^"]+)"', form.text)
        if field is None:
            raise RuntimeError("no CSRF field on /ui/login")
        answer = client.post("/ui/login", data={
            "login": seed.ADMIN, "password": seed.PASSWORD, "_csrf_token": field.group(1)})
        if answer.status_code != 303:
            raise RuntimeError(f"console sign-in answered {answer.status_code}")
        return "; ".join(f"{name}={value}" for name, value in client.cookies.items())


def scim_token(api: Api, admin: str) -> str:
    answer = httpx.post(f"{api.url}/tokens", timeout=30,
                        headers={"Authorization": f"Bearer {admin}"},
                        json={"name": "bench", "scopes": ["scim"]})
    if answer.status_code == 409:  # a second run on the same directory
        httpx.delete(f"{api.url}/tokens/bench", timeout=30,
                     headers={"Authorization": f"Bearer {admin}"}).raise_for_status()
        return scim_token(api, admin)
    answer.raise_for_status()
    token: str = answer.json()["token"]
    return token


def _pages(run: Run, api: Api, ldap: dict[str, Any], size: int, name: str,
           per_page: int, path: Any, headers: dict[str, str], target: str,
           met: Any) -> None:
    """First, middle and last full page of `per_page` users sorted by username
    (the last full one: what a deep offset costs, not a page of one user)."""
    total = size + 1
    last = max(1, total - per_page + 1)  # the first position on the last full page
    for label, start in (("first", 1), ("middle", max(1, total // 2)), ("last", last)):
        scenario = f"{name}, {label} page"
        with run.scenario(scenario, size):
            served = measure("bench.load", {
                "base_url": api.url, "path": path(start), "headers": headers,
                "concurrency": 1, "duration": run.duration, "requests": 20})
            raw = measure("bench.raw", {
                **ldap, "op": "window", "offset": start - 1,
                "page_size": per_page, "filter": "(objectClass=inetOrgPerson)",
                "concurrency": 1, "duration": run.duration, "requests": 20})
            rate = ratio(served["p50_ms"], raw["p50_ms"])
            run.row(scenario, size, 1, served, raw, target,
                    served["errors"] == 0 and met(served["p50_ms"], rate), rate)


def console(run: Run, api: Api, ldap: dict[str, Any], size: int) -> None:
    """The people page as an admin's browser loads it (whole HTML page)."""
    with run.scenario("console people page", size):
        cookie = console_cookie(api)
    # The console pages by number: the page holding that position.
    _pages(run, api, ldap, size, "console people page", CONSOLE_PAGE,
           lambda start: f"/ui/people?page={math.ceil(start / CONSOLE_PAGE)}",
           {"Cookie": cookie},
           f"p50 ≤ {TARGET_MS} ms",
           lambda p50, _: p50 is not None and p50 <= TARGET_MS)


def scim(run: Run, api: Api, ldap: dict[str, Any], size: int, admin: str, *,
         provisioning: bool) -> None:
    """SCIM list pages (startIndex/count, sorted by userName as slapd sorts
    usernames), then provisioning: a SCIM POST against the native create."""
    with run.scenario("SCIM list", size):
        token = scim_token(api, admin)
    headers = {"Authorization": f"Bearer {token}"}
    _pages(run, api, ldap, size, "SCIM list of 100", SCIM_PAGE,
           lambda start: f"/scim/v2/Users?sortBy=userName&startIndex={start}&count={SCIM_PAGE}",
           headers, f"p50 ≤ {TARGET_MS} ms, ≤ {SCIM_RATIO} x raw",
           lambda p50, rate: (p50 is not None and p50 <= TARGET_MS
                              and rate is not None and rate <= SCIM_RATIO))
    name = "create user via SCIM (vs native create)"
    with run.scenario(name, size):
        common = {"base_url": api.url, "method": "POST", "concurrency": 4,
                  "duration": run.duration, "expect": [201]}
        # Native, SCIM, native again: creation (argon2 on slapd) is what a
        # busy machine slows most, so SCIM is compared with both sides of it.
        def native(prefix: str) -> dict[str, Any]:
            return measure("bench.load", {
                **common, "path": "/people", "headers": {"Authorization": f"Bearer {admin}"},
                "json": {"username": prefix + "{n}", "password": seed.PASSWORD}})

        before = native("nata")
        provisioned = measure("bench.load", {
            **common, "path": "/scim/v2/Users", "headers": headers,
            "json": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                     "userName": "scim{n}", "password": seed.PASSWORD}})
        after = native("natb")
        rates = [r for r in (served_per_second(before), served_per_second(after)) if r]
        rate = ratio(served_per_second(provisioned), sum(rates) / len(rates) if rates else None)
        run.row(name, size, 1, provisioned, after, f"≥ {PROVISIONING_RATIO} x native",
                provisioned["errors"] == 0 and rate is not None and rate >= PROVISIONING_RATIO,
                rate)
