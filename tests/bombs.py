"""Generators of the hostile inputs of issue 11 (decompression bombs), built chunk-wise, never whole in
memory, in well under a second each (the FLAC takes ~4 s: it is really encoded)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf

MB = 1024**2


def _chunk(typ: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + typ + data + struct.pack(">I", zlib.crc32(typ + data) & 0xFFFFFFFF)


def png_1bit(dst: Path, w: int, h: int, note: str = "") -> None:
    """All-black 1-bit greyscale PNG, compressed 1,000 rows at a time (9487² px: ~11 KB on disk);
    ``note`` goes into a tEXt chunk, so pages with different notes are different files."""
    row = b"\x00" * (1 + (w + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    idat = bytearray()
    for start in range(0, h, 1000):
        idat += comp.compress(row * min(1000, h - start))
    idat += comp.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    dst.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"tEXt", b"Comment\x00" + note.encode())
                    + _chunk(b"IDAT", bytes(idat)) + _chunk(b"IEND", b""))


def tiff_float(dst: Path, w: int, h: int, rows_per_strip: int = 64) -> None:
    """Little-endian 32-bit float TIFF of zeros, deflate strips that all point at the same bytes."""
    strip = zlib.compress(b"\x00" * (w * 4 * rows_per_strip), 9)
    n = -(-h // rows_per_strip)
    offs_at = 8 + len(strip)
    counts_at = offs_at + 4 * n
    ifd_at = counts_at + 4 * n
    tags = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 1, 32), (259, 3, 1, 8), (262, 3, 1, 1), (273, 4, n, offs_at),
            (277, 3, 1, 1), (278, 4, 1, rows_per_strip), (279, 4, n, counts_at), (339, 3, 1, 3)]
    ifd = struct.pack("<H", len(tags)) + b"".join(
        struct.pack("<HHI", t, typ, c) + (struct.pack("<HH", v, 0) if typ == 3 else struct.pack("<I", v))
        for t, typ, c, v in tags) + b"\x00" * 4
    dst.write_bytes(b"II*\x00" + struct.pack("<I", ifd_at) + strip + struct.pack(f"<{n}I", *[8] * n)
                    + struct.pack(f"<{n}I", *[len(strip)] * n) + ifd)


def silence(dst: Path, rate: int, channels: int, seconds: int) -> None:
    """16-bit silence in the format of ``dst``'s suffix, written 10 s at a time (96 kHz × 8 ch × 590 s
    of FLAC: 468 KB, ~4 s to encode)."""
    block = np.zeros((rate * 10, channels), dtype=np.int16)
    with sf.SoundFile(dst, "w", rate, channels, "PCM_16") as f:
        for start in range(0, seconds, 10):
            f.write(block[: rate * min(10, seconds - start)])


def zip_members(dst: Path, members: list[tuple[str, bytes, int, int, int]]) -> None:
    """A zip written by hand: (name, deflated or stored bytes, method, crc, declared size) per member.
    Lets a test state any size in the headers, and add a 1.9 GB member without compressing 1.9 GB."""
    local, central = bytearray(), bytearray()
    for name, data, method, crc, size in members:
        nb = name.encode()
        head = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0x800, method, 0, 0x21, crc, len(data), size, len(nb), 0)
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0x800, method, 0, 0x21, crc, len(data), size,
                               len(nb), 0, 0, 0, 0, 0o100644 << 16, len(local)) + nb
        local += head + nb + data
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), len(local), 0)
    dst.write_bytes(bytes(local + central + end))


def zeros_member(name: str, size: int) -> tuple[str, bytes, int, int, int]:
    """A deflated member of ``size`` zero bytes (a multiple of 16 MiB), compressed 16 MiB once: after a
    full flush the compressor forgets its history, so every 16 MiB chunk compresses to the same bytes."""
    chunk = bytes(16 * MB)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = comp.compress(chunk) + comp.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(size // len(chunk)):
        crc = zlib.crc32(chunk, crc)
    return name, piece * (size // len(chunk)) + comp.flush(zlib.Z_FINISH), 8, crc, size


def stored_member(name: str, data: bytes) -> tuple[str, bytes, int, int, int]:
    """An uncompressed member holding ``data``."""
    return name, data, 0, zlib.crc32(data), len(data)
