"""Issue #18, dialects: fittrackee's admin flag touches admins only, private fields stay
private, and sign-ups waiting for their code are in no listing but an admin's."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from app.config import Config
from app.main import create_app
from tests.conftest import ADMIN, ADMIN_PASSWORD, PASSWORD, SlapdInstance, make_config, unique
from tests.conftest import native_login as login

Client = TestClient[Any]
Headers = dict[str, str]
ROOMY = {"address_free": 1000, "account_free": 1000}
BIRTHDAY = "1990-05-17"
BIRTH_DATE = "Thu, 17 May 1990 00:00:00 GMT"


def app_config(slapd: SlapdInstance, tmp_path_factory: pytest.TempPathFactory,
               **fittrackee: Any) -> Config:
    return make_config(slapd, tmp_path_factory.mktemp("privacy"), throttle=ROOMY,
                       fittrackee=fittrackee)


@pytest.fixture(scope="module")
def client(slapd: SlapdInstance, bootstrapped: None,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    with TestClient(app=create_app(app_config(slapd, tmp_path_factory))) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def exposing(slapd: SlapdInstance, bootstrapped: None,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    config = app_config(slapd, tmp_path_factory, expose_private_fields="true")
    assert config.fittrackee.expose_private_fields is True
    with TestClient(app=create_app(config)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def admin(client: Client) -> Headers:
    return login(client, ADMIN, ADMIN_PASSWORD)


def new_person(client: Client, admin: Headers, **fields: Any) -> str:
    body = {"username": unique("priv"), "password": PASSWORD, **fields}
    response = client.post("/people", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return str(body["username"])


def account_type(client: Client, admin: Headers, username: str) -> str:
    return str(client.get(f"/people/{username}", headers=admin).json()["account_type"])


def fittrackee_user(client: Client, headers: Headers, username: str) -> dict[str, Any]:
    response = client.get(f"/api/users/{username}", headers=headers)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert len(data) == 1
    found: dict[str, Any] = data[0]
    return found


def fittrackee_listed(client: Client, headers: Headers, q: str) -> dict[str, dict[str, Any]]:
    response = client.get("/api/users", params={"q": q, "per_page": 50}, headers=headers)
    assert response.status_code == 200, response.text
    return {u["username"]: u for u in response.json()["data"]["users"]}


# --- fittrackee: `admin: false` removes admin rights, nothing else ---------------

def test_admin_false_leaves_a_staff_user_staff(client: Client, admin: Headers) -> None:
    staff = new_person(client, admin, account_type="staff")
    response = client.patch(f"/api/users/{staff}", json={"admin": False}, headers=admin)
    assert response.status_code == 200, response.text
    assert response.json()["data"][0]["admin"] is False
    assert account_type(client, admin, staff) == "staff"
    # For an admin it is what it always was: no admin rights any more.
    other = new_person(client, admin, account_type="admin")
    response = client.patch(f"/api/users/{other}", json={"admin": False}, headers=admin)
    assert response.status_code == 200 and response.json()["data"][0]["admin"] is False
    assert account_type(client, admin, other) == "user"


# --- fittrackee: another user's email and birth date --------------------------------

def private_of(user: dict[str, Any]) -> tuple[Any, Any]:
    return user["email"], user["birth_date"]


def test_others_see_no_email_or_birth_date(client: Client, admin: Headers) -> None:
    email = f"{unique('priv')}@example.org"
    owner = new_person(client, admin, email=email, birthday=BIRTHDAY)
    other = login(client, new_person(client, admin))
    assert private_of(fittrackee_user(client, other, owner)) == (None, None)
    assert private_of(fittrackee_listed(client, other, owner)[owner]) == (None, None)
    assert fittrackee_user(client, other, owner)["username"] == owner  # the rest is shown
    # Staff are no admins here.
    staff = login(client, new_person(client, admin, account_type="staff"))
    assert private_of(fittrackee_user(client, staff, owner)) == (None, None)
    for viewer in (login(client, owner), admin):
        assert private_of(fittrackee_user(client, viewer, owner)) == (email, BIRTH_DATE)
        assert private_of(fittrackee_listed(client, viewer, owner)[owner]) == \
            (email, BIRTH_DATE)


def test_expose_private_fields_restores_them(client: Client, exposing: Client,
                                             admin: Headers) -> None:
    email = f"{unique('priv')}@example.org"
    owner = new_person(client, admin, email=email, birthday=BIRTHDAY)
    other = login(exposing, new_person(client, admin))
    assert private_of(fittrackee_user(exposing, other, owner)) == (email, BIRTH_DATE)
    assert private_of(fittrackee_listed(exposing, other, owner)[owner]) == (email, BIRTH_DATE)


# --- sign-ups waiting for their code are listed to admins only -----------------------

def ufdl_listed(client: Client, headers: Headers, prefix: str) -> set[str]:
    body = {"expressions": [{"type": "contains", "field": "username", "sub_string": prefix}],
            "include_inactive": True}
    response = client.post("/v1/users/list", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return {u["username"] for u in response.json()}


def native_listed(client: Client, headers: Headers, prefix: str) -> set[str]:
    response = client.get("/people", params={"q": prefix, "per_page": 100}, headers=headers)
    assert response.status_code == 200, response.text
    return {u["username"] for u in response.json()["items"]}


def test_unverified_sign_ups_are_listed_to_admins_only(client: Client, admin: Headers) -> None:
    prefix = unique("lst")
    waiting, verified = f"{prefix}a", f"{prefix}b"
    signed_up = client.post("/api/v1/accounts/users/", json={
        "email": f"{waiting}@example.com", "password": PASSWORD, "confirm_password": PASSWORD,
        "first_name": "Wait", "last_name": "Ing", "phone": "+1234567890", "gender": "F",
        "country": "US"})
    assert signed_up.status_code == 201, signed_up.text
    new_person(client, admin, username=verified)
    plain = login(client, new_person(client, admin))
    staff = login(client, new_person(client, admin, account_type="staff"))
    assert set(fittrackee_listed(client, plain, prefix)) == {verified}
    assert set(fittrackee_listed(client, staff, prefix)) == {verified}
    assert native_listed(client, staff, prefix) == {verified}
    assert ufdl_listed(client, staff, prefix) == {verified}
    assert set(fittrackee_listed(client, admin, prefix)) == {waiting, verified}
    assert native_listed(client, admin, prefix) == {waiting, verified}
    assert ufdl_listed(client, admin, prefix) == {waiting, verified}


def test_a_user_whose_address_an_admin_set_is_still_listed(client: Client,
                                                           admin: Headers) -> None:
    """Unverified is not waiting: an address an admin set reads as unverified,
    but its user signed up long ago and is no pending sign-up."""
    name = new_person(client, admin, email=f"{unique('old')}@example.org")
    changed = client.patch(f"/people/{name}", json={"email": f"{unique('set')}@example.org"},
                           headers=admin)
    assert changed.status_code == 200 and changed.json()["email_verified"] is False
    plain = login(client, new_person(client, admin))
    staff = login(client, new_person(client, admin, account_type="staff"))
    assert set(fittrackee_listed(client, plain, name)) == {name}
    assert native_listed(client, staff, name) == {name}
    assert ufdl_listed(client, staff, name) == {name}
