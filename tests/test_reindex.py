"""The indexing pipeline does only the work a file needs, within the decoded-bytes budget, and a fault
of the run (model, disk, read-only store) stops it once with one line (fake encoders; fast)."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
from PIL import Image

from crossmodal_demo.config import Config, load_config
from crossmodal_demo.errors import FatalError, MediaError
from crossmodal_demo.index import pipeline
from crossmodal_demo.index.pipeline import index_paths
from crossmodal_demo.index.store import Collection
from crossmodal_demo.ingest.discover import Candidate
from crossmodal_demo.ingest.estimate import estimate_decoded_bytes
from crossmodal_demo.retrieval.library import Library, open_library
from tests.fakes import AUDIO_NAME, TEXT_NAME, FakeAudio, FakeText, fake_overrides, tone
from tests.test_collection import assert_consistent

MB = 1024 * 1024


def write_notes(folder: Path, n: int) -> Path:
    """``n`` tiny distinct text files note0000.txt ... in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"note{i:04d}.txt").write_text(f"note number {i} about topic{i}")
    return folder


def open_lib(config: Config, overrides: dict | None = None) -> Library:
    return open_library(config, "r", preset="offline", create=True, overrides=overrides or fake_overrides())


class Calls:
    """Records the first argument of every call of a patched pipeline function (thread-safe)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
        self.args: list[Any] = []
        self._lock = threading.Lock()
        real = getattr(pipeline, name)

        def spy(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.args.append(args[0])
            return real(*args, **kwargs)

        monkeypatch.setattr(pipeline, name, spy)


@pytest.fixture(scope="module")
def thousand(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_notes(tmp_path_factory.mktemp("thousand") / "notes", 1000)


def test_unchanged_folder_of_1000_files_is_neither_hashed_nor_decoded(
    thousand: Path, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    lib = open_lib(config)
    assert len(index_paths(lib.collection, lib.encoders, [thousand], config).added) == 1000
    decoded, hashed = Calls(monkeypatch, "decode"), Calls(monkeypatch, "file_sha256")
    again = index_paths(lib.collection, lib.encoders, [thousand], config)
    assert decoded.args == [] and hashed.args == []
    assert again.to_json()["unchanged"] == 1000 and again.added == again.duplicates == again.replaced == []


def test_touched_file_is_hashed_not_decoded_and_reported_unchanged(
    tmp_path: Path, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decision: a touched file (new mtime, same bytes) is ``unchanged``; its stored mtime is kept."""
    folder = write_notes(tmp_path / "notes", 5)
    lib = open_lib(config)
    index_paths(lib.collection, lib.encoders, [folder], config)
    touched = folder / "note0002.txt"
    st = touched.stat()
    os.utime(touched, (st.st_atime, st.st_mtime + 100))
    decoded, hashed = Calls(monkeypatch, "decode"), Calls(monkeypatch, "file_sha256")
    rep = index_paths(lib.collection, lib.encoders, [folder], config)
    assert [Path(p).name for p in hashed.args] == ["note0002.txt"] and decoded.args == []
    assert len(rep.unchanged) == 5 and rep.added == rep.duplicates == rep.replaced == []


def test_changed_files_replace_their_old_versions_with_one_remove_per_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_cache: Path
) -> None:
    config = load_config(indexes_dir=tmp_path / "indexes", batch_size=16)
    folder = write_notes(tmp_path / "notes", 30)
    lib = open_lib(config)
    index_paths(lib.collection, lib.encoders, [folder], config)
    old = {Path(it.path).name: it.id for it in lib.collection.items()}
    changed = sorted(old)[:20]
    for name in changed:
        (folder / name).write_text(f"violin concert {name}")
    removes: list[list[int]] = []
    real_remove = lib.collection.remove
    monkeypatch.setattr(lib.collection, "remove", lambda ids, **kw: removes.append(sorted(ids)) or real_remove(ids, **kw))
    rep = index_paths(lib.collection, lib.encoders, [folder], config)
    assert removes == [sorted(old[n] for n in changed[:16]), sorted(old[n] for n in changed[16:])]  # 2 batches
    assert len(rep.added) == 20 and sorted(rep.replaced) == sorted(old[n] for n in changed) and len(rep.unchanged) == 10
    assert lib.collection.counts()["total"] == 30
    assert_consistent(lib.collection)


class NoWeights(FakeAudio):
    """An audio encoder whose model never loads: ``load()`` raises, or (``at="encode"``) the first encode."""

    def __init__(self, at: str) -> None:
        super().__init__()
        self.at = at
        if at == "load":
            self.load = self._fail  # the optional ``load()`` hook the pipeline calls before a batch

    def _fail(self) -> None:
        raise RuntimeError("weights file missing")

    @property
    def is_loaded(self) -> bool:
        return False

    def encode(self, batch: Any) -> Any:
        self.calls += 1
        self._fail()


def mixed_folder(tmp_path: Path, notes: int, clips: int) -> Path:
    folder = write_notes(tmp_path / "mixed", notes)
    for i in range(clips):
        sf.write(folder / f"tone{i}.wav", tone(200.0 + 100 * i, seconds=0.2), 16000)
    return folder


@pytest.mark.parametrize("at", ["load", "encode"])
def test_a_model_that_cannot_load_stops_the_run_once(tmp_path: Path, at: str, shared_cache: Path) -> None:
    config = load_config(indexes_dir=tmp_path / "indexes", batch_size=16)
    folder = mixed_folder(tmp_path, notes=20, clips=5)  # texts are encoded first, then audio
    broken = NoWeights(at)
    lib = open_lib(config, {**fake_overrides(), AUDIO_NAME: broken})
    with pytest.raises(FatalError) as err:
        index_paths(lib.collection, lib.encoders, [folder], config)
    msg = str(err.value)
    assert "\n" not in msg and AUDIO_NAME in msg and "weights file missing" in msg
    assert "20 items committed in this run" in msg and "run the same command again to resume" in msg
    assert broken.calls == (0 if at == "load" else 1)  # no per-item retries
    assert err.value.report.problems == []  # type: ignore[attr-defined]  # not N per-file problems
    assert lib.collection.counts() == {"image": 0, "audio": 0, "text": 20, "total": 20}
    assert_consistent(lib.collection)
    # fixed: the same call resumes
    lib.collection.close()
    lib = open_lib(config)
    rep = index_paths(lib.collection, lib.encoders, [folder], config)
    assert len(rep.added) == 5 and len(rep.unchanged) == 20


class Picky(FakeText):
    """A loaded text encoder that rejects one input (any batch containing 'poison')."""

    def encode(self, batch: Any) -> Any:
        if any("poison" in t for t in batch):
            self.calls += 1
            raise ValueError("cannot tokenize")
        return super().encode(batch)


def test_one_input_an_encoder_rejects_stays_a_per_file_problem(tmp_path: Path, config: Config) -> None:
    folder = write_notes(tmp_path / "notes", 6)
    (folder / "note0003.txt").write_text("poison pill")
    lib = open_lib(config, {**fake_overrides(), TEXT_NAME: Picky()})
    rep = index_paths(lib.collection, lib.encoders, [folder], config)
    assert len(rep.added) == 5 and [Path(p.path).name for p in rep.problems] == ["note0003.txt"]
    assert "could not encode it (cannot tokenize)" in rep.problems[0].reason


@pytest.mark.parametrize("error, words", [
    (sqlite3.OperationalError("database or disk is full"), "is full (database or disk is full)"),
    (sqlite3.OperationalError("attempt to write a readonly database"), "cannot be written"),
    (FatalError("Cannot write collection 'r': the disk is full. Free space, then re-run: indexing resumes."), "(16 items"),
], ids=["disk-full", "read-only", "store-fatal"])
def test_full_disk_or_read_only_store_stops_the_run_keeping_the_first_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_cache: Path, error: Exception, words: str
) -> None:
    config = load_config(indexes_dir=tmp_path / "indexes", batch_size=16)
    folder = write_notes(tmp_path / "notes", 40)
    lib = open_lib(config)
    real_add, adds = lib.collection.add, []

    def add(items: Any) -> Any:
        adds.append(len(items))
        if len(adds) > 1:
            raise error
        return real_add(items)

    monkeypatch.setattr(lib.collection, "add", add)
    with pytest.raises(FatalError) as err:
        index_paths(lib.collection, lib.encoders, [folder], config)
    msg = str(err.value)
    assert "\n" not in msg and words in msg and "16 items committed in this run" in msg and "resume" in msg, msg
    assert adds == [16, 16]  # stopped at the first failure: no retry, no third batch
    lib.collection.close()
    reopened = Collection.open(config.indexes_dir, "r")
    assert reopened.counts()["total"] == 16 and reopened.rebuilt == []  # committed batch kept, indexes flushed
    assert_consistent(reopened)


class Blob(str):
    """Decoded text that reports when the pipeline lets go of it (weak-referenceable str)."""


def test_decoded_bytes_in_flight_stay_within_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_cache: Path
) -> None:
    """Fake estimates (10 MB per note, 250 MB for one) under a 100 MB budget: the decoded media alive at
    once (being decoded, decoded, or in the batch being encoded) never exceed it; the big one is
    decoded alone, and smaller files still overlap with encoding."""
    config = load_config(indexes_dir=tmp_path / "indexes", batch_size=4, decode_workers=2, max_decoded_in_flight_mb=100)
    folder = write_notes(tmp_path / "notes", 30)
    big = folder / "note0013.txt"
    est = {p.name: (250 if p == big else 10) * MB for p in folder.iterdir()}
    monkeypatch.setattr(pipeline, "estimate_decoded_bytes", lambda path, modality, cfg, sr=16000: est[Path(path).name])
    lock = threading.Lock()
    live: dict[str, int] = {}
    peaks: list[int] = []
    alone: list[bool] = []

    def decode(cand: Any, cfg: Any, sr: int = 16000) -> Blob:
        name = cand.path.name
        with lock:
            if cand.path == big:
                alone.append(not live)
            live[name] = est[name]
            peaks.append(sum(live.values()))
        time.sleep(0.005)
        out = Blob(cand.path.read_text())
        weakref.finalize(out, lambda: live.pop(name, None))
        return out

    monkeypatch.setattr(pipeline, "decode", decode)
    lib = open_lib(config)
    rep = index_paths(lib.collection, lib.encoders, [folder], config)
    assert len(rep.added) == 30 and not live
    assert alone == [True] and max(peaks) == 250 * MB
    small = [p for p in peaks if p < 250 * MB]
    assert max(small) <= 100 * MB
    assert max(small) > 4 * 10 * MB  # the next batch was decoding while one was encoded


def test_header_estimates_cover_the_decoded_media(tmp_path: Path, config: Config) -> None:
    """What the budget reserves per file (read from the header) is at least what decoding holds."""
    Image.new("RGB", (900, 600), (200, 30, 30)).save(tmp_path / "photo.png")
    Image.new("1", (700, 700), 1).save(tmp_path / "scan.png")
    sf.write(tmp_path / "clip.wav", tone(440.0, seconds=1.0, sr=44100), 44100)
    (tmp_path / "note.txt").write_text("héllo wörld " * 100)
    for name, modality in [("photo.png", "image"), ("scan.png", "image"), ("clip.wav", "audio"), ("note.txt", "text")]:
        path = tmp_path / name
        data = pipeline.decode(Candidate(path, modality, tmp_path), config, 16000)
        held = len(data.tobytes()) if modality == "image" else data.samples.nbytes if modality == "audio" else len(data) * 4
        assert estimate_decoded_bytes(path, modality, config, 16000) >= held, name
    tight = load_config(indexes_dir=tmp_path / "ix", max_decoded_mb=1)
    with pytest.raises(MediaError, match="CROSSMODAL_MAX_DECODED_MB"):
        estimate_decoded_bytes(tmp_path / "photo.png", "image", tight)
