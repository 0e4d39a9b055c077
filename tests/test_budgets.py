"""Ingest budgets of issue 11 at the layer that owns them: each limit comes from :class:`Config`, is
checked before the work, and its refusal names the setting. The bombs themselves, run end to end with
their peak memory measured, are in tests/test_bombs.py.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from crossmodal_demo.config import load_config
from crossmodal_demo.errors import MediaError, UserError
from crossmodal_demo.ingest import media
from crossmodal_demo.ingest.audio import AudioLimits, check_audio_file, load_audio
from crossmodal_demo.ingest.media import ImageLimits, check_image_file, load_text
from crossmodal_demo.ingest.uploads import BLOCK, UploadBudget, extract_zip
from tests.bombs import stored_member, zeros_member, zip_members

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
MB = 1024**2


# ----------------------------------------------------------------------------------------- images


MEASURE = r"""
import sys
from pathlib import Path
from crossmodal_demo.ingest import media
def hwm():
    return int([l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]) * 1024
need = media.check_image_file(Path(sys.argv[1])).decoded_bytes
idle = hwm()
media.load_image(Path(sys.argv[1]))
print(need, hwm() - idle)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
@pytest.mark.parametrize("mode", ["1", "P", "RGBA", "I;16", "F"])
def test_decoded_bytes_is_what_decoding_really_allocates(tmp_path: Path, mode: str) -> None:
    # The budget counts what Pillow holds at the peak (storage of the mode, the full-size copy a
    # reduction needs, the RGB conversion of the reduced image), measured in a fresh process: a 1-bit
    # page costs 2 B/px, not the 4 B/px of a full-size RGB copy, because it is reduced before converting.
    w, h = 4800, 3200
    im = Image.fromarray(np.zeros((h, w), np.uint16)) if mode == "I;16" else Image.new(mode, (w, h))
    p = tmp_path / ("x.tiff" if mode in ("I;16", "F") else "x.png")
    im.save(p, **({"transparency": 0} if mode == "P" else {}))
    r = subprocess.run([sys.executable, "-c", MEASURE, str(p)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    need, used = map(int, r.stdout.split())
    assert abs(used - need) < 0.05 * need + 4 * MB, f"estimated {need / MB:.0f} MB, used {used / MB:.0f} MB"
    if mode == "1":  # 1 B/px storage + 1 B/px of "L" to reduce it: no full-size RGB copy (4 B/px) is made
        assert 2 * w * h <= need < 2 * w * h + 2 * MB


def test_image_limits_come_from_the_config(tmp_path: Path) -> None:
    p = tmp_path / "page.png"
    Image.new("1", (3000, 2000)).save(p)
    limits = ImageLimits.from_config(load_config(environ={"CROSSMODAL_MAX_DECODED_MB": "4", "CROSSMODAL_MAX_IMAGE_MPX": "50"}))
    assert limits == ImageLimits(max_mpx=50.0, max_decoded_bytes=4 * MB)
    with pytest.raises(MediaError, match=r"3,000×2,000 px in mode 1: decoding it needs about 12 MB; the limit is 4 MB "
                                         r"\(CROSSMODAL_MAX_DECODED_MB\)"):
        check_image_file(p, limits)


# ------------------------------------------------------------------------------------------ audio


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


def test_audio_limits_come_from_the_config_and_queries_have_their_own(tmp_path: Path) -> None:
    cfg = load_config(environ={"CROSSMODAL_MAX_AUDIO_SAMPLE_RATE": "44100", "CROSSMODAL_MAX_AUDIO_CHANNELS": "1",
                               "CROSSMODAL_MAX_AUDIO_SECONDS": "30", "CROSSMODAL_MAX_QUERY_AUDIO_SECONDS": "2"})
    assert AudioLimits.from_config(cfg) == AudioLimits(30.0, 44100, 1, "CROSSMODAL_MAX_AUDIO_SECONDS")
    assert AudioLimits.query(cfg) == AudioLimits(2.0, 44100, 1, "CROSSMODAL_MAX_QUERY_AUDIO_SECONDS")
    assert AudioLimits.query(load_config(environ={})).max_seconds == 60.0  # the default for queries
    p = tmp_path / "stereo.wav"
    sf.write(p, np.zeros((48000 * 3, 2), np.int16), 48000, subtype="PCM_16")
    with pytest.raises(MediaError, match=r"48,000 Hz; the limit is 44,100 Hz \(CROSSMODAL_MAX_AUDIO_SAMPLE_RATE\)"):
        load_audio(p, limits=AudioLimits.from_config(cfg))
    with pytest.raises(MediaError, match=r"3\.0 s long; the limit is 2 s \(CROSSMODAL_MAX_QUERY_AUDIO_SECONDS\)"):
        load_audio(p, limits=AudioLimits.query(load_config(environ={"CROSSMODAL_MAX_QUERY_AUDIO_SECONDS": "2"})))
    assert load_audio(p, limits=AudioLimits.from_config(load_config(environ={}))).seconds == pytest.approx(3.0, abs=1e-3)


def test_audio_header_estimate_bounds_what_decoding_allocates(tmp_path: Path) -> None:
    p = tmp_path / "six.wav"
    with sf.SoundFile(p, "w", 96000, 6, "PCM_16") as f:
        for _ in range(20):
            f.write(np.zeros((96000, 6), np.int16))
    info = check_audio_file(p)
    assert (info.sr, info.channels, info.frames) == (96000, 6, 96000 * 20)
    tracemalloc.start()
    try:
        clip = load_audio(p, target_sr=48000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert clip.samples.nbytes == 48000 * 20 * 4
    # a whole-file float32 decode would be 46 MB; blocks + the mono result at 48 kHz stay under the estimate
    assert peak <= info.decoded_bytes(48000) < 12 * MB


# ------------------------------------------------------------------------------------------- text


def test_text_files_over_the_text_limit_are_refused_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "long.txt"
    p.write_bytes(b"word " * 300_000)  # 1.5 MB
    monkeypatch.setattr(media, "open", lambda *a, **k: pytest.fail("opened"), raising=False)
    with pytest.raises(MediaError, match=r"'long.txt' is 1\.4 MB; the limit is 1\.0 MB \(CROSSMODAL_MAX_TEXT_BYTES\)"):
        load_text(p, max_bytes=load_config(environ={"CROSSMODAL_MAX_TEXT_BYTES": str(MB)}).max_text_bytes)
    monkeypatch.undo()
    assert load_text(p).startswith("word word")  # the default (10 MB) takes it


# ------------------------------------------------------------------------------------------- zips


class _Endless:
    """A zip member stream that never ends (a member whose real size the headers do not bound)."""

    def __init__(self) -> None:
        self.served = 0

    def read(self, n: int = -1) -> bytes:
        n = BLOCK if n < 0 else n
        self.served += n
        return bytes(n)

    def __enter__(self) -> "_Endless":
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def test_zip_members_are_cut_at_the_limit_while_streaming(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    zpath = tmp_path / "notes.zip"
    zip_members(zpath, [stored_member("notes.txt", b"small header, endless stream")])
    stream = _Endless()
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, member, *a, **k: stream)
    budget = UploadBudget(4 * 1024 * MB, 10)
    res = extract_zip(zpath, tmp_path / "out", budget, max_file_bytes=8 * MB, max_text_bytes=3 * MB)
    assert stream.served == 3 * MB + 1  # one byte past the limit is read, and then nothing more
    assert not res.extracted and not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert res.problems[0].reason == ("'notes.txt' is larger than its declared size; the limit is 3.0 MB per file "
                                      "(CROSSMODAL_MAX_TEXT_BYTES); stopped there and skipped")
    assert 4 * 1024 * MB - budget.bytes_left <= 3 * MB  # never charged (or written) past the limit


def test_a_zip_header_that_understates_a_member_cannot_make_it_longer(tmp_path: Path) -> None:
    honest = zeros_member("notes.txt", 32 * MB)
    zpath = tmp_path / "notes.zip"
    zip_members(zpath, [(honest[0], honest[1], 8, honest[3], 1 * MB), stored_member("cat.jpg", (DATA / "images" / "cat.jpg").read_bytes())])
    budget = UploadBudget(1024 * MB, 100)
    res = extract_zip(zpath, tmp_path / "out", budget, max_file_bytes=8 * MB, max_text_bytes=8 * MB)
    assert [p.name for p in res.extracted] == ["cat.jpg"] and "cannot be extracted" in res.problems[0].reason
    assert 1024 * MB - budget.bytes_left <= 1 * MB + BLOCK + res.bytes_written
    assert not (tmp_path / "out" / "notes.txt").exists()  # the partial file is gone


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
