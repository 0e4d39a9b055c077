"""What a file is before it is decoded: accepted extensions, modality, a magic-number hint, size checks.

Shared by :mod:`crossmodal_demo.ingest.media` (images, text) and :mod:`crossmodal_demo.ingest.audio`;
nothing here decodes a file.
"""

from __future__ import annotations

from pathlib import Path

from crossmodal_demo.errors import MediaError

MB = 1024 * 1024
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
AUDIO_EXTS = {".wav", ".flac", ".ogg", ".mp3"}
TEXT_EXTS = {".txt", ".md"}
MODALITIES = ("image", "audio", "text")

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


def hint(path: Path) -> str:
    """' It looks like <what>.' when :func:`sniff` recognises the file, else '' (appended to messages)."""
    what = sniff(path)
    return f" It looks like {what}." if what else ""


def human_bytes(n: int) -> str:
    """``n`` bytes for messages: '600 bytes', '10.0 MB' (MB = 2**20 bytes, as the settings count)."""
    return f"{n:,} bytes" if n < MB else f"{n / MB:,.1f} MB"


def check_size(path: Path, max_bytes: int, setting: str = "CROSSMODAL_MAX_FILE_BYTES") -> int:
    """Return the file size in bytes; refuse empty files and files over ``max_bytes`` (naming ``setting``)."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise MediaError(f"'{path.name}': cannot read the file ({exc.strerror}).") from None
    if size == 0:
        raise MediaError(f"'{path.name}' is empty (0 bytes).")
    if size > max_bytes:
        raise MediaError(f"'{path.name}' is {human_bytes(size)}; the limit is {human_bytes(max_bytes)} ({setting}).")
    return size
