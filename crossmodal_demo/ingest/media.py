"""Safe, explicit decoding of images and text files, with budgets checked before the work.

Every loader raises :class:`MediaError` with a message naming the file, what was wrong, what is
accepted and the ``CROSSMODAL_*`` setting that changes a limit; nothing here lets a decoder exception
escape to the user. Audio lives in :mod:`crossmodal_demo.ingest.audio`, file types and size checks in
:mod:`crossmodal_demo.ingest.files` (both re-exported here for callers); the header estimate of decoded
bytes the pipeline budgets with is :mod:`crossmodal_demo.ingest.estimate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from crossmodal_demo.errors import MediaError
from crossmodal_demo.ingest.audio import (
    MAX_CHANNELS, MAX_SAMPLE_RATE, Audio, AudioInfo, AudioLimits, check_audio_file, load_audio, resample,
)
from crossmodal_demo.ingest.files import (
    AUDIO_EXTS, IMAGE_EXTS, MB, MODALITIES, TEXT_EXTS, accepted_extensions, check_size, hint, human_bytes, modality_of,
    sniff,
)

if TYPE_CHECKING:
    from crossmodal_demo.config import Config

# Pillow decoders we allow; anything else (EPS, PSD, ...) is refused before a decoder runs.
PIL_FORMATS = ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"]
MAX_ASPECT = 20  # longest side ÷ shortest side
# Names other modules import from here (audio and file-type helpers live in ingest.audio / ingest.files).
__all__ = [
    "AUDIO_EXTS", "IMAGE_EXTS", "MAX_CHANNELS", "MAX_SAMPLE_RATE", "MODALITIES", "TEXT_EXTS", "TEXT_MAX_BYTES", "Audio",
    "AudioInfo", "AudioLimits", "ImageInfo", "ImageLimits", "accepted_extensions", "bom_encoding", "check_audio_file",
    "check_image_file", "check_size", "decoded_bytes", "human_bytes", "load_audio", "load_image", "load_text",
    "modality_of", "resample", "sniff",
]


# ----------------------------------------------------------------------------------------- images

DEFAULT_MAX_DECODED_BYTES = 1024 * MB  # Config.max_decoded_mb
REDUCE_MIN_SIDE = 256  # accepted images are box-reduced while the short side stays ≥ this (encoders see 224)
# Bytes per pixel Pillow allocates for a decoded image of each mode (measured with Pillow 12: mode "1"
# is stored one byte per pixel, RGB four); modes not listed take 4.
_STORAGE_BPP = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
# Extra full-size bytes per pixel to make a mode reducible (Image.reduce refuses "1", "P", "I;16*" and
# premultiplies LA/RGBA into a full-size copy first).
_PRE_REDUCE = {"1": ("L", 1), "P": ("RGBA", 4), "PA": ("RGBA", 4), "I;16": ("I", 4), "I;16L": ("I", 4),
               "I;16B": ("I", 4), "I;16N": ("I", 4), "LA": (None, 4), "RGBA": (None, 4)}
_HIGH_DEPTH = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_T = Image.Transpose
_ORIENT = {2: _T.FLIP_LEFT_RIGHT, 3: _T.ROTATE_180, 4: _T.FLIP_TOP_BOTTOM, 5: _T.TRANSPOSE, 6: _T.ROTATE_270, 7: _T.TRANSVERSE, 8: _T.ROTATE_90}
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError, Image.DecompressionBombWarning)


@dataclass(frozen=True)
class ImageLimits:
    """Budgets of one image: pixels (Mpx) and peak decoded bytes (decode + conversion to RGB)."""

    max_mpx: float = 100.0
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES

    @classmethod
    def from_config(cls, config: "Config") -> "ImageLimits":
        """The image budgets of a :class:`Config` (CROSSMODAL_MAX_IMAGE_MPX, CROSSMODAL_MAX_DECODED_MB)."""
        return cls(max_mpx=config.max_image_mpx, max_decoded_bytes=int(config.max_decoded_mb * MB))


@dataclass(frozen=True)
class ImageInfo:
    """An accepted image's header: size (px), Pillow mode, format, and ``decoded_bytes``, the peak bytes
    :func:`load_image` allocates for it (to bound the bytes in flight across a decode pool)."""

    width: int
    height: int
    mode: str
    format: str
    decoded_bytes: int


def reduce_factor(width: int, height: int) -> int:
    """Integer box-reduction factor that keeps the short side ≥ ``REDUCE_MIN_SIDE`` px (1: none)."""
    return max(1, min(width, height) // REDUCE_MIN_SIDE)


def decoded_bytes(width: int, height: int, mode: str, transparent: bool = True) -> int:
    """Peak bytes :func:`load_image` allocates for a ``width``×``height`` image decoded in ``mode``
    (``transparent``: a palette image with a transparent entry): Pillow's storage, the full-size copies a
    reduction needs, and the RGB conversion of the result (checked against the measured peak in test_budgets).

    E.g. a 90-Mpx 1-bit page: 90 MB of storage (Pillow keeps "1" at 1 B/px) + 90 MB as "L" to reduce it
    = 180 MB; it is reduced before conversion, so the full-size RGB copy (360 MB: RGB is 4 B/px) never exists.
    Only images with a short side under 512 px are converted at full size (≤ 20:1, so ≤ 5.2 Mpx)."""
    px = width * height
    total = px * _STORAGE_BPP.get(mode, 4)
    k = reduce_factor(width, height)
    if k > 1:
        total += px * _PRE_REDUCE.get(mode, (None, 0))[1]
        if mode == "PA" or (mode == "P" and transparent):
            total += px * 4  # the RGBA copy is premultiplied into another full-size copy by reduce()
        px = -(-width // k) * -(-height // k)
    # conversion of what is left: float scaling 12 B/px, alpha flattening 16 B/px, plain convert 4; +4 transpose
    per_px = 12 if mode in _HIGH_DEPTH else 16 if mode in ("RGBA", "LA", "PA", "P", "La", "RGBa") else 4
    return total + px * (per_px + 4)


def _open(path: Path, limits: ImageLimits) -> tuple[Image.Image, ImageInfo]:
    """Open ``path`` (header only), check format, pixels, aspect and decoded bytes; caller closes the image."""
    check_size(path, max_bytes=1 << 40)
    try:
        # Pillow's own bomb check (above 2 × 89 Mpx) fires first for absurd sizes; ours, below, is clearer.
        im = Image.open(path, formats=PIL_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        guard = 2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6  # Pillow's own guard, for every Pillow user in the process
        raise MediaError(f"Image '{path.name}' declares an enormous size, over {guard:,.0f} Mpx (a decompression bomb?); "
                         f"refused. The limit is {limits.max_mpx:,.4g} Mpx (CROSSMODAL_MAX_IMAGE_MPX).") from None
    except Image.UnidentifiedImageError:
        raise MediaError(
            f"'{path.name}' is not a readable image; accepted formats are {', '.join(PIL_FORMATS)}.{hint(path)}"
        ) from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # e.g. a PNG text chunk that inflates too far
        raise MediaError(f"'{path.name}': cannot open the image ({exc}).") from None
    try:
        w, h = im.size
        mpx = w * h / 1e6
        if mpx > limits.max_mpx:
            raise MediaError(f"Image '{path.name}' is {w:,}×{h:,} px ({mpx:,.0f} Mpx); the limit is {limits.max_mpx:,.4g} Mpx (CROSSMODAL_MAX_IMAGE_MPX).")
        if max(w, h) > MAX_ASPECT * max(1, min(w, h)):
            # Encoders resize the short side to ~224 px: a 1×60,000 sliver would become gigabytes.
            raise MediaError(f"Image '{path.name}' is {w:,}×{h:,} px: an aspect ratio of {max(w, h) / max(1, min(w, h)):,.0f}:1 "
                             f"is too extreme to index (the limit is {MAX_ASPECT}:1).")
        if im.format == "JPEG":  # libjpeg decodes at 1/2..1/8 scale, the short side staying ≥ 256 px
            im.draft("RGB", (REDUCE_MIN_SIDE, REDUCE_MIN_SIDE))
        need = decoded_bytes(im.size[0], im.size[1], im.mode, "transparency" in im.info)
        if need > limits.max_decoded_bytes:
            raise MediaError(f"Image '{path.name}' is {w:,}×{h:,} px in mode {im.mode}: decoding it needs about {need / MB:,.0f} MB; "
                             f"the limit is {limits.max_decoded_bytes / MB:,.0f} MB (CROSSMODAL_MAX_DECODED_MB).")
    except BaseException:
        im.close()
        raise
    return im, ImageInfo(w, h, im.mode, str(im.format), need)


def check_image_file(path: Path, limits: ImageLimits = ImageLimits()) -> ImageInfo:
    """Check an image file from its header only (no pixel is decoded): allowed format, pixel limit,
    aspect ratio and decoded-bytes budget. Raises :class:`MediaError` naming the setting to change."""
    im, info = _open(Path(path), limits)
    im.close()
    return info


def load_image(path: Path, max_mpx: float = 100.0, max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES, *,
               limits: ImageLimits | None = None) -> Image.Image:
    """Decode an image file to an RGB PIL image (EXIF orientation applied, first frame of GIFs).

    Every budget of :func:`check_image_file` (``limits``, else ``max_mpx`` and ``max_decoded_bytes``) is
    checked from the header first, so bombs cost nothing. Images with a short side ≥ 2 × ``REDUCE_MIN_SIDE``
    px are box-reduced by an integer factor before conversion (short side ≥ 256 px): the result is small.
    """
    path = Path(path)
    im, _ = _open(path, limits or ImageLimits(max_mpx=max_mpx, max_decoded_bytes=max_decoded_bytes))
    with im:
        try:
            im.seek(0)
            im.load()
            orientation = _orientation(im)  # after load(): PNG's getexif() loads, and would hide a decode error
            out = _to_rgb(_reduce(im))
            return out.transpose(_ORIENT[orientation]) if orientation in _ORIENT else out
        except _DECODE_ERRORS as exc:
            raise MediaError(f"'{path.name}' is damaged or truncated and cannot be decoded ({exc}).") from None


def _orientation(im: Image.Image) -> int:
    """EXIF orientation (1..8) of an opened image; 1 when absent or unreadable (bad EXIF is not fatal)."""
    try:
        return int(im.getexif().get(0x0112, 1))
    except Exception:  # Pillow raises many types on broken EXIF blocks; the picture itself is still usable
        return 1


def _reduce(im: Image.Image) -> Image.Image:
    """Box-reduce large images by an integer factor (see :func:`reduce_factor`); small ones are returned as is."""
    k = reduce_factor(*im.size)
    if k == 1:
        return im
    target = _PRE_REDUCE.get(im.mode, (None, 0))[0]
    if target == "RGBA" and im.mode == "P" and "transparency" not in im.info:
        target = "RGB"
    return (im.convert(target) if target else im).reduce(k)


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is flattened on white, high depths are scaled."""
    if im.mode in _HIGH_DEPTH:
        # float32, scaled in place: ~5 bytes per pixel on top of the image (float64 temporaries were 32)
        arr = np.nan_to_num(np.asarray(im).astype(np.float32), copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(arr.min()), float(arr.max())
        arr -= lo
        arr *= 255.0 / (hi - lo) if hi > lo else 0.0
        return Image.fromarray(arr.astype(np.uint8), "L").convert("RGB")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return im.convert("RGB")


# ------------------------------------------------------------------------------------------- text

TEXT_MAX_BYTES = 10 * MB  # Config.max_text_bytes default (CROSSMODAL_MAX_TEXT_BYTES)


def bom_encoding(raw: bytes) -> str:
    """Codec named by a byte-order mark (UTF-32/UTF-16, as Windows "Unicode" saves), else UTF-8."""
    if raw.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        return "utf-32"
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    return "utf-8-sig"


def load_text(path: Path, max_bytes: int = TEXT_MAX_BYTES) -> str:
    """Read a UTF-8 text file (BOM tolerated) of at most ``max_bytes`` bytes (CROSSMODAL_MAX_TEXT_BYTES,
    checked before reading; at most ``max_bytes`` + 1 bytes are ever read). Invalid UTF-8 is refused
    with the byte offset."""
    path = Path(path)
    check_size(path, max_bytes=max_bytes, setting="CROSSMODAL_MAX_TEXT_BYTES")
    with open(path, "rb") as fh:
        raw = fh.read(max_bytes + 1)  # never more than the limit, even if the file grew after stat()
    if len(raw) > max_bytes:
        raise MediaError(f"'{path.name}' is larger than {human_bytes(max_bytes)} (CROSSMODAL_MAX_TEXT_BYTES).")
    try:
        text = raw.decode(bom_encoding(raw))
    except UnicodeDecodeError as exc:
        raise MediaError(
            f"'{path.name}' is not valid UTF-8 (bad byte at offset {exc.start}); save it as UTF-8.{hint(path)}"
        ) from None
    if "\x00" in text:
        raise MediaError(f"'{path.name}' contains NUL bytes; it does not look like a text file.{hint(path)}")
    text = text.strip()
    if not text:
        raise MediaError(f"'{path.name}' contains only whitespace.")
    return text

