"""Match strength: is a hit a real match, or just the least bad item of a collection that holds none?

Raw cosines do not say: "a bicycle" against a collection without bicycles still has a best item,
and its score looks like any other. The calibration asks, per hit and per source, how unusual the
query's score for *this item* is compared with the scores this item gets from **unrelated
concepts** — a fixed background of 1000 everyday concepts (the ImageNet-1k classes, written
"a photo of a {name}.", :mod:`crossmodal_demo.encoders.vocabulary`), embedded in the same space:

    z = (score(query, item) − mean_b score(b, item)) / std_b score(b, item)

over the background queries b, with the item's vector of that source's channel. A hit is
**strong** when its best z over the sources that ranked it reaches :data:`STRONG_Z` (3.5: the query
fits this item 3.5 standard deviations better than a typical unrelated concept does), else **weak**.

Why per item: some items score high with everything (a busy picture, a long note); the background
measures that and discounts it. Why a background of concepts and not the collection: the
statistic does not depend on how many items the collection holds or how many of them are relevant.
Image queries under the offline preset are ConSE mixtures of class texts, so their background is
the ConSE class texts themselves (the same kind of vector); other queries use the tag prompts.

The threshold is a round number checked on the demo benchmark (negative queries' best z ≤ 2.73;
positive text queries ≥ 3.9): with 12 negative and 38 positive queries it may be overfitted. Known
limits: with many items the best of many unrelated items can pass by chance (the z is per item, not
corrected for collection size); example queries (image/audio) in the clip preset are compared with
a text background, which makes them look stronger than they are.
"""

from __future__ import annotations

from collections.abc import Mapping
import numpy as np

from crossmodal_demo.encoders.base import EncoderSet
from crossmodal_demo.encoders.vocabulary import tag_vectors
from crossmodal_demo.index.store import Collection

STRONG_Z = 3.5
STRONG, WEAK = "strong", "weak"


class Calibrator:
    """Background vectors per space and per-item z-scores against them (one instance per search)."""

    def __init__(self, collection: Collection, encoders: EncoderSet, threshold: float = STRONG_Z) -> None:
        self.collection = collection
        self.encoders = encoders
        self.threshold = threshold
        self._backgrounds: dict[str, np.ndarray | None] = {}  # per space, for the life of this calibrator (one search)

    def background(self, space: str) -> np.ndarray | None:
        """Unrelated-concept vectors float32 (M, dim) in ``space`` (None when the space has no text encoder).

        A space with a ConSE image encoder uses its 1000 class texts (already embedded and cached when
        the collection was indexed; image vectors there are mixtures of them); other spaces the tag
        prompts of :func:`~crossmodal_demo.encoders.vocabulary.tag_vectors` (cached too, also used for
        labels). Queries of every modality share it (see the module docstring for what that costs).
        """
        if space in self._backgrounds:
            return self._backgrounds[space]
        self._backgrounds[space] = self._load_background(space)
        return self._backgrounds[space]

    def _load_background(self, space: str) -> np.ndarray | None:
        for spec in self.encoders.specs_for("image"):
            if spec.space == space:
                enc = self.encoders.get(spec.name)
                if callable(getattr(enc, "class_vectors", None)):
                    return np.asarray(enc.class_vectors(), dtype=np.float32)
        return tag_vectors(self.encoders, space)

    def item_z(self, space: str, channel: str, scores: Mapping[int, float]) -> dict[int, float]:
        """``{item id: z}`` for items' raw ``scores`` in (``space``, ``channel``); items without a vector there are left out."""
        bg = self.background(space)
        if bg is None or not scores:
            return {}
        ids, vecs = [], []
        for i in scores:
            v = self.collection.vectors_of(int(i)).get((space, channel))
            if v is not None and v.shape[0] == bg.shape[1]:
                ids.append(int(i))
                vecs.append(v)
        if not ids:
            return {}
        B = bg.astype(np.float64) @ np.stack(vecs).astype(np.float64).T  # (M, n): background score of each item
        mu, sd = B.mean(axis=0), np.maximum(B.std(axis=0), 1e-6)
        return {i: float((scores[i] - m) / s) for i, m, s in zip(ids, mu, sd)}

    def strengths(self, lists: Mapping[str, Mapping[str, float]], items: list[int]) -> dict[int, float]:
        """Best z over the sources (``"space/channel"`` → ``{id str: raw score}``) that ranked each of ``items``."""
        best: dict[int, float] = {}
        for name, ranked in lists.items():
            space, _, channel = name.rpartition("/")
            space = space.rpartition("→")[2]  # a bridged source ("clap→clip/content") scores in its target space
            here = {i: ranked[str(i)] for i in items if str(i) in ranked}
            if not space or not here:
                continue
            for i, z in self.item_z(space, channel, here).items():
                best[i] = max(best.get(i, -np.inf), z)
        return best

    def label(self, z: float | None) -> str:
        """'strong' when ``z`` reaches the threshold, else 'weak' (no calibrated source: weak)."""
        return STRONG if z is not None and z >= self.threshold else WEAK
