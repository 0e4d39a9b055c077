"""Safe, explicit decoding of images, audio and text files, with limits and clear errors.

Every loader raises :class:`MediaError` with a message naming the file, what was wrong and what is
accepted; nothing here lets a decoder exception escape to the user.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from crossmodal_demo.errors import MediaError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
AUDIO_EXTS = {".wav", ".flac", ".ogg", ".mp3"}
TEXT_EXTS = {".txt", ".md"}
# Pillow decoders we allow; anything else (EPS, PSD, ...) is refused before a decoder runs.
PIL_FORMATS = ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"]
MODALITIES = ("image", "audio", "text")
MAX_ASPECT = 20  # longest side ÷ shortest side

# Magic numbers, used only to give a helpful hint when the extension lies.
_MAGIC = [
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG", "a PNG image"),
    (b"GIF8", "a GIF image"),
    (b"RIFF", "a RIFF file (WAV audio or WebP image)"),
    (b"fLaC", "a FLAC audio file"),
    (b"OggS", "an Ogg audio file"),
    (b"ID3", "an MP3 audio file"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
]


def accepted_extensions() -> str:
    """Human-readable list of accepted file extensions, for error messages."""
    return ", ".join(sorted(IMAGE_EXTS | AUDIO_EXTS | TEXT_EXTS))


def modality_of(path: Path) -> str | None:
    """Modality ('image' | 'audio' | 'text') implied by the file extension, or None if unsupported."""
    ext = path.suffix.lower()
    if ext in IMAGE_EXTS:
        return "image"
    if ext in AUDIO_EXTS:
        return "audio"
    if ext in TEXT_EXTS:
        return "text"
    return None


def sniff(path: Path) -> str | None:
    """Best guess of what a file really is from its first bytes (for hints only), or None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return None
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    if b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return None  # binary, and not UTF-16 text
    if len(head) >= 8 and head[4:8] == b"ftyp":
        return "an MP4/M4A container"
    try:
        head.decode("utf-8")
        return "a text file" if head else None
    except UnicodeDecodeError:
        return None


def _hint(path: Path) -> str:
    what = sniff(path)
    return f" It looks like {what}." if what else ""


def check_size(path: Path, max_bytes: int) -> int:
    """Return the file size in bytes; refuse empty files and files over ``max_bytes``."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise MediaError(f"'{path.name}': cannot read the file ({exc.strerror}).") from None
    if size == 0:
        raise MediaError(f"'{path.name}' is empty (0 bytes).")
    if size > max_bytes:
        raise MediaError(
            f"'{path.name}' is {size / 1e6:,.1f} MB; the limit is {max_bytes / 1e6:,.0f} MB "
            "(CROSSMODAL_MAX_FILE_BYTES)."
        )
    return size


# ----------------------------------------------------------------------------------------- images


def load_image(path: Path, max_mpx: float = 100.0) -> Image.Image:
    """Decode an image file to an RGB PIL image (EXIF orientation applied, first frame of GIFs).

    Refuses formats outside the allow-list and images over ``max_mpx`` megapixels *before* decoding
    pixels, so decompression bombs cost nothing.
    """
    path = Path(path)
    check_size(path, max_bytes=1 << 40)
    try:
        # Our own pixel limit is enforced below with a clearer message; Pillow's bomb warning (only
        # between its 89 Mpx default and 2× that) is caught too in case warnings are errors.
        im = Image.open(path, formats=PIL_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise MediaError(f"'{path.name}' declares an enormous size (a decompression bomb?); refused.") from None
    except Image.UnidentifiedImageError:
        raise MediaError(
            f"'{path.name}' is not a readable image; accepted formats are {', '.join(PIL_FORMATS)}.{_hint(path)}"
        ) from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # e.g. a PNG text chunk that inflates too far
        raise MediaError(f"'{path.name}': cannot open the image ({exc}).") from None
    with im:
        w, h = im.size
        mpx = w * h / 1e6
        if mpx > max_mpx:
            raise MediaError(
                f"Image '{path.name}' is {w:,}×{h:,} px ({mpx:,.0f} Mpx); the limit is {max_mpx:,.0f} Mpx "
                "(CROSSMODAL_MAX_IMAGE_MPX)."
            )
        if max(w, h) > MAX_ASPECT * max(1, min(w, h)):
            # Encoders resize the short side to ~224 px: a 1×60,000 sliver would become gigabytes.
            raise MediaError(
                f"Image '{path.name}' is {w:,}×{h:,} px: an aspect ratio of {max(w, h) / max(1, min(w, h)):,.0f}:1 "
                f"is too extreme to index (the limit is {MAX_ASPECT}:1)."
            )
        try:
            if im.format == "JPEG":
                # Draft mode lets libjpeg decode at 1/2..1/8 scale (never below 256 px on the short side,
                # more than the 224 px the image encoders see): large photos decode several times faster.
                im.draft("RGB", (256, 256))
            im.seek(0)
            im.load()
            out = ImageOps.exif_transpose(im) or im
            return _to_rgb(out)
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise MediaError(f"'{path.name}' is damaged or truncated and cannot be decoded ({exc}).") from None


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is flattened on white."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) / (hi - lo) * 255.0
        return Image.fromarray(np.nan_to_num(scaled).astype(np.uint8), "L").convert("RGB")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return im.convert("RGB")


# ------------------------------------------------------------------------------------------ audio


@dataclass
class Audio:
    """A decoded clip: mono float32 samples in [-1, 1] at ``sr`` Hz.

    ``transcript`` is filled by a speech encoder the first time it transcribes the clip, so indexing
    can store it without transcribing twice.
    """

    samples: np.ndarray
    sr: int
    name: str = ""
    transcript: str | None = field(default=None)

    @property
    def seconds(self) -> float:
        """Duration in seconds."""
        return len(self.samples) / float(self.sr)


def load_audio(path: Path, target_sr: int = 16000, max_seconds: float = 600.0) -> Audio:
    """Decode an audio file to mono float32 at ``target_sr`` Hz.

    The duration is read from the header and checked against ``max_seconds`` before any sample is
    decoded; resampling uses soxr through librosa.
    """
    import soundfile as sf

    path = Path(path)
    check_size(path, max_bytes=1 << 40)
    try:
        info = sf.info(str(path))
    except Exception:  # soundfile raises LibsndfileError/RuntimeError/TypeError depending on the damage
        raise MediaError(
            f"'{path.name}' is not a readable audio file; accepted formats are WAV, FLAC, OGG, MP3.{_hint(path)}"
        ) from None
    seconds = info.frames / info.samplerate if info.samplerate else 0.0
    if info.frames <= 0 or not math.isfinite(seconds):
        raise MediaError(f"'{path.name}' contains no audio samples.")
    if seconds > max_seconds:
        raise MediaError(
            f"Audio '{path.name}' is {seconds:,.1f} s long; the limit is {max_seconds:,.0f} s "
            "(CROSSMODAL_MAX_AUDIO_SECONDS). Trim it or raise the limit."
        )
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:
        raise MediaError(f"'{path.name}' is damaged and cannot be decoded ({exc}).") from None
    if data.shape[0] == 0:
        raise MediaError(f"'{path.name}' contains no audio samples.")
    if not np.isfinite(data).all():
        raise MediaError(f"'{path.name}' contains NaN or infinite samples; re-export it as PCM or float WAV.")
    mono = data.mean(axis=1)
    return Audio(samples=resample(mono, sr, target_sr), sr=target_sr, name=path.name)


def resample(samples: np.ndarray, sr: int, target_sr: int) -> np.ndarray:
    """Resample mono float32 ``samples`` from ``sr`` to ``target_sr`` Hz (soxr high quality)."""
    if sr == target_sr:
        return np.ascontiguousarray(samples, dtype=np.float32)
    import librosa

    out = librosa.resample(samples.astype(np.float32), orig_sr=sr, target_sr=target_sr, res_type="soxr_hq")
    return np.ascontiguousarray(out, dtype=np.float32)


# ------------------------------------------------------------------------------------------- text


def bom_encoding(raw: bytes) -> str:
    """Codec named by a byte-order mark (UTF-32/UTF-16, as Windows "Unicode" saves), else UTF-8."""
    if raw.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        return "utf-32"
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    return "utf-8-sig"


def load_text(path: Path, max_bytes: int = 4 * 1024 * 1024) -> str:
    """Read a UTF-8 text file (BOM tolerated). Invalid UTF-8 is refused with the byte offset."""
    path = Path(path)
    check_size(path, max_bytes=max_bytes)
    raw = path.read_bytes()
    try:
        text = raw.decode(bom_encoding(raw))
    except UnicodeDecodeError as exc:
        raise MediaError(
            f"'{path.name}' is not valid UTF-8 (bad byte at offset {exc.start}); save it as UTF-8.{_hint(path)}"
        ) from None
    if "\x00" in text:
        raise MediaError(f"'{path.name}' contains NUL bytes; it does not look like a text file.{_hint(path)}")
    text = text.strip()
    if not text:
        raise MediaError(f"'{path.name}' contains only whitespace.")
    return text
