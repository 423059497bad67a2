"""compat/accounts.md over HTTP, with a real SMTP server: sign-up, mail, verify, login, profile."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from PIL import Image

from app.config import Config
from app.main import create_app
from tests.conftest import ADMIN_PASSWORD, PASSWORD, SlapdInstance, make_config, unique
from tests.smtp import Inbox, smtp_server

Client = TestClient[Any]
API = "/api/v1/accounts"
SUMMARY = {"id", "email", "first_name", "last_name", "phone", "gender", "country", "created_at",
           "updated_at"}
DETAIL = {"id", "email", "first_name", "last_name", "phone", "photo", "address", "gender",
          "country", "birthday", "has_initial_profile", "created_at", "updated_at"}
NO_ACCOUNT = {"detail": "No active account found with the given credentials"}
BAD_CODE = {"otp": ["Invalid or expired code."]}


PUBLIC_URL = "https://users.example.org"


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[int, Inbox]]:
    with smtp_server() as server:
        yield server


def app_config(slapd: SlapdInstance, folder: Path, port: int, **mail: Any) -> Config:
    """Codes may be resent at once here, unless a test says otherwise."""
    return make_config(slapd, folder, http={"public_url": PUBLIC_URL},
                       mail={"backend": "smtp", "host": "127.0.0.1",
                                            "port": port, "security": "none",
                                            "resend_interval": 0, **mail})


@pytest.fixture(scope="module")
def client(slapd: SlapdInstance, bootstrapped: None, smtp: tuple[int, Inbox],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    config = app_config(slapd, tmp_path_factory.mktemp("accounts"), smtp[0])
    with TestClient(app=create_app(config)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def inbox(smtp: tuple[int, Inbox]) -> Inbox:
    return smtp[1]


@pytest.fixture(scope="module")
def admin(client: Client) -> dict[str, str]:
    return bearer(client, "admin@example.org", ADMIN_PASSWORD)


def sign_up_body(**fields: Any) -> dict[str, Any]:
    return {"email": f"{unique('acc')}@example.com", "password": PASSWORD,
            "confirm_password": PASSWORD, "first_name": "John", "last_name": "Doe",
            "phone": "+1234567890", "gender": "M", "country": "US", **fields}


def token(client: Client, email: str, password: str = PASSWORD) -> Any:
    return client.post(f"{API}/token/", json={"email": email, "password": password})


def bearer(client: Client, email: str, password: str = PASSWORD) -> dict[str, str]:
    response = token(client, email, password)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access']}"}


def verified_user(client: Client, inbox: Inbox) -> tuple[int, str, dict[str, str]]:
    """Sign up, read the code from the mail, verify: (id, email, auth header)."""
    body = sign_up_body()
    created = client.post(f"{API}/users/", json=body)
    assert created.status_code == 201, created.text
    email = body["email"]
    verify = client.post(f"{API}/users/verify/", json={"email": email,
                                                       "otp": inbox.code_for(email)})
    assert verify.status_code == 200, verify.text
    return created.json()["data"]["id"], email, bearer(client, email)


def username_of(client: Client, headers: dict[str, str]) -> str:
    """The uid, through the native API (this dialect never shows it)."""
    return str(client.get("/auth/me", headers=headers).json()["username"])


# --- sign-up, mail, verify, login ----------------------------------------------

def test_sign_up_mail_verify_login(client: Client, inbox: Inbox, slapd: SlapdInstance) -> None:
    body = sign_up_body()
    response = client.post(f"{API}/users/", json=body)
    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer["msg"] == "Email sent successfully!"
    assert set(answer["data"]) == SUMMARY
    data = answer["data"]
    assert (data["email"], data["first_name"], data["last_name"], data["phone"], data["gender"],
            data["country"]) == (body["email"], "John", "Doe", "+1234567890", "M", "US")
    assert data["created_at"].endswith("Z") and isinstance(data["id"], int)
    for secret in ("password", PASSWORD, "uid", "username"):
        assert secret not in response.text

    code = inbox.code_for(body["email"])
    assert code not in response.text
    # Unverified: no login here, nor a bind with any LDAP tool.
    assert token(client, body["email"]).json() == NO_ACCOUNT
    assert token(client, body["email"]).status_code == 401
    dn = slapd.ldap("ldapsearch", "-LLL", "-b", "ou=people,dc=example,dc=org",
                    f"(mail={body['email']})", "1.1").stdout.split()[1]
    assert slapd.ldap("ldapwhoami", "-D", dn, "-w", PASSWORD, bind="none",
                      check=False).returncode == 49

    verify = client.post(f"{API}/users/verify/", json={"email": body["email"], "otp": code})
    assert verify.status_code == 200 and verify.json() == {"msg": "Email verified successfully!"}
    login = token(client, body["email"])
    assert login.status_code == 200 and set(login.json()) == {"refresh", "access"}
    assert slapd.ldap("ldapwhoami", "-D", dn, "-w", PASSWORD, bind="none").returncode == 0
    mine = client.get(f"{API}/users/{data['id']}/",
                      headers={"Authorization": f"Bearer {login.json()['access']}"})
    assert mine.status_code == 200 and mine.json()["email"] == body["email"]
    # The code was used up: it works once.
    again = client.post(f"{API}/users/verify/", json={"email": body["email"], "otp": code})
    assert again.status_code == 400 and again.json() == BAD_CODE


def test_every_field_is_required(client: Client) -> None:
    response = client.post(f"{API}/users/", json={})
    assert response.status_code == 400
    assert response.json() == {field: ["This field is required."] for field in sign_up_body()}
    assert client.post(f"{API}/users/", content=b"").json() == response.json()


@pytest.mark.parametrize("field", ["email", "password", "confirm_password", "first_name",
                                   "last_name", "phone", "gender", "country"])
def test_blank_and_null_fields(client: Client, field: str) -> None:
    for value, message in (("", "This field may not be blank."), ("   ", None),
                           (None, "This field may not be null.")):
        response = client.post(f"{API}/users/", json=sign_up_body(**{field: value}))
        assert response.status_code == 400
        assert response.json() == {field: [message or "This field may not be blank."]}


@pytest.mark.parametrize(("field", "value", "message"), [
    ("email", "not-an-email", "Enter a valid email address."),
    ("email", "a@b", "Enter a valid email address."),
    ("gender", "X", '"X" is not a valid choice.'),
    ("gender", "male", '"male" is not a valid choice.'),
    ("country", "XX", "Enter a valid country code."),
    ("country", "USA", "Enter a valid country code."),
    ("phone", "1234567890", "Enter a valid phone number."),
    ("phone", "+123456", "Enter a valid phone number."),
    ("phone", "+1234567890123456", "Enter a valid phone number."),
    ("phone", "+1 234 567 890", "Enter a valid phone number."),
    ("first_name", "x" * 151, "Ensure this field has no more than 150 characters."),
    ("first_name", "John\x00", "Control characters are not allowed."),
])
def test_invalid_fields(client: Client, field: str, value: str, message: str) -> None:
    response = client.post(f"{API}/users/", json=sign_up_body(**{field: value}))
    assert response.status_code == 400
    assert response.json() == {field: [message]}


def test_all_field_errors_at_once(client: Client) -> None:
    response = client.post(f"{API}/users/", json=sign_up_body(email="x", gender="Q", phone="1"))
    assert response.json() == {"email": ["Enter a valid email address."],
                               "gender": ['"Q" is not a valid choice.'],
                               "phone": ["Enter a valid phone number."]}


def test_passwords_must_match(client: Client) -> None:
    response = client.post(f"{API}/users/", json=sign_up_body(confirm_password="Other-Horse-9x"))
    assert response.status_code == 400
    assert response.json() == {"confirm_password": ["Passwords do not match."]}


def test_the_password_policy_speaks(client: Client) -> None:
    response = client.post(f"{API}/users/", json=sign_up_body(password="short",
                                                              confirm_password="short"))
    assert response.status_code == 400
    # In our words: slapd's own text stays in its log.
    assert response.json() == {"password": [
        "The password does not meet the password policy (at least 8 characters)."]}


def test_a_taken_email(client: Client, inbox: Inbox) -> None:
    body = sign_up_body()
    assert client.post(f"{API}/users/", json=body).status_code == 201
    inbox.take(body["email"])
    for email in (body["email"], body["email"].upper()):
        response = client.post(f"{API}/users/", json={**body, "email": email})
        assert response.status_code == 400
        assert response.json() == {"email": ["A user with this email already exists."]}
    assert client.post(f"{API}/users/", json=sign_up_body(email="admin@example.org")).json() \
        == {"email": ["A user with this email already exists."]}


def test_usernames_come_from_the_local_part_and_are_unique(client: Client,
                                                           inbox: Inbox) -> None:
    local = unique("Same.Name+")
    headers = []
    for domain in ("example.com", "example.net", "example.org"):
        email = f"{local}@{domain}"
        assert client.post(f"{API}/users/", json=sign_up_body(email=email)).status_code == 201
        client.post(f"{API}/users/verify/", json={"email": email, "otp": inbox.code_for(email)})
        headers.append(bearer(client, email))
    names = [username_of(client, h) for h in headers]
    assert names[0] == local.lower() and len(set(names)) == 3
    assert all(name.startswith(local.lower()) for name in names)


@pytest.mark.parametrize(("body", "expected"), [
    (b'{"email": 5}', {"email": ["Not a valid string."]}),
    (b'[1, 2]', {"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}),
])
def test_wrong_types(client: Client, body: bytes, expected: dict[str, Any]) -> None:
    response = client.post(f"{API}/users/", content=body,
                           headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json() == expected


def test_malformed_json(client: Client) -> None:
    for body in (b"{bad", b"\xff\xfe"):
        response = client.post(f"{API}/users/", content=body,
                               headers={"content-type": "application/json"})
        assert response.status_code == 400
        assert response.json()["detail"].startswith("JSON parse error")


# --- the code: wrong, used up, expired, resent -----------------------------------

def test_wrong_codes_and_the_attempt_limit(client: Client, inbox: Inbox) -> None:
    body = sign_up_body()
    client.post(f"{API}/users/", json=body)
    code = inbox.code_for(body["email"])
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for otp in ("", "12345", "abcdef"):
        response = client.post(f"{API}/users/verify/", json={"email": body["email"], "otp": otp})
        assert response.status_code == 400
    for _ in range(5):
        response = client.post(f"{API}/users/verify/", json={"email": body["email"], "otp": wrong})
        assert response.status_code == 400 and response.json() == BAD_CODE
    # Five wrong codes: the code is void, even the right one fails now.
    right = client.post(f"{API}/users/verify/", json={"email": body["email"], "otp": code})
    assert right.status_code == 400 and right.json() == BAD_CODE
    # A new one must be requested.
    resend = client.post(f"{API}/users/resend-otp/", json={"email": body["email"]})
    assert resend.status_code == 200 and resend.json() == {"msg": "Email sent successfully!"}
    fresh = inbox.code_for(body["email"])
    ok = client.post(f"{API}/users/verify/", json={"email": body["email"], "otp": fresh})
    assert ok.status_code == 200
    assert token(client, body["email"]).status_code == 200


def test_four_wrong_codes_leave_the_right_one_working(client: Client, inbox: Inbox) -> None:
    body = sign_up_body()
    client.post(f"{API}/users/", json=body)
    code = inbox.code_for(body["email"])
    for _ in range(4):
        client.post(f"{API}/users/verify/", json={"email": body["email"],
                                                  "otp": f"{(int(code) + 7) % 1_000_000:06d}"})
    assert client.post(f"{API}/users/verify/", json={"email": body["email"],
                                                     "otp": code}).status_code == 200


def test_unknown_email_gets_the_same_answers(client: Client, inbox: Inbox) -> None:
    nobody = f"{unique('nobody')}@example.com"
    verify = client.post(f"{API}/users/verify/", json={"email": nobody, "otp": "123456"})
    assert verify.status_code == 400 and verify.json() == BAD_CODE
    resend = client.post(f"{API}/users/resend-otp/", json={"email": nobody})
    assert resend.status_code == 200 and resend.json() == {"msg": "Email sent successfully!"}
    _, verified_email, _ = verified_user(client, inbox)
    again = client.post(f"{API}/users/resend-otp/", json={"email": verified_email})
    assert again.json() == resend.json()
    assert inbox.count_to(nobody) == 0 and inbox.count_to(verified_email) == 0


def test_resend_replaces_the_code(client: Client, inbox: Inbox) -> None:
    body = sign_up_body()
    client.post(f"{API}/users/", json=body)
    first = inbox.code_for(body["email"])
    client.post(f"{API}/users/resend-otp/", json={"email": body["email"]})
    second = inbox.code_for(body["email"])
    if first != second:
        old = client.post(f"{API}/users/verify/", json={"email": body["email"], "otp": first})
        assert old.json() == BAD_CODE
    assert client.post(f"{API}/users/verify/", json={"email": body["email"],
                                                     "otp": second}).status_code == 200


def test_a_sign_up_disabled_by_an_admin_stays_disabled(client: Client, inbox: Inbox,
                                                       admin: dict[str, str]) -> None:
    """Disabling an account that awaits its code ends the wait: neither the
    code already mailed nor a resent one enables it again."""
    body = sign_up_body()
    email = body["email"]
    client.post(f"{API}/users/", json=body)
    code = inbox.code_for(email)
    username = email.split("@")[0]
    disabled = client.post(f"/people/{username}/disable", headers=admin)
    assert disabled.status_code == 200 and disabled.json()["active"] is False
    assert client.post(f"{API}/users/verify/", json={"email": email, "otp": code}).json() \
        == BAD_CODE
    assert client.post(f"{API}/users/resend-otp/", json={"email": email}).status_code == 200
    assert nothing_sent(inbox, email)  # it awaits no code any more
    assert token(client, email).json() == NO_ACCOUNT
    # Enabling it is the admin's decision, and it takes effect.
    assert client.post(f"/people/{username}/enable", headers=admin).status_code == 200
    assert token(client, email).status_code == 200


def test_resend_and_verify_validate_their_fields(client: Client) -> None:
    assert client.post(f"{API}/users/resend-otp/", json={}).json() == {
        "email": ["This field is required."]}
    assert client.post(f"{API}/users/verify/", json={"email": "x"}).json() == {
        "email": ["Enter a valid email address."], "otp": ["This field is required."]}


def test_an_expired_code(slapd: SlapdInstance, smtp: tuple[int, Inbox],
                         tmp_path_factory: pytest.TempPathFactory) -> None:
    port, inbox = smtp
    config = app_config(slapd, tmp_path_factory.mktemp("short"), port, code_lifetime=1)
    with TestClient(app=create_app(config)) as short:
        body = sign_up_body()
        short.post(f"{API}/users/", json=body)
        code = inbox.code_for(body["email"])
        time.sleep(2.1)
        response = short.post(f"{API}/users/verify/", json={"email": body["email"], "otp": code})
        assert response.status_code == 400 and response.json() == BAD_CODE
        assert token(short, body["email"]).status_code == 401
        # The lapsed sign-up no longer holds the address: signing up again works.
        again = short.post(f"{API}/users/", json={**body, "first_name": "Again"})
        assert again.status_code == 201 and again.json()["data"]["first_name"] == "Again"
        inbox.code_for(body["email"])  # a new code was mailed (it raises if none comes)
        assert token(short, body["email"]).status_code == 401  # and awaits its code


def test_resend_waits_its_interval(slapd: SlapdInstance, smtp: tuple[int, Inbox],
                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    """resend-otp mails at most one code per interval to an address, whatever
    is asked and however the last code ended, and answers the same throughout."""
    port, inbox = smtp
    sent = {"msg": "Email sent successfully!"}
    config = app_config(slapd, tmp_path_factory.mktemp("resend"), port, resend_interval=5)
    with TestClient(app=create_app(config)) as paced:
        body = sign_up_body()
        email = body["email"]
        paced.post(f"{API}/users/", json=body)
        code = inbox.code_for(email)
        for _ in range(3):
            assert paced.post(f"{API}/users/resend-otp/", json={"email": email}).json() == sent
        assert nothing_sent(inbox, email)
        # Voiding the code with wrong tries does not reopen the gate.
        wrong = f"{(int(code) + 1) % 1_000_000:06d}"
        for _ in range(5):
            paced.post(f"{API}/users/verify/", json={"email": email, "otp": wrong})
        assert paced.post(f"{API}/users/resend-otp/", json={"email": email}).json() == sent
        assert nothing_sent(inbox, email)

        # An email change sends a code too: one per interval, refused with
        # DRF's throttling answer and nothing changed (the other fields neither).
        user_id, old, headers = verified_user(paced, inbox)
        victim = f"{unique('victim')}@example.net"
        path = f"{API}/users/{user_id}/"
        assert paced.patch(path, headers=headers, json={"email": victim}).status_code == 200
        inbox.take(victim)
        again = paced.patch(path, headers=headers, json={"email": victim, "last_name": "Other"})
        assert again.status_code == 429 and int(again.headers["retry-after"]) in range(1, 6)
        assert again.json() == {"detail": "Request was throttled. Expected available in "
                                          f"{again.headers['retry-after']} seconds."}
        assert nothing_sent(inbox, victim)
        assert paced.get(path, headers=headers).json()["last_name"] == "Doe"

        time.sleep(5.1)
        assert paced.post(f"{API}/users/resend-otp/", json={"email": email}).json() == sent
        fresh = inbox.code_for(email)
        assert paced.post(f"{API}/users/verify/",
                          json={"email": email, "otp": fresh}).status_code == 200
        assert paced.patch(path, headers=headers, json={"email": victim}).status_code == 200
        assert paced.post(f"{API}/users/verify/", json={"email": victim,
                                                        "otp": inbox.code_for(victim)}).json() \
            == {"msg": "Email verified successfully!"}
        assert paced.get(path, headers=headers).json()["email"] == victim != old


def nothing_sent(inbox: Inbox, email: str) -> bool:
    try:
        inbox.take(email, timeout=0.5)
    except AssertionError:
        return True
    return False


def test_mail_server_down(slapd: SlapdInstance, smtp: tuple[int, Inbox],
                          tmp_path_factory: pytest.TempPathFactory, client: Client,
                          inbox: Inbox) -> None:
    """503, and no account left behind: the same sign-up succeeds once mail works."""
    from tests.conftest import free_port

    config = app_config(slapd, tmp_path_factory.mktemp("down"), free_port(), timeout=2,
                        resend_interval=60)
    body = sign_up_body()
    user_id, old, _ = verified_user(client, inbox)
    with TestClient(app=create_app(config)) as down:
        response = down.post(f"{API}/users/", json=body)
        assert response.status_code == 503
        assert response.json() == {"detail": "The email could not be sent. "
                                             "Please try again later."}
        assert token(down, body["email"]).status_code == 401
        # An email change whose code cannot be mailed does not start, and
        # does not hold back the retry (a 503 again, not a 429).
        headers = bearer(down, old)
        for _ in range(2):
            moved = down.patch(f"{API}/users/{user_id}/", headers=headers,
                               json={"email": f"{unique('moved')}@example.net"})
            assert moved.status_code == 503, moved.text
        pending = slapd.ldap("ldapsearch", "-LLL", "-b", "ou=people,dc=example,dc=org",
                             f"(mail={old})", "userdirPendingEmail").stdout
        assert "userdirPendingEmail" not in pending and "dn:" in pending
    gone = slapd.ldap("ldapsearch", "-LLL", "-b", "dc=example,dc=org", f"(mail={body['email']})",
                      "1.1").stdout
    assert gone.strip() == ""
    assert client.post(f"{API}/users/", json=body).status_code == 201
    assert inbox.code_for(body["email"])


def test_no_code_in_the_log(client: Client, inbox: Inbox,
                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="userdir")
    body = sign_up_body()
    client.post(f"{API}/users/", json=body)
    code = inbox.code_for(body["email"])
    client.post(f"{API}/users/verify/", json={"email": body["email"], "otp": code})
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("userdir"))
    assert code not in ours and PASSWORD not in ours


# --- login -----------------------------------------------------------------------

def test_login_failures_look_alike(client: Client, admin: dict[str, str], inbox: Inbox) -> None:
    _, email, _ = verified_user(client, inbox)
    assert token(client, email, "Wrong-Horse-1").json() == NO_ACCOUNT
    assert token(client, f"{unique('nope')}@example.com").json() == NO_ACCOUNT
    assert token(client, "not an email").status_code == 401
    username = username_of(client, bearer(client, email))
    assert client.post(f"/people/{username}/disable", headers=admin).status_code == 200
    disabled = token(client, email)
    assert disabled.status_code == 401 and disabled.json() == NO_ACCOUNT
    assert client.post(f"{API}/token/", json={}).json() == {
        "email": ["This field is required."], "password": ["This field is required."]}


def test_refresh(client: Client, inbox: Inbox) -> None:
    _, email, _ = verified_user(client, inbox)
    pair = token(client, email).json()
    response = client.post(f"{API}/token/refresh/", json={"refresh": pair["refresh"]})
    assert response.status_code == 200 and set(response.json()) == {"access"}
    me = client.get("/auth/me", headers={"Authorization": f"Bearer {response.json()['access']}"})
    assert me.status_code == 200  # one token for every dialect
    for bad in (pair["access"], "garbage"):
        refused = client.post(f"{API}/token/refresh/", json={"refresh": bad})
        assert refused.status_code == 401
        assert refused.json() == {"detail": "Token is invalid or expired",
                                  "code": "token_not_valid"}
    assert client.post(f"{API}/token/refresh/", json={}).json() == {
        "refresh": ["This field is required."]}


# --- retrieve and update ------------------------------------------------------------

def test_retrieve_himself(client: Client, inbox: Inbox) -> None:
    user_id, email, headers = verified_user(client, inbox)
    response = client.get(f"{API}/users/{user_id}/", headers=headers)
    assert response.status_code == 200 and set(response.json()) == DETAIL
    body = response.json()
    assert body["id"] == user_id and body["email"] == email
    assert body["photo"] is None and body["birthday"] is None and body["address"] is None
    assert body["has_initial_profile"] is False
    assert client.get(f"{API}/users/{user_id}", headers=headers).status_code == 200


def test_photo_is_an_absolute_url(client: Client, inbox: Inbox) -> None:
    user_id, _, headers = verified_user(client, inbox)
    picture = io.BytesIO()
    Image.new("RGB", (40, 30), "red").save(picture, "PNG")
    uploaded = client.put(f"/people/{username_of(client, headers)}/photo",
                          content=picture.getvalue(), headers={**headers,
                                                               "content-type": "image/png"})
    assert uploaded.status_code == 204
    url = client.get(f"{API}/users/{user_id}/", headers=headers).json()["photo"]
    assert url == f"{PUBLIC_URL}{API}/users/{user_id}/photo/"
    # From http.public_url, never from the Host header a client chooses.
    forged = client.get(f"{API}/users/{user_id}/", headers={**headers, "host": "evil.example"})
    assert forged.json()["photo"] == url
    served = client.get(f"{API}/users/{user_id}/photo/")
    assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
    assert client.get(f"{API}/users/999999999/photo/").status_code == 404


def test_who_may_see_a_user(client: Client, inbox: Inbox, admin: dict[str, str]) -> None:
    user_id, _, _ = verified_user(client, inbox)
    other_id, _, other = verified_user(client, inbox)
    assert client.get(f"{API}/users/{user_id}/").json() == {
        "detail": "Authentication credentials were not provided."}
    assert client.get(f"{API}/users/{user_id}/").status_code == 401
    forbidden = client.get(f"{API}/users/{user_id}/", headers=other)
    assert forbidden.status_code == 403
    assert forbidden.json() == {"detail": "You do not have permission to perform this action."}
    assert client.get(f"{API}/users/{user_id}/", headers=admin).status_code == 200
    for pk in ("999999999", "abc"):
        missing = client.get(f"{API}/users/{pk}/", headers=admin)
        assert missing.status_code == 404 and missing.json() == {"error": "User not found"}
    bad = client.get(f"{API}/users/{other_id}/", headers={"Authorization": "Bearer garbage"})
    assert bad.status_code == 401 and bad.json()["code"] == "token_not_valid"


def test_update_himself(client: Client, inbox: Inbox) -> None:
    user_id, _, headers = verified_user(client, inbox)
    response = client.patch(f"{API}/users/{user_id}/", headers=headers, json={
        "first_name": "Jane", "phone": "+4420794600", "country": "gb",
        "address": "1 High Street\nOxford", "birthday": "1990-01-01", "unknown": "ignored"})
    assert response.status_code == 200, response.text
    assert set(response.json()) == SUMMARY
    assert (response.json()["first_name"], response.json()["country"]) == ("Jane", "GB")
    shown = client.get(f"{API}/users/{user_id}/", headers=headers).json()
    assert shown["birthday"] == "1990-01-01" and shown["address"] == "1 High Street\nOxford"
    assert shown["has_initial_profile"] is True
    cleared = client.patch(f"{API}/users/{user_id}/", headers=headers,
                           json={"address": None, "birthday": None})
    assert cleared.status_code == 200
    assert client.get(f"{API}/users/{user_id}/", headers=headers).json()[
        "has_initial_profile"] is False


def test_update_validates_like_sign_up_and_changes_nothing(client: Client,
                                                            inbox: Inbox) -> None:
    user_id, _, headers = verified_user(client, inbox)
    response = client.patch(f"{API}/users/{user_id}/", headers=headers, json={
        "first_name": "Changed", "phone": "123", "gender": "Z", "birthday": "01/01/1990",
        "last_name": ""})
    assert response.status_code == 400
    assert response.json() == {
        "phone": ["Enter a valid phone number."], "gender": ['"Z" is not a valid choice.'],
        "birthday": ["Date has wrong format. Use one of these formats instead: YYYY-MM-DD."],
        "last_name": ["This field may not be blank."]}
    assert client.get(f"{API}/users/{user_id}/", headers=headers).json()["first_name"] == "John"


def test_who_may_update(client: Client, inbox: Inbox, admin: dict[str, str]) -> None:
    user_id, _, _ = verified_user(client, inbox)
    _, _, other = verified_user(client, inbox)
    assert client.patch(f"{API}/users/{user_id}/", json={"first_name": "X"}).status_code == 401
    # Authentication and permission come before the body, as in DRF.
    assert client.patch(f"{API}/users/{user_id}/", content=b"{bad").status_code == 401
    assert client.patch(f"{API}/users/{user_id}/", headers=other,
                        json={"phone": "bad"}).status_code == 403
    by_admin = client.patch(f"{API}/users/{user_id}/", headers=admin, json={"last_name": "Smith"})
    assert by_admin.status_code == 200 and by_admin.json()["last_name"] == "Smith"
    assert client.patch(f"{API}/users/999999999/", headers=admin,
                        json={"last_name": "X"}).json() == {"error": "User not found"}


def test_email_change_waits_for_its_code(client: Client, inbox: Inbox) -> None:
    user_id, old, headers = verified_user(client, inbox)
    new = f"{unique('moved')}@example.net"
    response = client.patch(f"{API}/users/{user_id}/", headers=headers, json={"email": new})
    assert response.status_code == 200 and response.json()["email"] == old
    code = inbox.code_for(new)
    assert inbox.count_to(old) == 0
    assert token(client, old).status_code == 200  # the login email has not switched yet
    assert token(client, new).status_code == 401
    wrong_address = client.post(f"{API}/users/verify/", json={"email": old, "otp": code})
    assert wrong_address.json() == BAD_CODE
    verify = client.post(f"{API}/users/verify/", json={"email": new, "otp": code})
    assert verify.status_code == 200
    assert token(client, new).status_code == 200 and token(client, old).status_code == 401
    assert client.get(f"{API}/users/{user_id}/", headers=headers).json()["email"] == new


def test_email_change_to_a_taken_address(client: Client, inbox: Inbox) -> None:
    user_id, _, headers = verified_user(client, inbox)
    _, taken, _ = verified_user(client, inbox)
    response = client.patch(f"{API}/users/{user_id}/", headers=headers, json={"email": taken})
    assert response.status_code == 400
    assert response.json() == {"email": ["A user with this email already exists."]}
    assert inbox.count_to(taken) == 0


def test_an_address_taken_while_its_change_waits(client: Client, inbox: Inbox) -> None:
    """Whoever confirms the address first has it; slapo-unique refuses the other."""
    user_id, old, headers = verified_user(client, inbox)
    contested = f"{unique('contested')}@example.net"
    client.patch(f"{API}/users/{user_id}/", headers=headers, json={"email": contested})
    change_code = inbox.code_for(contested)
    assert client.post(f"{API}/users/", json=sign_up_body(email=contested)).status_code == 201
    sign_up_code = inbox.code_for(contested)
    assert client.post(f"{API}/users/verify/", json={"email": contested,
                                                     "otp": sign_up_code}).status_code == 200
    late = client.post(f"{API}/users/verify/", json={"email": contested, "otp": change_code})
    assert late.status_code == 400
    assert late.json() == {"email": ["A user with this email already exists."]}
    assert client.get(f"{API}/users/{user_id}/", headers=headers).json()["email"] == old


def test_email_change_resend(client: Client, inbox: Inbox) -> None:
    user_id, _, headers = verified_user(client, inbox)
    new = f"{unique('moving')}@example.net"
    client.patch(f"{API}/users/{user_id}/", headers=headers, json={"email": new})
    inbox.take(new)
    client.post(f"{API}/users/resend-otp/", json={"email": new})
    assert client.post(f"{API}/users/verify/", json={"email": new,
                                                     "otp": inbox.code_for(new)}).status_code == 200


# --- errors in DRF's shapes ----------------------------------------------------------

def test_other_methods_and_paths(client: Client) -> None:
    listing = client.get(f"{API}/users/")
    assert listing.status_code == 405 and listing.json() == {"detail": 'Method "GET" not allowed.'}
    gone = client.get(f"{API}/users/1/nothing/")
    assert gone.status_code == 404 and gone.json() == {"detail": "Not found."}
