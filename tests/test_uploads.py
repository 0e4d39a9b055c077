"""Upload helpers: safe zip extraction (paths, names, types, budgets), single-file copies, pruning."""

from __future__ import annotations

import os
import shutil
import stat
import zipfile
from pathlib import Path

import pytest

from crossmodal_demo.errors import MediaError, UserError
from crossmodal_demo.ingest.uploads import UploadBudget, copy_upload, extract_zip, prune, safe_name, unique_path

MB = 1024 * 1024


def _zip(path: Path, members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_zip_extraction_refuses_unsafe_paths_and_lists_every_ignored_member(tmp_path: Path, data_dir: Path) -> None:
    jpg = (data_dir / "images" / "cat.jpg").read_bytes()
    z = _zip(tmp_path / "up.zip", {
        "photos/cat.jpg": jpg,
        "/etc/evil.jpg": jpg,
        "../escape.jpg": jpg,
        "a/../../escape2.jpg": jpg,
        "C:\\windows\\evil.jpg": jpg,
        ".hidden.jpg": jpg,
        "__MACOSX/photos/._cat.jpg": b"x",
        "report.pdf": b"%PDF",
        "inner.zip": b"PK",
        "captions.csv": b"path,caption\nphotos/cat.jpg,a cat\n",
        "other.csv": b"a,b\n",
    }, symlinks={"link.jpg": "/etc/passwd"})
    budget = UploadBudget(10 * MB, 100)
    res = extract_zip(z, tmp_path / "out", budget, 5 * MB)
    assert _files(tmp_path / "out") == ["captions.csv", "photos/cat.jpg"]
    problems = {p.path: p.reason for p in res.problems}
    for name in ("/etc/evil.jpg", "../escape.jpg", "a/../../escape2.jpg"):
        assert "unsafe path" in next(r for p, r in problems.items() if p.endswith(name.split("/")[-1]))
    assert any("drive letter" in r for p, r in problems.items() if "evil.jpg" in p and "windows" in p)
    assert problems["up.zip:link.jpg"] == "symbolic link inside the .zip; skipped"
    ignored = {p.path: p.reason for p in res.ignored}
    assert ignored["up.zip:report.pdf"].startswith("unsupported file type '.pdf' (accepted: .bmp")
    assert "captions.csv, captions.jsonl" in ignored["up.zip:report.pdf"]
    assert ignored["up.zip:inner.zip"].startswith("a .zip inside a .zip is not opened")
    assert ignored["up.zip:other.csv"].startswith("unsupported file type '.csv'")
    assert res.hidden == 2
    assert budget.files_left == 98 and budget.bytes_left == 10 * MB - res.bytes_written


def test_member_names_lose_control_and_bidi_characters_but_keep_letters(tmp_path: Path) -> None:
    z = _zip(tmp_path / "names.zip", {
        "caf\u00e9 \u2615/\u65e5\u672c.txt": b"tea",
        "evil\u202egnp.txt": b"rtl",
        "bell\x07\x1b[31m.txt": b"esc",
        "\u202e\u200f.txt": b"x",  # nothing but format characters before the extension
        "\u202e.env.txt": b"x",  # hidden once cleaned
    })
    res = extract_zip(z, tmp_path / "out", UploadBudget(MB, 10), MB)
    assert _files(tmp_path / "out") == ["bell[31m.txt", "café ☕/日本.txt", "evilgnp.txt"]
    assert all(not any(c in p.path for c in "\u202e\x07\x1b") for p in res.problems + res.ignored)
    assert [p.reason for p in res.problems] == ["file name is empty once control characters are removed; skipped"]
    assert res.hidden == 1
    assert safe_name("a/b\\c\x00.jpg") == "a_b_c.jpg" and safe_name("..") == "" and safe_name(" .") == ""
    long = safe_name("é" * 300 + ".jpeg")
    assert long.endswith(".jpeg") and len(long.encode()) <= 200


def test_extra_names_and_duplicates(tmp_path: Path) -> None:
    z = _zip(tmp_path / "qrels.zip", {"qrels.jsonl": b"{}", "q/a.txt": b"a", "Q/a.txt": b"b"})
    res = extract_zip(z, tmp_path / "out", UploadBudget(MB, 10), MB, extra_names=("*.jsonl",))
    assert _files(tmp_path / "out") == ["Q/a.txt", "q/a.txt", "qrels.jsonl"]
    z2 = _zip(tmp_path / "dup.zip", {"a.txt": b"1"})
    first = extract_zip(z2, tmp_path / "out", UploadBudget(MB, 10), MB).extracted
    again = extract_zip(z2, tmp_path / "out", UploadBudget(MB, 10), MB).extracted
    assert [p.name for p in first + again] == ["a.txt", "a-1.txt"]  # never overwrites


def test_member_over_the_per_file_limit_is_skipped_from_its_declared_size(tmp_path: Path) -> None:
    z = tmp_path / "big.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.wav", bytes(3 * MB))
        zf.writestr("captions.jsonl", b" " * (2 * MB))
        zf.writestr("qrels.jsonl", b" " * (2 * MB))  # an extra (side) file: the caption-list limit
        zf.writestr("long.txt", b" " * (MB + 1))
        zf.writestr("ok.txt", b"fine")
    budget = UploadBudget(100 * MB, 10)
    res = extract_zip(z, tmp_path / "out", budget, max_file_bytes=2 * MB, max_manifest_bytes=1 * MB,
                      max_text_bytes=MB, extra_names=("*.jsonl",))
    assert _files(tmp_path / "out") == ["ok.txt"]
    reasons = {p.path: p.reason for p in res.problems}
    assert reasons["big.zip:big.wav"] == "'big.wav' is 3.0 MB unpacked; the limit is 2.0 MB per file (CROSSMODAL_MAX_FILE_BYTES); skipped"
    assert "(CROSSMODAL_MAX_MANIFEST_BYTES)" in reasons["big.zip:captions.jsonl"]
    assert "(CROSSMODAL_MAX_MANIFEST_BYTES)" in reasons["big.zip:qrels.jsonl"]
    assert "the limit is 1.0 MB per file (CROSSMODAL_MAX_TEXT_BYTES)" in reasons["big.zip:long.txt"]
    assert budget.bytes_left == 100 * MB - 4 and budget.files_left == 9


def test_unreadable_zip_is_one_problem(tmp_path: Path) -> None:
    z = tmp_path / "junk.zip"
    z.write_bytes(b"not a zip at all")
    res = extract_zip(z, tmp_path / "out", UploadBudget(MB, 10), MB)
    assert [p.path for p in res.problems] == ["junk.zip"] and "not a readable .zip" in res.problems[0].reason


def test_copy_upload_checks_type_and_size_before_copying(tmp_path: Path, data_dir: Path) -> None:
    dest = tmp_path / "batch"
    budget = UploadBudget(1 * MB, 3, "CROSSMODAL_WORKSPACE_MAX_BYTES", "CROSSMODAL_WORKSPACE_MAX_FILES")
    first = copy_upload(data_dir / "images" / "cat.jpg", dest, budget, 5 * MB)
    second = copy_upload(data_dir / "images" / "cat.jpg", dest, budget, 5 * MB)
    assert (first.name, second.name) == ("cat.jpg", "cat-1.jpg")
    pdf = tmp_path / "doc.pdf"
    pdf.write_bytes(b"%PDF")
    with pytest.raises(MediaError, match=r"unsupported file type '\.pdf' \(accepted: \.bmp"):
        copy_upload(pdf, dest, budget, 5 * MB)
    other = tmp_path / "notes.csv"
    other.write_text("a,b\n")
    with pytest.raises(MediaError, match="unsupported file type"):  # caption lists only by their names
        copy_upload(other, dest, budget, 5 * MB)
    big = tmp_path / "big.flac"
    big.write_bytes(bytes(2 * MB))
    with pytest.raises(MediaError, match=r"2\.0 MB; the limit is 1\.0 MB per file \(CROSSMODAL_MAX_FILE_BYTES\)"):
        copy_upload(big, dest, budget, 1 * MB)
    note = tmp_path / "note.txt"
    note.write_bytes(b" " * (MB // 2))
    with pytest.raises(MediaError, match=r"the limit is 262,144 bytes per file \(CROSSMODAL_MAX_TEXT_BYTES\)"):
        copy_upload(note, dest, budget, 5 * MB, max_text_bytes=MB // 4)
    with pytest.raises(UserError, match=r"CROSSMODAL_WORKSPACE_MAX_BYTES"):
        copy_upload(big, dest, budget, 5 * MB)
    assert _files(dest) == ["cat-1.jpg", "cat.jpg"]
    with pytest.raises(UserError, match=r"CROSSMODAL_WORKSPACE_MAX_FILES"):
        copy_upload(data_dir / "images" / "coins.png", dest, budget, 5 * MB)
        copy_upload(data_dir / "images" / "coins.png", dest, budget, 5 * MB)
    gone = tmp_path / "gone.jpg"
    with pytest.raises(MediaError, match="gone"):
        copy_upload(gone, dest, UploadBudget(MB, 3), MB)


def test_unique_path_and_prune(tmp_path: Path) -> None:
    p = tmp_path / "a.jpg"
    assert unique_path(p) == p
    p.write_bytes(b"1")
    assert unique_path(p) == tmp_path / "a-1.jpg"
    batch = tmp_path / "batch"
    (batch / "sub").mkdir(parents=True)
    keep = batch / "sub" / "keep.jpg"
    keep.write_bytes(b"k")
    (batch / "sub" / "drop.jpg").write_bytes(b"d")
    (batch / "empty").mkdir()
    os.symlink("/etc/passwd", batch / "link.jpg")
    prune(batch, {str(keep)})
    assert _files(batch) == ["sub/keep.jpg"] and not (batch / "empty").exists() and not (batch / "link.jpg").is_symlink()
    prune(batch, set())
    assert not batch.exists()
    shutil.rmtree(tmp_path / "nothing", ignore_errors=True)
    prune(tmp_path / "nothing", set())  # a missing batch is not an error


def test_odd_archives_give_problems_not_crashes(tmp_path: Path) -> None:
    z = _zip(tmp_path / "odd.zip", {"x.txt": b"file", "x.txt/y.txt": b"under a file", **{f"f{i}.pdf": b"%" for i in range(1005)}})
    res = extract_zip(z, tmp_path / "out", UploadBudget(MB, 10), MB)
    assert [p.name for p in res.extracted] == ["x.txt"]
    assert res.problems[0].path == "odd.zip:x.txt/y.txt" and "cannot be extracted" in res.problems[0].reason
    assert len(res.ignored) == 1001 and res.ignored[-1].reason == "5 more members ignored not listed"
