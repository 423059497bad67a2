"""What the console's tests share: a console app with real SMTP, forms with their CSRF token."""

from __future__ import annotations

import re
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from app.config import Config
from tests.conftest import SlapdInstance, make_config
from tests.smtp import Inbox

TOKEN = re.compile(r'name="_csrf_token" value="([0-9a-f]+)"')
LINK = re.compile(r"(https?://\S+/ui/password\?\S+)")


def console_config(slapd: SlapdInstance, folder: Path, smtp_port: int,
                   **sections: dict[str, Any]) -> Config:
    """Codes may be resent at once; failed logins from the one test address
    do not add up across tests (each test of throttling uses its own login)."""
    mail = {"backend": "smtp", "host": "127.0.0.1", "port": smtp_port, "security": "none",
            "resend_interval": 0, **sections.pop("mail", {})}
    throttle = {"address_free": 10_000, **sections.pop("throttle", {})}
    return make_config(slapd, folder, mail=mail, throttle=throttle, **sections)


def csrf_token(client: httpx.Client | Any, path: str) -> str:
    """The token of the first form on a page (it also sets the CSRF cookie)."""
    page = client.get(path)
    assert page.status_code == 200, page.text
    found = TOKEN.search(page.text)
    assert found, f"no CSRF token on {path}"
    return found.group(1)


def submit(client: httpx.Client | Any, page: str, action: str, **fields: str) -> Any:
    """Post a form as a browser would: the token taken from the page it is on."""
    return client.post(action, data={"_csrf_token": csrf_token(client, page), **fields},
                       follow_redirects=False)


def sign_in(client: httpx.Client | Any, login: str, password: str) -> Any:
    client.cookies.clear()
    response = submit(client, "/ui/login", "/ui/login", login=login, password=password)
    assert response.status_code == 303, response.text
    return response


def mailed_link(inbox: Inbox, address: str) -> str:
    body = inbox.take(address).get_body(("plain",))
    assert body is not None
    found = LINK.search(body.get_content())
    assert found, body.get_content()
    return found.group(1)


def two_colour_png(width: int = 300, height: int = 200) -> bytes:
    """Red on the left, blue on the right: a crop shows which side it kept."""
    image = Image.new("RGB", (width, height), "red")
    image.paste(Image.new("RGB", (width // 2, height), "blue"), (width // 2, 0))
    out = BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def mean_colour(jpeg: bytes) -> tuple[int, ...]:
    image = Image.open(BytesIO(jpeg)).convert("RGB").resize((1, 1), Image.Resampling.BOX)
    pixel = image.getpixel((0, 0))
    assert isinstance(pixel, tuple)
    return pixel
