"""Pictures in jpegPhoto: uploads normalised, thumbnails cached by content, bad input refused."""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Iterator
from io import BytesIO
from typing import Any

import pytest
from litestar.testing import TestClient
from PIL import Image

from app.config import Config
from app.main import create_app
from app.runtime import Runtime
from tests.conftest import PASSWORD, SlapdInstance, create, run, unique

Client = TestClient[Any]


@pytest.fixture(scope="module")
def client(config: Config, bootstrapped: None) -> Iterator[Client]:
    with TestClient(app=create_app(config)) as test_client:
        yield test_client


def image_bytes(fmt: str, size: tuple[int, int] = (300, 200), color: str = "red",
                **save: Any) -> bytes:
    out = BytesIO()
    mode = "RGBA" if fmt == "PNG" else "RGB"
    Image.new(mode, size, color).save(out, fmt, **save)
    return out.getvalue()


def png_bomb(side: int) -> bytes:
    """A tiny PNG file that claims a side x side 1-bit image (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    row = b"\x00" + b"\x00" * (side // 8)
    raw = zlib.compress(row * 64, 9)
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw)
            + chunk(b"IEND", b""))


def user_with_token(client: Client, runtime: Runtime) -> tuple[str, dict[str, str]]:
    name = create(runtime).username
    token = client.post("/auth/token", json={"username": name, "password": PASSWORD})
    return name, {"Authorization": f"Bearer {token.json()['access_token']}"}


def put_picture(client: Client, name: str, headers: dict[str, str], data: bytes,
                media_type: str = "image/png") -> Any:
    return client.put(f"/people/{name}/photo", content=data,
                      headers={**headers, "Content-Type": media_type})


def stored_photo(slapd: SlapdInstance, name: str) -> bytes | None:
    shown = slapd.ldap("ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-b",
                       f"uid={name},ou=people,dc=example,dc=org", "-s", "base", "jpegPhoto").stdout
    for line in shown.splitlines():
        if line.startswith("jpegPhoto::"):
            return base64.b64decode(line.split("::", 1)[1].strip())
    return None


def replace_photo(slapd: SlapdInstance, name: str, base64_value: str) -> None:
    """As an LDAP tool would: ldapmodify with a base64 jpegPhoto."""
    slapd.ldap("ldapmodify", stdin=(
        f"dn: uid={name},ou=people,dc=example,dc=org\nchangetype: modify\n"
        f"replace: jpegPhoto\njpegPhoto:: {base64_value}\n"))


def test_upload_is_normalised_to_jpeg_visible_to_ldap_tools(
        client: Client, runtime: Runtime, slapd: SlapdInstance) -> None:
    name, headers = user_with_token(client, runtime)
    assert put_picture(client, name, headers, image_bytes("PNG", (3000, 1500))).status_code == 204
    stored = stored_photo(slapd, name)
    assert stored is not None and stored[:2] == b"\xff\xd8"
    with Image.open(BytesIO(stored)) as image:
        assert image.format == "JPEG" and image.size == (1024, 512)


def test_exif_orientation_applied_and_metadata_dropped(
        client: Client, runtime: Runtime, slapd: SlapdInstance) -> None:
    name, headers = user_with_token(client, runtime)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise
    exif[0x010F] = "SecretCam"  # Make
    source = image_bytes("JPEG", (400, 200), exif=exif.tobytes(), comment=b"private note")
    assert put_picture(client, name, headers, source, "image/jpeg").status_code == 204
    stored = stored_photo(slapd, name)
    assert stored is not None and b"SecretCam" not in stored and b"private note" not in stored
    with Image.open(BytesIO(stored)) as image:
        assert image.size == (200, 400) and not image.getexif()


def test_multipart_upload(client: Client, runtime: Runtime) -> None:
    name, headers = user_with_token(client, runtime)
    response = client.put(f"/people/{name}/photo", headers=headers,
                          files={"picture": ("me.webp", image_bytes("WEBP"), "image/webp")})
    assert response.status_code == 204
    assert client.get(f"/people/{name}/photo").headers["content-type"] == "image/jpeg"


def test_serving_with_etags_and_a_thumbnail_cache(client: Client, runtime: Runtime,
                                                  slapd: SlapdInstance) -> None:
    name, headers = user_with_token(client, runtime)
    put_picture(client, name, headers, image_bytes("JPEG", (4000, 3000)), "image/jpeg")
    photo = client.get(f"/people/{name}/photo")
    assert photo.status_code == 200 and photo.headers["cache-control"] == "no-cache"
    assert photo.headers["x-content-type-options"] == "nosniff"
    etag = photo.headers["etag"]
    again = client.get(f"/people/{name}/photo", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""

    pictures = client.app.state.runtime.service.pictures
    made = pictures.thumbnails_made
    thumb = client.get(f"/people/{name}/photo/thumbnail")
    assert thumb.status_code == 200
    with Image.open(BytesIO(thumb.content)) as image:
        assert max(image.size) == 128
    repeat = client.get(f"/people/{name}/photo/thumbnail")
    assert repeat.content == thumb.content and pictures.thumbnails_made == made + 1
    assert client.get(f"/people/{name}/photo/thumbnail",
                      headers={"If-None-Match": thumb.headers["etag"]}).status_code == 304

    # An LDAP tool replaces the picture: a new thumbnail, not the cached one.
    blue = base64.b64encode(image_bytes("JPEG", (64, 64), "blue")).decode()
    replace_photo(slapd, name, blue)
    changed = client.get(f"/people/{name}/photo/thumbnail",
                         headers={"If-None-Match": thumb.headers["etag"]})
    assert changed.status_code == 200 and changed.headers["etag"] != thumb.headers["etag"]


def test_a_broken_jpegphoto_from_an_ldap_tool_is_no_picture(
        client: Client, runtime: Runtime, slapd: SlapdInstance) -> None:
    name = create(runtime).username
    junk = base64.b64encode(b"this is not a jpeg at all").decode()
    replace_photo(slapd, name, junk)
    for path in ("photo", "photo/thumbnail"):
        response = client.get(f"/people/{name}/{path}")
        assert response.status_code == 404
        assert response.json()["title"] == "no picture"


@pytest.mark.parametrize(("data", "media_type", "status"), [
    (image_bytes("JPEG")[:200], "image/jpeg", 422),          # truncated
    (b"", "image/png", 422),                                  # zero bytes
    (image_bytes("GIF"), "image/png", 422),                   # a GIF, whatever it claims
    (png_bomb(20000), "image/png", 422),                      # 400 megapixels in a few bytes
    (png_bomb(7000), "image/png", 422),                       # 49 MP: above max_pixels
    (image_bytes("PNG"), "text/plain", 415),                  # wrong content type
    (b"\xff" * (50 * 1024 * 1024), "image/jpeg", 413),        # 50 MB
])
def test_bad_uploads_are_refused_and_change_nothing(
        client: Client, runtime: Runtime, slapd: SlapdInstance, data: bytes, media_type: str,
        status: int) -> None:
    name, headers = user_with_token(client, runtime)
    assert put_picture(client, name, headers, image_bytes("PNG")).status_code == 204
    before = stored_photo(slapd, name)
    response = put_picture(client, name, headers, data, media_type)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert stored_photo(slapd, name) == before


def test_who_may_change_a_picture(client: Client, runtime: Runtime, slapd: SlapdInstance) -> None:
    name, own = user_with_token(client, runtime)
    _, other = user_with_token(client, runtime)
    assert put_picture(client, name, other, image_bytes("PNG")).status_code == 403
    assert put_picture(client, name, {}, image_bytes("PNG")).status_code == 401
    assert put_picture(client, unique("ghost"), own, image_bytes("PNG")).status_code == 403
    assert client.get(f"/people/{name}/photo").status_code == 404
    assert put_picture(client, name, own, image_bytes("PNG")).status_code == 204
    assert client.delete(f"/people/{name}/photo", headers=other).status_code == 403
    assert client.delete(f"/people/{name}/photo", headers=own).status_code == 204
    assert stored_photo(slapd, name) is None
    assert client.get(f"/people/{name}/photo").status_code == 404
    assert client.get(f"/people/{unique('ghost')}/photo").status_code == 404


def test_with_pictures_finds_them_in_one_search(client: Client, runtime: Runtime) -> None:
    name, headers = user_with_token(client, runtime)
    put_picture(client, name, headers, image_bytes("PNG"))
    pictured, plain = run(runtime.service.get_user(name)), create(runtime)
    assert run(runtime.service.with_pictures([pictured, plain])) == {pictured.uuid}


def test_an_unchanged_entry_needs_no_picture_transfer(client: Client, runtime: Runtime) -> None:
    name, headers = user_with_token(client, runtime)
    put_picture(client, name, headers, image_bytes("PNG", (800, 600)))
    ldap = client.app.state.runtime.directory.ldap
    first = client.get(f"/people/{name}/photo/thumbnail")
    before = ldap.entries_received
    again = client.get(f"/people/{name}/photo/thumbnail", headers={"If-None-Match":
                                                                   first.headers["etag"]})
    assert again.status_code == 304
    assert ldap.entries_received - before == 1  # the entryCSN read; not the picture
