"""The audit log: a change by any dialect or LDAP tool names who made it and how, and no secret."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from app import audit_cli
from app.config import Config
from app.main import create_app
from app.runtime import Runtime
from tests.conftest import (
    ADMIN,
    ADMIN_PASSWORD,
    BASE_DN,
    PASSWORD,
    SlapdInstance,
    create,
    unique,
)
from tests.conftest import (
    native_login as login,
)

Client = TestClient[Any]
RESET = "Audit-Reset-Pass-7"  # in conftest's list of passwords that must never show
PEOPLE = f"ou=people,{BASE_DN}"


@pytest.fixture(scope="module")
def client(config: Config, bootstrapped: None) -> Iterator[Client]:
    with TestClient(app=create_app(config)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def admin(client: Client) -> dict[str, str]:
    return login(client, ADMIN, ADMIN_PASSWORD)


def history(client: Client, admin: dict[str, str], **query: Any) -> list[dict[str, Any]]:
    response = client.get("/audit", headers=admin, params={"per_page": 100, **query})
    assert response.status_code == 200, response.text
    records: list[dict[str, Any]] = response.json()["records"]
    return records


def summary(records: list[dict[str, Any]]) -> list[tuple[str, str, str | None]]:
    """(type, who, dialect) of each record, oldest first."""
    return [(r["type"], r["who"]["name"], (r["via"] or {}).get("dialect"))
            for r in reversed(records)]


def test_a_change_through_each_dialect_and_ldapmodify_names_who_and_how(
        client: Client, admin: dict[str, str], runtime: Runtime, slapd: SlapdInstance) -> None:
    user = create(runtime)
    name, uid = user.username, user.id
    own = login(client, name)
    calls = [
        client.patch(f"/people/{name}", headers=admin, json={"first_name": "Native"}),
        client.post(f"/users/{name}/type", headers=admin, json={"account_type": "staff"}),
        client.patch(f"/api/users/{name}", headers=admin, json={"admin": True}),
        client.patch(f"/v1/users/{uid}", headers=admin, json={"last_name": "Ufdl"}),
        client.patch(f"/api/v1/accounts/users/{uid}/", headers=own, json={"first_name": "Acc"}),
        client.post(f"/api/v1/users/{uid}/password", headers=admin, data={"password": RESET}),
    ]
    assert [c.status_code for c in calls] == [200, 200, 200, 200, 200, 200], \
        [c.text for c in calls]
    slapd.ldap("ldapmodify", bind="root", stdin=(
        f"dn: uid={name},{PEOPLE}\nchangetype: modify\nreplace: description\ndescription: t\n"))
    seen = summary(history(client, admin, user=name))
    assert seen == [
        ("created", "service", None),
        ("changed", ADMIN, "native"),
        ("type", ADMIN, "nervai"), ("type", ADMIN, "nervai"),  # out of user, into staff
        ("type", ADMIN, "fittrackee"), ("type", ADMIN, "fittrackee"),
        ("changed", ADMIN, "ufdl"),
        ("changed", name, "accounts"),
        ("password", ADMIN, "library"),
        ("changed", f"cn=root,{BASE_DN}", None),
    ]
    record = history(client, admin, user=name, type="password")[0]
    assert record["via"] == {"dialect": "library", "route": "POST /api/v1/users/{user_id}/"
                             "password", "client": "testclient",
                             "request_id": record["via"]["request_id"]}
    found = runtime.service.directory.people.find("uid", ADMIN)
    assert found is not None
    assert record["who"] == {"kind": "user", "name": ADMIN, "id": found.uuid,
                             "bound_as": slapd.service_dn}


def test_the_request_id_is_echoed_and_carried_into_the_record(
        client: Client, admin: dict[str, str], runtime: Runtime) -> None:
    name = create(runtime).username
    sent = client.post(f"/people/{name}/disable", headers={**admin, "X-Request-ID": "ticket-42"})
    assert sent.headers["x-request-id"] == "ticket-42"
    made = client.post(f"/people/{name}/enable", headers=admin)
    generated = made.headers["x-request-id"]
    assert len(generated) == 32 and generated != "ticket-42"
    records = history(client, admin, user=name)
    assert [(r["type"], r["via"]["request_id"]) for r in records[:2]] == [
        ("enabled", generated), ("disabled", "ticket-42")]
    assert records[1]["what"] == [{"attribute": "pwdEndTime", "op": "replace",
                                   "new": ["19700101000000Z"]}]


def test_secrets_never_appear_in_the_audit_or_in_the_log_the_service_reads(
        client: Client, admin: dict[str, str], runtime: Runtime, slapd: SlapdInstance,
        config: Config) -> None:
    name = create(runtime, email=f"{unique('mail')}@example.org").username
    own = login(client, name)
    assert client.put(f"/people/{name}/password", headers=admin,
                      json={"new_password": RESET}).status_code == 204
    own = login(client, name, RESET)
    # an email change parks a code hash in the entry (userdirEmailCodeHash)
    assert client.patch(f"/people/{name}", headers=own,
                        json={"email": f"{unique('new')}@example.org"}).status_code == 200
    assert client.delete(f"/people/{name}", headers=admin).status_code == 204
    records = history(client, admin, user=name)
    assert [r["type"] for r in records] == ["deleted", "changed", "password", "created"]
    text = json.dumps(records)
    assert "ARGON2" not in text and RESET not in text and PASSWORD not in text
    password = next(c for c in records[2]["what"] if c["attribute"] == "userPassword")
    assert password == {"attribute": "userPassword", "op": "replace", "hidden": True}
    code = next(c for c in records[1]["what"] if c["attribute"] == "userdirEmailCodeHash")
    assert code["hidden"] and "new" not in code
    # the service's own LDAP view of the log: hashes and codes hidden by the log's ACLs
    dn = f"uid={name},{PEOPLE}"
    seen = slapd.ldap("ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-b", "cn=accesslog",
                      f"(|(reqDN={dn})(reqDN=uid={name},ou=staging,{BASE_DN}))",
                      "reqMod", "reqOld").stdout
    assert "userdirChange" in seen and "reqOld: uid: " in seen
    for secret in ("userPassword", "userdirEmailCodeHash", "ARGON2", "e0FSR09OM"):
        assert secret not in seen, secret
    # ...but not from slapcat, which reads the files: backups are secrets (README)
    dump = subprocess.run(["slapcat", "-F", str(slapd.layout.config_dir), "-b", "cn=accesslog",
                           "-o", "ldif_wrap=no"], capture_output=True, text=True,
                          check=True).stdout
    assert f"reqDN: {dn}" in dump and "userdirEmailCodeHash" in dump
    # nobody else reads the log at all, nor the marker on the entries
    other = create(runtime)
    as_user = ["-D", f"uid={other.username},{PEOPLE}", "-w", PASSWORD]
    assert slapd.ldap("ldapsearch", *as_user, "-LLL", "-b", "cn=accesslog", bind="none",
                      check=False).stdout.strip() == ""
    marker = slapd.ldap("ldapsearch", *as_user, "-LLL", "-b", f"uid={other.username},{PEOPLE}",
                        "-s", "base", "userdirChange", "uid", bind="none").stdout
    assert "uid:" in marker and "userdirChange" not in marker


def test_slapds_own_writes_and_the_steps_of_a_create_are_no_records(
        client: Client, admin: dict[str, str], runtime: Runtime, slapd: SlapdInstance) -> None:
    created = client.post("/people", headers=admin,
                          json={"username": unique("new"), "password": PASSWORD})
    assert created.status_code == 201, created.text
    name = created.json()["username"]
    login(client, name)  # pwdLastSuccess, authTimestamp
    assert client.post("/auth/token", json={"username": name, "password": "wrong-one!"}) \
        .status_code == 401  # pwdFailureTime
    records = history(client, admin, user=name)
    assert [r["type"] for r in records] == ["created"]  # not the staged add, nor joining "user"
    what = {c["attribute"]: c for c in records[0]["what"]}
    assert what["uid"]["new"] == [name] and "userPassword" not in what
    assert what["memberOf"]["new"] == [f"cn=user,ou=groups,{BASE_DN}"]
    assert records[0]["target"] == {"dn": f"uid={name},{PEOPLE}", "kind": "person",
                                    "name": name}
    # a failed write is no record: slapd logs successes only (ldif/config.ldif)
    assert client.put(f"/people/{name}/password", headers=admin,
                      json={"new_password": "short"}).status_code == 422
    assert len(history(client, admin, user=name)) == 1


def test_deletes_renames_and_groups_name_their_caller(
        client: Client, admin: dict[str, str], runtime: Runtime) -> None:
    name, group = unique("ren"), unique("grp")
    create(runtime, name)
    assert client.post("/groups", headers=admin, json={"name": group}).status_code == 201
    assert client.put(f"/groups/{group}/members/{name}", headers=admin).status_code == 200
    assert client.patch(f"/people/{name}", headers=admin,
                        json={"username": f"{name}b"}).status_code == 200
    assert client.delete(f"/groups/{group}", headers=admin).status_code == 204
    assert client.delete(f"/people/{name}b", headers=admin).status_code == 204
    # the history of the name he had, and of the one he has since
    for username in (name, f"{name}b"):
        assert summary(history(client, admin, user=username)) == [
            ("created", "service", None), ("membership", ADMIN, "native"),
            ("renamed", ADMIN, "native"), ("changed", ADMIN, "native"),
            ("deleted", ADMIN, "native")]
    deleted = history(client, admin, actor=ADMIN, type="deleted", per_page=2)
    assert [r["target"]["name"] for r in deleted] == [f"{name}b", group]
    renamed = history(client, admin, user=name, type="renamed")[0]
    assert renamed["what"] == [{"attribute": "dn", "op": "replace",
                                "old": [f"uid={name},{PEOPLE}"],
                                "new": [f"uid={name}b,{PEOPLE}"]}]


def test_entries_ldap_tools_made_get_the_marker_class_in_the_same_modify(
        client: Client, admin: dict[str, str], slapd: SlapdInstance) -> None:
    name, group = unique("tool"), unique("tg")
    slapd.ldap("ldapadd", bind="root", stdin=(
        f"dn: uid={name},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {name}\ncn: {name}\n"
        f"sn: {name}\nuserPassword: {PASSWORD}\n\n"
        f"dn: cn={group},ou=groups,{BASE_DN}\nobjectClass: groupOfNames\ncn: {group}\n"
        f"member: cn=nobody,{BASE_DN}\n"))
    assert client.patch(f"/people/{name}", headers=admin,
                        json={"first_name": "Tool"}).status_code == 200
    assert client.put(f"/groups/{group}/members/{name}", headers=admin).status_code == 200
    assert summary(history(client, admin, user=name))[-2:] == [
        ("changed", ADMIN, "native"), ("membership", ADMIN, "native")]
    classes = slapd.ldap("ldapsearch", "-LLL", "-b", f"cn={group},ou=groups,{BASE_DN}",
                         "-s", "base", "objectClass").stdout
    assert "objectClass: userdirGroup" in classes


def test_filters_pages_and_access(client: Client, admin: dict[str, str],
                                  runtime: Runtime) -> None:
    name = create(runtime).username
    for first_name in ("One", "Two", "Three"):
        assert client.patch(f"/people/{name}", headers=admin,
                            json={"first_name": first_name}).status_code == 200
    page = client.get("/audit", headers=admin,
                      params={"user": name, "type": "changed", "per_page": 2, "page": 2}).json()
    assert page["total"] == 3 and page["page"] == 2 and page["per_page"] == 2
    assert [r["what"][0]["new"] for r in page["records"]] == [["One"]]
    newest = history(client, admin, user=name, type="changed")[0]["what"][0]
    assert (newest["old"], newest["new"]) == (["Two"], ["Three"])  # old values: kept for people
    since = history(client, admin, user=name)[0]["when"]
    assert history(client, admin, user=name, since=since, until=since)
    assert history(client, admin, user=name, until="2001-01-01T00:00:00Z") == []
    assert history(client, admin, actor=f"cn=root,{BASE_DN}", user=name) == []
    assert client.get("/audit", headers=admin, params={"type": "nonsense"}).status_code == 400
    assert client.get("/audit", headers=admin, params={
        "since": "2030-01-01T00:00:00Z", "until": "2020-01-01T00:00:00Z"}).status_code == 422
    assert client.get("/audit").status_code == 401
    assert client.get("/audit", headers=login(client, name)).status_code == 403


def test_userdir_audit_prints_a_table_or_json_lines(config: Config, runtime: Runtime,
                                                    client: Client, admin: dict[str, str]) -> None:
    name = create(runtime).username
    assert client.patch(f"/people/{name}", headers=admin,
                        json={"first_name": "Cli"}).status_code == 200
    args = argparse.Namespace(user=name, actor=None, type=None, since=None, until=None,
                              page=1, per_page=10, json=False)
    out = io.StringIO()
    assert audit_cli.run(config, args, out) == 0
    lines = out.getvalue().splitlines()
    assert "changed" in lines[0] and "native PATCH /people/{username}" in lines[0]
    assert "givenName: - -> Cli" in lines[0] and lines[-1] == "-- 2 of 2 records (page 1)"
    out = io.StringIO()
    assert audit_cli.run(config, argparse.Namespace(**{**vars(args), "json": True}), out) == 0
    assert [json.loads(x)["type"] for x in out.getvalue().splitlines()] == ["changed", "created"]


def test_a_scim_change_names_the_provisioning_token(
        client: Client, admin: dict[str, str], runtime: Runtime) -> None:
    user = create(runtime)
    made = client.post("/tokens", headers=admin, json={"name": unique("okta"), "scopes": ["scim"]})
    assert made.status_code == 201, made.text
    token = made.json()
    changed = client.patch(
        f"/scim/v2/Users/{user.uuid}", headers={"Authorization": f"Bearer {token['token']}"},
        json={"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
              "Operations": [{"op": "replace", "path": "title", "value": "Provisioned"}]})
    assert changed.status_code == 204, changed.text
    record = history(client, admin, user=user.username, type="changed")[0]
    assert record["who"]["name"] == f"token:{token['name']}"
    assert (record["via"]["dialect"], record["via"]["route"]) == (
        "scim", "PATCH /scim/v2/Users/{id}")
