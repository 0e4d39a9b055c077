"""CLI contract of ``models`` / ``download`` and of preset choice in ``index`` (subprocesses, no network)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    full = dict(os.environ, **env)
    for k in [k for k, v in env.items() if v == ""]:
        full.pop(k)
    return subprocess.run([sys.executable, "-m", "crossmodal_demo", *args], capture_output=True, text=True, env=full, timeout=300)


@pytest.fixture
def offline_env(tmp_path: Path) -> dict[str, str]:
    """No hub, and an empty Hugging Face cache (a developer's real cache must not change the outcome)."""
    return {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "CROSSMODAL_INDEXES": str(tmp_path / "ix")}


def test_models_json_lists_every_preset(offline_env: dict[str, str]) -> None:
    r = run("models", "--json", **offline_env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["default"] == "auto"
    presets = {p["name"]: p for p in doc["presets"]}
    assert list(presets) == ["auto", "clip", "offline"]
    assert presets["auto"]["resolves_to"] == "offline" and "HF_HUB_OFFLINE=1" in presets["auto"]["reason"]
    clip = presets["clip"]
    assert clip["spaces"] == {"clip": 512, "clap": 512, "text": 384}
    assert clip["modalities"] == ["audio", "image", "text"] and clip["weights_available"] is False
    encs = {e["name"]: e for e in clip["encoders"]}
    img = encs["openclip-image"]
    assert (img["modality"], img["space"], img["dim"], img["model_id"]) == ("image", "clip", 512, "open_clip:ViT-B-32/laion2b_s34b_b79k")
    assert img["weights_available"] is False and encs["minilm-text"]["weights_available"] is True
    nums = {n["benchmark"]: n for n in img["published"]}
    assert nums["Flickr30k text→image R@1"]["value"] == 66.8 and nums["Flickr30k image→text R@1"]["value"] == 84.1
    assert all(n["source"].startswith("https://") for n in img["published"])
    assert encs["clap-audio"]["model_id"] == "laion/clap-htsat-fused"
    assert presets["offline"]["weights_available"] is True


def test_models_table_and_mobileclip_numbers(offline_env: dict[str, str]) -> None:
    r = run("models", CROSSMODAL_CLIP_MODEL="MobileCLIP-S2", CROSSMODAL_CLIP_PRETRAINED="datacompdr", **offline_env)
    assert r.returncode == 0, r.stderr
    assert "auto (default) → offline" in r.stdout
    assert "open_clip:MobileCLIP-S2/datacompdr" in r.stdout and "Flickr30k text→image R@1: 73.4" in r.stdout
    assert "ml-mobileclip" in r.stdout


def test_index_clip_offline_is_refused_without_traceback(offline_env: dict[str, str]) -> None:
    r = run("index", str(DATA / "texts"), "--collection", "c", "--preset", "clip", **offline_env)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1 and r.stderr.startswith("error: ")
    assert "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in r.stderr and "--preset offline" in r.stderr


def test_index_default_auto_says_what_it_chose(offline_env: dict[str, str], shared_cache: Path) -> None:
    note = sorted((DATA / "texts").iterdir())[0]
    r = run("index", str(note), "--collection", "c", "--json", CROSSMODAL_CACHE=str(shared_cache), **offline_env)
    assert r.returncode == 0, r.stderr
    assert "preset offline: auto chose 'offline'" in r.stderr and "HF_HUB_OFFLINE=1" in r.stderr
    manifest = json.loads((Path(offline_env["CROSSMODAL_INDEXES"]) / "c" / "manifest.json").read_text())
    assert manifest["preset"] == "offline"


def test_download_fails_fast_without_hub(offline_env: dict[str, str]) -> None:
    r = run("download", "--preset", "clip", **offline_env)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "HF_HUB_OFFLINE=1" in r.stderr
    r = run("download", "--preset", "clp", **offline_env)
    assert r.returncode == 2 and "Available: auto, clip, offline." in r.stderr


def test_auto_decides_within_seconds_when_hub_is_unreachable(tmp_path: Path) -> None:
    # No HF_HUB_OFFLINE: auto probes the hub with a ~3 s timeout (here it is unreachable, or it answers).
    t0 = time.perf_counter()
    r = run("models", "--json", HF_HUB_OFFLINE="", TRANSFORMERS_OFFLINE="", HF_HOME=str(tmp_path / "hf"))
    assert r.returncode == 0, r.stderr
    assert time.perf_counter() - t0 < 15  # interpreter start + 3 s probe, on a slow machine
    auto = json.loads(r.stdout)["presets"][0]
    assert auto["resolves_to"] in ("clip", "offline") and auto["reason"].startswith(f"auto chose '{auto['resolves_to']}'")
