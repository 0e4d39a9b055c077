"""The CLI contract: subcommands, flags, JSON fields, exit codes, one-line errors without tracebacks.

In-process (``main(argv, encoders=fakes)``) with the fake encoders of tests/fakes.py; one real
subprocess end to end (``python -m crossmodal_demo search`` on the shared real index).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crossmodal_demo.cli.main import main
from crossmodal_demo.retrieval.library import Library
from tests.fakes import fake_overrides, write_fake_corpus

DATA = Path(__file__).parent / "data"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args), encoders=fake_overrides())
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def ixdir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """Collection 'cli' indexed through the CLI: the fake corpus plus one undecodable image."""
    media = write_fake_corpus(tmp_path / "media")
    d = tmp_path / "ix"
    code, out, err = run(capsys, "index", str(media), str(DATA / "bad" / "empty.png"), "--collection", "cli",
                         "--indexes-dir", str(d), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["added"] == 10 and [Path(e["path"]).name for e in report["errors"]] == ["empty.png"]
    assert [Path(n["path"]).name for n in report["notes"]] == ["quiet.wav"]
    assert "file/s" in err or "items/s" in err  # tqdm progress on stderr
    return d


def test_index_table_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    media = write_fake_corpus(tmp_path / "media")
    code, out, _ = run(capsys, "index", str(media), "--collection", "t", "--indexes-dir", str(tmp_path / "ix"))
    assert code == 0 and out.startswith("added 10 item(s) to 't'") and "note: " in out
    code, out, _ = run(capsys, "index", str(media), "--collection", "t", "--indexes-dir", str(tmp_path / "ix"))
    assert code == 0 and "added 0 item(s)" in out and "10 already indexed" in out


def test_search_json_contract(ixdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "search", "--collection", "cli", "--indexes-dir", str(ixdir), "--text", "red",
                         "--target", "image", "-k", "2", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["query"]["text"] == "red" and doc["query"]["target"] == "image" and doc["query"]["k"] == 2
    hit = doc["hits"][0]
    assert {"id", "path", "modality", "score", "space", "channel", "caption", "transcript", "rank"} <= set(hit)
    assert Path(hit["path"]).name == "red.png" and hit["space"] == "text" and hit["rank"] == 1
    assert len(doc["hits"]) == 2 and doc["hits"][0]["score"] >= doc["hits"][1]["score"]


def test_search_table_and_audio_query_with_env_indexes_dir(ixdir: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CROSSMODAL_INDEXES", str(ixdir))
    code, out, _ = run(capsys, "search", "--collection", "cli", "--audio", str(tmp_path / "media" / "low.wav"),
                       "--target", "audio", "-k", "1")
    assert code == 0
    assert out.splitlines()[0] == "query transcript: 'low'" and out.splitlines()[1].rstrip().endswith("low.wav  — low")


def test_list_and_remove(ixdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "list", "--collection", "cli", "--indexes-dir", str(ixdir), "--json")
    doc = json.loads(out)
    assert doc["counts"] == {"image": 3, "audio": 4, "text": 3, "total": 10} and doc["preset"] == "offline"
    low = next(i for i in doc["items"] if Path(i["path"]).name == "low.wav")
    assert {"id", "path", "relpath", "modality", "caption", "transcript", "spaces"} <= set(low)
    assert low["transcript"] == "low" and low["spaces"] == ["text/content"]
    code, out, err = run(capsys, "remove", "--collection", "cli", "--indexes-dir", str(ixdir), "red.png", str(low["id"]))
    assert code == 0 and out.count("removed") == 2, err
    code, out, _ = run(capsys, "remove", "--collection", "cli", "--indexes-dir", str(ixdir), "blue.png", "--json")
    assert code == 0 and len(json.loads(out)["removed"]) == 1 and json.loads(out)["unknown"] == []
    code, out, _ = run(capsys, "list", "--collection", "cli", "--indexes-dir", str(ixdir), "--modality", "image")
    assert code == 0 and "image 1" in out.splitlines()[0] and "total 7" in out.splitlines()[0]
    assert [Path(ln.split()[-1]).name for ln in out.splitlines()[1:]] == ["green.png"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["search", "--collection", "nope", "--text", "x"], "Unknown collection 'nope'"),
        (["search", "--collection", "cli"], "Give exactly one query"),
        (["search", "--collection", "cli", "--image", "/no/such.jpg"], "Query file not found"),
        (["search", "--collection", "cli", "--text", "x" * 2001], "CROSSMODAL_MAX_QUERY_CHARS"),
        (["index", "/no/such/folder", "--collection", "cli"], "No such file or folder"),
        (["index", str(DATA / "texts"), "--collection", "../up"], "Invalid collection name"),
        (["remove", "--collection", "cli", "nothing.jpg"], "not found: nothing.jpg"),
    ],
)
def test_usage_errors_are_one_line_without_traceback(ixdir: Path, capsys: pytest.CaptureFixture[str],
                                                     args: list[str], message: str) -> None:
    code, _, err = run(capsys, *args, "--indexes-dir", str(ixdir))
    assert code == 2
    assert message in err and "Traceback" not in err
    assert len([ln for ln in err.splitlines() if ln.strip()]) == 1
    assert "x" * 100 not in err  # a long query is never echoed back


def test_python_m_search_end_to_end(indexed: Library) -> None:
    """One real process: `python -m crossmodal_demo search` on the shared real index, real models."""
    env = dict(os.environ, CROSSMODAL_INDEXES=str(indexed.config.indexes_dir))
    r = subprocess.run(
        [sys.executable, "-m", "crossmodal_demo", "search", "--collection", indexed.collection.name, "--text", "a cat",
         "--target", "image", "-k", "3", "--json"],
        capture_output=True, text=True, env=env, timeout=300, cwd=Path(__file__).resolve().parent.parent,
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["query"]["preset"] == "offline" and len(doc["hits"]) == 3
    assert all(h["modality"] == "image" for h in doc["hits"])
    assert [h["rank"] for h in doc["hits"]] == [1, 2, 3]
