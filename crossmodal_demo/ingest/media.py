"""Safe, explicit decoding of images, audio and text files, with limits and clear errors.

Every loader raises :class:`MediaError` with a message naming the file, what was wrong and what is
accepted; nothing here lets a decoder exception escape to the user.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf
import soxr
from PIL import Image

from crossmodal_demo.errors import MediaError

if TYPE_CHECKING:
    from crossmodal_demo.config import Config

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
    return next((m for m, exts in zip(MODALITIES, (IMAGE_EXTS, AUDIO_EXTS, TEXT_EXTS)) if ext in exts), None)


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


def check_size(path: Path, max_bytes: int, setting: str = "CROSSMODAL_MAX_FILE_BYTES") -> int:
    """Return the file size in bytes; refuse empty files and files over ``max_bytes`` (naming ``setting``)."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise MediaError(f"'{path.name}': cannot read the file ({exc.strerror}).") from None
    if size == 0:
        raise MediaError(f"'{path.name}' is empty (0 bytes).")
    if size > max_bytes:
        raise MediaError(f"'{path.name}' is {size / 1e6:,.1f} MB; the limit is {max_bytes / 1e6:,.0f} MB ({setting}).")
    return size


# ----------------------------------------------------------------------------------------- images

MB = 1024 * 1024
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


def decoded_bytes(width: int, height: int, mode: str) -> int:
    """Peak bytes :func:`load_image` allocates for a ``width``×``height`` image decoded in ``mode``:
    Pillow's storage, the full-size copy a reduction needs, and the RGB conversion of the result."""
    px = width * height
    total = px * _STORAGE_BPP.get(mode, 4)
    k = reduce_factor(width, height)
    if k > 1:
        total += px * _PRE_REDUCE.get(mode, (None, 0))[1]
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
        raise MediaError(f"'{path.name}' declares an enormous size (a decompression bomb?); refused.") from None
    except Image.UnidentifiedImageError:
        raise MediaError(
            f"'{path.name}' is not a readable image; accepted formats are {', '.join(PIL_FORMATS)}.{_hint(path)}"
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
        need = decoded_bytes(im.size[0], im.size[1], im.mode)
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


# ------------------------------------------------------------------------------------------ audio

MAX_SAMPLE_RATE = 192_000  # proposed Config.max_audio_sample_rate (CROSSMODAL_MAX_AUDIO_SAMPLE_RATE)
MAX_CHANNELS = 8  # proposed Config.max_audio_channels (CROSSMODAL_MAX_AUDIO_CHANNELS)
BUDGET_RATE = 48_000  # decoded-samples budget: max_seconds × BUDGET_RATE Hz × MAX_CHANNELS channels
BLOCK_FRAMES = 1 << 16  # frames decoded at a time (64 Ki frames × 8 ch × 4 B = 2 MB)


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


def load_audio(
    path: Path,
    target_sr: int = 16000,
    max_seconds: float = 600.0,
    *,
    seconds_setting: str = "CROSSMODAL_MAX_AUDIO_SECONDS",
    max_sample_rate: int = MAX_SAMPLE_RATE,
    max_channels: int = MAX_CHANNELS,
) -> Audio:
    """Decode an audio file to mono float32 at ``target_sr`` Hz.

    Checked from the header before any sample is decoded: rate ≤ ``max_sample_rate`` Hz, channels ≤
    ``max_channels``, duration ≤ ``max_seconds`` s, frames × channels ≤ ``max_seconds`` × 48 kHz × 8.
    Blocks of ``BLOCK_FRAMES`` frames are then decoded, down-mixed and resampled (soxr HQ, streaming)
    one at a time: memory is about the mono clip at ``target_sr``; a header that under-states the length
    is caught while decoding. Queries pass ``max_seconds=config.max_query_audio_seconds`` and
    ``seconds_setting="CROSSMODAL_MAX_QUERY_AUDIO_SECONDS"`` (the variable quoted in messages).
    """
    path = Path(path)
    check_size(path, max_bytes=1 << 40)
    try:
        info = sf.info(str(path))
    except Exception:  # soundfile raises LibsndfileError/RuntimeError/TypeError depending on the damage
        raise MediaError(
            f"'{path.name}' is not a readable audio file; accepted formats are WAV, FLAC, OGG, MP3.{_hint(path)}"
        ) from None
    sr, ch, frames = int(info.samplerate), int(info.channels), int(info.frames)
    seconds = frames / sr if sr > 0 else 0.0
    budget = int(max_seconds * BUDGET_RATE * MAX_CHANNELS)
    refusals = [
        (frames <= 0 or ch <= 0 or not math.isfinite(seconds), "contains no audio samples."),
        (sr > max_sample_rate, f"has a sample rate of {sr:,} Hz; the limit is {max_sample_rate:,} Hz "
                               "(CROSSMODAL_MAX_AUDIO_SAMPLE_RATE). Re-export it at 48 kHz or less."),
        (ch > max_channels, f"has {ch:,} channels; the limit is {max_channels} (CROSSMODAL_MAX_AUDIO_CHANNELS). "
                            "Mix it down to stereo or mono."),
        (seconds > max_seconds, f"is {seconds:,.1f} s long; the limit is {max_seconds:,.0f} s ({seconds_setting}). "
                                "Trim it or raise the limit."),
        (frames * ch > budget, f"holds {frames * ch:,} samples ({seconds:,.0f} s × {sr:,} Hz × {ch} channels); the "
                               f"decoding budget is {budget:,} ({seconds_setting} × 48 kHz × {MAX_CHANNELS} channels). "
                               "Re-export it at a lower rate or with fewer channels."),
    ]
    for refused, why in refusals:
        if refused:
            raise MediaError(f"Audio '{path.name}' {why}")
    return _decode_audio(path, sr, target_sr, max_frames=int(max_seconds * sr), limit=f"{max_seconds:,.0f} s ({seconds_setting})")


def _decode_audio(path: Path, sr: int, target_sr: int, max_frames: int, limit: str) -> Audio:
    """Decode block by block, down-mixing and resampling each block as it comes."""
    stream = soxr.ResampleStream(sr, target_sr, 1, dtype="float32", quality="HQ") if sr != target_sr else None
    chunks: list[np.ndarray] = []
    frames = 0
    try:
        # Our own loop, not sf.blocks(): blocks() yields its whole buffer even when a truncated file
        # returned fewer frames, so the tail of the last block would be uninitialised memory.
        with sf.SoundFile(str(path)) as fh:
            while (block := fh.read(BLOCK_FRAMES, dtype="float32", always_2d=True)).shape[0]:
                frames += block.shape[0]
                if frames > max_frames + BLOCK_FRAMES:  # the header under-stated the length
                    raise MediaError(f"Audio '{path.name}' holds more samples than its header says; the limit is {limit}.")
                if not np.isfinite(block).all():
                    raise MediaError(f"'{path.name}' contains NaN or infinite samples; re-export it as PCM or float WAV.")
                mono = block.mean(axis=1, dtype=np.float32)
                chunks.append(stream.resample_chunk(mono) if stream else mono)
        if stream:
            chunks.append(stream.resample_chunk(np.zeros(0, np.float32), last=True))
    except MediaError:
        raise
    except Exception as exc:  # libsndfile errors on damaged frames
        raise MediaError(f"'{path.name}' is damaged and cannot be decoded ({exc}).") from None
    if frames == 0:
        raise MediaError(f"'{path.name}' contains no audio samples.")
    return Audio(samples=np.ascontiguousarray(np.concatenate(chunks), dtype=np.float32), sr=target_sr, name=path.name)


def resample(samples: np.ndarray, sr: int, target_sr: int) -> np.ndarray:
    """Resample mono float32 ``samples`` from ``sr`` to ``target_sr`` Hz (soxr high quality)."""
    if sr == target_sr:
        return np.ascontiguousarray(samples, dtype=np.float32)
    import librosa

    out = librosa.resample(samples.astype(np.float32), orig_sr=sr, target_sr=target_sr, res_type="soxr_hq")
    return np.ascontiguousarray(out, dtype=np.float32)


# ------------------------------------------------------------------------------------------- text

TEXT_MAX_BYTES = 4 * MB  # proposed Config.max_text_bytes (CROSSMODAL_MAX_TEXT_BYTES)


def bom_encoding(raw: bytes) -> str:
    """Codec named by a byte-order mark (UTF-32/UTF-16, as Windows "Unicode" saves), else UTF-8."""
    if raw.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        return "utf-32"
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    return "utf-8-sig"


def load_text(path: Path, max_bytes: int = TEXT_MAX_BYTES) -> str:
    """Read a UTF-8 text file (BOM tolerated) of at most ``max_bytes`` bytes (checked before reading).
    Invalid UTF-8 is refused with the byte offset."""
    path = Path(path)
    check_size(path, max_bytes=max_bytes, setting="CROSSMODAL_MAX_TEXT_BYTES")
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
