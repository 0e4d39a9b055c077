"""open_clip image and text encoders: the ``clip`` space.

Any open_clip architecture and weights can be chosen with ``config.clip_model`` (``CROSSMODAL_CLIP_MODEL``,
default ``ViT-B-32``) and ``config.clip_pretrained`` (``CROSSMODAL_CLIP_PRETRAINED``, default
``laion2b_s34b_b79k``; a pretrained tag, or a path to a ``.safetensors`` / ``.bin`` / ``.pt`` checkpoint file). ``hf-hub:org/repo`` and
``local-dir:/folder`` model names work as in open_clip.

Weights always reach open_clip as a local file (``pretrained=<file>``): this module finds the file in
the Hugging Face cache (or downloads it when allowed) first, so a missing file is reported in one
clear sentence instead of a stack trace from deep inside a download.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from crossmodal_demo.config import Config
from crossmodal_demo.errors import UserError
from crossmodal_demo.encoders.base import EncoderSet, EncoderSpec, ModelHolder, TextTower, TowerEncoder, shared_holder
from crossmodal_demo.encoders.device import open_clip_precision, torch_device
from crossmodal_demo.encoders.weights import HubFile, cached_or_fetch

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
# Checkpoint files tried in order: safetensors first, so no pickle is read when it is avoidable.
OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")

# The hub folders of popular tags, copied from open_clip's pretrained.py so the weights check needs no
# torch import (checked against open_clip in the tests). Other tags ask open_clip itself.
KNOWN_TAGS: dict[tuple[str, str], str] = {
    ("ViT-B-32", "laion2b_s34b_b79k"): "laion/CLIP-ViT-B-32-laion2B-s34B-b79K/",
    ("ViT-B-16", "laion2b_s34b_b88k"): "laion/CLIP-ViT-B-16-laion2B-s34B-b88K/",
    ("MobileCLIP-S2", "datacompdr"): "apple/MobileCLIP-S2-OpenCLIP/",
    ("ViT-B-16-SigLIP", "webli"): "timm/ViT-B-16-SigLIP/",
}


@dataclass(frozen=True)
class ClipChoice:
    """Which open_clip model and weights the ``clip`` space uses."""

    model: str = DEFAULT_MODEL
    pretrained: str = DEFAULT_PRETRAINED

    @property
    def schema(self) -> str | None:
        """``"hf-hub"`` / ``"local-dir"`` for prefixed model names, else None (built-in architecture)."""
        for prefix in ("hf-hub", "local-dir"):
            if self.model.startswith(prefix + ":"):
                return prefix
        return None

    @property
    def is_file(self) -> bool:
        """True when ``pretrained`` names a checkpoint file rather than a tag."""
        return self.schema is None and (os.sep in self.pretrained or Path(self.pretrained).suffix in (".safetensors", ".bin", ".pt", ".pth"))

    @property
    def model_id(self) -> str:
        """Stable id stored in collection manifests; differs whenever the vectors would differ."""
        if self.schema:
            return f"open_clip:{self.model}"
        weights = f"file:{Path(self.pretrained).name}" if self.is_file else self.pretrained
        return f"open_clip:{self.model}/{weights}"


def clip_choice(config: Config) -> ClipChoice:
    """The open_clip model chosen by ``config.clip_model`` / ``config.clip_pretrained``."""
    return ClipChoice(config.clip_model.strip() or DEFAULT_MODEL, config.clip_pretrained.strip() or DEFAULT_PRETRAINED)


def _builtin_config(model: str) -> dict[str, Any] | None:
    """open_clip's architecture config for a built-in (or registered) model name, without importing torch."""
    if "open_clip" in sys.modules:  # already imported: also sees configs added with add_model_config
        return sys.modules["open_clip"].get_model_config(model)
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("The clip preset needs open_clip: pip install open_clip_torch (or use --preset offline).")
    path = Path(list(spec.submodule_search_locations)[0]) / "model_configs" / f"{model}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def model_config(choice: ClipChoice) -> dict[str, Any] | None:
    """The architecture config of ``choice`` when it can be read locally, else None."""
    if choice.schema == "local-dir":
        f = Path(choice.model.split(":", 1)[1]) / "open_clip_config.json"
    elif choice.schema == "hf-hub":
        cached = HubFile(choice.model.split(":", 1)[1], ("open_clip_config.json",)).cached()
        f = Path(cached) if cached else None
    else:
        return _builtin_config(choice.model)
    if f is None or not f.is_file():
        return None
    doc = json.loads(f.read_text())
    return doc.get("model_cfg", doc)


def embed_dim(choice: ClipChoice) -> int:
    """Width of the shared image-text space of ``choice``; unknown names fail listing where to look."""
    cfg = model_config(choice)
    if cfg is None:
        if choice.schema == "hf-hub":
            return 0  # known only once open_clip_config.json is cached; resolve_preset asks for a download first
        raise UserError(
            f"Unknown open_clip model {choice.model!r} (CROSSMODAL_CLIP_MODEL). "
            "See open_clip.list_models() for the architectures, e.g. ViT-B-32, ViT-B-16-SigLIP, MobileCLIP-S2."
        )
    return int(cfg["embed_dim"])


def _hub_folder(choice: ClipChoice) -> str:
    """``org/repo/`` or ``org/repo/file`` holding the weights of a built-in model's pretrained tag."""
    folder = KNOWN_TAGS.get((choice.model, choice.pretrained))
    if folder is None:
        import open_clip  # lazy: heavy (torch); only for tags outside KNOWN_TAGS

        cfg = open_clip.get_pretrained_cfg(choice.model, choice.pretrained)
        if not cfg:
            tags = open_clip.list_pretrained_tags_by_model(choice.model)
            raise UserError(
                f"Unknown pretrained tag {choice.pretrained!r} for open_clip model {choice.model!r} "
                f"(CROSSMODAL_CLIP_PRETRAINED). Available: {', '.join(tags) or 'none'}; or give a checkpoint file path."
            )
        folder = cfg.get("hf_hub") or ""
        if not folder:
            raise UserError(
                f"open_clip weights {choice.model}/{choice.pretrained} are not on the Hugging Face hub; download "
                f"the checkpoint yourself and set CROSSMODAL_CLIP_PRETRAINED=/path/to/file."
            )
    return folder


def weight_files(choice: ClipChoice) -> list[HubFile]:
    """The hub files ``choice`` needs (weights, and tokenizer files for HF-tokenizer models); [] for local files."""
    if choice.schema == "local-dir" or choice.is_file:
        return []
    if choice.schema == "hf-hub":
        repo = choice.model.split(":", 1)[1]
        files = [HubFile(repo, ("open_clip_config.json",)), HubFile(repo, OPEN_CLIP_WEIGHTS)]
    else:
        # open_clip's convention: "org/repo/" means the default file names, "org/repo/file.bin" one file.
        repo_id, filename = os.path.split(_hub_folder(choice))
        names = (filename,) if filename else OPEN_CLIP_WEIGHTS
        if filename.endswith((".bin", ".pth")):
            names = (filename[:-4] + ".safetensors", filename)
        files = [HubFile(repo_id, names)]
    cfg = model_config(choice) or {}
    tok = cfg.get("text_cfg", {}).get("hf_tokenizer_name")
    if tok:  # HF tokenizers (SigLIP, ...) live in their own repo and download on first use
        files.append(HubFile(tok, ("tokenizer.json", "tokenizer_config.json"), snapshot=True))
    return files


def local_checkpoint(choice: ClipChoice) -> str | None:
    """Path of the checkpoint when every file ``choice`` needs is on disk, else None."""
    if choice.schema == "local-dir":
        return choice.model if Path(choice.model.split(":", 1)[1]).is_dir() else None
    if choice.is_file:
        return choice.pretrained if Path(choice.pretrained).is_file() else None
    paths = [f.cached() for f in weight_files(choice)]
    if not all(paths):
        return None
    return paths[1 if choice.schema == "hf-hub" else 0]


def fetch(choice: ClipChoice) -> str:
    """Download what ``choice`` needs into the Hugging Face cache; returns the checkpoint path."""
    paths = [f.fetch() for f in weight_files(choice)]
    found = local_checkpoint(choice)
    if found is None:
        raise UserError(f"Downloaded {choice.model_id}, but its files are still not in the cache ({paths}).")
    return found


class OpenClipModel(ModelHolder):
    """One loaded open_clip model shared by the image and text encoders (loaded once, on first use)."""

    def __init__(self, choice: ClipChoice, device: str, config: Config) -> None:
        super().__init__(device, config)
        self.choice = choice
        self.preprocess: Any = None
        self.tokenizer: Any = None

    def _load(self) -> None:
        """Build the model from the local checkpoint (called with ``lock`` held)."""
        import open_clip  # lazy: heavy (torch)

        checkpoint = cached_or_fetch(
            lambda: local_checkpoint(self.choice), lambda: fetch(self.choice), lambda: [self.choice.model_id], self.config
        )
        kwargs: dict[str, Any] = {}
        name = self.choice.model
        if self.choice.schema == "hf-hub":
            # The cached snapshot folder holds config + weights: load it as a local dir, no network.
            name = "local-dir:" + str(Path(checkpoint).parent)
        elif self.choice.schema is None:
            kwargs["pretrained"] = checkpoint
            if not self.choice.is_file:
                # Passing a file skips the tag's preprocessing and activation settings; pass them explicitly.
                pcfg = open_clip.get_pretrained_cfg(self.choice.model, self.choice.pretrained)
                kwargs.update(
                    image_mean=pcfg.get("mean"),
                    image_std=pcfg.get("std"),
                    image_interpolation=pcfg.get("interpolation"),
                    image_resize_mode=pcfg.get("resize_mode"),
                    force_quick_gelu=bool(pcfg.get("quick_gelu", False)),
                )
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, precision=open_clip_precision(self.device), device=self.device, weights_only=True, **kwargs
        )
        self.tokenizer = open_clip.get_tokenizer(name)
        self.preprocess = preprocess
        self.model = model.eval()


def shared_model(choice: ClipChoice, config: Config) -> OpenClipModel:
    """The process-wide holder for ``choice`` on the configured device (image and text encoders share it)."""
    device = torch_device(config)
    return shared_holder(("open_clip", choice, device), lambda: OpenClipModel(choice, device, config))


class OpenClipImage(TowerEncoder):
    """RGB PIL images → the ``clip`` space."""

    modality = "image"

    def encode(self, batch: Sequence[Any]) -> np.ndarray:
        """Images → float32 (n, dim), L2-normalised."""
        if not batch:
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch  # lazy: heavy library, needed only once a model runs

        h = self.holder
        with h.lock:
            h.load()
            x = torch.stack([h.preprocess(im.convert("RGB")) for im in batch]).to(h.device, h.dtype)
            with torch.inference_mode():
                return self.finish(h.model.encode_image(x).float().cpu().numpy())


class OpenClipText(TextTower):
    """Texts → the ``clip`` space; text beyond the model's context (77 tokens for most) is cut off."""

    @property
    def max_tokens(self) -> int:
        """Word pieces the model reads (context length minus start/end tokens)."""
        with self.holder.lock:
            self.holder.load()
            return int(getattr(self.holder.tokenizer, "context_length", 77)) - 2

    def count_tokens(self, text: str) -> int:
        """Word pieces in ``text`` (without special tokens); under the model's lock (tokenizers are not thread-safe)."""
        with self.holder.lock:
            self.holder.load()
            tok = self.holder.tokenizer
            if hasattr(tok, "encode"):
                return len(tok.encode(text))
            return len(tok.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _embed(self, texts: list[str]) -> np.ndarray:
        """Raw open_clip text features (n, dim); the holder is loaded and locked."""
        import torch  # lazy: heavy library, needed only once a model runs

        h = self.holder
        tokens = h.tokenizer(texts).to(h.device)
        with torch.inference_mode():
            return h.model.encode_text(tokens).float().cpu().numpy()


def make_image(spec: EncoderSpec, config: Config, encoders: EncoderSet | None = None) -> OpenClipImage:
    """Factory for ``openclip-image`` (model chosen by ``spec.options['choice']``, else the settings)."""
    return OpenClipImage(spec, shared_model(spec.options.get("choice") or clip_choice(config), config))


def make_text(spec: EncoderSpec, config: Config, encoders: EncoderSet | None = None) -> OpenClipText:
    """Factory for ``openclip-text`` (shares the loaded model with ``openclip-image``)."""
    return OpenClipText(spec, shared_model(spec.options.get("choice") or clip_choice(config), config))
