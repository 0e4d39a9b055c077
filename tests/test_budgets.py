"""Hostile inputs of issue 11 (bounded work), generated at test time: each is refused with a message that
names its setting, or accepted at a bounded cost, and the good file beside it still goes through.

Memory is measured in a child process (its own ``ru_maxrss`` before and after), because Pillow and
libsndfile allocate outside Python's allocator. The bar is the issue's: peak ≤ idle + 1.5 GB (the old
code needed 6.2 GB, 3.4 GB and 2.1 GB for the first three). Bombs are built chunk-wise, never in memory.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from crossmodal_demo.errors import MediaError, UserError
from crossmodal_demo.ingest.discover import discover
from crossmodal_demo.ingest.media import load_audio
from crossmodal_demo.ingest.uploads import BLOCK, UploadBudget, extract_zip

DATA = Path(__file__).parent / "data"
GB = 1024**3
MB = 1024**2
PEAK_BAR = 1.5 * GB  # the bar: peak ≤ idle + 1.5 GB


# ------------------------------------------------------------------------------------ generators


def _chunk(typ: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + typ + data + struct.pack(">I", zlib.crc32(typ + data) & 0xFFFFFFFF)


def png_1bit(dst: Path, w: int, h: int) -> None:
    """All-black 1-bit greyscale PNG, compressed 1,000 rows at a time (never whole in memory)."""
    row = b"\x00" * (1 + (w + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    idat = bytearray()
    for start in range(0, h, 1000):
        idat += comp.compress(row * min(1000, h - start))
    idat += comp.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    dst.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", bytes(idat)) + _chunk(b"IEND", b""))


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
    return name, data, 0, zlib.crc32(data), len(data)


def _child(code: str, *args: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON line. Adds its idle and peak RSS (bytes)."""
    prelude = (
        "import json, resource, sys\n"
        "from crossmodal_demo.ingest import media, uploads\n"
        "idle = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
    )
    tail = "\nout['idle'] = idle\nout['peak'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\nprint(json.dumps(out))\n"
    r = subprocess.run([sys.executable, "-W", "ignore", "-c", prelude + code + tail, *args],
                       capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[1])
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------- images


def test_zip_of_twelve_90mpx_one_bit_pngs_costs_little_and_refuses_over_the_budget(tmp_path: Path) -> None:
    page = tmp_path / "page.png"
    png_1bit(page, 9487, 9487)  # 90 Mpx: under the 100 Mpx limit, ~11 KB on disk
    zpath = tmp_path / "pages.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(12):
            zf.write(page, f"page{i:02}.png")
        zf.write(DATA / "images" / "cat.jpg", "cat.jpg")
    assert zpath.stat().st_size < 30_000
    out = _child(
        "from pathlib import Path\n"
        "res = uploads.extract_zip(Path(sys.argv[1]), Path(sys.argv[2]), uploads.UploadBudget(1 << 30, 100), 512 << 20)\n"
        "kept, refused = [], []\n"
        "for p in sorted(res.extracted):\n"  # default budgets, results kept alive as an indexing batch keeps them
        "    kept.append(media.load_image(p))\n"
        "for p in sorted(res.extracted):\n"  # a budget below one page: refused from the header
        "    try:\n"
        "        media.load_image(p, max_decoded_bytes=64 << 20)\n"
        "    except media.MediaError as exc:\n"
        "        refused.append(str(exc))\n"
        "out = dict(sizes=[im.size for im in kept], refused=refused, problems=len(res.problems))\n",
        str(zpath), str(tmp_path / "out"),
    )
    assert out["problems"] == 0 and len(out["sizes"]) == 13
    assert out["sizes"].count([257, 257]) == 12  # box-reduced at load: each result is small
    assert len(out["refused"]) == 12  # every page, not the cat
    assert all("9,487×9,487 px in mode 1" in m and "CROSSMODAL_MAX_DECODED_MB" in m for m in out["refused"])
    assert out["peak"] - out["idle"] < PEAK_BAR


def test_98mpx_float_tiff_is_bounded_and_refused_over_the_budget(tmp_path: Path) -> None:
    tif = tmp_path / "float.tif"
    tiff_float(tif, 9900, 9900)
    good = shutil.copy(DATA / "images" / "coins.png", tmp_path / "coins.png")
    out = _child(
        "from pathlib import Path\n"
        "info = media.check_image_file(Path(sys.argv[1]))\n"
        "try:\n"
        "    media.check_image_file(Path(sys.argv[1]), media.ImageLimits(max_decoded_bytes=256 << 20))\n"
        "    refused = ''\n"
        "except media.MediaError as exc:\n"
        "    refused = str(exc)\n"
        "header_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
        "im = media.load_image(Path(sys.argv[1]))\n"
        "good = media.load_image(Path(sys.argv[2]))\n"
        "out = dict(mode=info.mode, need=info.decoded_bytes, refused=refused, header_peak=header_peak, size=im.size, good=good.size)\n",
        str(tif), str(good),
    )
    assert out["mode"] == "F" and "9,900×9,900 px in mode F" in out["refused"] and "(CROSSMODAL_MAX_DECODED_MB)" in out["refused"]
    assert out["header_peak"] - out["idle"] < 50 * MB  # checking the header decodes nothing
    assert min(out["size"]) >= 256 and out["good"] == [320, 253]
    assert 9900 * 9900 * 4 <= out["need"] < GB  # at least Pillow's float storage; under the default budget
    assert out["peak"] - out["idle"] < PEAK_BAR


# ------------------------------------------------------------------------------------------ audio


def test_96khz_8_channel_flac_of_590_s_is_refused_from_its_header(tmp_path: Path) -> None:
    flac = tmp_path / "silence.flac"
    block = np.zeros((96000 * 10, 8), dtype=np.int16)
    with sf.SoundFile(flac, "w", 96000, 8, "PCM_16", format="FLAC") as f:
        for _ in range(59):
            f.write(block)
    out = _child(
        "from pathlib import Path\n"
        "try:\n"
        "    media.load_audio(Path(sys.argv[1]))\n"
        "    refused = ''\n"
        "except media.MediaError as exc:\n"
        "    refused = str(exc)\n"
        "good = media.load_audio(Path(sys.argv[2]))\n"
        "out = dict(refused=refused, good=good.seconds)\n",
        str(flac), str(DATA / "sounds" / "beep.wav"),
    )
    assert "453,120,000 samples" in out["refused"] and "(CROSSMODAL_MAX_AUDIO_SECONDS × 48 kHz × 8 channels)" in out["refused"]
    assert out["good"] > 0
    assert out["peak"] - out["idle"] < 100 * MB  # was +2.1 GB


def _wav_claiming(path: Path, rate: int, channels: int) -> None:
    """A short 16-bit WAV whose header claims ``rate`` Hz and ``channels`` channels."""
    sf.write(path, np.zeros((1000, 1), dtype=np.int16), 8000, subtype="PCM_16")
    raw = bytearray(path.read_bytes())
    assert raw[12:16] == b"fmt "
    struct.pack_into("<HIIH", raw, 22, channels, rate, rate * channels * 2, channels * 2)  # fmt: channels, rate, byte rate, block align
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("rate, channels, fragment", [
    (655_360, 8, "sample rate of 655,360 Hz; the limit is 192,000 Hz (CROSSMODAL_MAX_AUDIO_SAMPLE_RATE)"),
    (48_000, 64, "64 channels; the limit is 8 (CROSSMODAL_MAX_AUDIO_CHANNELS)"),
])
def test_a_header_claiming_a_huge_rate_or_channel_count_is_refused(tmp_path: Path, rate: int, channels: int, fragment: str) -> None:
    p = tmp_path / "claims.wav"
    _wav_claiming(p, rate, channels)
    with pytest.raises(MediaError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        load_audio(p)


# ------------------------------------------------------------------------------------ text, zips


def test_zip_holding_a_20mb_captions_csv(tmp_path: Path) -> None:
    line = b"photos/some-long-folder-name/picture-0000.jpg,a caption that repeats itself\n"
    csv_bytes = b"path,caption\n" + line * (20 * MB // len(line))
    zpath = tmp_path / "captions.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("captions.csv", csv_bytes)
        zf.write(DATA / "images" / "cat.jpg", "cat.jpg")
    assert zpath.stat().st_size < 100_000
    budget = UploadBudget(1 << 30, 100)
    res = extract_zip(zpath, tmp_path / "out", budget, 512 * MB)
    assert [p.name for p in res.extracted] == ["cat.jpg"]
    assert "CROSSMODAL_MAX_MANIFEST_BYTES" in res.problems[0].reason and budget.bytes_left > (1 << 30) - MB
    # the same file met on disk (folder indexing) is refused from its size, before it is read
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "captions.csv").write_bytes(csv_bytes)
    shutil.copy(DATA / "images" / "cat.jpg", folder / "cat.jpg")
    found = discover([folder])
    assert [c.path.name for c in found.candidates] == ["cat.jpg"]
    assert [p.reason for p in found.problems] == [
        "caption manifest is 20.0 MB; the limit is 10.0 MB (CROSSMODAL_MAX_MANIFEST_BYTES); ignored"]


def test_zip_holding_a_1_9gb_text_file_never_writes_past_the_limit(tmp_path: Path) -> None:
    size = 1904 * MB  # 119 × 16 MiB
    honest = zeros_member("notes.txt", size)
    zpath = tmp_path / "notes.zip"
    zip_members(zpath, [honest, stored_member("cat.jpg", (DATA / "images" / "cat.jpg").read_bytes())])
    assert zpath.stat().st_size < 4 * MB
    budget = UploadBudget(4 * GB, 100)
    res = extract_zip(zpath, tmp_path / "out", budget, max_file_bytes=8 * MB, max_text_bytes=8 * MB)
    assert [p.name for p in res.extracted] == ["cat.jpg"]
    assert "notes.txt" in res.problems[0].path and "1,904.0 MB unpacked" in res.problems[0].reason
    assert "(CROSSMODAL_MAX_FILE_BYTES)" in res.problems[0].reason
    assert 4 * GB - budget.bytes_left == res.bytes_written == (DATA / "images" / "cat.jpg").stat().st_size
    # a header that lies (declares 1 MB) cannot make the stream write more than that
    lying = (honest[0], honest[1], 8, honest[3], 1 * MB)
    zip_members(zpath, [lying])
    budget = UploadBudget(4 * GB, 100)
    res = extract_zip(zpath, tmp_path / "out2", budget, max_file_bytes=8 * MB, max_text_bytes=8 * MB)
    assert not res.extracted and "cannot be extracted" in res.problems[0].reason
    assert 4 * GB - budget.bytes_left <= 1 * MB + BLOCK
    assert not [p for p in (tmp_path / "out2").rglob("*") if p.is_file()]  # the partial file is gone


def test_a_zip_over_the_upload_budget_is_refused_before_writing(tmp_path: Path) -> None:
    zpath = tmp_path / "many.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for i in range(5):
            zf.writestr(f"n{i}.txt", "note")
    with pytest.raises(UserError, match=r"5 files to add; only 3 more fit \(CROSSMODAL_WORKSPACE_MAX_FILES\)"):
        extract_zip(zpath, tmp_path / "out", UploadBudget(MB, 3, "CROSSMODAL_WORKSPACE_MAX_BYTES", "CROSSMODAL_WORKSPACE_MAX_FILES"), MB)
    with pytest.raises(UserError, match=r"\(CROSSMODAL_WORKSPACE_MAX_BYTES\)"):
        extract_zip(zpath, tmp_path / "out", UploadBudget(10, 30, "CROSSMODAL_WORKSPACE_MAX_BYTES", "CROSSMODAL_WORKSPACE_MAX_FILES"), MB)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.txt"))
