"""The web console in a real Chromium (Debian's, driven by Playwright): the flows of issue 19."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import pytest
from playwright.sync_api import (
    Browser,
    BrowserType,
    Page,
    Playwright,
    Route,
    expect,
    sync_playwright,
)

from app.domain import NewUser, Profile, User
from app.runtime import Runtime
from tests.conftest import ADMIN, ADMIN_PASSWORD, PASSWORD, SlapdInstance, serving, unique
from tests.smtp import Inbox, smtp_server
from tests.ui_helpers import console_config, mailed_link, mean_colour, two_colour_png

CHROMIUM = "/usr/lib/chromium/chromium"  # Debian's package `chromium`
AXE = Path(__file__).parent / "axe" / "axe.min.js"
SHOTS = Path(__file__).parent.parent / "docs" / "screenshots"  # USERDIR_SCREENSHOTS=1
VARIANTS = ("people", "me")
T = TypeVar("T")


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """Playwright's own browser download cannot work offline: Debian's chromium instead."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]}


# pytest-playwright starts Playwright once per session; while it runs, asyncio.run
# fails in this thread (its sync API owns the loop), which the rest of the suite
# uses everywhere. Here it lives as long as this module: the same fixtures, narrower.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    started = sync_playwright().start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def browser_type(playwright: Playwright) -> BrowserType:
    return playwright.chromium


@pytest.fixture(scope="module")
def browser(browser_type: BrowserType,
            browser_type_launch_args: dict[str, Any]) -> Iterator[Browser]:
    launched = browser_type.launch(**browser_type_launch_args)
    yield launched
    launched.close()


@pytest.fixture(scope="module")
def browser_context_args() -> dict[str, Any]:
    return {"locale": "en-GB"}


@dataclass
class Site:
    """The app under uvicorn with a real SMTP server. Tests name it before any
    Playwright fixture: the session's bootstrap runs asyncio, which Playwright's
    sync API forbids once it has started in this thread."""

    url: str
    inbox: Inbox


@pytest.fixture(scope="module")
def site(slapd: SlapdInstance, bootstrapped: None,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with smtp_server() as (port, inbox):
        config = console_config(slapd, tmp_path_factory.mktemp("browser"), port)
        with serving(config) as url:
            yield Site(url, inbox)


def call(coroutine: Coroutine[Any, Any, T]) -> T:
    """A service call from a thread of its own: Playwright's sync API owns this one's loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def every(*coroutines: Coroutine[Any, Any, T]) -> list[T]:
    return list(await asyncio.gather(*coroutines))


def make_user(runtime: Runtime, username: str | None = None, **profile: Any) -> User:
    return call(runtime.service.create_user(NewUser(
        username=username or unique("b"), password=PASSWORD, profile=Profile(**profile))))


def sign_in(page: Page, site: Site, login: str, password: str) -> None:
    page.goto(f"{site.url}/ui/login")
    page.get_by_label("Username or email").fill(login)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You are signed out.")).to_be_visible()


def link_path(link: str) -> str:
    """The mailed link points at http.public_url; the test server is elsewhere."""
    parts = urlsplit(link)
    return f"{parts.path}?{parts.query}"


# --- admin -----------------------------------------------------------------------

def test_admin_creates_finds_sorts_pages_changes_and_signs_out(
        site: Site, runtime: Runtime, page: Page) -> None:
    prefix = unique("pg")
    call(every(*(runtime.service.create_user(NewUser(
        username=f"{prefix}n{n:02d}", password=PASSWORD,
        profile=Profile(email=f"{prefix}{n}@example.org"))) for n in range(26))))
    # Signing in by keyboard alone.
    page.goto(f"{site.url}/ui/login")
    page.get_by_label("Username or email").focus()
    page.keyboard.type(ADMIN)
    page.keyboard.press("Tab")
    page.keyboard.type(ADMIN_PASSWORD)
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/ui/people$"))

    name = unique("new")
    page.get_by_role("button", name="New user").click()
    page.get_by_label("Username").fill(name)
    page.get_by_label("Email").fill(f"{name}@example.org")
    page.get_by_label("First name").fill("Zelda")
    page.get_by_label("Last name").fill("Zuse")
    page.get_by_label("Account type").select_option("user")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_text("User created.")).to_be_visible()

    page.get_by_role("link", name="People").click()
    page.get_by_label("Search").fill(name)  # filters as one types (htmx, debounced)
    expect(page.get_by_role("link", name=name, exact=True)).to_be_visible()
    expect(page.locator("tbody tr")).to_have_count(1)

    page.get_by_label("Search").fill(prefix)
    expect(page.get_by_text("26 people, showing 1\N{EN DASH}25")).to_be_visible()
    page.get_by_role("link", name="Username").click()  # sorted by it already: now descending
    expect(page.locator("th[aria-sort=descending]")).to_have_text(re.compile("Username"))
    expect(page.locator("tbody tr").first).to_contain_text(f"{prefix}n25")
    page.get_by_role("link", name="Email").click()
    expect(page.locator("th[aria-sort=ascending]")).to_have_text(re.compile("Email"))
    page.get_by_role("link", name="Next").click()
    expect(page.get_by_text("26 people, showing 26\N{EN DASH}26")).to_be_visible()
    page.get_by_role("link", name="Previous").click()
    expect(page.get_by_text("showing 1\N{EN DASH}25")).to_be_visible()

    page.get_by_label("Search").fill(name)
    page.get_by_role("link", name=name, exact=True).click()
    page.get_by_label("Account type").select_option("staff")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Saved.")).to_be_visible()
    expect(page.locator("dl.facts")).to_contain_text("staff")
    page.get_by_role("button", name="Disable").click()
    expect(page.get_by_text("Account disabled.")).to_be_visible()
    page.get_by_role("button", name="Enable").click()
    expect(page.get_by_text("Account enabled.")).to_be_visible()
    sign_out(page)


# --- a user on his own account -----------------------------------------------------

def thumbnail_colour(page: Page) -> tuple[int, ...]:
    source = page.get_by_role("img", name="Your picture").get_attribute("src")
    assert source
    return mean_colour(page.request.get(urljoin(page.url, source)).body())


def upload_cropped(page: Page, side: str) -> None:
    """Choose a picture, make the square as small as it gets (by keyboard) and
    move it to one side, then upload: red on the left, blue on the right."""
    page.get_by_label("Picture file (JPEG, PNG or WebP)").set_input_files(files=[{
        "name": "two.png", "mimeType": "image/png", "buffer": two_colour_png()}])
    size = page.get_by_label("Square size")
    expect(size).to_be_visible()
    size.press("Home")
    page.get_by_label("Horizontal position").press("End" if side == "right" else "Home")
    expect(page.locator("input[name=crop_side]")).to_have_value("20")
    page.get_by_role("button", name="Upload picture").click()
    expect(page.get_by_text("Picture saved.")).to_be_visible()


def test_user_edits_profile_crops_picture_changes_password(
        site: Site, runtime: Runtime, page: Page) -> None:
    user = make_user(runtime)
    sign_in(page, site, user.username, PASSWORD)
    expect(page).to_have_url(re.compile(r"/ui/me$"))
    page.get_by_label("First name").fill("Grace")
    page.get_by_label("Last name").fill("Hopper")
    page.get_by_label("Location").fill("Arlington")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Saved.")).to_be_visible()
    expect(page.get_by_label("First name")).to_have_value("Grace")

    upload_cropped(page, "left")
    red, _, blue = thumbnail_colour(page)
    assert red > 200 and blue < 60
    upload_cropped(page, "right")
    red, _, blue = thumbnail_colour(page)  # the thumbnail changed with the crop
    assert blue > 200 and red < 60

    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_label("New password").fill("Changed-Horse-3")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_text("Your password was changed")).to_be_visible()
    sign_in(page, site, user.username, "Changed-Horse-3")
    expect(page).to_have_url(re.compile(r"/ui/me$"))
    expect(page.get_by_label("First name")).to_have_value("Grace")


# --- codes by email ------------------------------------------------------------------

def test_invitation_through_the_mail(site: Site, page: Page) -> None:
    name = unique("inv")
    address = f"{name}@example.org"
    sign_in(page, site, ADMIN, ADMIN_PASSWORD)
    page.goto(f"{site.url}/ui/new-user")
    page.get_by_label("Username").fill(name)
    page.get_by_label("Email").fill(address)
    page.get_by_label("Send invitation").check()
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_text("Invitation sent.")).to_be_visible()
    expect(page.locator("dl.facts")).to_contain_text("Invited")
    sign_out(page)

    page.goto(site.url + link_path(mailed_link(site.inbox, address)))
    expect(page.get_by_label("Email")).to_have_value(address)
    page.get_by_label("New password").fill("Third-Horse-6")
    page.get_by_role("button", name="Set password").click()
    expect(page.get_by_text("Your password is set")).to_be_visible()
    sign_in(page, site, name, "Third-Horse-6")
    expect(page).to_have_url(re.compile(r"/ui/me$"))


def test_forgotten_password_through_the_mail(site: Site, runtime: Runtime, page: Page) -> None:
    address = f"{unique('fg')}@example.org"
    user = make_user(runtime, email=address)
    page.goto(f"{site.url}/ui/login")
    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("Email").fill(address)
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_text("If an account uses this address")).to_be_visible()
    page.goto(site.url + link_path(mailed_link(site.inbox, address)))
    page.get_by_label("New password").fill("Second-Horse-8y")
    page.get_by_role("button", name="Set password").click()
    expect(page.get_by_text("Your password is set")).to_be_visible()
    sign_in(page, site, user.username, "Second-Horse-8y")
    expect(page).to_have_url(re.compile(r"/ui/me$"))


# --- security ------------------------------------------------------------------------

def test_a_post_without_csrf_token_is_refused(site: Site, runtime: Runtime, page: Page) -> None:
    victim = make_user(runtime)
    sign_in(page, site, ADMIN, ADMIN_PASSWORD)
    # The browser's own cookies (session and CSRF), but no token in the form.
    refused = page.request.post(f"{site.url}/ui/people/{victim.username}/disable",
                                form={"reason": "none"})
    assert refused.status == 403
    assert "form has expired" in refused.text()
    assert call(runtime.service.get_user(victim.username)).active


def test_a_disabled_users_session_ends(site: Site, runtime: Runtime, page: Page) -> None:
    user = make_user(runtime)
    sign_in(page, site, user.username, PASSWORD)
    expect(page).to_have_url(re.compile(r"/ui/me$"))
    call(runtime.service.disable_user(user.username))
    page.reload()
    expect(page).to_have_url(re.compile(r"/ui/login"))
    expect(page.get_by_text("Your session has ended")).to_be_visible()


# --- every page: axe, 375 px, dark mode, no CSP violation; screenshots ------------------

def serve_axe(route: Route) -> None:
    route.fulfill(path=str(AXE), content_type="text/javascript")


def check_page(page: Page, path: str, shot: str | None, folder: Path) -> None:
    """axe-core finds nothing, light and dark; nothing scrolls sideways at 375 px.
    Colour scheme and width apply to the loaded page: one load per page."""
    page.emulate_media(color_scheme="light", reduced_motion="reduce")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(page.url.split("/ui/")[0] + path)
    page.wait_for_load_state("load")
    # A same-origin URL, answered by Playwright (serve_axe): the page's CSP stays on.
    page.add_script_tag(url="/ui/static/axe.min.js")
    for scheme in ("light", "dark"):
        # Reduced motion: Pico then has no colour transitions for axe to catch halfway.
        page.emulate_media(color_scheme=scheme, reduced_motion="reduce")
        page.set_viewport_size({"width": 1280, "height": 900})
        page.wait_for_timeout(250)  # Pico's colour transitions (0.2 s) end
        # Every rule in light; in dark only colours change, so only contrast is checked again.
        options = "{}" if scheme == "light" else "{runOnly: ['color-contrast']}"
        found = page.evaluate(f"async () => (await axe.run(document, {options})).violations"
                              ".map(v => v.id + ': ' + v.nodes.map(n => n.html).join(' | '))")
        assert not found, f"{path} ({scheme}): {found}"
        variants = shot in VARIANTS  # dark and narrow shots of two pages are enough
        if shot and (scheme == "light" or variants):
            page.screenshot(path=str(folder / f"{shot}{'-dark' if scheme == 'dark' else ''}.png"))
        page.set_viewport_size({"width": 375, "height": 800})
        wide = page.evaluate("document.documentElement.scrollWidth"
                             " - document.documentElement.clientWidth")
        assert wide <= 0, f"{path}: {wide} px of horizontal scroll at 375 px ({scheme})"
        if shot and scheme == "light" and variants:
            page.screenshot(path=str(folder / f"{shot}-375.png"), full_page=True)


def test_every_page_is_accessible_narrow_and_dark(site: Site, runtime: Runtime,
                                                   browser: Browser, tmp_path: Path) -> None:
    folder = SHOTS if os.environ.get("USERDIR_SCREENSHOTS") else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    person = make_user(runtime, unique("ada"), first_name="Ada", last_name="Lovelace",
                       email=f"{unique('ada')}@example.org", location="London")
    group = unique("g")
    call(runtime.service.create_group(group, "Analytical engine team"))
    call(runtime.service.add_group_member(group, person.username))
    context = browser.new_context(base_url=site.url)
    page = context.new_page()
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text)
            if "Content Security Policy" in m.text else None)
    page.route("**/ui/static/axe.min.js", serve_axe)
    try:
        page.goto(f"{site.url}/ui/login")
        for path, shot in [("/ui/login", "login"), ("/ui/forgot", None),
                           ("/ui/password?email=a%40b.org&code=123456", None)]:
            check_page(page, path, shot, folder)
        sign_in(page, site, ADMIN, ADMIN_PASSWORD)
        for path, shot in [
            ("/ui/people", "people"), (f"/ui/people/{person.username}", "person"),
            ("/ui/new-user", "new-user"), (f"/ui/people/{person.username}/delete", None),
            ("/ui/groups", "groups"), (f"/ui/groups/{group}?q={person.username[:3]}", "group"),
            ("/ui/me", None), ("/ui/people/nobody-at-all", None),
        ]:
            check_page(page, path, shot, folder)
        sign_in(page, site, person.username, PASSWORD)
        check_page(page, "/ui/me", "me", folder)
    finally:
        context.close()
    assert not violations, violations
