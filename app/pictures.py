"""Pillow: refuse what is not a picture, normalise uploads to JPEG, make thumbnails."""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import threading
import warnings
from collections.abc import Hashable
from dataclasses import dataclass
from io import BytesIO

from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from app.domain import DomainError
from app.lru import Lru

UPLOAD_FORMATS = ["JPEG", "PNG", "WEBP"]  # decoders we need; most Pillow CVEs are elsewhere
# EXIF orientation -> the transpose that makes a picture upright (as ImageOps.exif_transpose).
_UPRIGHT: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Box-reduce to at least this times the target before LANCZOS: as good as
# JPEG's reduced decode (58.8 dB on a smooth picture); 2 would not reduce a
# 16 MP picture at all, 1 loses detail.
REDUCING_GAP = 1.5
BAND_PIXELS = 1 << 20  # pixels converted at a time when a mode cannot be reduced as is
DIRECT_MODES = ("RGB", "L", "CMYK", "YCbCr")  # reduce() takes these as they are


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None
    return libc


_LIBC = _libc()
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
class Crop:
    """A square chosen in a browser: its left, top and side in pixels of the
    upright picture as the browser showed it, `width` pixels wide (the server
    scales these to the picture it decoded, whatever its size)."""

    left: int
    top: int
    side: int
    width: int

    def box(self, size: tuple[int, int]) -> tuple[int, int, int, int]:
        """The square in a picture of `size`, scaled and kept inside it."""
        scale = size[0] / self.width
        side = max(1, min(round(self.side * scale), *size))
        left = min(max(0, round(self.left * scale)), size[0] - side)
        top = min(max(0, round(self.top * scale)), size[1] - side)
        return left, top, left + side, top + side


@dataclass(frozen=True)
class PictureSettings:
    max_side: int = 1024
    thumbnail_side: int = 128
    quality: int = 85
    max_pixels: int = 20_000_000
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

    def normalise(self, raw: bytes, crop: Crop | None = None) -> bytes:
        """Any accepted upload as a JPEG: upright, no metadata, within max_side;
        with `crop`, only that square of it (cut from the reduced picture, so
        cropping costs no memory beyond the decode's).

        Only the decoder's own buffer is ever full size: the picture is
        reduced (DCT scaling for JPEG, an integer box reduce otherwise) before
        any mode conversion, flattening, transposition or LANCZOS, and the
        memory decoding took is handed back to the system afterwards (glibc
        keeps it otherwise: a process stayed at ~950 MB after four uploads)."""
        if not raw:
            raise InvalidPicture("the picture is empty")
        try:
            return self._normalised(self._open(raw, UPLOAD_FORMATS), crop)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError,
                Image.DecompressionBombWarning) as e:
            raise InvalidPicture("the picture cannot be decoded") from e
        finally:
            release_memory()

    def _normalised(self, image: Image.Image, crop: Crop | None = None) -> bytes:
        side = self.settings.max_side
        target = _fit(image.size, side)
        if image.format == "JPEG":
            image.draft("RGB", target)  # libjpeg decodes at 1/2..1/8, still >= target
        image.load()
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
        small = _reduced_rgb(image, target)
        image.close()
        del image  # the full-size decode goes before anything else is made
        if orientation in _UPRIGHT:
            small = small.transpose(_UPRIGHT[orientation])
        if crop is not None:  # browsers show pictures upright: so are its coordinates
            small = small.crop(crop.box(small.size))
        if small.size != _fit(small.size, side):
            small = small.resize(_fit(small.size, side), Image.Resampling.LANCZOS)
        return _jpeg(small, self.settings.quality)

    def original(self, stored: bytes | None) -> Picture:
        """The stored jpegPhoto as served: only if it really is a JPEG."""
        if not stored:
            raise NoPicture("No picture.")
        self._open(stored, ["JPEG"], missing=NoPicture)
        return Picture(stored, _etag("p", stored))

    def usable(self, stored: bytes) -> bool:
        """Would `original` serve this jpegPhoto (a JPEG within max_pixels)?
        Only the header is read."""
        try:
            self._open(stored, ["JPEG"], missing=NoPicture)
        except NoPicture:
            return False
        return True

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


def _fit(size: tuple[int, int], side: int) -> tuple[int, int]:
    """The size that fits in side x side, aspect kept, never enlarged."""
    width, height = size
    if width <= side and height <= side:
        return size
    scale = side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _reduced_rgb(image: Image.Image, target: tuple[int, int]) -> Image.Image:
    """A loaded image as RGB, box-reduced by an integer factor to no less than
    REDUCING_GAP x target. Modes reduce() cannot take as they are (palette,
    alpha, 16-bit) are converted band by band, never as a full-size copy;
    transparency becomes white only on the reduced image."""
    width, height = image.size
    factor = max(1, int(min(width / (target[0] * REDUCING_GAP),
                            height / (target[1] * REDUCING_GAP))))
    alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    if not alpha and image.mode in DIRECT_MODES:
        return (image.reduce(factor) if factor > 1 else image).convert("RGB")
    work = "RGBa" if alpha else "RGB"  # premultiplied: no dark fringes when averaging
    out = Image.new(work, (-(-width // factor), -(-height // factor)))
    rows = factor * max(1, BAND_PIXELS // (width * factor))
    for top in range(0, height, rows):
        band = _band_as(image.crop((0, top, width, min(height, top + rows))), work)
        out.paste(band.reduce(factor) if factor > 1 else band, (0, top // factor))
    if not alpha:
        return out
    rgba = out.convert("RGBA")
    flat = Image.new("RGB", rgba.size, (255, 255, 255))
    flat.paste(rgba, mask=rgba.getchannel("A"))
    return flat


def _band_as(band: Image.Image, mode: str) -> Image.Image:
    """A band in RGB or premultiplied RGBa; 16-bit grey is scaled, not clipped."""
    if band.mode.startswith("I;16"):
        band = band.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    if mode == "RGBa":
        return band.convert("RGBA").convert("RGBa")
    return band.convert("RGB")


def release_memory() -> None:
    """Hand the heap's free memory back to the system (glibc's malloc_trim)."""
    libc = _LIBC
    if libc is not None:
        libc.malloc_trim(0)


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
