"""Pictures over HTTP, for every dialect: reading uploads, serving with ETags."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.datastructures import UploadFile
from litestar.exceptions import HTTPException

from app.pictures import InvalidPicture, Picture

UPLOAD_TYPES = ("image/jpeg", "image/png", "image/webp")


class UnsupportedMediaType(HTTPException):
    status_code = 415


async def read_upload(request: Request[Any, Any, Any]) -> bytes:
    """The picture of a request: a raw image/* body, or the first file of a
    multipart form. Body size limits are the route's (413 before this runs)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type in UPLOAD_TYPES:
        return await request.body()
    if media_type == "multipart/form-data":
        form = await request.form()
        for value in form.values():
            if isinstance(value, UploadFile):
                return await value.read()
        raise InvalidPicture("the form holds no file")
    raise UnsupportedMediaType(
        detail=f"send {', '.join(UPLOAD_TYPES)} or multipart/form-data, not {media_type!r}")


def picture_response(request: Request[Any, Any, Any], picture: Picture,
                     filename: str) -> Response[bytes]:
    """200 with the JPEG, or 304 when the client already has this version."""
    etag = f'"{picture.etag}"'
    headers = {
        "ETag": etag,
        # Revalidate every time: a picture can change from an LDAP tool at any moment.
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
        "Content-Disposition": f'inline; filename="{filename}.jpg"',
    }
    presented = request.headers.get("if-none-match", "")
    if etag in (tag.strip() for tag in presented.split(",")) or presented.strip() == "*":
        return Response(b"", status_code=304, headers=headers)
    return Response(picture.data, media_type=picture.media_type, headers=headers)
