"""Alignment bridges: a linear map between two embedding spaces learnt from paired vectors.

Two methods:

* **orthogonal Procrustes** (``scipy.linalg.orthogonal_procrustes``): ``y ≈ (x - x̄) W + ȳ`` with W
  orthogonal (semi-orthogonal when the dims differ: the smaller side is zero-padded). It keeps
  distances, so a bridged query can search the target space's own index directly.
* **CCA** (``sklearn.cross_decomposition.CCA``): both sides are projected into a shared space of
  maximally correlated components; target items are projected too, then compared by cosine.

A bridge is fitted on a training split and its quality measured on the held-out pairs (cross-space
retrieval: does a held-out x find its own y among all held-out ys?). That held-out quality travels
with the bridge and is shown next to its results.

With the ``clip`` preset, :func:`text_bridge` maps CLAP's text space into CLIP's text space from one
caption vocabulary (the 1000 tag names) encoded by both text towers — paired data for free — and
:func:`audio_to_image_source` applies it to CLAP *audio* vectors, so a sound can find a picture
(source ``clap→clip/content``); :func:`attach_bridges` adds it to a library's fused search.

With the offline preset, :func:`offline_text_bridge` builds a second space with no model at all —
LSA (TF-IDF + truncated SVD) over texts — and bridges it into the MiniLM ``text`` space, using as
pairs the 1000 ImageNet class names (the ConSE vocabulary) and the collection's captions/transcripts.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crossmodal_demo.encoders.base import Encoder
from crossmodal_demo.encoders.conse import imagenet_class_names
from crossmodal_demo.encoders.vocabulary import cached_text_vectors, tag_names
from crossmodal_demo.errors import UserError
from crossmodal_demo.retrieval.library import Library
from crossmodal_demo.retrieval.query import Query
from crossmodal_demo.retrieval.sources import ExtraSource, target_modalities
from crossmodal_demo.vectors import l2_normalise

METHODS = ("procrustes", "cca")


@dataclass
class Bridge:
    """A fitted map from space ``source`` (dim ``dx``) to space ``target`` (dim ``dy``).

    ``quality`` holds held-out metrics: recall@1, recall@5, mrr (retrieving each held-out pair among
    the ``n_test`` held-out targets) and mean_cosine (of each mapped x with its own y).
    """

    method: str
    source: str
    target: str
    dx: int
    dy: int
    x_mean: np.ndarray
    y_mean: np.ndarray
    W: np.ndarray | None = None  # procrustes: (dx, dy)
    cca: Any = None  # fitted sklearn CCA
    pca: tuple[Any, Any] = (None, None)  # cca: optional PCA of each side applied before the CCA
    n_train: int = 0
    n_test: int = 0
    quality: dict[str, float] = field(default_factory=dict)

    def map_source(self, X: np.ndarray) -> np.ndarray:
        """Source vectors (n, dx) → comparison space: target space (procrustes) or canonical space (cca)."""
        X = _2d(X, self.dx, "source")
        if self.method == "procrustes":
            return ((X - self.x_mean) @ self.W + self.y_mean).astype(np.float32)
        return self.cca.transform(_reduce(self.pca[0], X)).astype(np.float32)

    def map_target(self, Y: np.ndarray) -> np.ndarray:
        """Target vectors (n, dy) → comparison space (unchanged for procrustes, canonical for cca)."""
        Y = _2d(Y, self.dy, "target")
        if self.method == "procrustes":
            return Y.astype(np.float32)
        Yr = _reduce(self.pca[1], Y)
        _, yc = self.cca.transform(np.zeros((len(Yr), self.cca.x_weights_.shape[0])), Yr)
        return yc.astype(np.float32)

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary: method, spaces, dims, split sizes and held-out quality."""
        return {
            "method": self.method,
            "source": self.source,
            "target": self.target,
            "dims": [self.dx, self.dy],
            "n_train": self.n_train,
            "n_test": self.n_test,
            "quality": {k: round(v, 4) for k, v in self.quality.items()},
        }


def _reduce(pca: Any, X: np.ndarray) -> np.ndarray:
    return X if pca is None else pca.transform(X)


def _2d(X: np.ndarray, dim: int, side: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[None, :]
    if X.ndim != 2 or X.shape[1] != dim:
        raise UserError(f"The bridge's {side} side takes vectors of dim {dim}; got shape {X.shape}.")
    return X


def fit_procrustes(X: np.ndarray, Y: np.ndarray, source: str = "x", target: str = "y") -> Bridge:
    """Orthogonal Procrustes on centred pairs X (n, dx), Y (n, dy) → Bridge with W (dx, dy)."""
    from scipy.linalg import orthogonal_procrustes  # lazy: heavy import

    X, Y = _pairs(X, Y)
    mx, my = X.mean(0), Y.mean(0)
    d = max(X.shape[1], Y.shape[1])
    # scipy needs equal shapes; zero-padding the smaller side gives the semi-orthogonal solution.
    Xp = np.zeros((len(X), d))
    Yp = np.zeros((len(Y), d))
    Xp[:, : X.shape[1]] = X - mx
    Yp[:, : Y.shape[1]] = Y - my
    R, _ = orthogonal_procrustes(Xp, Yp)
    return Bridge("procrustes", source, target, X.shape[1], Y.shape[1], mx, my, W=R[: X.shape[1], : Y.shape[1]])


def fit_cca(
    X: np.ndarray,
    Y: np.ndarray,
    n_components: int | None = None,
    source: str = "x",
    target: str = "y",
    reduce_to: int | None = 64,
) -> Bridge:
    """CCA on pairs X (n, dx), Y (n, dy) with ``n_components`` (default min(16, dx, dy, n - 1)).

    A side wider than ``reduce_to`` dims is first reduced by PCA (fitted on the same pairs): sklearn's
    iterative CCA slows down sharply with width (384-d: ~1 min), and the top principal directions
    keep what correlates.
    """
    from sklearn.cross_decomposition import CCA  # lazy: heavy imports
    from sklearn.decomposition import PCA

    X, Y = _pairs(X, Y)
    pcas = []
    sides = []
    for Z in (X, Y):
        if reduce_to and Z.shape[1] > reduce_to and len(Z) > reduce_to:
            p = PCA(n_components=reduce_to, random_state=0).fit(Z)
            pcas.append(p)
            sides.append(p.transform(Z))
        else:
            pcas.append(None)
            sides.append(Z)
    Xr, Yr = sides
    limit = min(Xr.shape[1], Yr.shape[1], len(X) - 1)
    c = n_components or min(16, limit)
    if not 1 <= c <= limit:
        raise UserError(f"CCA n_components must be between 1 and {limit} here (got {c}).")
    cca = CCA(n_components=c, scale=False, max_iter=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning on weak components; quality is measured anyway
        cca.fit(Xr, Yr)
    return Bridge("cca", source, target, X.shape[1], Y.shape[1], X.mean(0), Y.mean(0), cca=cca, pca=(pcas[0], pcas[1]))


def _pairs(X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2 or len(X) != len(Y):
        raise UserError(f"A bridge needs paired vectors: X (n, dx) and Y (n, dy) with the same n; got {X.shape} and {Y.shape}.")
    if len(X) < 3:
        raise UserError(f"A bridge needs at least 3 pairs to fit (got {len(X)}).")
    return X, Y


def bridge_quality(bridge: Bridge, X: np.ndarray, Y: np.ndarray) -> dict[str, float]:
    """Held-out quality on pairs (X[i], Y[i]): recall@1, recall@5, mrr, mean_cosine (floats in [0, 1] / [-1, 1])."""
    A = l2_normalise(bridge.map_source(X))
    B = l2_normalise(bridge.map_target(Y))
    sims = A @ B.T
    own = np.diag(sims)
    rank = 1 + (sims > own[:, None]).sum(axis=1)  # ties count in the pair's favour
    return {
        "recall@1": float(np.mean(rank <= 1)),
        "recall@5": float(np.mean(rank <= 5)),
        "mrr": float(np.mean(1.0 / rank)),
        "mean_cosine": float(np.mean(own)),
    }


def fit_bridge(
    X: np.ndarray,
    Y: np.ndarray,
    method: str = "procrustes",
    test_fraction: float = 0.2,
    seed: int = 0,
    source: str = "x",
    target: str = "y",
    n_components: int | None = None,
) -> Bridge:
    """Fit ``method`` on a random (1 - test_fraction) of the pairs; ``quality`` is measured on the rest.

    The returned bridge is the one that was measured (fitted on the training split only).
    """
    if method not in METHODS:
        raise UserError(f"Unknown bridge method {method!r}. Choose one of: {', '.join(METHODS)}.")
    X, Y = _pairs(X, Y)
    if not 0 < test_fraction < 1:
        raise UserError(f"test_fraction must be between 0 and 1 (got {test_fraction}).")
    order = np.random.default_rng(seed).permutation(len(X))
    n_test = max(1, round(len(X) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    if method == "procrustes":
        b = fit_procrustes(X[train], Y[train], source, target)
    else:
        b = fit_cca(X[train], Y[train], n_components, source, target)
    b.n_train, b.n_test = len(train), len(test)
    b.quality = bridge_quality(b, X[test], Y[test])
    return b


def rank_with_bridge(bridge: Bridge, x: np.ndarray, target_vecs: np.ndarray, ids: Sequence[int], depth: int) -> dict[str, float]:
    """Bridge one source vector x (dx,) and rank target items (vectors (n, dy), ``ids``) by cosine → {id str: score}."""
    if len(ids) == 0:
        return {}
    q = l2_normalise(bridge.map_source(x))[0]
    T = l2_normalise(bridge.map_target(target_vecs))
    scores = T @ q
    order = sorted(range(len(ids)), key=lambda j: (-scores[j], ids[j]))[:depth]
    return {str(ids[j]): float(scores[j]) for j in order}


# --------------------------------------------------------------------------- offline demonstration
class LsaSpace:
    """A model-free text space: TF-IDF (word 1-2 grams) + truncated SVD to ``dim``, L2-normalised."""

    def __init__(self, corpus: Sequence[str], dim: int = 64, seed: int = 0) -> None:
        from sklearn.decomposition import TruncatedSVD  # lazy: heavy imports
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.tfidf = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
        M = self.tfidf.fit_transform(list(corpus))
        self.dim = int(min(dim, M.shape[1] - 1, len(corpus) - 1))
        self.svd = TruncatedSVD(n_components=self.dim, random_state=seed).fit(M)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Texts → float32 (n, dim), L2-normalised (all-zero for texts with no known word)."""
        return l2_normalise(self.svd.transform(self.tfidf.transform(list(texts))))


def offline_text_bridge(
    library: Library, method: str = "procrustes", dim: int = 64, extra_texts: Sequence[str] = (), seed: int = 0
) -> tuple[Bridge, LsaSpace]:
    """Bridge an LSA space (built here, no model) into the collection's ``text`` space.

    Pairs: the ImageNet class names in the ConSE prompt, plus the collection's captions and
    transcripts, plus ``extra_texts``; each text embedded in both spaces. Returns (bridge, LSA space).
    """

    text_enc = library.encoders.text_encoder_for("text")
    if text_enc is None:
        raise UserError(f"Preset {library.encoders.preset.name!r} has no 'text' space to bridge into.")
    template = "a photo of a {}."
    names = [template.format(n) for n in imagenet_class_names()]
    conse = next((library.encoders.get(s.name) for s in library.encoders.specs_for("image") if s.space == "text"), None)
    if conse is not None and hasattr(conse, "class_texts") and hasattr(conse, "class_vectors"):
        names = list(conse.class_texts())  # the very texts ConSE embeds, so each pair lines up
        Y_names = conse.class_vectors()  # cached on disk by the ConSE encoder: no re-encoding
    else:
        Y_names = text_enc.encode(names)
    own = [t for it in library.collection.items() for t in (it.caption, it.transcript) if t and t.strip()]
    texts = own + list(extra_texts)
    Y = np.vstack([Y_names, text_enc.encode(texts)]) if texts else Y_names
    corpus = names + texts
    lsa = LsaSpace(corpus, dim=dim, seed=seed)
    X = lsa.encode(corpus)
    keep = np.linalg.norm(X, axis=1) > 0
    bridge = fit_bridge(X[keep], Y[keep], method=method, seed=seed, source=f"lsa{lsa.dim}", target="text")
    return bridge, lsa


def bridge_source(library: Library, bridge: Bridge, encode: Callable[[str], np.ndarray], channel: str = "content") -> ExtraSource:
    """An :class:`~crossmodal_demo.retrieval.sources.ExtraSource` ranking target items through ``bridge`` for text queries.

    ``encode(text)`` gives the query's vector in the bridge's source space; target items are those
    with a ``channel`` vector in the bridge's target space.
    """

    def rank(query: Any, target: str, depth: int) -> dict[str, float]:
        if not query.text:
            return {}  # the LSA side only reads text
        mods = set(target_modalities(target))
        ids, vecs = [], []
        for it in library.collection.items():
            if it.modality in mods:
                v = library.collection.vectors_of(it.id).get((bridge.target, channel))
                if v is not None:
                    ids.append(it.id)
                    vecs.append(v)
        if not ids:
            return {}
        x = encode(query.text)
        return rank_with_bridge(bridge, x, np.stack(vecs), ids, depth)

    name = f"bridge:{bridge.method}({bridge.source}->{bridge.target})/{channel}"
    desc = f"text query in {bridge.source}, mapped by {bridge.method} into {bridge.target}, against {channel} vectors"
    return ExtraSource(name, desc, rank, {k: round(v, 4) for k, v in bridge.quality.items()})


# --------------------------------------------------------------------------- clip preset: sound → picture
AUDIO_TO_IMAGE = "clap→clip/content"


def text_bridge(source: Encoder, target: Encoder, texts: Sequence[str], cache_dir: Any, seed: int = 0) -> Bridge:
    """Orthogonal Procrustes from ``source``'s text space to ``target``'s, fitted on ``texts`` embedded by both
    (vectors cached on disk); ``quality`` is measured on a held-out 20 % of the texts."""
    X = cached_text_vectors(source, list(texts), cache_dir)
    Y = cached_text_vectors(target, list(texts), cache_dir)
    return fit_bridge(X, Y, "procrustes", seed=seed, source=source.space, target=target.space)


def audio_to_image_source(library: Library, bridge: Bridge) -> ExtraSource:
    """Audio query → its CLAP audio vector → the bridge → CLIP space → ranked against image *content* vectors.

    Used only when the query has a ``clap`` vector and no ``clip`` vector (an audio query: a text query
    reaches CLIP directly) and the target includes images. Scores are cosines in the CLIP space.
    """

    def rank_vectors(vectors: dict[str, np.ndarray], target: str, depth: int) -> dict[str, float]:
        x = vectors.get(bridge.source)
        if x is None or bridge.target in vectors or "image" not in target_modalities(target):
            return {}
        q = l2_normalise(bridge.map_source(x))[0].astype(np.float32)
        scores, ids = library.collection.search((bridge.target, "content", "image"), q[None, :], depth)
        return {str(int(i)): float(sc) for sc, i in zip(scores[0], ids[0]) if i >= 0}

    def rank(query: Query, target: str, depth: int) -> dict[str, float]:
        if query.modality != "audio":
            return {}
        vectors, _ = library.search.encode_query(query)
        return rank_vectors(vectors, target, depth)

    desc = f"audio in {bridge.source}, mapped by orthogonal Procrustes (fitted on {bridge.n_train} texts) into {bridge.target}, against image content"
    quality = {k: round(v, 4) for k, v in bridge.quality.items()}
    return ExtraSource(AUDIO_TO_IMAGE, desc, rank, quality, rank_vectors=rank_vectors)


def bridge_sources(library: Library) -> list[ExtraSource]:
    """The bridges this library's preset can offer: audio→image through CLAP→CLIP when both spaces exist."""
    spaces = library.encoders.spaces()
    if not {"clap", "clip"} <= set(spaces):
        return []
    clap, clip = library.encoders.text_encoder_for("clap"), library.encoders.text_encoder_for("clip")
    if clap is None or clip is None:
        return []
    bridge = text_bridge(clap, clip, tag_names(), library.config.cache_dir)
    return [audio_to_image_source(library, bridge)]


def attach_bridges(library: Library) -> list[ExtraSource]:
    """Add :func:`bridge_sources` to ``library.extra_sources`` (once), so its main search fuses them in; returns them."""
    have = {e.name for e in library.extra_sources}
    new = [e for e in bridge_sources(library) if e.name not in have]
    library.extra_sources.extend(new)
    return [e for e in library.extra_sources if e.name == AUDIO_TO_IMAGE]
