"""Issue #18: the directory's promises hold whoever writes, the API or an LDAP tool.

Each test writes with a real client (ldappasswd, ldapmodify, ldapmodrdn,
ldapadd, ldapwhoami, or ldap3 as a foreign client) on a directory of this
module's own, and reads the result through the APIs and over LDAP.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from ldap3 import BASE, SAFE_SYNC, Connection, Server
from litestar.testing import TestClient
from PIL import Image

from app.config import Config
from app.main import create_app
from app.runtime import Runtime
from tests.conftest import (
    ADMIN,
    ADMIN_PASSWORD,
    BASE_DN,
    PASSWORD,
    SlapdInstance,
    make_config,
    run,
    start_slapd,
    unique,
)
from tests.smtp import Inbox, smtp_server

Client = TestClient[Any]
Headers = dict[str, str]
PEOPLE = f"ou=people,{BASE_DN}"
RESET = "Reset-By-Admin-1"
OTHER = "Other-Horse-5"
CHANGED = "Changed-Horse-3"
ROOMY = {"address_free": 1000, "account_free": 1000}
BAD_CODE = {"otp": ["Invalid or expired code."]}


# --- one directory, one mail server, one app -----------------------------------

@pytest.fixture(scope="module")
def ldap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlapdInstance]:
    instance = start_slapd(tmp_path_factory.mktemp("promises-slapd"))
    try:
        yield instance
    finally:
        instance.process.stop()


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[int, Inbox]]:
    with smtp_server() as server:
        yield server


@pytest.fixture(scope="module")
def inbox(smtp: tuple[int, Inbox]) -> Inbox:
    return smtp[1]


def app_config(ldap: SlapdInstance, folder: Path, port: int, resend_interval: int = 0) -> Config:
    return make_config(ldap, folder, throttle=ROOMY,
                       mail={"backend": "smtp", "host": "127.0.0.1", "port": port,
                             "security": "none", "resend_interval": resend_interval})


@pytest.fixture(scope="module")
def folder(ldap: SlapdInstance, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("promises-app")


@pytest.fixture(scope="module")
def client(ldap: SlapdInstance, smtp: tuple[int, Inbox], folder: Path) -> Iterator[Client]:
    config = app_config(ldap, folder, smtp[0])
    runtime = Runtime.build(config)
    try:
        run(runtime.service.bootstrap(ADMIN, ADMIN_PASSWORD, "admin@example.org"))
    finally:
        runtime.close()
    with TestClient(app=create_app(config)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def admin(client: Client) -> Headers:
    return login(client, ADMIN, ADMIN_PASSWORD)


# --- helpers --------------------------------------------------------------------

def token(client: Client, username: str, password: str = PASSWORD) -> Any:
    return client.post("/auth/token", json={"username": username, "password": password})


def login(client: Client, username: str, password: str = PASSWORD) -> Headers:
    response = token(client, username, password)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def logs_in(client: Client, username: str, password: str = PASSWORD) -> bool:
    status = token(client, username, password).status_code
    assert status in (200, 401)
    return bool(status == 200)


def new_person(client: Client, admin: Headers, **fields: Any) -> dict[str, Any]:
    body = {"username": unique("p"), "password": PASSWORD, **fields}
    response = client.post("/people", json=body, headers=admin)
    assert response.status_code == 201, response.text
    person: dict[str, Any] = response.json()
    return person


def person(client: Client, admin: Headers, username: str) -> dict[str, Any]:
    response = client.get(f"/people/{username}", headers=admin)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def dn(username: str) -> str:
    return f"uid={username},{PEOPLE}"


def binds(ldap: SlapdInstance, username: str, password: str = PASSWORD) -> bool:
    """Does a simple bind as the user succeed (ldapwhoami, as any LDAP client)?"""
    result = ldap.ldap("ldapwhoami", "-D", dn(username), "-w", password, bind="none",
                       check=False)
    assert result.returncode in (0, 49), result.stderr
    return result.returncode == 0


def modify(ldap: SlapdInstance, target: str, *lines: str, bind: str = "service") -> None:
    ldap.ldap("ldapmodify", bind=bind,
              stdin="\n".join([f"dn: {target}", "changetype: modify", *lines, ""]))


def attributes(ldap: SlapdInstance, target: str, *names: str) -> dict[str, Any]:
    """The entry's attributes, read with ldap3 as the root DN (a foreign client)."""
    conn = Connection(Server(ldap.url), ldap.root_dn, ldap.root_password,
                      client_strategy=SAFE_SYNC, auto_bind=True)
    try:
        _, _, response, _ = conn.search(target, "(objectClass=*)", BASE, attributes=list(names))
    finally:
        conn.unbind()
    found: dict[str, Any] = response[0]["attributes"]
    return found


def sign_up(client: Client, email: str) -> None:
    body = {"email": email, "password": PASSWORD, "confirm_password": PASSWORD,
            "first_name": "Sign", "last_name": "Up", "phone": "+1234567890", "gender": "M",
            "country": "US"}
    response = client.post("/api/v1/accounts/users/", json=body)
    assert response.status_code == 201, response.text


def jpeg_of(kind: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(out, kind)
    return out.getvalue()


# --- 1. disabled means disabled, through every password change -----------------

def reset_by(route: str, client: Client, admin: Headers, ldap: SlapdInstance,
             user: dict[str, Any]) -> None:
    name = user["username"]
    if route == "native":
        response = client.put(f"/people/{name}/password", json={"new_password": RESET},
                              headers=admin)
        assert response.status_code == 204, response.text
    elif route == "ufdl":
        response = client.patch(f"/v1/users/{user['id']}", json={"password": RESET},
                                headers=admin)
        assert response.status_code == 200, response.text
    elif route in ("ldappasswd-service", "ldappasswd-root"):
        ldap.ldap("ldappasswd", "-s", RESET, dn(name), bind=route.removeprefix("ldappasswd-"))
    else:
        modify(ldap, dn(name), "replace: userPassword", f"userPassword: {RESET}")


ROUTES = ["native", "ufdl", "ldappasswd-service", "ldappasswd-root", "ldapmodify"]


@pytest.mark.parametrize("route", ROUTES)
def test_a_password_reset_does_not_enable_a_disabled_user(client: Client, admin: Headers,
                                                          ldap: SlapdInstance,
                                                          route: str) -> None:
    user = new_person(client, admin)
    name = user["username"]
    assert client.post(f"/people/{name}/disable", headers=admin).status_code == 200
    reset_by(route, client, admin, ldap, user)
    assert not logs_in(client, name, RESET) and not logs_in(client, name)
    assert not binds(ldap, name, RESET)
    assert person(client, admin, name)["active"] is False
    # Enabling stays an explicit act, and then the new password works.
    enabled = client.post(f"/people/{name}/enable", headers=admin)
    assert enabled.status_code == 200 and enabled.json()["active"] is True
    assert logs_in(client, name, RESET) and binds(ldap, name, RESET)
    assert not attributes(ldap, dn(name), "pwdEndTime").get("pwdEndTime")


def test_a_lock_written_by_another_tool_counts_as_disabled(client: Client, admin: Headers,
                                                           ldap: SlapdInstance) -> None:
    name = new_person(client, admin)["username"]
    modify(ldap, dn(name), "replace: pwdAccountLockedTime", "pwdAccountLockedTime: 000001010000Z")
    assert person(client, admin, name)["active"] is False
    assert not logs_in(client, name) and not binds(ldap, name)
    # Disabled by userdir as well: enabling removes both marks.
    assert client.post(f"/people/{name}/disable", headers=admin).status_code == 200
    assert client.post(f"/people/{name}/enable", headers=admin).json()["active"] is True
    left = attributes(ldap, dn(name), "pwdEndTime", "pwdAccountLockedTime")
    assert not left.get("pwdEndTime") and not left.get("pwdAccountLockedTime")
    assert logs_in(client, name) and binds(ldap, name)


def test_an_admin_reset_does_not_complete_a_sign_up(client: Client, admin: Headers,
                                                    ldap: SlapdInstance, inbox: Inbox) -> None:
    email = f"{unique('sg')}@example.com"
    sign_up(client, email)
    inbox.take(email)
    found = client.get("/people", params={"email": email}, headers=admin).json()["items"]
    assert len(found) == 1 and found[0]["active"] is False
    name = found[0]["username"]
    reset = client.put(f"/people/{name}/password", json={"new_password": RESET}, headers=admin)
    assert reset.status_code == 204, reset.text
    assert not logs_in(client, name, RESET) and not binds(ldap, name, RESET)
    accounts = client.post("/api/v1/accounts/token/", json={"email": email, "password": RESET})
    assert accounts.status_code == 401
    shown = person(client, admin, name)
    assert shown["active"] is False and shown["email_verified"] is False


# --- 2. an address is yours once you prove it ----------------------------------

def test_a_new_email_waits_for_its_code_and_holds_nothing(client: Client, admin: Headers,
                                                          inbox: Inbox) -> None:
    old, new = f"{unique('old')}@example.org", f"{unique('new')}@example.org"
    name = new_person(client, admin, email=old, email_verified=True)["username"]
    response = client.patch(f"/people/{name}", json={"email": new},
                            headers=login(client, name))
    assert response.status_code == 200, response.text
    shown = response.json()
    assert (shown["email"], shown["email_verified"], shown["pending_email"]) == (old, True, new)
    code = inbox.code_for(new)
    assert client.post("/auth/token", json={"email": new, "password": PASSWORD}).status_code \
        == 401
    # Its real owner can still sign up with it.
    sign_up(client, new)
    inbox.take(new)
    # The code comes back, but the address is taken meanwhile: it stays taken.
    verify = client.post(f"/people/{name}/email/verify", json={"code": code},
                         headers=login(client, name))
    assert verify.status_code == 409 and verify.json()["field"] == "email", verify.text
    assert person(client, admin, name)["email"] == old


def test_the_code_confirms_the_new_email(client: Client, admin: Headers, inbox: Inbox) -> None:
    old, new = f"{unique('old')}@example.org", f"{unique('new')}@example.org"
    name = new_person(client, admin, email=old)["username"]
    mine = login(client, name)
    assert client.patch(f"/people/{name}", json={"email": new}, headers=mine).status_code == 200
    verify = client.post(f"/people/{name}/email/verify", json={"code": inbox.code_for(new)},
                         headers=mine)
    assert verify.status_code == 200, verify.text
    shown = verify.json()
    assert (shown["email"], shown["email_verified"], shown["pending_email"]) == (new, True, None)
    assert client.post("/auth/token", json={"email": new, "password": PASSWORD}).status_code \
        == 200
    assert client.post("/auth/token", json={"email": old, "password": PASSWORD}).status_code \
        == 401


def test_staff_changing_an_email_on_ufdl_waits_too(client: Client, admin: Headers,
                                                   inbox: Inbox) -> None:
    old, new = f"{unique('old')}@example.org", f"{unique('new')}@example.org"
    staff = new_person(client, admin, account_type="staff")["username"]
    target = new_person(client, admin, email=old)
    response = client.patch(f"/v1/users/{target['id']}", json={"email": new},
                            headers=login(client, staff))
    assert response.status_code == 200, response.text
    assert response.json()["email"] == old
    shown = person(client, admin, target["username"])
    assert (shown["email"], shown["pending_email"]) == (old, new)
    inbox.take(new)
    # The address can still be given to someone else.
    new_person(client, admin, email=new)


def test_resending_a_code(client: Client, admin: Headers, inbox: Inbox, ldap: SlapdInstance,
                          smtp: tuple[int, Inbox], folder: Path) -> None:
    new = f"{unique('new')}@example.org"
    name = new_person(client, admin)["username"]
    mine = login(client, name)
    assert client.patch(f"/people/{name}", json={"email": new}, headers=mine).status_code == 200
    first = inbox.code_for(new)
    resent = client.post(f"/people/{name}/email/resend", headers=mine)
    assert resent.status_code == 202, resent.text
    second = inbox.code_for(new)
    if first != second:  # the new code replaces the old one
        assert client.post(f"/people/{name}/email/verify", json={"code": first},
                           headers=mine).status_code == 422
    assert client.post(f"/people/{name}/email/verify", json={"code": second},
                       headers=mine).json()["email"] == new
    # Within mail.resend_interval no code goes out.
    other = f"{unique('new')}@example.org"
    with TestClient(app=create_app(app_config(ldap, folder, smtp[0], 60))) as strict:
        mine = login(strict, name)
        assert strict.patch(f"/people/{name}", json={"email": other},
                            headers=mine).status_code == 200
        inbox.take(other)
        again = strict.post(f"/people/{name}/email/resend", headers=mine)
        assert again.status_code == 429, again.text
        assert 1 <= int(again.headers["Retry-After"]) <= 60
    assert inbox.count_to(other) == 0


def test_an_admin_sets_an_email_directly(client: Client, admin: Headers, inbox: Inbox) -> None:
    name = new_person(client, admin, email=f"{unique('old')}@example.org",
                      email_verified=True)["username"]
    direct = f"{unique('direct')}@example.org"
    shown = client.patch(f"/people/{name}", json={"email": direct}, headers=admin).json()
    assert (shown["email"], shown["email_verified"], shown["pending_email"]) == \
        (direct, False, None)
    vouched = f"{unique('vouched')}@example.org"
    shown = client.patch(f"/people/{name}", json={"email": vouched, "email_verified": True},
                         headers=admin).json()
    assert (shown["email"], shown["email_verified"]) == (vouched, True)
    assert inbox.count_to(direct) == 0 and inbox.count_to(vouched) == 0
    refused = client.patch(f"/people/{name}", json={"email_verified": True},
                           headers=login(client, name))
    assert refused.status_code == 403, refused.text


def test_a_disabled_user_cannot_finish_an_email_change(client: Client, admin: Headers,
                                                       inbox: Inbox) -> None:
    old, new = f"{unique('old')}@example.org", f"{unique('new')}@example.org"
    name = new_person(client, admin, email=old)["username"]
    assert client.patch(f"/people/{name}", json={"email": new},
                        headers=login(client, name)).status_code == 200
    code = inbox.code_for(new)
    assert client.post(f"/people/{name}/disable", headers=admin).status_code == 200
    native = client.post(f"/people/{name}/email/verify", json={"code": code}, headers=admin)
    assert native.status_code == 422, native.text
    accounts = client.post("/api/v1/accounts/users/verify/", json={"email": new, "otp": code})
    assert accounts.status_code == 400 and accounts.json() == BAD_CODE
    assert person(client, admin, name)["email"] == old


# --- 3. exact revocation ----------------------------------------------------------

def test_a_password_change_revokes_tokens_of_the_same_second(client: Client, admin: Headers,
                                                             ldap: SlapdInstance) -> None:
    """pwdChangedTime has whole seconds: a login and a change in the same
    second as the previous change must not leave the token alive either."""
    name = new_person(client, admin)["username"]
    password = PASSWORD
    for round_ in range(10):
        issued = token(client, name, password).json()
        password = OTHER if round_ % 2 == 0 else CHANGED
        ldap.ldap("ldappasswd", "-s", password, dn(name))
        old = {"Authorization": f"Bearer {issued['access_token']}"}
        assert client.get("/auth/me", headers=old).status_code == 401, round_
        assert client.post("/auth/refresh", json={"refresh_token": issued["refresh_token"]}
                           ).status_code == 401, round_
        assert client.get("/auth/me", headers=login(client, name, password)).status_code == 200


# --- 4. one password, one account type ----------------------------------------------

@pytest.mark.parametrize("writer", ["self", "service"])
def test_nobody_adds_a_second_password(client: Client, admin: Headers, ldap: SlapdInstance,
                                       writer: str) -> None:
    name = new_person(client, admin)["username"]
    ldif = f"dn: {dn(name)}\nchangetype: modify\nadd: userPassword\nuserPassword: {OTHER}\n"
    if writer == "self":
        added = ldap.ldap("ldapmodify", "-D", dn(name), "-w", PASSWORD, bind="none",
                          stdin=ldif, check=False)
    else:
        added = ldap.ldap("ldapmodify", stdin=ldif, check=False)
    assert added.returncode == 19, (added.returncode, added.stderr)  # constraintViolation
    assert not binds(ldap, name, OTHER) and not logs_in(client, name, OTHER)
    assert binds(ldap, name) and logs_in(client, name)
    # Replacing the one password still works, by the user and by an admin.
    own = client.put(f"/people/{name}/password", headers=login(client, name),
                     json={"new_password": CHANGED, "current_password": PASSWORD})
    assert own.status_code == 204, own.text
    assert logs_in(client, name, CHANGED) and not logs_in(client, name)
    reset = client.put(f"/people/{name}/password", json={"new_password": RESET}, headers=admin)
    assert reset.status_code == 204, reset.text
    assert logs_in(client, name, RESET) and binds(ldap, name, RESET)


@pytest.mark.parametrize(("method", "group", "member"), [
    ("PUT", "Staff", None), ("PUT", "USER", None), ("PUT", "Admin", None),
    ("DELETE", "ADMIN", ADMIN), ("DELETE", "Admin", ADMIN), ("DELETE", "User", None),
])
def test_type_groups_are_type_groups_whatever_the_case(client: Client, admin: Headers,
                                                       ldap: SlapdInstance, method: str,
                                                       group: str, member: str | None) -> None:
    name = member or new_person(client, admin)["username"]
    before = person(client, admin, name)["account_type"]
    response = client.request(method, f"/groups/{group}/members/{name}", headers=admin)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert person(client, admin, name)["account_type"] == before
    type_groups = {f"cn={t},ou=groups,{BASE_DN}".lower() for t in ("user", "staff", "admin")}
    member_of = attributes(ldap, dn(name), "memberOf")["memberOf"]
    assert [g for g in member_of if g.lower() in type_groups] == \
        [f"cn={before},ou=groups,{BASE_DN}"]


# --- 5. the username is the RDN's uid ---------------------------------------------

def test_an_ldapmodrdn_renames_the_user_everywhere(client: Client, admin: Headers,
                                                   ldap: SlapdInstance) -> None:
    user = new_person(client, admin)
    old, new = user["username"], unique("renamed")
    ldap.ldap("ldapmodrdn", dn(old), f"uid={new}")  # without -r: uid keeps the old value
    assert sorted(attributes(ldap, dn(new), "uid")["uid"]) == sorted([old, new])
    assert person(client, admin, new)["username"] == new
    assert client.get(f"/people/{old}", headers=admin).status_code == 404
    fittrackee = client.get(f"/api/users/{new}", headers=admin).json()["data"]
    assert [u["username"] for u in fittrackee] == [new]
    assert client.get(f"/api/users/{old}", headers=admin).status_code == 404
    assert client.get(f"/v1/users/{user['id']}", headers=admin).json()["username"] == new
    assert client.get(f"/api/v1/users/{user['id']}", headers=admin).json()["username"] == new
    nervai = {u["username"] for u in client.get("/users", headers=admin).json()}
    assert new in nervai and old not in nervai
    library = client.get("/api/v1/users", params={"s": new}, headers=admin).json()
    assert [u["username"] for u in library] == [new]
    listed = client.get("/api/users", params={"q": new}, headers=admin).json()["data"]["users"]
    assert [u["username"] for u in listed] == [new]
    assert not logs_in(client, old) and logs_in(client, new)
    # A later API rename leaves exactly the new name.
    newer = unique("newer")
    renamed = client.patch(f"/people/{new}", json={"username": newer}, headers=admin)
    assert renamed.status_code == 200 and renamed.json()["username"] == newer, renamed.text
    assert attributes(ldap, dn(newer), "uid")["uid"] == [newer]
    assert not logs_in(client, old) and not logs_in(client, new) and logs_in(client, newer)


def test_an_api_rename_moves_the_stand_ins(client: Client, admin: Headers,
                                           ldap: SlapdInstance) -> None:
    before = new_person(client, admin)["username"]
    made = attributes(ldap, dn(before), "sn", "cn", "homeDirectory")
    assert (made["sn"], made["cn"], made["homeDirectory"]) == \
        ([before], [before], f"/home/{before}")
    after = unique("moved")
    renamed = client.patch(f"/people/{before}", json={"username": after}, headers=admin)
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["last_name"] is None
    moved = attributes(ldap, dn(after), "uid", "sn", "cn", "homeDirectory")
    assert (moved["uid"], moved["sn"], moved["cn"], moved["homeDirectory"]) == \
        ([after], [after], [after], f"/home/{after}")


# --- 6. ids an LDAP tool took are skipped -----------------------------------------

def test_an_id_taken_by_ldapadd_is_skipped(client: Client, admin: Headers,
                                           ldap: SlapdInstance) -> None:
    counter = f"cn=uidNumber,ou=counters,{BASE_DN}"
    taken = int(attributes(ldap, counter, "uidNumber")["uidNumber"]) + 1
    tool = unique("tool")
    ldap.ldap("ldapadd", stdin="\n".join([
        f"dn: {dn(tool)}", "objectClass: inetOrgPerson", "objectClass: posixAccount",
        f"uid: {tool}", f"cn: {tool}", f"sn: {tool}", f"uidNumber: {taken}",
        "gidNumber: 10000", f"homeDirectory: /home/{tool}", ""]))
    created = client.post("/people", json={"username": unique("next"), "password": PASSWORD},
                          headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["id"] not in (None, taken)
    assert person(client, admin, tool)["id"] == taken


# --- 7. say what LDAP knows -----------------------------------------------------

def test_a_ppolicy_lockout_shows_as_locked_until(client: Client, admin: Headers,
                                                 ldap: SlapdInstance) -> None:
    name = new_person(client, admin)["username"]
    for _ in range(20):
        assert not binds(ldap, name, "Wrong-Horse-0")
    assert not binds(ldap, name)  # locked by ppolicy, the right password too
    shown = person(client, admin, name)
    assert shown["active"] is True
    assert shown["locked_until"] is not None
    ahead = datetime.fromisoformat(shown["locked_until"]) - datetime.now(UTC)
    assert 30 <= ahead.total_seconds() <= 65, ahead


@pytest.mark.parametrize("route", ["native", "own", "ldappasswd"])
def test_last_login_survives_a_password_change(client: Client, admin: Headers,
                                               ldap: SlapdInstance, route: str) -> None:
    name = new_person(client, admin)["username"]
    mine = login(client, name)
    assert person(client, admin, name)["last_login"] is not None
    if route == "native":
        assert client.put(f"/people/{name}/password", json={"new_password": RESET},
                          headers=admin).status_code == 204
    elif route == "own":
        assert client.put(f"/people/{name}/password", headers=mine, json={
            "new_password": RESET, "current_password": PASSWORD}).status_code == 204
    else:
        ldap.ldap("ldappasswd", "-s", RESET, dn(name))
    last = person(client, admin, name)["last_login"]
    assert last is not None
    assert abs((datetime.fromisoformat(last) - datetime.now(UTC)).total_seconds()) <= 90


def test_a_png_in_jpeg_photo_is_no_picture_anywhere(client: Client, admin: Headers,
                                                    ldap: SlapdInstance) -> None:
    user = new_person(client, admin)
    name = user["username"]

    def shown() -> tuple[bool, str | None, int]:
        fittrackee = client.get(f"/api/users/{name}", headers=admin).json()["data"][0]
        accounts = client.get(f"/api/v1/accounts/users/{user['id']}/", headers=admin).json()
        return (fittrackee["picture"], accounts["photo"],
                client.get(f"/people/{name}/photo").status_code)

    for kind in ("JPEG", "PNG"):
        photo = base64.b64encode(jpeg_of(kind)).decode()
        modify(ldap, dn(name), "replace: jpegPhoto", f"jpegPhoto:: {photo}")
        picture, url, status = shown()
        if kind == "JPEG":  # the routes do see a picture an LDAP tool wrote
            assert picture is True and url is not None and status == 200
        else:
            assert (picture, url, status) == (False, None, 404)
