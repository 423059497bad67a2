"""The same work done directly with ldap3 from its own process: the baseline of each ratio."""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time
from typing import Any

from ldap3 import BASE, MODIFY_ADD, MODIFY_INCREMENT, SAFE_SYNC, SUBTREE, Connection, Server

from app.directory.controls import (
    VLV_RESPONSE,
    SortKey,
    parse_vlv_response,
    post_read,
    server_sort,
    virtual_list_view,
)
from app.directory.schema import USER_ATTRIBUTES
from bench.stats import summary

COUNTER = itertools.count()


def connect(spec: dict[str, Any], dn: str | None = None, password: str | None = None) -> Any:
    server = Server(spec["url"], get_info=None)
    return Connection(server, dn or spec["bind_dn"], password or spec["password"],
                      client_strategy=SAFE_SYNC, auto_bind=True)


def search_one(spec: dict[str, Any], conn: Any) -> bool:
    _, result, entries, _ = conn.search(spec["people"], f"(uid={spec['uid']})", SUBTREE,
                                        attributes=USER_ATTRIBUTES)
    return bool(result["result"] == 0 and entries)


def bind(spec: dict[str, Any], conn: Any) -> bool:
    fresh = Connection(Server(spec["url"], get_info=None), spec["user_dn"], spec["user_password"],
                       client_strategy=SAFE_SYNC)
    _, result, _, _ = fresh.bind()
    fresh.unbind()
    return bool(result["result"] == 0)


def create(spec: dict[str, Any], conn: Any) -> bool:
    """What creating a user costs in LDAP writes: allocate the id, add the
    entry (slapd hashes the password), join the type group, publish it."""
    name = f"raw{spec['tag']}x{next(COUNTER)}"
    base = spec["base"]
    _, result, _, _ = conn.modify(f"cn=uidNumber,ou=counters,{base}",
                                  {"uidNumber": [(MODIFY_INCREMENT, [1])]},
                                  controls=[post_read(["uidNumber"])])
    number = result["controls"]["1.3.6.1.1.13.2"]["value"]["result"]["uidNumber"][0]
    staged = f"uid={name},ou=staging,{base}"
    _, result, _, _ = conn.add(staged, ["inetOrgPerson", "posixAccount", "userdirPerson"], {
        "uid": name, "cn": name, "sn": name, "uidNumber": number, "gidNumber": 10000,
        "homeDirectory": f"/home/{name}", "userPassword": "Bench-Password-1"})
    if result["result"] != 0:
        return False
    conn.modify(f"cn=user,ou=groups,{base}", {"member": [(MODIFY_ADD, [staged])]})
    _, result, _, _ = conn.modify_dn(staged, f"uid={name}", new_superior=f"ou=people,{base}")
    conn.search(f"uid={name},ou=people,{base}", "(objectClass=*)", BASE,
                attributes=USER_ATTRIBUTES)
    return bool(result["result"] == 0)


class Window:
    """One page of a sorted listing, reusing the sort context like userdir does."""

    def __init__(self) -> None:
        self.context: bytes | None = None

    def __call__(self, spec: dict[str, Any], conn: Any) -> bool:
        keys = [SortKey("uid", "2.5.13.3"), SortKey("uidNumber")]
        after = spec.get("page_size", 50) - 1
        controls = [server_sort(keys), virtual_list_view(spec["offset"] + 1, after, self.context)]
        _, result, entries, _ = conn.search(spec["people"], spec["filter"], SUBTREE,
                                            attributes=USER_ATTRIBUTES, controls=controls)
        answer = parse_vlv_response(result["controls"][VLV_RESPONSE]["value"])
        self.context = answer.context
        return len([e for e in entries if e["type"] == "searchResEntry"]) > 0


def run(spec: dict[str, Any]) -> dict[str, Any]:
    operation = {"search": search_one, "bind": bind, "create": create, "window": None}[spec["op"]]
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    deadline = time.perf_counter() + spec["duration"]
    limit = spec.get("requests")

    def worker() -> None:
        conn = connect(spec)
        op = operation or Window()  # a window keeps its sort context per connection
        while time.perf_counter() < deadline:
            with lock:
                if limit is not None and len(latencies) + errors[0] >= limit:
                    return
            started = time.perf_counter()
            ok = op(spec, conn)
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                latencies.append(elapsed)
                errors[0] += 0 if ok else 1
        conn.unbind()

    threads = [threading.Thread(target=worker) for _ in range(spec["concurrency"])]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return summary(latencies, time.perf_counter() - started, errors[0])


if __name__ == "__main__":
    print(json.dumps(run(json.load(sys.stdin))))
