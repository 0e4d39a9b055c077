"""CLI faults end to end (issue 11): bad numbers, odd names, a read-only collection, a full disk, a damaged
database, unexpected errors — each is one line on stderr with a documented exit code, never a traceback.

In-process (``main(argv, encoders=fakes)``) on a small collection of the fake corpus (tests/fakes.py).
The read-only case bind-mounts a copy read-only (root only; chmod does not stop root) and skips otherwise.
"""

from __future__ import annotations

import errno
import json
import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from crossmodal_demo.cli import list as cli_list
from crossmodal_demo.cli.main import main
from crossmodal_demo.index import store
from tests.fakes import fake_overrides, write_fake_corpus

ODD = "\x1b[2Jred\u202egnp.png"  # clears the screen, then shows "red" + "png.gnp" reversed
ODD_SHOWN = "\\x1b[2Jred\\u202egnp.png"
PROGRESS = ("preset ", "indexing into ")  # index's own stderr lines (preset banner, tqdm bar)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args), encoders=fake_overrides())
    out, err = capsys.readouterr()
    return code, out, err


def error_lines(err: str) -> list[str]:
    """stderr lines that are not index's progress output (tqdm redraws with \\r)."""
    lines = [seg for ln in err.splitlines() for seg in ln.split("\r") if seg.strip()]
    return [ln for ln in lines if not ln.startswith(PROGRESS)]


def one_error_line(err: str) -> str:
    lines = error_lines(err)
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """indexes dir with collection 'c': the fake corpus, red.png renamed to :data:`ODD`."""
    root = tmp_path_factory.mktemp("faults")
    media = write_fake_corpus(root / "media")
    (media / "red.png").rename(media / ODD)
    assert main(["index", str(media), "--collection", "c", "--preset", "offline", "--indexes-dir", str(root / "ix")],
                encoders=fake_overrides()) == 0
    return root / "ix"


@pytest.fixture
def ix(built: Path, tmp_path: Path) -> Path:
    """A private copy of :func:`built` (tests may damage or mount it)."""
    return Path(shutil.copytree(built, tmp_path / "ix"))


# --------------------------------------------------------------------------------------- bad numbers
@pytest.mark.parametrize(
    "argv, names",
    [
        (["index", "M", "--collection", "c", "--batch-size", "0"], "--batch-size"),
        (["index", "M", "--collection", "c", "--batch-size", "-5"], "--batch-size"),
        (["index", "M", "--collection", "c", "--batch-size", "1.5"], "--batch-size"),
        (["index", "M", "--collection", "c", "--max-audio-seconds", "nan"], "--max-audio-seconds"),
        (["index", "M", "--collection", "c", "--max-audio-seconds", "inf"], "--max-audio-seconds"),
        (["index", "M", "--collection", "c", "--max-audio-seconds", "-1"], "--max-audio-seconds"),
        (["search", "--collection", "c", "--text", "x", "-k", "0"], "-k"),
        (["search", "--collection", "c", "--text", "x", "-k", "-3"], "-k"),
        (["evaluate", "--collection", "c", "--qrels", "q.jsonl", "--depth", "0"], "--depth"),
        (["remove", "--collection", "c", "9223372036854775808"], "ID_OR_PATH"),
    ],
)
def test_bad_numbers_are_refused_at_parse_time(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               argv: list[str], names: str) -> None:
    d = tmp_path / "ix"
    code, out, err = run(capsys, *[str(tmp_path) if a == "M" else a for a in argv], "--indexes-dir", str(d))
    line = one_error_line(err)
    assert code == 2 and out == ""
    assert f"argument {names}" in line and ("expected a" in line or "whole numbers up to" in line), line
    assert not d.exists()  # refused before anything was opened or created


def test_largest_id_is_looked_up_not_crashed(ix: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "remove", "--collection", "c", "--indexes-dir", str(ix), str(2**63 - 1))
    assert code == 2 and "not found: 9223372036854775807" in one_error_line(err)
    code, _, err = run(capsys, "remove", "--collection", "c", "--indexes-dir", str(ix), "²")  # isdigit(), not int()
    assert code == 2 and "not found: ²" in one_error_line(err)


def test_collection_name_with_trailing_newline_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "ix"
    code, _, err = run(capsys, "index", str(write_fake_corpus(tmp_path / "m")), "--collection", "c\n", "--indexes-dir", str(d))
    assert code == 2 and "Invalid collection name 'c\\n'" in one_error_line(err)
    assert not (d / "c\n").exists()


# ---------------------------------------------------------------------------------------- odd names
def test_odd_names_are_escaped_on_the_terminal_and_exact_in_json(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--collection", "c", "--indexes-dir", str(built)]
    for argv in (["list", *base], ["search", *base, "--text", "red", "--target", "image", "-k", "1"]):
        code, out, err = run(capsys, *argv)
        assert code == 0, err
        assert ODD_SHOWN in out and "\x1b" not in out and "\u202e" not in out, out
    code, out, _ = run(capsys, "list", *base, "--json")
    assert code == 0 and "\x1b" not in out and "\u202e" not in out  # JSON-escaped on the wire ...
    assert ODD in {Path(i["path"]).name for i in json.loads(out)["items"]}  # ... the true name once parsed
    code, out, _ = run(capsys, "search", *base, "--text", "red", "--target", "image", "-k", "1", "--json")
    assert code == 0 and Path(json.loads(out)["hits"][0]["path"]).name == ODD


def test_odd_names_are_escaped_in_index_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    media = tmp_path / "m"
    media.mkdir()
    (media / ODD).write_bytes(b"not a png")  # skipped, so index prints its name with the reason
    code, out, err = run(capsys, "index", str(media), "--collection", "c", "--indexes-dir", str(tmp_path / "ix"))
    assert code == 0 and f"  {tmp_path / 'm'}/{ODD_SHOWN}: " in out
    assert "\x1b" not in out + err and "\u202e" not in out + err


# ---------------------------------------------------------------------------------- read-only folder
@pytest.fixture
def read_only(ix: Path) -> Iterator[Path]:
    """``ix`` with collection 'c' bind-mounted read-only over itself (a read-only filesystem, even for root)."""
    coll = ix / "c"
    r = subprocess.run(["mount", "--bind", "-o", "ro", str(coll), str(coll)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot bind-mount read-only here ({r.stderr.strip() or r.returncode}); needs root")
    try:
        yield ix
    finally:
        subprocess.run(["umount", str(coll)], check=True)


def test_read_only_collection_lists_and_searches_but_refuses_writes(read_only: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--collection", "c", "--indexes-dir", str(read_only)]
    before = sorted(p.name for p in (read_only / "c").rglob("*"))
    code, out, err = run(capsys, "list", *base)
    assert code == 0 and "total 10" in out, err
    code, out, err = run(capsys, "search", *base, "--text", "low", "--target", "audio", "-k", "1", "--json")
    assert code == 0 and Path(json.loads(out)["hits"][0]["path"]).name == "low.wav", err
    media = write_fake_corpus(read_only.parent / "more")
    (media / "extra.txt").write_text("something new to add")
    for argv in (["index", str(media), *base], ["remove", *base, "low.wav"]):
        code, _, err = run(capsys, *argv)
        assert code == 1 and "read-only" in one_error_line(err), err
    assert sorted(p.name for p in (read_only / "c").rglob("*")) == before


# -------------------------------------------------------------------------------------- disk full
@pytest.mark.parametrize(
    "target, exc",
    [
        ("_insert", sqlite3.OperationalError("database or disk is full")),  # the SQLite write of an item
        ("atomic_write_bytes", OSError(errno.ENOSPC, "No space left on device")),  # an index file
    ],
)
def test_full_disk_is_one_line(ix: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch, target: str, exc: Exception) -> None:
    def full(*_a: object, **_k: object) -> None:
        raise exc

    monkeypatch.setattr(store.Collection if target == "_insert" else store, target, full)
    media = tmp_path / "new"
    media.mkdir()
    (media / "note.txt").write_text("a new note about the sea")
    code, out, err = run(capsys, "index", str(media), "--collection", "c", "--indexes-dir", str(ix))
    assert code == 1 and "disk is full" in one_error_line(err), err
    monkeypatch.undo()  # space freed: re-running resumes, and the note ends up searchable either way
    code, out, err = run(capsys, "index", str(media), "--collection", "c", "--indexes-dir", str(ix), "--json")
    assert code == 0 and json.loads(out)["added"] + json.loads(out)["unchanged"] == 1, err
    code, out, err = run(capsys, "search", "--collection", "c", "--indexes-dir", str(ix), "--text", "sea", "-k", "1", "--json")
    assert code == 0 and Path(json.loads(out)["hits"][0]["path"]).name == "note.txt", err


def test_raw_disk_full_chain_reaching_the_cli_is_one_line(ix: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk the store did not translate, failing again in every ``finally`` on the way up."""
    def full(*_a: object, **_k: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    def items(*_a: object, **_k: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store.Collection, "items", items)
    monkeypatch.setattr(store.Collection, "close", full)
    code, _, err = run(capsys, "list", "--collection", "c", "--indexes-dir", str(ix))
    assert code == 1 and one_error_line(err).startswith("error: the disk is full")


# ------------------------------------------------------------------------------------ damaged database
def test_database_damaged_in_the_middle_is_refused_on_open(ix: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = ix / "c" / "items.sqlite"
    pages = db.stat().st_size // 4096
    with db.open("r+b") as f:  # one B-tree page in the middle overwritten; the header is intact
        f.seek(pages // 2 * 4096)
        f.write(b"\xa5" * 4096)
    for argv in (["list"], ["search", "--text", "red"]):
        code, _, err = run(capsys, *argv, "--collection", "c", "--indexes-dir", str(ix))
        line = one_error_line(err)
        assert code == 2 and "damaged" in line and "index the files again" in line, err


# ------------------------------------------------------------------------------------ unexpected errors
def test_unexpected_error_is_one_line_with_a_log(ix: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("boom\nsecond line \x1b[31m")

    monkeypatch.setattr(store.Collection, "counts", boom)
    code, _, err = run(capsys, "list", "--collection", "c", "--indexes-dir", str(ix))
    line = one_error_line(err)
    assert code == 70 and line.startswith("unexpected error: RuntimeError: boom second line \\x1b[31m — full log: ")
    log = Path(line.rsplit("full log: ", 1)[1])
    assert log.parent == ix / ".logs" and "Traceback" in log.read_text() and "boom" in log.read_text()
    code, _, err = run(capsys, "list", "--collection", "c", "--indexes-dir", str(ix), "--debug")
    assert code == 70 and "Traceback" in err and err.rstrip().splitlines()[-1].startswith("unexpected error:")
    monkeypatch.setattr(cli_list, "open_collection", boom)  # no indexes folder to write into: the temp dir
    code, _, err = run(capsys, "list", "--collection", "c", "--indexes-dir", str(ix / "absent"))
    log = Path(one_error_line(err).rsplit("full log: ", 1)[1])
    assert code == 70 and log.parent.parent == Path(tempfile.gettempdir()) and "boom" in log.read_text()
    log.unlink()
    assert not (ix / "absent").exists()


def test_interrupt_is_one_line_exit_130(ix: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupt(*_a: object, **_k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(store.Collection, "items", interrupt)
    code, _, err = run(capsys, "list", "--collection", "c", "--indexes-dir", str(ix))
    assert code == 130 and one_error_line(err).startswith("interrupted")
