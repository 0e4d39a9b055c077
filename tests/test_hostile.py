"""Hostile inputs: every file in tests/data/hostile (see its README.md) gets exactly its expected outcome.

One indexing run over the whole folder (offline preset, fake encoders: decoding is the subject) must not raise; each file is then checked on
its own (one test per file), the collection must be consistent, and the CLI must list the errors per
file without a traceback. Expectations are written as the behaviour *should* be.

The run is module-scoped (like conftest's ``indexed``), so its Config is built with ``load_config`` rather
than the function-scoped ``config`` fixture. If the one-call run raises, the files are re-indexed one by
one into a fresh collection so the per-file tests still say which file does what.
"""

from __future__ import annotations

import json
import os
import shutil
import traceback
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image

from crossmodal_demo.cli.main import main
from crossmodal_demo.config import Config, load_config
from crossmodal_demo.index.pipeline import IndexReport, index_paths
from crossmodal_demo.index.store import Collection
from crossmodal_demo.ingest.media import load_audio, load_image, modality_of
from crossmodal_demo.retrieval.library import Library, open_library
from tests.fakes import fake_overrides
from tests.test_collection import assert_consistent

HOSTILE = Path(__file__).parent / "data" / "hostile"
MAX_AUDIO_SECONDS = 60

# file (relative to the indexed folder) -> expected outcome; must match the README.md table.
#   "indexed[, note: <fragment>]"   an item is added (and a note containing <fragment> is attached)
#   "reported: <fragment>"          exactly one problem for the file, its reason contains <fragment>
#   "caption: <how>, '<fragment>'"  a sidecar caption: never an item; a problem/note mentions <fragment>
#   "ignored"                       listed as a file of another type
#   "skipped"                       silently not indexed (no item, no problem)
EXPECTED: dict[str, str] = {
    "animated.gif": "indexed",
    "bad_exif.jpg": "indexed",
    "bad_idat.png": "reported: damaged or truncated",
    "badcap.jpg": "indexed",
    "badcap.jpg.txt": "caption: ignored, 'caption sidecar unreadable'",
    "bom_only.md": "reported: only whitespace",
    "bomb_144mpx.png": "reported: the limit is 100 Mpx",
    "café ☕ photo.jpg": "indexed",
    "cmyk.jpg": "indexed",
    "corrupt.webp": "reported: damaged or truncated",
    "corrupt_frames.flac": "reported: damaged",
    "corrupt_scan.jpg": "indexed",
    "empty_audio.wav": "reported: is empty (0 bytes)",
    "empty_image.jpg": "reported: is empty (0 bytes)",
    "empty_text.txt": "reported: is empty (0 bytes)",
    "eps_named.jpg": "reported: not a readable image",
    "exif_rotated.jpg": "indexed",
    "good.flac": "indexed",
    "good.ogg": "indexed",
    "good.webp": "indexed",
    "good_cat.jpg": "indexed",
    "good_note.txt": "indexed",
    "good_tone.wav": "indexed",
    "grey16.png": "indexed",
    "grey_alpha.png": "indexed",
    "header_only.png": "reported: not a readable image",
    "hour_header.flac": "reported: limit is 60 s",
    "hour_header.wav": "indexed",
    "huge_dims.bmp": "reported: bomb",
    "huge_dims.gif": "reported: bomb",
    "huge_dims.jpg": "reported: bomb",
    "huge_dims.png": "reported: bomb",
    "huge_dims.tiff": "reported: bomb",
    "huge_dims.webp": "reported: bomb",
    "invalid_utf8.txt": "reported: not valid UTF-8",
    "jpeg_named.png": "indexed",
    "long_note.md": "indexed, note: text truncated",
    "make_hostile.py": "ignored",
    "multipage.tiff": "indexed",
    "nan_inf.wav": "reported: NaN or infinite",
    "nul_bytes.txt": "reported: contains NUL bytes",
    "one_bit.png": "indexed",
    "palette_alpha.png": "indexed",
    "photo with spaces.jpg": "indexed",
    "photo.jpg": "indexed",
    "photo.jpg.txt": "caption: clipped, 'kept the first'",
    "png_named.wav": "reported: It looks like a PNG image",
    "random_bytes.mp3": "reported: not a readable audio file",
    "README.md": "indexed",
    "rgb48.png": "indexed",
    "silence.wav": "indexed, note: no speech found",
    "sliver_2000x1.png": "reported: aspect ratio",
    "test-1234Hz-le-1ch-10S-20bit-extra.wav": "indexed",
    "test-44100Hz-le-1ch-4bytes-early-eof-no-data.wav": "reported: not a readable audio file",
    "test-44100Hz-le-1ch-4bytes-early-eof.wav": "indexed",
    "test-44100Hz-le-1ch-4bytes-incomplete-chunk.wav": "reported: not a readable audio file",
    "test-8000Hz-le-3ch-5S-24bit-inconsistent.wav": "indexed",
    "test-8000Hz-le-3ch-5S-36bit.wav": "reported: not a readable audio file",
    "test-8000Hz-le-5ch-9S-5bit.wav": "indexed",
    "text_named.mp3": "reported: It looks like a text file",
    "tiny_1x1.png": "indexed",
    "truncated.gif": "reported: damaged or truncated",
    "truncated.jpg": "reported: damaged or truncated",
    "truncated.mp3": "indexed",
    "truncated.ogg": "reported: not a readable audio file",
    "truncated.png": "reported: damaged or truncated",
    "truncated.webp": "reported: cannot open the image",
    "utf16_bom.txt": "indexed",
    "wav_named.jpg": "reported: It looks like a RIFF file",
    "whitespace_only.md": "reported: only whitespace",
    "zero_dims.png": "reported: not a readable image",
    "zero_rate.wav": "reported: not a readable audio file",
    "ztxt_bomb.png": "reported: cannot open the image",
}
# Created at run time in runtime/ (newlines and symlinks do not belong in git).
RUNTIME: dict[str, str] = {
    "runtime/new\nline.jpg": "indexed",
    "runtime/escape.jpg": "reported: symlink points outside the indexed folder",
    "runtime/dangling.png": "reported: broken symlink",
    "runtime/inside_link.jpg": "skipped",  # symlink to ../good_cat.jpg: the same file, indexed once
}
ALL = {**EXPECTED, **RUNTIME}
# Words a reason must NOT contain (a hint that contradicts the reason).
FORBIDDEN = {"nul_bytes.txt": "It looks like a text file"}
CAPTION_OF = {"photo.jpg.txt": "photo.jpg", "badcap.jpg.txt": "badcap.jpg"}


@dataclass
class Run:
    """The outcome of indexing the hostile folder once: report, library, and per-file facts."""

    folder: Path
    lib: Library
    config: Config
    report: IndexReport
    crash: str | None = None  # traceback if the one-call run raised (then files were indexed one by one)
    raised: dict[str, str] = field(default_factory=dict)  # file -> exception, in the one-by-one fallback
    items: dict[str, int] = field(default_factory=dict)  # file -> item id

    def rel(self, path: str) -> str:
        return os.path.relpath(path, self.folder)


def make_folder(tmp: Path) -> Path:
    folder = tmp / "hostile"
    shutil.copytree(HOSTILE, folder, ignore=shutil.ignore_patterns("__pycache__"))
    rt = folder / "runtime"
    rt.mkdir()
    im = Image.open(HOSTILE / "good_cat.jpg").convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    im.save(rt / "new\nline.jpg", quality=80)
    outside = tmp / "outside"
    outside.mkdir()
    shutil.copy(HOSTILE / "photo.jpg", outside / "secret.jpg")
    (rt / "escape.jpg").symlink_to(outside / "secret.jpg")
    (rt / "dangling.png").symlink_to(rt / "no_such_target.png")
    (rt / "inside_link.jpg").symlink_to(Path("..") / "good_cat.jpg")
    return folder.resolve()


def merge(into: IndexReport, rep: IndexReport) -> None:
    for name in ("added", "duplicates", "replaced", "problems", "notes", "ignored"):
        getattr(into, name).extend(getattr(rep, name))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    tmp = tmp_path_factory.mktemp("hostile")
    folder = make_folder(tmp)
    config = load_config(indexes_dir=tmp / "indexes", max_audio_seconds=MAX_AUDIO_SECONDS)
    lib = open_library(config, "hostile", preset="offline", create=True, overrides=fake_overrides())
    out = Run(folder, lib, config, IndexReport())
    try:
        out.report = index_paths(lib.collection, lib.encoders, [folder], config)
    except Exception:
        # The one-call run must not raise (test_indexing_the_folder_does_not_raise). To still say which
        # file does what, index the files one by one and record the ones that raise.
        out.crash = traceback.format_exc()
        lib.collection.close()
        lib = out.lib = open_library(config, "hostile-one-by-one", preset="offline", create=True, overrides=fake_overrides())
        out.report = IndexReport()
        for entry in sorted(folder.iterdir()):
            if entry.name in CAPTION_OF or entry.is_dir() or modality_of(entry) is None:
                continue  # sidecars are read with their image; runtime/ and other types need the folder walk
            try:
                merge(out.report, index_paths(lib.collection, lib.encoders, [entry], config))
            except Exception as exc:
                out.raised[entry.name] = f"{type(exc).__name__}: {exc}"
    for item in lib.collection.items():
        out.items[out.rel(item.path)] = item.id
    return out


def test_indexing_the_folder_does_not_raise(run: Run) -> None:
    if run.crash is not None:
        pytest.fail(f"index_paths raised on the hostile folder:\n{run.crash}", pytrace=False)


def test_every_file_has_an_expectation() -> None:
    on_disk = {p.name for p in HOSTILE.iterdir() if p.name != "__pycache__"}
    assert on_disk == set(EXPECTED), on_disk ^ set(EXPECTED)
    assert len(on_disk) >= 40 and sum(p.stat().st_size for p in HOSTILE.iterdir() if p.is_file()) < 1_500_000


def test_readme_table_matches_the_expectations() -> None:
    rows = {}
    for line in (HOSTILE / "README.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            assert len(cells) == 5 and all(cells), line
            rows[cells[0].strip("`")] = cells[2]
    assert {k: v for k, v in rows.items() if not k.startswith("runtime/")} == EXPECTED
    assert {k: v for k, v in rows.items() if k.startswith("runtime/")} == {
        k.replace("\n", "\\n"): v for k, v in RUNTIME.items()
    }


@pytest.mark.parametrize("name", sorted(ALL), ids=lambda n: n.replace("\n", "\\n"))
def test_outcome(run: Run, name: str) -> None:
    expected = ALL[name]
    if run.crash is not None and (name.startswith("runtime/") or expected == "ignored"):
        pytest.skip("covered only by the one-call run, which raised")
    raised = run.raised.get(name)
    assert raised is None, f"indexing {name!r} raised {raised}"
    problems = [p.reason for p in run.report.problems if run.rel(p.path) == name]
    notes = [p.reason for p in run.report.notes if run.rel(p.path) == name]
    indexed = name in run.items
    if expected.startswith("indexed"):
        assert indexed and not problems, f"{name!r} not indexed; problems: {problems}"
        if ", note: " in expected:
            frag = expected.split(", note: ", 1)[1]
            assert any(frag in n for n in notes), f"{name!r}: expected a note with {frag!r}, got {notes}"
    elif expected.startswith("reported: "):
        frag = expected.split(": ", 1)[1]
        assert not indexed, f"{name!r} was indexed; expected a problem containing {frag!r}"
        assert len(problems) == 1 and frag in problems[0], f"{name!r}: expected one problem with {frag!r}, got {problems}"
        if name in FORBIDDEN:
            assert FORBIDDEN[name] not in problems[0], f"{name!r}: contradictory reason {problems[0]!r}"
    elif expected.startswith("caption: "):
        frag = expected.split("'")[1]
        assert not indexed, f"caption sidecar {name!r} was indexed as an item"
        assert any(frag in r for r in problems + notes), f"{name!r}: expected {frag!r} in {problems + notes}"
    elif expected == "ignored":
        assert [run.rel(p) for p in run.report.ignored].count(name) == 1 and not problems
    elif expected == "skipped":
        assert not indexed and not problems
    else:  # pragma: no cover
        raise AssertionError(f"bad expectation {expected!r}")


def test_nothing_else_is_reported_and_no_duplicates(run: Run) -> None:
    assert {run.rel(p.path) for p in run.report.problems} <= set(ALL)
    assert run.report.duplicates == [], "every hostile file has distinct bytes"
    assert set(run.items) <= {n for n, e in ALL.items() if e.startswith("indexed")}


def test_captions_are_clipped_or_dropped_and_the_photos_kept(run: Run) -> None:
    coll = run.lib.collection
    photo = coll.get(run.items["photo.jpg"])
    assert photo.caption is not None and len(photo.caption) == run.config.max_caption_chars
    assert photo.caption.startswith("A very long caption")
    assert coll.get(run.items["badcap.jpg"]).caption is None
    # the good files beside the hostile ones are all there, with content vectors
    for good in ("good_cat.jpg", "good.webp", "good_note.txt", "good_tone.wav", "good.flac", "good.ogg"):
        assert good in run.items


def test_collection_is_consistent(run: Run) -> None:
    assert_consistent(run.lib.collection)
    run.lib.collection.flush()
    reopened = Collection.open(run.config.indexes_dir, run.lib.collection.name)
    try:
        assert reopened.rebuilt == []
        assert reopened.counts()["total"] == len(run.items)
        assert_consistent(reopened)
    finally:
        reopened.close()


def test_exif_rotation_is_applied() -> None:
    stored = Image.open(HOSTILE / "exif_rotated.jpg").size
    assert load_image(HOSTILE / "exif_rotated.jpg").size == (stored[1], stored[0])


def test_a_header_claiming_an_hour_allocates_only_what_is_there() -> None:
    tracemalloc.start()
    try:
        clip = load_audio(HOSTILE / "hour_header.wav", max_seconds=MAX_AUDIO_SECONDS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert clip.seconds <= 0.5
    assert peak < 20_000_000, f"peak {peak / 1e6:.0f} MB while reading a 16 kB file"  # one hour would be 230 MB


def test_cli_lists_errors_per_file_without_traceback(run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["index", str(run.folder), "--collection", "cli-hostile", "--indexes-dir", str(tmp_path / "ix"),
                 "--max-audio-seconds", str(MAX_AUDIO_SECONDS), "--json"], encoders=fake_overrides())
    out, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    doc = json.loads(out)
    errors = {os.path.relpath(e["path"], run.folder): e["reason"] for e in doc["errors"]}
    want = {n for n, e in ALL.items() if e.startswith("reported: ")}
    assert want <= set(errors), want - set(errors)
    for name in want:
        assert ALL[name].split(": ", 1)[1] in errors[name], (name, errors[name])
    assert doc["added"] == len([e for e in ALL.values() if e.startswith("indexed")])
