"""Pillow: refuse what is not a picture, normalise uploads to JPEG, make thumbnails."""

from __future__ import annotations

import hashlib
import threading
import warnings
from collections.abc import Hashable
from dataclasses import dataclass
from io import BytesIO

from PIL import Image, ImageOps, UnidentifiedImageError

from app.domain import DomainError
from app.lru import Lru

UPLOAD_FORMATS = ["JPEG", "PNG", "WEBP"]  # decoders we need; most Pillow CVEs are elsewhere
# Pillow only warns between MAX_IMAGE_PIXELS and twice that; make it an error.
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)


class InvalidPicture(DomainError):
    """Not a JPEG, PNG or WebP we can decode safely."""


class NoPicture(DomainError):
    """The user has no picture, or the stored one is not a usable JPEG."""


@dataclass(frozen=True)
class Picture:
    data: bytes
    etag: str
    media_type: str = "image/jpeg"


@dataclass(frozen=True)
class PictureSettings:
    max_side: int = 1024
    thumbnail_side: int = 128
    quality: int = 85
    max_pixels: int = 40_000_000
    cache_entries: int = 512


class Pictures:
    """Normalisation and a thumbnail cache keyed by the stored picture's hash,
    so a picture changed by an LDAP tool gets a new thumbnail, never a stale one."""

    def __init__(self, settings: PictureSettings | None = None) -> None:
        self.settings = settings or PictureSettings()
        self._thumbnails: Lru[str, bytes] = Lru(self.settings.cache_entries)
        self._versions: Lru[Hashable, str] = Lru(self.settings.cache_entries)
        self.thumbnails_made = 0
        self._counting = threading.Lock()

    def normalise(self, raw: bytes) -> bytes:
        """Any accepted upload as a JPEG: upright, no metadata, within max_side."""
        if not raw:
            raise InvalidPicture("the picture is empty")
        image = self._open(raw, UPLOAD_FORMATS)
        side = self.settings.max_side
        try:
            if image.format == "JPEG":
                image.draft("RGB", (side, side))  # decode at a reduced scale (DCT)
            image = ImageOps.exif_transpose(image)
            image = _flatten(image)
            image.thumbnail((side, side), Image.Resampling.LANCZOS)
            return _jpeg(image, self.settings.quality)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError,
                Image.DecompressionBombWarning) as e:
            raise InvalidPicture(f"the picture cannot be decoded: {e}") from e

    def original(self, stored: bytes | None) -> Picture:
        """The stored jpegPhoto as served: only if it really is a JPEG."""
        if not stored:
            raise NoPicture("No picture.")
        self._open(stored, ["JPEG"], missing=NoPicture)
        return Picture(stored, _etag("p", stored))

    def cached_thumbnail(self, version: Hashable) -> Picture | None:
        """The thumbnail made for this exact version of an entry, if still cached."""
        key = self._versions.get(version)
        data = self._thumbnails.get(key) if key else None
        return Picture(data, key) if data is not None and key else None

    def thumbnail(self, stored: bytes | None, version: Hashable = None) -> Picture:
        if not stored:
            raise NoPicture("No picture.")
        side = self.settings.thumbnail_side
        key = _etag(f"t{side}", stored)
        cached = self._thumbnails.get(key)
        if cached is not None:
            self._remember(version, key)
            return Picture(cached, key)
        image = self._open(stored, ["JPEG"], missing=NoPicture)
        try:
            image.draft("RGB", (2 * side, 2 * side))
            image = _flatten(ImageOps.exif_transpose(image))
            image.thumbnail((side, side), Image.Resampling.LANCZOS)
            data = _jpeg(image, self.settings.quality)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError,
                Image.DecompressionBombWarning) as e:
            raise NoPicture("No usable picture.") from e
        with self._counting:
            self.thumbnails_made += 1
        self._thumbnails.put(key, data)
        self._remember(version, key)
        return Picture(data, key)

    def _remember(self, version: Hashable, key: str) -> None:
        if version is not None:
            self._versions.put(version, key)

    def _open(self, raw: bytes, formats: list[str],
              missing: type[DomainError] = InvalidPicture) -> Image.Image:
        try:
            image = Image.open(BytesIO(raw), formats=formats)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError,
                Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            if missing is NoPicture:
                raise NoPicture("No usable picture.") from e
            raise InvalidPicture(f"only {', '.join(formats)} pictures are accepted") from e
        width, height = image.size
        if width * height > self.settings.max_pixels:
            # Checked on the header, before anything is decoded.
            raise missing(f"the picture has too many pixels ({width}x{height})")
        return image


def _flatten(image: Image.Image) -> Image.Image:
    """RGB; transparent areas become white rather than black."""
    if image.mode in ("RGBA", "LA", "P"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def _jpeg(image: Image.Image, quality: int) -> bytes:
    out = BytesIO()
    # Pillow carries a JPEG comment (and ICC/EXIF) over from image.info when
    # saving: clear it, and pass no exif=/icc_profile=, so no metadata survives.
    image.info.clear()
    image.save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()


def _etag(kind: str, data: bytes) -> str:
    return f"{kind}-{hashlib.sha256(data).hexdigest()[:32]}"
