"""CLI contract of ``models`` / ``download`` and of preset choice in ``index`` (in-process, no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crossmodal_demo.cli.main import main
from crossmodal_demo.encoders import weights

DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def offline_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No hub, and an empty Hugging Face cache (a developer's real cache must not change the outcome)."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CROSSMODAL_INDEXES", str(tmp_path / "ix"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    weights.forget_probe()
    return tmp_path / "ix"


def run(capsys: pytest.CaptureFixture[str], *args: str, encoders: dict | None = None) -> tuple[int, str, str]:
    code = main(list(args), encoders=encoders)
    out, err = capsys.readouterr()
    return code, out, err


def test_models_json_lists_every_preset(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "models", "--json")
    assert code == 0, err
    doc = json.loads(out)
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


def test_models_table_and_mobileclip_numbers(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROSSMODAL_CLIP_MODEL", "MobileCLIP-S2")
    monkeypatch.setenv("CROSSMODAL_CLIP_PRETRAINED", "datacompdr")
    code, out, err = run(capsys, "models")
    assert code == 0, err
    assert "auto (default) → offline" in out
    assert "open_clip:MobileCLIP-S2/datacompdr" in out and "Flickr30k text→image R@1: 73.4" in out
    assert "ml-mobileclip" in out


def test_index_clip_offline_is_refused_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "index", str(DATA / "texts"), "--collection", "c", "--preset", "clip")
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in err and "--preset offline" in err


def test_index_default_auto_says_what_it_chose(capsys: pytest.CaptureFixture[str], offline_env: Path, fake_overrides: dict) -> None:
    note = sorted((DATA / "texts").iterdir())[0]
    code, _, err = run(capsys, "index", str(note), "--collection", "c", "--json", encoders=fake_overrides)
    assert code == 0, err
    assert "preset offline: auto chose 'offline'" in err and "HF_HUB_OFFLINE=1" in err
    assert json.loads((offline_env / "c" / "manifest.json").read_text())["preset"] == "offline"


def test_download_fails_fast_without_hub(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "download", "--preset", "clip")
    assert code == 2 and "HF_HUB_OFFLINE=1" in err
    code, _, err = run(capsys, "download", "--preset", "clp")
    assert code == 2 and "Available: auto, clip, offline." in err


@pytest.mark.parametrize("hub_answers", [False, True])
def test_auto_follows_the_hub_probe(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, hub_answers: bool) -> None:
    import huggingface_hub

    def probe(*args: object, **kwargs: object) -> None:
        if not hub_answers:
            raise ConnectionError("unreachable in this test")

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", probe)
    code, out, err = run(capsys, "models", "--json")
    assert code == 0, err
    auto = json.loads(out)["presets"][0]
    if hub_answers:
        assert auto["resolves_to"] == "clip" and "the Hugging Face hub answered" in auto["reason"]
        assert "download on first use" in auto["reason"]
    else:
        assert auto["resolves_to"] == "offline" and "did not answer (ConnectionError" in auto["reason"]
