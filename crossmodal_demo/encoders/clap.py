"""CLAP audio and text encoders through transformers: the ``clap`` space.

The model is ``config.clap_model`` (``CROSSMODAL_CLAP_MODEL``, default ``laion/clap-htsat-fused``): a hub id, or a folder
written by ``save_pretrained``. Audio is resampled to the feature extractor's rate (48 kHz).

Long clips are handled deterministically. transformers' CLAP feature extractor crops clips longer
than its window at random (``rand_trunc``, and the random chunks of ``fusion``), and in a batch with
no long clip it marks a random one as "longer". So this encoder never hands it more than one window:
a clip longer than the window is cut into evenly spaced, full-length windows covering it from start
to end, each is embedded with ``is_longer=False``, and the window vectors are averaged and
re-normalised. The same clip therefore always gets the same vector, alone or in any batch.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from crossmodal_demo.config import Config
from crossmodal_demo.encoders.base import EncoderSet, EncoderSpec, ModelHolder, TextTower, TowerEncoder, shared_holder
from crossmodal_demo.encoders.device import torch_device, torch_dtype
from crossmodal_demo.encoders.weights import HubFile, cached_or_fetch
from crossmodal_demo.ingest.media import resample
from crossmodal_demo.vectors import l2_normalise

DEFAULT_CLAP = "laion/clap-htsat-fused"
CLAP_SR = 48000
DEFAULT_DIM = 512  # projection_dim of every LAION CLAP checkpoint (and ClapConfig's default)
WEIGHTS = ("model.safetensors", "pytorch_model.bin")


def clap_model_name(config: Config) -> str:
    """``config.clap_model`` (``CROSSMODAL_CLAP_MODEL``), or the default ``laion/clap-htsat-fused``."""
    return config.clap_model.strip() or DEFAULT_CLAP


def clap_model_id(name: str) -> str:
    """Manifest id: the hub id, or ``local:<folder name>`` for a local folder."""
    return f"local:{Path(name).name}" if os.path.isdir(name) else name


def clap_files(name: str) -> list[HubFile]:
    """Hub files a CLAP checkpoint needs; [] for a local folder."""
    if os.path.isdir(name):
        return []
    return [
        HubFile(name, ("config.json",)),
        HubFile(name, ("preprocessor_config.json",)),
        HubFile(name, ("tokenizer_config.json",), snapshot=True),  # the snapshot brings vocab/merges too
        HubFile(name, WEIGHTS),
    ]


def clap_local_path(name: str) -> str | None:
    """Folder holding the whole checkpoint (a local folder, or its snapshot in the HF cache), else None."""
    if os.path.isdir(name):
        return name
    paths = [f.cached() for f in clap_files(name)]
    return os.path.dirname(paths[0]) if all(paths) else None  # type: ignore[arg-type]


def clap_dim(name: str) -> int:
    """Projection width of the checkpoint, read from its config when it is on disk."""
    folder = name if os.path.isdir(name) else None
    cfg_path = os.path.join(folder, "config.json") if folder else HubFile(name, ("config.json",)).cached()
    if cfg_path and os.path.isfile(cfg_path):
        return int(json.loads(Path(cfg_path).read_text()).get("projection_dim", DEFAULT_DIM))
    return DEFAULT_DIM


def windows(samples: np.ndarray, size: int) -> list[np.ndarray]:
    """Evenly spaced full windows of ``size`` samples covering ``samples``; one (the clip) when it fits."""
    n = len(samples)
    if n <= size:
        return [samples]
    count = math.ceil(n / size)
    starts = np.linspace(0, n - size, count).round().astype(int)
    return [samples[s : s + size] for s in starts]


class ClapHolder(ModelHolder):
    """One loaded CLAP model + processor shared by the audio and text encoders (loaded on first use)."""

    def __init__(self, name: str, device: str, config: Config) -> None:
        super().__init__(device, config)
        self.name = name
        self.processor: Any = None

    def _load(self) -> None:
        """Load from the local folder / cache, downloading only when the hub is reachable (``lock`` held)."""

        def fetch_all() -> str | None:
            for f in clap_files(self.name):
                f.fetch()
            return clap_local_path(self.name)

        path = cached_or_fetch(
            lambda: clap_local_path(self.name),
            fetch_all,
            lambda: [f.describe() for f in clap_files(self.name) if f.cached() is None],
            self.config,
        )
        from transformers import ClapModel, ClapProcessor  # lazy: heavy (torch)
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # per-tensor "Loading weights" bars would clutter the CLI's stderr
        # A local folder: transformers reads it without any network call; safetensors or weights_only pickles.
        model = ClapModel.from_pretrained(path, dtype=torch_dtype(self.device), local_files_only=True)
        self.processor = ClapProcessor.from_pretrained(path, local_files_only=True)
        self.model = model.to(self.device).eval()


def shared_model(name: str, config: Config) -> ClapHolder:
    """The process-wide holder for CLAP ``name`` on the configured device (audio and text towers share it)."""
    device = torch_device(config)
    return shared_holder(("clap", name, device), lambda: ClapHolder(name, device, config))


class ClapAudio(TowerEncoder):
    """Audio clips (any rate, mono) → the ``clap`` space; long clips as averaged fixed windows."""

    modality = "audio"

    def _embed_windows(self, chunks: list[np.ndarray]) -> np.ndarray:
        import torch  # lazy: heavy library, needed only once a model runs

        h = self.holder
        fe = h.processor.feature_extractor
        feats = fe(chunks, sampling_rate=fe.sampling_rate, return_tensors="pt")
        # No chunk exceeds the window, so none is "longer"; override the extractor's random pick.
        is_longer = torch.zeros_like(feats["is_longer"], dtype=torch.bool)
        with torch.inference_mode():
            out = h.model.get_audio_features(
                input_features=feats["input_features"].to(h.device, h.dtype), is_longer=is_longer.to(h.device)
            )
        return out.pooler_output.float().cpu().numpy()

    def encode(self, batch: Sequence[Any]) -> np.ndarray:
        """Clips → float32 (n, dim), L2-normalised; silent or empty clips give zero rows."""
        out = np.zeros((len(batch), self.dim), dtype=np.float32)
        h = self.holder
        with h.lock:
            h.load()
            fe = h.processor.feature_extractor
            size = int(fe.nb_max_samples)
            chunks: list[np.ndarray] = []
            owner: list[int] = []
            for i, clip in enumerate(batch):
                x = resample(clip.samples, clip.sr, fe.sampling_rate)
                if x.size == 0 or not np.any(x):
                    continue  # nothing to hear: leave a zero row ("nothing to embed")
                for w in windows(x, size):
                    chunks.append(w)
                    owner.append(i)
            if not chunks:
                return out
            vecs = np.concatenate([self._embed_windows(chunks[s : s + 16]) for s in range(0, len(chunks), 16)])
        sums = np.zeros_like(out)
        np.add.at(sums, np.asarray(owner), l2_normalise(vecs))
        return l2_normalise(sums)


class ClapText(TextTower):
    """Texts → the ``clap`` space."""

    @property
    def max_tokens(self) -> int:
        """Word pieces the text tower reads (the rest is cut off)."""
        with self.holder.lock:
            self.holder.load()
            return self.max_tokens_unlocked()

    def count_tokens(self, text: str) -> int:
        """Word pieces in ``text`` (without special tokens); under the model's lock (tokenizers are not thread-safe)."""
        with self.holder.lock:
            self.holder.load()
            return len(self.holder.processor.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _embed(self, texts: list[str]) -> np.ndarray:
        """Raw CLAP text features (n, dim); the holder is loaded and locked."""
        import torch  # lazy: heavy library, needed only once a model runs

        h = self.holder
        tok = h.processor.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens_unlocked() + 2, return_tensors="pt")
        with torch.inference_mode():
            feats = h.model.get_text_features(input_ids=tok["input_ids"].to(h.device), attention_mask=tok["attention_mask"].to(h.device))
        return feats.pooler_output.float().cpu().numpy()

    def max_tokens_unlocked(self) -> int:
        """:attr:`max_tokens` for callers already holding the lock."""
        cfg = self.holder.model.config.text_config
        return min(int(self.holder.processor.tokenizer.model_max_length), int(cfg.max_position_embeddings) - 2) - 2


def make_audio(spec: EncoderSpec, config: Config, encoders: EncoderSet | None = None) -> ClapAudio:
    """Factory for ``clap-audio``."""
    return ClapAudio(spec, shared_model(spec.options.get("model") or clap_model_name(config), config))


def make_text(spec: EncoderSpec, config: Config, encoders: EncoderSet | None = None) -> ClapText:
    """Factory for ``clap-text`` (shares the loaded model with ``clap-audio``)."""
    return ClapText(spec, shared_model(spec.options.get("model") or clap_model_name(config), config))
