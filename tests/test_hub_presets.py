"""Hub presets through their real loading code, on tiny random checkpoints made in tmp_path (no network).

open_clip: a tiny architecture registered with ``open_clip.add_model_config``, its weights saved as
safetensors and loaded back through ``pretrained=<file>`` exactly as the product does for hub weights.
CLAP: a tiny ``ClapConfig`` model + processor written with ``save_pretrained`` and loaded with
``from_pretrained`` from that folder, audio resampled to 48 kHz as in production.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crossmodal_demo.config import Config
from crossmodal_demo.encoders import device, presets, weights
from crossmodal_demo.encoders.base import EncoderSet
from crossmodal_demo.errors import UserError
from crossmodal_demo.index import faiss_index
from crossmodal_demo.ingest.media import Audio
from crossmodal_demo.retrieval.library import open_library

TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(autouse=True)
def empty_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the Hugging Face cache at an empty folder so a developer's real cache cannot change outcomes."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    weights.forget_probe()
    return cache


@pytest.fixture(scope="module")
def tiny_clip_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny open_clip architecture (registered) and a random checkpoint for it as .safetensors."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    d = tmp_path_factory.mktemp("tiny-clip")
    (d / "tiny-clip-test.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(d / "tiny-clip-test.json")
    torch.manual_seed(0)
    model = open_clip.create_model("tiny-clip-test")
    path = d / "tiny-clip.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="module")
def tiny_clap_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CLAP model + processor (48 kHz feature extractor, 1 s window) written with save_pretrained."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor, RobertaTokenizer

    d = tmp_path_factory.mktemp("tiny-clap")
    bpe = ByteLevelBPETokenizer()
    corpus = ["a dog barks", "rain on the roof", "a siren wails", "the sound of a bell", "birds sing"] * 3
    bpe.train_from_iterator(corpus, vocab_size=300, min_frequency=1, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(d))
    vocab = json.loads((d / "vocab.json").read_text())
    merges = [tuple(line.split()) for line in (d / "merges.txt").read_text().splitlines()[1:] if line]
    tok = RobertaTokenizer(vocab=vocab, merges=merges)
    cfg = ClapConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=37, max_position_embeddings=40),
        audio_config=dict(hidden_size=32, patch_embeds_hidden_size=16, depths=[1, 1], num_attention_heads=[2, 2],
                          window_size=4, spec_size=128, enable_fusion=True, fusion_type="aff_2d"),
        projection_dim=16,
    )
    torch.manual_seed(0)
    out = d / "clap"
    ClapModel(cfg).save_pretrained(out)
    ClapProcessor(feature_extractor=ClapFeatureExtractor(max_length_s=1), tokenizer=tok).save_pretrained(out)
    return out


@pytest.fixture
def tiny_config(tiny_clip_file: Path, tiny_clap_dir: Path, config: Config) -> Config:
    """The clip preset configured with the tiny checkpoints (settings passed in a Config, on the CPU)."""
    return dataclasses.replace(
        config, clip_model="tiny-clip-test", clip_pretrained=str(tiny_clip_file), clap_model=str(tiny_clap_dir), device="cpu"
    )


@pytest.fixture
def clip_set(tiny_config: Config) -> EncoderSet:
    return EncoderSet(presets.preset_for("clip", tiny_config), tiny_config)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make any hub request fail loudly; returns the list of attempted requests."""
    import huggingface_hub

    calls: list[str] = []

    def refuse(*args: object, **kwargs: object) -> None:
        calls.append(str(args[:1]))
        raise ConnectionError("network use in a test")

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", refuse)
    return calls


def _images() -> list[Image.Image]:
    rng = np.random.RandomState(0)
    return [Image.fromarray(rng.randint(0, 255, (40 + 7 * i, 50, 3), dtype=np.uint8)) for i in range(3)]


def _clip(seconds: float, sr: int = 16000, seed: int = 0) -> Audio:
    rng = np.random.RandomState(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * (220 + 40 * seed) * t) + 0.05 * rng.randn(t.size)
    return Audio(x.astype(np.float32), sr, f"clip{seed}")


def _unit(v: np.ndarray) -> None:
    assert v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


# ---------------------------------------------------------------------------------------------- open_clip
def test_open_clip_tiny_checkpoint_through_product_path(clip_set: EncoderSet) -> None:
    img, txt = clip_set.get("openclip-image"), clip_set.get("openclip-text")
    assert (img.modality, img.space, img.dim) == ("image", "clip", 16)
    assert img.model_id == "open_clip:tiny-clip-test/file:tiny-clip.safetensors"
    assert not img.is_loaded  # lazy: nothing loads until the first encode
    ims = _images()
    a = img.encode(ims)
    assert a.shape == (3, 16)
    _unit(a)
    np.testing.assert_array_equal(a, img.encode(ims))  # deterministic
    one = np.concatenate([img.encode([im]) for im in ims])
    np.testing.assert_allclose(a, one, atol=1e-5)  # batched == one by one
    t = txt.encode(["a photo of a cat", "", "a rocket launch"])
    assert t.shape == (3, 16) and not t[1].any()
    _unit(t[[0, 2]])
    np.testing.assert_allclose(t[[0, 2]], txt.encode(["a photo of a cat", "a rocket launch"]), atol=1e-5)
    assert img.holder is txt.holder  # one model in memory for both towers


def test_open_clip_loads_weights_from_the_file(clip_set: EncoderSet, tiny_clip_file: Path) -> None:
    from safetensors.torch import load_file

    enc = clip_set.get("openclip-image")
    enc.encode(_images()[:1])
    saved = load_file(str(tiny_clip_file))
    live = enc.holder.model.state_dict()
    assert all(np.array_equal(saved[k].numpy(), live[k].numpy()) for k in saved)


def test_known_tags_agree_with_open_clip() -> None:
    import open_clip

    from crossmodal_demo.encoders import open_clip as oc

    for (model, tag), folder in oc.KNOWN_TAGS.items():
        assert open_clip.get_pretrained_cfg(model, tag)["hf_hub"] == folder
        assert oc.embed_dim(oc.ClipChoice(model, tag)) == open_clip.get_model_config(model)["embed_dim"]


# ---------------------------------------------------------------------------------------------- CLAP
def test_clap_tiny_checkpoint_audio_and_text(clip_set: EncoderSet) -> None:
    aud, txt = clip_set.get("clap-audio"), clip_set.get("clap-text")
    assert (aud.modality, aud.space, aud.dim, txt.modality) == ("audio", "clap", 16, "text")
    clips = [_clip(0.4, seed=0), _clip(0.9, seed=1), _clip(0.6, sr=48000, seed=2)]
    np.random.seed(1)
    a = aud.encode(clips)
    assert a.shape == (3, 16)
    _unit(a)
    assert aud.holder.processor.feature_extractor.sampling_rate == 48000
    np.random.seed(2)  # the extractor's random choices must not matter
    np.testing.assert_allclose(a, aud.encode(clips), atol=1e-6)
    one = np.concatenate([aud.encode([c]) for c in clips])
    np.testing.assert_allclose(a, one, atol=1e-5)
    silent = aud.encode([Audio(np.zeros(8000, np.float32), 16000)])
    assert not silent.any()
    t = txt.encode(["a dog barks", "", "rain on the roof"])
    assert t.shape == (3, 16) and not t[1].any()
    _unit(t[[0, 2]])


def test_clap_resamples_to_48k(clip_set: EncoderSet) -> None:
    from crossmodal_demo.ingest.media import resample

    aud = clip_set.get("clap-audio")
    c16 = _clip(0.5, seed=3)
    c48 = Audio(resample(c16.samples, 16000, 48000), 48000)
    assert c48.samples.size == 24000
    np.testing.assert_allclose(aud.encode([c16]), aud.encode([c48]), atol=1e-6)


def test_clap_long_audio_is_deterministic_fixed_windows(clip_set: EncoderSet) -> None:
    from crossmodal_demo.encoders.clap import windows

    aud = clip_set.get("clap-audio")
    long = _clip(2.5, seed=4)  # 2.5 windows of 1 s at 48 kHz → 3 evenly spaced full windows
    parts = windows(np.zeros(120000, np.float32), 48000)
    assert [p.size for p in parts] == [48000] * 3
    runs = []
    for seed in (0, 1, 2):
        np.random.seed(seed)
        runs.append(aud.encode([long])[0])
    np.testing.assert_array_equal(runs[0], runs[1])
    np.testing.assert_array_equal(runs[0], runs[2])
    batched = aud.encode([_clip(0.3, seed=5), long])[1]
    np.testing.assert_allclose(batched, runs[0], atol=1e-5)


# ---------------------------------------------------------------------------------------------- preset
def test_clip_preset_one_modality_per_encoder(tiny_config: Config) -> None:
    preset = presets.preset_for("clip", tiny_config)
    assert {(s.name, s.modality, s.space) for s in preset.specs} == {
        ("openclip-image", "image", "clip"), ("openclip-text", "text", "clip"),
        ("clap-audio", "audio", "clap"), ("clap-text", "text", "clap"),
        ("minilm-text", "text", "text"), ("whisper-transcript", "audio", "text"),
    }


def test_presets_are_a_pure_function_of_the_settings(tiny_config: Config, config: Config) -> None:
    tiny = presets.preset_for("clip", tiny_config)
    default = presets.preset_for("clip", config)
    assert tiny.spec("openclip-image").model_id == "open_clip:tiny-clip-test/file:tiny-clip.safetensors"
    assert default.spec("openclip-image").model_id == "open_clip:ViT-B-32/laion2b_s34b_b79k"
    assert presets.preset_for("clip", config) == default  # building one preset changed nothing for the other


def test_auto_uses_clip_when_weights_are_local(tiny_config: Config) -> None:
    assert presets.resolve_preset("auto", tiny_config) == ("clip", "auto chose 'clip': clip weights are in the local cache")


def test_auto_falls_back_to_offline_without_asking_the_hub_when_offline(config: Config, no_network: list[str]) -> None:
    chosen, reason = presets.resolve_preset("auto", dataclasses.replace(config, hub_offline=True))
    assert chosen == "offline" and "HF_HUB_OFFLINE=1" in reason and "download --preset clip" in reason
    assert no_network == []


def test_hub_probe_answer_expires(config: Config, no_network: list[str]) -> None:
    online = dataclasses.replace(config, hub_offline=False, hub_probe_seconds=2.0, hub_probe_ttl=3600.0)
    first = weights.hub_reachable(online)
    assert first[0] is False and "ConnectionError" in first[1]
    assert weights.hub_reachable(online) == first and len(no_network) == 1  # reused within the ttl
    weights.hub_reachable(dataclasses.replace(online, hub_probe_ttl=0.0))
    assert len(no_network) == 2  # expired: asked again


def test_clip_without_weights_is_refused_clearly(config: Config) -> None:
    with pytest.raises(UserError) as err:
        presets.resolve_preset("clip", dataclasses.replace(config, hub_offline=True))
    msg = str(err.value)
    assert "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in msg and "laion/clap-htsat-fused" in msg
    assert "--preset offline" in msg and "download --preset clip" in msg


def test_unknown_preset_lists_the_valid_ones(config: Config) -> None:
    for call in (presets.resolve_preset, presets.preset_for):
        with pytest.raises(UserError, match=r"Unknown preset 'clp'. Available: auto, clip, offline."):
            call("clp", config)


def test_auto_defers_to_an_existing_collection_without_probing(config: Config, fake_overrides: dict,
                                                             no_network: list[str]) -> None:
    open_library(config, "old", preset="offline", create=True, overrides=fake_overrides).collection.close()
    online = dataclasses.replace(config, hub_offline=False)  # a probe would be attempted if anything asked
    for kwargs in ({"preset": "auto", "create": True}, {}):
        lib = open_library(online, "old", overrides=fake_overrides, **kwargs)
        assert lib.encoders.preset.name == "offline" and "built with preset 'offline'" in lib.preset_reason
        lib.collection.close()
    assert no_network == []


def test_collection_records_models_and_refuses_mixing(tiny_config: Config, tmp_path: Path, tiny_clip_file: Path) -> None:
    lib = open_library(tiny_config, "c", preset="clip", create=True)
    mf = lib.collection.manifest
    lib.collection.close()
    assert mf["preset"] == "clip"
    assert mf["encoders"]["openclip-image"]["model_id"] == "open_clip:tiny-clip-test/file:tiny-clip.safetensors"
    assert mf["spaces"] == {"clip": 16, "clap": 16, "text": 384}
    other = tmp_path / "other.safetensors"
    other.write_bytes(tiny_clip_file.read_bytes())
    changed = dataclasses.replace(tiny_config, clip_pretrained=str(other))  # same space, different weights
    with pytest.raises(UserError, match="different encoders"):
        open_library(changed, "c")
    with pytest.raises(UserError, match="different encoders"):
        open_library(tiny_config, "c", preset="offline")


# ---------------------------------------------------------------------------------------------- device
def test_cpu_is_forced_by_the_setting(config: Config) -> None:
    assert device.torch_device(dataclasses.replace(config, device="cpu")) == "cpu"
    assert faiss_index.policy_for(dataclasses.replace(config, device="cpu")).gpu is False
    assert device.whisper_compute("cpu") == ("cpu", "int8")


def test_faiss_gpu_copy_falls_back_silently() -> None:
    import faiss

    index = faiss.IndexFlatIP(4)
    if not faiss_index.faiss_has_gpu(faiss):
        assert faiss_index.index_to_gpu(faiss, index) is index


@pytest.mark.gpu
@pytest.mark.skipif(not faiss_index.faiss_has_gpu(__import__("faiss")), reason="needs faiss-gpu and a GPU")
def test_faiss_index_cloned_to_gpu() -> None:  # pragma: no cover - no GPU in CI
    import faiss

    index = faiss.IndexFlatIP(4)
    index.add(np.eye(4, dtype=np.float32))
    gpu = faiss_index.index_to_gpu(faiss, index)
    assert gpu is not index and gpu.search(np.eye(4, dtype=np.float32)[:1], 1)[1][0, 0] == 0


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
def test_open_clip_on_cuda_is_half_precision(tiny_config: Config) -> None:  # pragma: no cover
    cuda = dataclasses.replace(tiny_config, device="cuda")
    enc = EncoderSet(presets.preset_for("clip", cuda), cuda).get("openclip-image")
    _unit(enc.encode(_images()[:2]))
    assert str(enc.holder.dtype) == "torch.float16"


# ---------------------------------------------------------------------------------------------- real hub
@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("CROSSMODAL_TEST_HUB") != "1",
    reason="real hub weights: run with CROSSMODAL_TEST_HUB=1 HF_HUB_OFFLINE=0 on a connected machine",
)
def test_real_clip_weights(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:  # pragma: no cover
    monkeypatch.undo()  # use the real Hugging Face cache, not the empty one
    online = dataclasses.replace(config, hub_offline=False)
    ok, why = weights.hub_reachable(online)
    if not ok:
        pytest.skip(why)
    presets.download("clip", online)
    encs = EncoderSet(presets.preset_for(presets.resolve_preset("clip", online)[0], online), online)
    img = encs.get("openclip-image").encode(_images()[:1])
    txt = encs.get("openclip-text").encode(["random noise", "a red car"])
    assert img.shape == (1, 512) and txt.shape == (2, 512)
    _unit(encs.get("clap-audio").encode([_clip(12.0)]))
