"""Folder walking: captions from sidecars and manifests, hidden files, symlinks out of the root."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from crossmodal_demo.ingest import discover as discover_module
from crossmodal_demo.ingest.discover import discover


def _photo(data_dir: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(data_dir / "images" / "cat.jpg", dest)
    return dest


def test_sidecars_and_manifests_give_captions(tmp_path: Path, data_dir: Path) -> None:
    root = tmp_path / "lib"
    _photo(data_dir, root / "a.jpg")
    (root / "a.jpg.txt").write_text("caption from a.jpg.txt")
    _photo(data_dir, root / "b.jpg")
    (root / "b.txt").write_text("caption from b.txt")
    _photo(data_dir, root / "sub" / "c.jpg")
    (root / "captions.csv").write_text("path,caption\nsub/c.jpg,caption from csv\n")
    _photo(data_dir, root / "d" / "e.jpg")
    (root / "d" / "captions.jsonl").write_text(json.dumps({"path": "e.jpg", "caption": "from jsonl"}) + "\n{oops\n")
    (root / "note.md").write_text("a text item")
    found = discover([root])
    caps = {c.path.name: c.caption for c in found.candidates}
    assert caps == {
        "a.jpg": "caption from a.jpg.txt",
        "b.jpg": "caption from b.txt",
        "c.jpg": "caption from csv",
        "e.jpg": "from jsonl",
        "note.md": None,  # text items are items, sidecars are not
    }
    assert [p.reason for p in found.problems] == ["expected fields 'path' and 'caption'; line ignored"]


def test_hidden_unsupported_and_symlinks(tmp_path: Path, data_dir: Path) -> None:
    root = tmp_path / "lib"
    outside = _photo(data_dir, tmp_path / "secret" / "outside.jpg")
    _photo(data_dir, root / "ok.jpg")
    _photo(data_dir, root / ".hidden.jpg")
    _photo(data_dir, root / ".git" / "x.jpg")
    (root / "doc.pdf").write_bytes(b"%PDF-1.4")
    os.symlink(outside, root / "link_out.jpg")
    os.symlink(root / "ok.jpg", root / "link_in.jpg")
    os.symlink(tmp_path / "secret", root / "dirlink")
    found = discover([root])
    assert [c.path.name for c in found.candidates] == ["ok.jpg"]  # link_in resolves to ok.jpg: same file once
    reasons = {Path(p.path).name: p.reason for p in found.problems}
    assert "outside the indexed folder" in reasons["link_out.jpg"]
    assert [p.name for p in found.ignored] == ["doc.pdf"]  # other file types in a folder: ignored, listed
    assert reasons["dirlink"] == "symlinked folder not followed"


def test_unsupported_file_named_explicitly_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "doc.pdf").write_bytes(b"%PDF-1.4")
    found = discover([tmp_path / "doc.pdf"])
    assert "unsupported file type '.pdf' (accepted: .bmp" in found.problems[0].reason


def test_missing_path_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    found = discover([tmp_path / "nope"])
    assert not found.candidates and found.problems[0].reason == "no such file or folder"


def test_caption_files_over_the_limit_are_refused_unread(tmp_path: Path, data_dir: Path) -> None:
    root = tmp_path / "lib"
    _photo(data_dir, root / "a.jpg")
    (root / "a.jpg.txt").write_text("x" * 600)
    _photo(data_dir, root / "b.jpg")
    (root / "captions.csv").write_text("path,caption\nb.jpg," + "y" * 600 + "\n")
    found = discover([root], max_manifest_bytes=500)
    assert {c.path.name: c.caption for c in found.candidates} == {"a.jpg": None, "b.jpg": None}
    reasons = {Path(p.path).name: p.reason for p in found.problems}
    assert reasons["a.jpg.txt"] == "caption sidecar is 600 bytes; the limit is 500 bytes (CROSSMODAL_MAX_MANIFEST_BYTES); ignored"
    assert "(CROSSMODAL_MAX_MANIFEST_BYTES)" in reasons["captions.csv"]


def test_bad_manifest_lines_are_listed_up_to_a_cap(tmp_path: Path, data_dir: Path) -> None:
    root = tmp_path / "lib"
    _photo(data_dir, root / "a.jpg")
    deep = "[" * 100_000 + "]" * 100_000  # deep enough to exhaust the JSON parser's stack
    (root / "captions.jsonl").write_text(deep + "\n" + "not json\n" * 99 + json.dumps({"path": "a.jpg", "caption": "ok"}) + "\n")
    found = discover([root])
    assert found.candidates[0].caption == "ok"
    assert len(found.problems) == 21
    assert found.problems[-1].reason == "80 more lines without 'path' and 'caption' ignored"


def test_discovery_is_linear_in_the_number_of_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "notes"
    root.mkdir()
    for i in range(300):
        (root / f"note{i}.txt").write_text(f"note {i}")
        (root / f"p{i}.jpg").write_bytes(b"x")
        (root / f"p{i}.jpg.txt").write_text(f"caption {i}")
    calls = []
    real = discover_module.modality_of
    monkeypatch.setattr(discover_module, "modality_of", lambda p: calls.append(p) or real(p))
    found = discover([root])
    assert len(found.candidates) == 600 and all(c.caption == f"caption {c.path.stem[1:]}" for c in found.candidates if c.modality == "image")
    assert len(calls) <= 2 * 900  # once to index the folder, once per file; a scan per .txt made ~540,000


def test_a_name_that_is_not_utf8_is_reported_and_the_rest_kept(tmp_path: Path) -> None:
    bad = os.fsencode(str(tmp_path)) + b"/bad\xffname.txt"
    with open(bad, "wb") as fh:
        fh.write(b"hello")
    (tmp_path / "good.txt").write_text("hello there")
    found = discover([tmp_path])
    assert [c.path.name for c in found.candidates] == ["good.txt"]
    assert len(found.problems) == 1 and "not valid UTF-8" in found.problems[0].reason
