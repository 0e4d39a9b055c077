"""The decompression bombs of issue 11, each run through the real ingest path in its own process.

A bomb does what an upload does (``extract_zip`` with the configured limits, when it is a zip) and then
what indexing does (``index_paths`` into a new collection, with the fake encoders of tests/fakes.py, so
the cost measured is decoding, not a model). Every run also holds a good file, which must be indexed
beside the refused or bounded bomb. The bar is the issue's: peak ≤ idle + 1.5 GB.

Memory: Pillow and libsndfile allocate outside Python's allocator, so only the process's peak resident
size tells. One server process per module imports everything and indexes a small warm-up corpus once
(lazy imports such as torch for the label vocabulary, ~0.6 GB, are a fixed cost of any indexing process,
not of the input); it then forks one process per bomb. That process resets its high-water mark
(``/proc/self/clear_refs``), so "idle" is the warmed server's resident size and "peak" its own
``VmHWM`` after the run. (``ru_maxrss`` cannot be reset, and a child's starts at its parent's size.)
Measured peaks are printed (``pytest -s``); settings reach a bomb through its ``Config`` only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from pathlib import Path
from typing import Iterator

import pytest

from tests.bombs import png_1bit, silence, stored_member, tiff_float, zeros_member, zip_members

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
GB, MB = 1024**3, 1024**2
PEAK_BAR = 1.5 * GB  # the bar: peak ≤ idle + 1.5 GB

pytestmark = pytest.mark.skipif(not Path("/proc/self/clear_refs").exists() or not hasattr(os, "fork"),
                                reason="measures peak memory with Linux /proc (clear_refs, VmHWM) and fork")

SERVER = r"""
import json, os, sys, traceback
from pathlib import Path
from crossmodal_demo.config import load_config
from crossmodal_demo.index.pipeline import index_paths
from crossmodal_demo.ingest.uploads import UploadBudget, extract_zip
from crossmodal_demo.retrieval.library import open_library
from tests.fakes import fake_overrides, write_fake_corpus

def hwm():
    return int([l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]) * 1024

def bomb(src, work, env):
    open("/proc/self/clear_refs", "w").write("5")  # high-water mark := resident size now
    idle = hwm()
    config = load_config(environ={**os.environ, "CROSSMODAL_INDEXES": str(work / "indexes"), **env})
    lib = open_library(config, "bombs", preset="offline", create=True, overrides=fake_overrides())
    problems = []
    if src.suffix == ".zip":  # what an upload does (app/library_actions.py), with the configured limits
        res = extract_zip(src, work / "upload", UploadBudget(config.max_upload_bytes, config.max_upload_files),
                          config.max_file_bytes, max_manifest_bytes=config.max_manifest_bytes,
                          max_text_bytes=config.max_text_bytes)
        problems += [[p.path, p.reason] for p in res.problems]
        src = work / "upload"
    report = index_paths(lib.collection, lib.encoders, [src], config)
    problems += [[p.path, p.reason] for p in report.problems]
    return dict(idle=idle, peak=hwm(), indexed=sorted(Path(i.path).name for i in lib.collection.items()),
                problems=problems, on_disk=sum(p.stat().st_size for p in src.rglob("*") if p.is_file()),
                seconds=report.seconds)

warm = Path(sys.argv[1])
config = load_config(environ={**os.environ, "CROSSMODAL_INDEXES": str(warm / "indexes")})
lib = open_library(config, "warmup", preset="offline", create=True, overrides=fake_overrides())
index_paths(lib.collection, lib.encoders, [write_fake_corpus(warm / "corpus")], config)
lib.collection.close()
print("ready", flush=True)
for line in sys.stdin:
    job = json.loads(line)
    result = Path(job["work"]) / "result.json"
    pid = os.fork()
    if pid == 0:
        try:
            out = bomb(Path(job["src"]), Path(job["work"]), job["env"])
        except BaseException:
            out = dict(error=traceback.format_exc())
        result.write_text(json.dumps(out))
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if not result.exists():
        result.write_text(json.dumps(dict(error=f"the bomb process died (wait status {status})")))
    print("done", flush=True)
"""


class BombServer:
    """A warmed interpreter that runs each bomb in a forked process of its own (see module docstring)."""

    def __init__(self, warm: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CROSSMODAL_")}
        env.update({"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)})
        self.proc = subprocess.Popen([sys.executable, "-W", "ignore", "-c", SERVER, str(warm)], cwd=ROOT, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.ready = False  # waited for at the first run: the warm-up overlaps with building the bombs

    def _wait_ready(self) -> None:
        assert self.proc.stdout is not None
        if not self.ready:
            assert self.proc.stdout.readline().strip() == "ready", "the bomb server failed to start"
            self.ready = True

    def run(self, src: Path, work: Path, label: str, **settings: str) -> dict:
        """Upload (if a zip) and index ``src`` with ``CROSSMODAL_*`` ``settings``; returns the bomb's report
        with ``over_idle`` (peak − idle, bytes), and prints the measurement."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._wait_ready()
        work.mkdir(parents=True, exist_ok=True)
        env = {f"CROSSMODAL_{k.upper()}": v for k, v in settings.items()}
        self.proc.stdin.write(json.dumps(dict(src=str(src), work=str(work), env=env)) + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "done", "the bomb server died"
        out = json.loads((work / "result.json").read_text())
        assert "error" not in out, out.get("error")
        out["over_idle"] = out["peak"] - out["idle"]
        print(f"\n[bomb] {label}: peak {out['over_idle'] / MB:,.0f} MB over idle ({out['idle'] / MB:,.0f} MB), "
              f"{out['seconds']:.1f} s indexing")
        return out

    def close(self) -> None:
        """Stop the server (end of its input) and wait for it."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BombServer]:
    srv = BombServer(tmp_path_factory.mktemp("warm"))
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def flac_thread(server: BombServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[threading.Thread, Path]]:
    """Starts encoding the 590 s FLAC (~5 s of libsndfile, which releases the GIL) in the background
    while the server warms up and the image bombs run; :func:`flac_folder` waits for it."""
    d = tmp_path_factory.mktemp("flac")
    t = threading.Thread(target=silence, args=(d / "silence.flac", 96_000, 8, 590), daemon=True)
    t.start()
    yield t, d
    t.join()


def reasons(out: dict, name: str) -> list[str]:
    """Problems reported for files whose path contains ``name``."""
    return [why for path, why in out["problems"] if name in path]


# ----------------------------------------------------------------------------------------- images


@pytest.fixture(scope="module")
def pages_zip(flac_thread: object, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The issue's 3 KB-class zip: twelve 90-Mpx 1-bit PNGs and one good photo."""
    d = tmp_path_factory.mktemp("pages")
    with zipfile.ZipFile(d / "pages.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(12):  # 90 Mpx each: under the 100 Mpx limit, ~11 KB on disk; distinct files
            png_1bit(d / "page.png", 9487, 9487, note=f"page {i}")
            zf.write(d / "page.png", f"page{i:02}.png")
        zf.write(DATA / "images" / "cat.jpg", "cat.jpg")
    assert (d / "pages.zip").stat().st_size < 30_000
    return d / "pages.zip"


def test_zip_of_twelve_90mpx_one_bit_pngs_is_indexed_within_the_memory_bar(server: BombServer, pages_zip: Path, tmp_path: Path) -> None:
    # Default budgets: a page costs what Pillow allocates (1 B/px storage + 1 B/px to make it reducible,
    # ~180 MB), not the 270-360 MB of a full-size RGB copy, because pages are box-reduced before conversion.
    out = server.run(pages_zip, tmp_path, "12 × 90-Mpx 1-bit PNGs, default budgets")
    assert out["problems"] == [] and out["indexed"] == ["cat.jpg", *(f"page{i:02}.png" for i in range(12))]
    assert out["over_idle"] < PEAK_BAR  # was 6.2 GB


def test_zip_of_90mpx_one_bit_pngs_over_the_decoded_budget_is_refused_from_headers(server: BombServer, pages_zip: Path, tmp_path: Path) -> None:
    out = server.run(pages_zip, tmp_path, "12 × 90-Mpx 1-bit PNGs, CROSSMODAL_MAX_DECODED_MB=128", max_decoded_mb="128")
    assert out["indexed"] == ["cat.jpg"]
    refused = reasons(out, "page")
    assert len(refused) == 12 and all(
        "9,487×9,487 px in mode 1" in m and "the limit is 128 MB (CROSSMODAL_MAX_DECODED_MB)" in m for m in refused)
    assert out["over_idle"] < 100 * MB  # refused from the header: nothing decoded


def test_98mpx_float_tiff(server: BombServer, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    tiff_float(folder / "float.tif", 9900, 9900)  # ~680 KB, 98 Mpx of 32-bit floats
    shutil.copy(DATA / "images" / "coins.png", folder / "coins.png")
    out = server.run(folder, tmp_path / "a", "98-Mpx float TIFF, default budgets")
    assert out["problems"] == [] and out["indexed"] == ["coins.png", "float.tif"]
    assert out["over_idle"] < PEAK_BAR  # was +3.4 GB
    out = server.run(folder, tmp_path / "b", "98-Mpx float TIFF, CROSSMODAL_MAX_DECODED_MB=256", max_decoded_mb="256")
    assert out["indexed"] == ["coins.png"]
    (why,) = reasons(out, "float.tif")
    assert "9,900×9,900 px in mode F" in why and "the limit is 256 MB (CROSSMODAL_MAX_DECODED_MB)" in why
    assert out["over_idle"] < 100 * MB  # refused from the header: nothing decoded


# ------------------------------------------------------------------------------------------ audio


@pytest.fixture(scope="module")
def flac_folder(flac_thread: tuple[threading.Thread, Path]) -> Path:
    """96 kHz × 8 channels × 590 s of silence (468 KB of FLAC, 453 M samples) beside a good beep."""
    t, d = flac_thread
    t.join()
    assert (d / "silence.flac").stat().st_size < 1 * MB
    shutil.copy(DATA / "sounds" / "beep.wav", d / "beep.wav")
    return d


def test_96khz_8_channel_590_s_flac_is_refused_from_its_header(server: BombServer, flac_folder: Path, tmp_path: Path) -> None:
    out = server.run(flac_folder, tmp_path, "96 kHz × 8 ch × 590 s FLAC, default budgets")
    assert out["indexed"] == ["beep.wav"]
    (why,) = reasons(out, "silence.flac")
    assert "453,120,000 samples (590 s × 96,000 Hz × 8 channels)" in why
    assert "(CROSSMODAL_MAX_AUDIO_SECONDS × 48 kHz × 8 channels)" in why
    assert out["over_idle"] < 100 * MB  # was +2.1 GB


@pytest.mark.slow  # ~6 s: 453 M samples really decoded and resampled
def test_96khz_8_channel_590_s_flac_within_a_raised_budget_is_decoded_in_blocks(server: BombServer, flac_folder: Path, tmp_path: Path) -> None:
    # A budget raised to fit it: the file is decoded 64 Ki frames at a time, each block down-mixed and
    # resampled before the next; a full-size float32 decode alone would be 1.7 GB.
    out = server.run(flac_folder, tmp_path, "96 kHz × 8 ch × 590 s FLAC, CROSSMODAL_MAX_AUDIO_SECONDS=1200",
                    max_audio_seconds="1200")
    assert out["problems"] == [] and out["indexed"] == ["beep.wav", "silence.flac"]
    assert out["over_idle"] < 300 * MB


@pytest.mark.parametrize("rate, channels, setting", [(384_000, 2, "CROSSMODAL_MAX_AUDIO_SAMPLE_RATE"),
                                                      (48_000, 16, "CROSSMODAL_MAX_AUDIO_CHANNELS")])
def test_audio_over_the_rate_or_channel_cap_is_refused(server: BombServer, tmp_path: Path, rate: int, channels: int, setting: str) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    silence(folder / "wide.wav", rate, channels, 1)  # WAV: FLAC itself stops at 8 channels
    shutil.copy(DATA / "sounds" / "beep.wav", folder / "beep.wav")
    out = server.run(folder, tmp_path / "w", f"{rate} Hz × {channels} ch WAV")
    assert out["indexed"] == ["beep.wav"]
    (why,) = reasons(out, "wide.wav")
    assert f"({setting})" in why


# ------------------------------------------------------------------------------------ text, zips


def test_zip_holding_a_20mb_captions_csv(server: BombServer, tmp_path: Path) -> None:
    line = b"photos/some-long-folder-name/picture-0000.jpg,a caption that repeats itself\n"
    zpath = tmp_path / "captions.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("captions.csv", b"path,caption\n" + line * (20 * MB // len(line)))
        zf.write(DATA / "images" / "cat.jpg", "cat.jpg")
    assert zpath.stat().st_size < 100_000
    out = server.run(zpath, tmp_path / "w", "zip holding a 20 MB captions.csv")
    assert out["indexed"] == ["cat.jpg"] and out["on_disk"] == (DATA / "images" / "cat.jpg").stat().st_size
    (why,) = reasons(out, "captions.csv")
    assert "20.0 MB unpacked; the limit is 10.0 MB per file (CROSSMODAL_MAX_MANIFEST_BYTES)" in why
    assert out["over_idle"] < 100 * MB  # was +1.8 GB and 55 s of CPU
    # the same file already in a folder being indexed: refused from its size, unread
    folder = tmp_path / "folder"
    with zipfile.ZipFile(zpath) as zf:
        zf.extractall(folder)
    out = server.run(folder, tmp_path / "f", "folder holding a 20 MB captions.csv")
    assert out["indexed"] == ["cat.jpg"]
    assert reasons(out, "captions.csv") == [
        "caption manifest is 20.0 MB; the limit is 10.0 MB (CROSSMODAL_MAX_MANIFEST_BYTES); ignored"]
    assert out["over_idle"] < 100 * MB


def test_zip_holding_a_1_9gb_text_file(server: BombServer, tmp_path: Path) -> None:
    zpath = tmp_path / "notes.zip"
    cat = (DATA / "images" / "cat.jpg").read_bytes()
    zip_members(zpath, [zeros_member("notes.txt", 1904 * MB), stored_member("cat.jpg", cat)])
    assert zpath.stat().st_size < 4 * MB
    out = server.run(zpath, tmp_path / "w", "zip holding a 1.9 GB .txt")
    assert out["indexed"] == ["cat.jpg"] and out["on_disk"] == len(cat)  # nothing of the .txt reached the disk
    (why,) = reasons(out, "notes.txt")
    assert "1,904.0 MB unpacked; the limit is 10.0 MB per file (CROSSMODAL_MAX_TEXT_BYTES)" in why
    assert out["over_idle"] < 100 * MB
