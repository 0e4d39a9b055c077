"""The CLI contract: subcommands, flags, JSON fields, exit codes, one-line errors without tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "crossmodal_demo", *args], capture_output=True, text=True, env=env, timeout=300,
        cwd=Path(__file__).resolve().parent.parent,
    )


@pytest.fixture(scope="module")
def ixdir(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> Path:
    d = tmp_path_factory.mktemp("cli-indexes")
    r = run(
        "index", str(DATA / "texts"), str(DATA / "images" / "cat.jpg"), str(DATA / "images" / "rocket.jpg"),
        str(DATA / "speech" / "weather.wav"), str(DATA / "bad" / "empty.png"),
        "--collection", "cli", "--indexes-dir", str(d), "--json",
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["added"] == 13 and [Path(e["path"]).name for e in report["errors"]] == ["empty.png"]
    assert "items/s" in r.stderr or "file/s" in r.stderr  # tqdm progress on stderr
    return d


def test_search_json_contract(ixdir: Path) -> None:
    r = run("search", "--collection", "cli", "--indexes-dir", str(ixdir), "--text", "a cat", "--target", "image", "-k", "2", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["query"]["text"] == "a cat" and doc["query"]["target"] == "image"
    hit = doc["hits"][0]
    assert {"id", "path", "modality", "score", "space", "caption", "transcript"} <= set(hit)
    assert Path(hit["path"]).name == "cat.jpg" and hit["space"] == "text"
    assert doc["hits"][0]["score"] >= doc["hits"][1]["score"]


def test_search_by_audio_uses_env_indexes_dir(ixdir: Path) -> None:
    env = dict(os.environ, CROSSMODAL_INDEXES=str(ixdir))
    r = run("search", "--collection", "cli", "--audio", str(DATA / "speech" / "weather.wav"), "--target", "text", "-k", "1", "--json", env=env)
    doc = json.loads(r.stdout)
    assert Path(doc["hits"][0]["path"]).name == "forecast_note.txt"
    assert "rain" in doc["query"]["transcript"].lower()


def test_list_and_remove(ixdir: Path) -> None:
    r = run("list", "--collection", "cli", "--indexes-dir", str(ixdir), "--json")
    doc = json.loads(r.stdout)
    assert doc["counts"] == {"image": 2, "audio": 1, "text": 10, "total": 13}
    speech = [i for i in doc["items"] if i["modality"] == "audio"][0]
    assert {"id", "path", "modality", "caption", "transcript"} <= set(speech) and "rain" in speech["transcript"].lower()
    r = run("remove", "--collection", "cli", "--indexes-dir", str(ixdir), "rocket.jpg", str(speech["id"]))
    assert r.returncode == 0 and r.stdout.count("removed") == 2, r.stderr
    doc = json.loads(run("list", "--collection", "cli", "--indexes-dir", str(ixdir), "--json").stdout)
    assert doc["counts"]["total"] == 11 and doc["counts"]["audio"] == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["search", "--collection", "nope", "--text", "x"], "Unknown collection 'nope'"),
        (["search", "--collection", "cli"], "Give exactly one query"),
        (["search", "--collection", "cli", "--image", "/no/such.jpg"], "Query file not found"),
        (["index", "/no/such/folder", "--collection", "cli"], "No such file or folder"),
        (["remove", "--collection", "cli", "nothing.jpg"], "not found: nothing.jpg"),
    ],
)
def test_usage_errors_are_one_line_without_traceback(ixdir: Path, args: list[str], message: str) -> None:
    r = run(*args, "--indexes-dir", str(ixdir))
    assert r.returncode != 0
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len([ln for ln in r.stderr.splitlines() if ln.strip()]) == 1
