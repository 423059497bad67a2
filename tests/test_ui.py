"""The web console over HTTP: CSRF, headers, sessions ending as tokens do, rights, escaping."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from litestar.testing import TestClient

from app.config import Config
from app.domain import NewUser, Unavailable
from app.main import create_app
from app.pictures import Crop, Pictures
from app.runtime import Runtime
from app.ui import person
from app.ui.security import CSRF_COOKIE
from app.ui.sessions import COOKIE
from tests.conftest import ADMIN, ADMIN_PASSWORD, PASSWORD, SlapdInstance, create, run, unique
from tests.smtp import Inbox, smtp_server
from tests.ui_helpers import (
    TOKEN,
    console_config,
    csrf_token,
    mailed_link,
    mean_colour,
    sign_in,
    submit,
    two_colour_png,
)

Client = TestClient[Any]


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[int, Inbox]]:
    with smtp_server() as server:
        yield server


@pytest.fixture(scope="module")
def inbox(smtp: tuple[int, Inbox]) -> Inbox:
    return smtp[1]


@pytest.fixture(scope="module")
def ui_config(slapd: SlapdInstance, bootstrapped: None, smtp: tuple[int, Inbox],
              tmp_path_factory: pytest.TempPathFactory) -> Config:
    return console_config(slapd, tmp_path_factory.mktemp("ui"), smtp[0])


@pytest.fixture(scope="module")
def client(ui_config: Config) -> Iterator[Client]:
    with TestClient(app=create_app(ui_config)) as test_client:
        yield test_client


def session_ended(response: Any) -> bool:
    return response.status_code == 303 and \
        response.headers["location"] == "/ui/login?notice=session-ended"


# --- headers and CSRF ------------------------------------------------------------

def test_pages_forbid_inline_code_and_framing(client: Client) -> None:
    page = client.get("/ui/login")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    assert not re.search(r"<script(?![^>]*\bsrc=)", page.text), "inline script"
    assert not re.search(r"<style|\sstyle=|\son[a-z]+=", page.text), "inline style or handler"
    for label in ("Username or email", "Password", "Sign in"):
        assert label in page.text
    # The JSON APIs get none of it: no console header, no CSRF cookie.
    health = client.get("/health")
    assert "content-security-policy" not in health.headers
    assert "set-cookie" not in health.headers


def test_static_files_are_vendored_and_cached(client: Client) -> None:
    page = client.get("/ui/login").text
    for name in ("htmx.min.js", "alpine-csp.min.js", "pico.min.css", "console.js"):
        url = re.search(rf'"(/ui/static/{re.escape(name)}\?v=[0-9a-f]+)"', page)
        assert url, name
        served = client.get(url.group(1))
        assert served.status_code == 200 and "max-age=31536000" in served.headers["cache-control"]


def test_a_post_without_csrf_token_is_refused(client: Client) -> None:
    client.cookies.clear()
    csrf_token(client, "/ui/login")  # the cookie alone is not enough
    bare = client.post("/ui/login", data={"login": ADMIN, "password": ADMIN_PASSWORD},
                       follow_redirects=False)
    assert bare.status_code == 403 and "form has expired" in bare.text
    assert "frame-ancestors 'none'" in bare.headers["content-security-policy"]
    forged = client.post("/ui/login", data={"login": ADMIN, "password": ADMIN_PASSWORD,
                                            "_csrf_token": "0" * 128}, follow_redirects=False)
    assert forged.status_code == 403 and COOKIE not in forged.headers.get("set-cookie", "")


def test_the_json_apis_need_no_csrf_token(client: Client) -> None:
    login = client.post("/auth/token", json={"username": ADMIN, "password": ADMIN_PASSWORD})
    assert login.status_code == 200
    me = client.get("/auth/me", headers={"Authorization": f"Bearer {login.json()['access_token']}"})
    assert me.status_code == 200 and me.json()["username"] == ADMIN


# --- signing in ------------------------------------------------------------------

def test_sign_in_lands_by_type_and_sets_a_strict_cookie(client: Client, runtime: Runtime) -> None:
    signed = sign_in(client, ADMIN, ADMIN_PASSWORD)
    assert signed.headers["location"] == "/ui/people"
    cookie = next(c for c in signed.headers.get_list("set-cookie") if c.startswith(COOKIE))
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower() and "Path=/ui" in cookie
    assert "Secure" not in cookie  # http.public_url is not https here
    user = create(runtime)
    assert sign_in(client, user.username, PASSWORD).headers["location"] == "/ui/me"
    assert client.get("/ui/me").status_code == 200
    assert client.get("/ui/", follow_redirects=False).headers["location"] == "/ui/me"


def test_a_secure_cookie_behind_https(slapd: SlapdInstance, smtp: tuple[int, Inbox],
                                      bootstrapped: None,
                                      tmp_path_factory: pytest.TempPathFactory) -> None:
    config = console_config(slapd, tmp_path_factory.mktemp("https"), smtp[0],
                            http={"public_url": "https://users.example.org"})
    with TestClient(app=create_app(config)) as secure:
        page = secure.get("/ui/login")
        assert "Secure" in page.headers["set-cookie"]  # the CSRF cookie
        token = TOKEN.search(page.text).group(1)  # type: ignore[union-attr]
        # httpx keeps Secure cookies from http://: send it as a browser on https would.
        signed = secure.post("/ui/login", data={"login": ADMIN, "password": ADMIN_PASSWORD,
                                                "_csrf_token": token},
                             headers={"Cookie": f"{CSRF_COOKIE}={token}"}, follow_redirects=False)
        session = next(c for c in signed.headers.get_list("set-cookie") if c.startswith(COOKIE))
        assert "Secure" in session and "HttpOnly" in session


def test_failures_say_one_thing_and_are_throttled_as_the_apis(client: Client,
                                                              runtime: Runtime) -> None:
    user = create(runtime)
    for login in (user.username, unique("nobody")):
        client.cookies.clear()
        wrong = submit(client, "/ui/login", "/ui/login", login=login, password="wrong-password")
        assert wrong.status_code == 422 and "Invalid username or password" in wrong.text
    victim = unique("throttled")
    for _ in range(6):  # throttle.account_free (5) are free; the sixth blocks
        submit(client, "/ui/login", "/ui/login", login=victim, password="wrong-password")
    blocked = submit(client, "/ui/login", "/ui/login", login=victim, password="wrong-password")
    assert blocked.status_code == 429 and "Too many attempts" in blocked.text
    assert int(blocked.headers["retry-after"]) >= 1
    # One throttle for every route: the API's login for that account waits too.
    api = client.post("/auth/token", json={"username": victim, "password": "wrong-password"})
    assert api.status_code == 429


def test_sign_out_deletes_the_session(client: Client) -> None:
    sign_in(client, ADMIN, ADMIN_PASSWORD)
    stolen = client.cookies.get(COOKIE, path="/ui")
    assert stolen
    out = submit(client, "/ui/people", "/ui/logout")
    assert out.status_code == 303 and out.headers["location"] == "/ui/login?notice=signed-out"
    client.cookies.clear()
    client.cookies.set(COOKIE, stolen, path="/ui")
    assert session_ended(client.get("/ui/people", follow_redirects=False))


def test_a_forged_or_missing_cookie_is_no_session(client: Client) -> None:
    sign_in(client, ADMIN, ADMIN_PASSWORD)
    real = client.cookies.get(COOKIE, path="/ui")
    assert real
    session_id, _, _ = real.partition(".")
    client.cookies.clear()
    client.cookies.set(COOKIE, f"{session_id}.{'0' * 64}", path="/ui")
    assert session_ended(client.get("/ui/people", follow_redirects=False))
    client.cookies.clear()
    bare = client.get("/ui/people", follow_redirects=False)
    assert bare.status_code == 303 and bare.headers["location"] == "/ui/login"
    htmx = client.get("/ui/people", headers={"HX-Request": "true"}, follow_redirects=False)
    assert htmx.headers["hx-redirect"] == "/ui/login"


@pytest.mark.parametrize("change", ["disable", "delete", "password"])
def test_sessions_end_with_the_account(client: Client, runtime: Runtime, change: str) -> None:
    user = create(runtime)
    sign_in(client, user.username, PASSWORD)
    assert client.get("/ui/me").status_code == 200
    if change == "disable":
        run(runtime.service.disable_user(user.username))
    elif change == "delete":
        run(runtime.service.delete_user(user.username))
    else:
        run(runtime.service.set_password(user.username, "Reset-By-Admin-1"))
    assert session_ended(client.get("/ui/me", follow_redirects=False))
    assert not client.cookies.get(COOKIE, path="/ui")  # the answer deleted the cookie


# --- permissions, checked by the server whatever the page shows --------------------

def test_what_each_type_may_do(client: Client, runtime: Runtime) -> None:
    user, other = create(runtime), create(runtime)
    staff = create(runtime, account_type="staff")
    sign_in(client, user.username, PASSWORD)
    for path in ("/ui/people", f"/ui/people/{other.username}", "/ui/groups", "/ui/new-user"):
        assert client.get(path).status_code == 403, path
    token = csrf_token(client, "/ui/me")
    for action in ("disable", "delete", "password", "invite", ""):
        refused = client.post(f"/ui/people/{other.username}/{action}".rstrip("/"),
                              data={"_csrf_token": token, "first_name": "Mallory"},
                              follow_redirects=False)
        assert refused.status_code == 403, action
    picture = client.post(f"/ui/people/{other.username}/picture",
                          data={"_csrf_token": token},
                          files={"picture": ("a.png", two_colour_png(), "image/png")})
    assert picture.status_code == 403

    sign_in(client, staff.username, PASSWORD)
    page = client.get(f"/ui/people/{other.username}")
    assert page.status_code == 200 and other.username in page.text
    for control in (">Save<", ">Disable<", ">Delete<", ">Reset password<", "Upload picture"):
        assert control not in page.text, control  # staff read; admins change (SPEC)
    token = csrf_token(client, "/ui/people")
    refused = client.post(f"/ui/people/{other.username}/disable", data={"_csrf_token": token},
                          follow_redirects=False)
    assert refused.status_code == 403
    assert run(runtime.service.get_user(other.username)).active


def test_every_output_is_escaped(client: Client, runtime: Runtime) -> None:
    hostile = '<script>alert(1)</script>"><img src=x>'
    user = create(runtime, display_name=hostile, first_name="x' onmouseover='1", bio=hostile)
    sign_in(client, ADMIN, ADMIN_PASSWORD)
    for path in (f"/ui/people?q={user.username}", f"/ui/people/{user.username}"):
        page = client.get(path)
        assert page.status_code == 200 and user.username in page.text
        assert "<script>alert" not in page.text and "<img src=x>" not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    searched = client.get(f"/ui/people?q={hostile}")
    assert "<script>alert" not in searched.text


# --- people: slapd's windows, htmx partials ------------------------------------------

def test_people_are_paged_by_slapd_in_windows_of_25(client: Client, runtime: Runtime) -> None:
    prefix = unique("pg")

    async def create_all() -> None:
        await asyncio.gather(*(runtime.service.create_user(NewUser(
            username=f"{prefix}n{n:02d}", password=PASSWORD)) for n in range(26)))

    run(create_all())
    sign_in(client, ADMIN, ADMIN_PASSWORD)
    first = client.get(f"/ui/people?q={prefix}")
    assert first.status_code == 200 and "26 people, showing 1\N{EN DASH}25" in first.text
    assert f"{prefix}n00" in first.text and f"{prefix}n25" not in first.text
    assert "Next" in first.text
    last = client.get(f"/ui/people?q={prefix}&sort=username&order=desc&page=2")
    assert "showing 26\N{EN DASH}26" in last.text and f"{prefix}n00" in last.text
    assert "Previous" in last.text
    partial = client.get(f"/ui/people?q={prefix}",
                         headers={"HX-Request": "true", "HX-Target": "people-results"})
    assert partial.status_code == 200 and "<html" not in partial.text and "<table" in partial.text
    odd = client.get("/ui/people?page=-3&sort=nonsense&type=root&status=maybe")
    assert odd.status_code == 200 and "Page 1" in odd.text


def test_admin_changes_type_and_disables(client: Client, runtime: Runtime) -> None:
    user = create(runtime)
    sign_in(client, ADMIN, ADMIN_PASSWORD)
    page = f"/ui/people/{user.username}"
    saved = submit(client, page, page, account_type="staff", first_name="Ada", last_name="L")
    assert saved.status_code == 303
    changed = run(runtime.service.get_user(user.username))
    assert (changed.account_type, changed.first_name) == ("staff", "Ada")
    assert ">staff</a> (account type)" in client.get(page).text  # his groups, from memberOf
    assert submit(client, page, f"{page}/disable").status_code == 303
    assert not run(runtime.service.get_user(user.username)).active
    assert submit(client, page, f"{page}/enable").status_code == 303
    shown = submit(client, page, f"{page}/password")
    assert shown.status_code == 200 and "shown this once" in shown.text


def test_an_admin_sees_a_persons_history_by_any_client(client: Client, runtime: Runtime,
                                                       slapd: SlapdInstance) -> None:
    """The audit log on his page: the console's own change with its actor,
    an LDAP tool's change beside it, a secret never shown; not for staff."""
    user = create(runtime)
    sign_in(client, ADMIN, ADMIN_PASSWORD)
    page = f"/ui/people/{user.username}"
    assert submit(client, page, page, first_name="Grace", last_name="Hopper").status_code == 303
    slapd.ldap("ldapmodify", bind="root", stdin=(
        f"dn: uid={user.username},ou=people,dc=example,dc=org\nchangetype: modify\n"
        "replace: title\ntitle: Rear <b>Admiral</b>\n"))
    assert submit(client, page, f"{page}/password").status_code == 200
    text = client.get(page).text
    history = text[text.index('id="history-title"'):]
    rows = re.findall(r"<tr>\s*<td>.*?</tr>", history, re.S)
    assert len(rows) >= 4, history  # created, profile, title, password
    newest = rows[0]
    assert "password" in newest and "admin" in newest and "via console" in newest
    assert "<code>userPassword</code> changed" in newest and "{ARGON2}" not in history
    assert any("Rear &lt;b&gt;Admiral&lt;/b&gt;" in r and "cn=root" in r for r in rows)
    assert any("Hopper" in r and "admin" in r and "via console" in r for r in rows)
    assert "created" in rows[-1]
    staff = create(runtime, account_type="staff")
    sign_in(client, staff.username, PASSWORD)
    assert 'id="history-title"' not in client.get(page).text


def test_a_history_that_cannot_be_read_leaves_the_page_whole(
        client: Client, runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit log busy or away: the password just generated is still shown."""
    user = create(runtime)
    sign_in(client, ADMIN, ADMIN_PASSWORD)
    page = f"/ui/people/{user.username}"
    token = csrf_token(client, page)  # read before the log goes away

    class Away:
        async def audit(self, query: Any) -> Any:
            raise Unavailable("directory unavailable")

    monkeypatch.setattr(person, "trail_of", lambda runtime: Away())
    shown = client.post(f"{page}/password", data={"_csrf_token": token})
    assert shown.status_code == 200 and "shown this once" in shown.text
    assert "The history could not be read just now." in shown.text


# --- invitations and forgotten passwords, through a real SMTP server -----------------

def test_an_invited_user_sets_his_password(client: Client, runtime: Runtime,
                                           inbox: Inbox) -> None:
    name = unique("inv")
    address = f"{name}@example.org"
    sign_in(client, ADMIN, ADMIN_PASSWORD)
    created = submit(client, "/ui/new-user", "/ui/new-user", username=name, email=address,
                     first_name="In", last_name="Vited", account_type="user", invite="on")
    assert created.status_code == 303, created.text
    link = mailed_link(inbox, address)
    invited = run(runtime.service.get_user(name))
    assert not invited.active
    assert client.post("/auth/token", json={"username": name, "password": "x"}).status_code == 401
    query = parse_qs(urlsplit(link).query)
    client.cookies.clear()
    form = client.get(f"/ui/password?{urlsplit(link).query}")
    assert form.status_code == 200 and query["code"][0] in form.text
    wrong = submit(client, "/ui/login", "/ui/password", email=address, code="000000",
                   new_password=PASSWORD)
    assert wrong.status_code == 422 and "Invalid or expired code" in wrong.text
    done = submit(client, "/ui/login", "/ui/password", email=address, code=query["code"][0],
                  new_password=PASSWORD)
    assert done.status_code == 303 and done.headers["location"].endswith("password-set")
    accepted = run(runtime.service.get_user(name))
    assert accepted.active and accepted.email_verified and accepted.pending_email is None
    assert sign_in(client, name, PASSWORD).headers["location"] == "/ui/me"
    again = submit(client, "/ui/login", "/ui/password", email=address, code=query["code"][0],
                   new_password="Other-Horse-5")
    assert again.status_code == 422  # the link works once


def test_forgot_password_answers_alike_and_mails_only_owners(client: Client, runtime: Runtime,
                                                             inbox: Inbox) -> None:
    user = create(runtime, email=f"{unique('fg')}@example.org")
    assert user.email
    client.cookies.clear()
    answers = [submit(client, "/ui/forgot", "/ui/forgot", email=address)
               for address in (user.email, f"{unique('none')}@example.org")]
    assert [a.status_code for a in answers] == [303, 303]
    assert answers[0].headers["location"] == answers[1].headers["location"]
    link = mailed_link(inbox, user.email)
    code = parse_qs(urlsplit(link).query)["code"][0]
    done = submit(client, "/ui/login", "/ui/password", email=user.email, code=code,
                  new_password="Second-Horse-8y")
    assert done.status_code == 303
    assert sign_in(client, user.username, "Second-Horse-8y").headers["location"] == "/ui/me"
    run(runtime.service.disable_user(user.username))
    submit(client, "/ui/login", "/ui/forgot", email=user.email)
    assert inbox.count_to(user.email) == 0  # a disabled account gets no code


# --- pictures: the square chosen in the browser, applied by Pillow --------------------

def test_a_crop_keeps_the_chosen_square() -> None:
    pictures = Pictures()
    right = pictures.normalise(two_colour_png(300, 200), Crop(left=150, top=0, side=150,
                                                               width=300))
    red, _, blue = mean_colour(right)
    assert blue > 200 and red < 60
    # Coordinates are scaled from the size the browser saw, and kept inside the picture.
    scaled = pictures.normalise(two_colour_png(3000, 2000), Crop(0, 500, 9999, 300))
    assert mean_colour(scaled)[0] > 60


def test_a_cropped_upload_from_the_console(client: Client, runtime: Runtime) -> None:
    user = create(runtime)
    sign_in(client, user.username, PASSWORD)
    token = csrf_token(client, "/ui/me")
    sent = client.post(f"/ui/people/{user.username}/picture", follow_redirects=False,
                       data={"_csrf_token": token, "crop_left": "0", "crop_top": "0",
                             "crop_side": "100", "crop_width": "300"},
                       files={"picture": ("p.png", two_colour_png(), "image/png")})
    assert sent.status_code == 303 and sent.headers["location"] == "/ui/me?notice=picture"
    stored = run(runtime.service.picture(user.username)).data
    red, _, blue = mean_colour(stored)
    assert red > 200 and blue < 60
    bad = client.post(f"/ui/people/{user.username}/picture", data={"_csrf_token": token},
                      files={"picture": ("p.png", b"not a picture", "image/png")})
    assert bad.status_code == 422 and "not a JPEG, PNG or WebP" in bad.text


def test_the_console_can_be_switched_off(slapd: SlapdInstance, bootstrapped: None,
                                         tmp_path_factory: pytest.TempPathFactory) -> None:
    config = console_config(slapd, tmp_path_factory.mktemp("off"), 25, ui={"enabled": False})
    with TestClient(app=create_app(config)) as off:
        assert off.get("/ui/login").status_code == 404
        assert off.get("/health").status_code == 200
