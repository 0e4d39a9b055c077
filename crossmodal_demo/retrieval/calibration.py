"""Match strength: is a hit a real match, or just the least bad item of a collection that holds none?

Raw cosines do not say: "a bicycle" against a collection without bicycles still has a best item,
and its score looks like any other. Each hit gets a *margin* per source that ranked it — how far a
test statistic lies beyond the value unrelated items reach by chance — and is **strong** when its
best margin is ≥ 0, else **weak**. The reference the statistic is measured against depends on what
kind of vector the query is:

* **Text queries** — against **unrelated concepts**: a fixed background of 1000 everyday concepts
  (the ImageNet-1k classes, "a photo of a {name}.", :mod:`crossmodal_demo.encoders.vocabulary`),
  embedded in the same space, the same kind of vector as the query::

      z = (score(query, item) − mean_b score(b, item)) / std_b score(b, item),   margin = z − STRONG_Z

  Per item, so an item that scores high with everything (a busy picture, a long note) is discounted;
  independent of the collection's size. :data:`STRONG_Z` (3.5) is a round number; on the demo
  benchmark negative text queries reach z ≤ 2.73, positive ones ≥ 3.9.
* **Example queries** (a picture or a sound, or a sum of terms that holds one) — a text background
  is the wrong reference (an example vector is not a caption: its scores against texts have another
  spread, and related-but-different items rarely stand out against it), so the example is also
  compared with **the collection itself**, and the larger of the two margins counts: is the item's score an outlier
  of the query's own score distribution over the source's ranked list (the whole partition up to
  :data:`~crossmodal_demo.retrieval.sources.DEFAULT_DEPTH` items)? This is Grubbs' single-outlier
  test in its leave-one-out form: with the item's score x and the other m = N − 1 scores
  (mean x̄, standard deviation s),

      T = (x − x̄) / (s · √(1 + 1/m)),   which under "x is one more draw like the rest" is Student-t (m − 1 dof),

  and margin = T − t⁻¹(1 − α/N; m − 1): the item is strong when its score would occur by chance
  among N unrelated items with probability below α = :data:`EXAMPLE_ALPHA` (0.05, Bonferroni over
  the N items). Nothing is fitted to a benchmark; the threshold follows from N and α. Text queries do
  not get this test: a concept's nearest caption often stands out among a small set of captions even
  when the concept is absent ("a plate of sushi" → the only food caption, the coffee's).

Known limits: the text rule's z is per item, not corrected for collection size (with many items the
best of many unrelated ones can pass by chance); the example rule sees only a source's top
``DEFAULT_DEPTH`` scores, so on large collections it compares the item with other good candidates
and errs towards weak; both assume roughly normal score spreads.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping

import numpy as np

from crossmodal_demo.encoders.base import EncoderSet
from crossmodal_demo.encoders.vocabulary import tag_vectors
from crossmodal_demo.index.store import Collection

STRONG_Z = 3.5  # text queries: z against the concept background
EXAMPLE_ALPHA = 0.05  # example queries: chance level of the outlier test (Bonferroni over the N items)
STRONG, WEAK = "strong", "weak"


def outlier_margins(scores: Mapping[str, float], ids: list[int], alpha: float = EXAMPLE_ALPHA) -> dict[int, float]:
    """Leave-one-out Grubbs margins ``{id: T − critical T}`` of ``ids`` within one ranked list ``scores``.

    ``scores``: ``{item id str: cosine}`` (N items, the query's score distribution); items of ``ids``
    not in it, and lists with N < 4 or no spread, get no margin. Margin ≥ 0: an outlier at level
    ``alpha`` (Bonferroni over N). Unitless.
    """
    from scipy.special import stdtrit  # lazy: ~0.2 s to import, needed only by example queries

    vals = np.fromiter(scores.values(), dtype=np.float64, count=len(scores))
    n = vals.size
    if n < 4:
        return {}
    m = n - 1
    crit = float(stdtrit(m - 1, 1.0 - alpha / n))  # Student-t quantile, m − 1 degrees of freedom
    total, squares = vals.sum(), float(np.square(vals).sum())
    out: dict[int, float] = {}
    for i in ids:
        x = scores.get(str(i))
        if x is None:
            continue
        mean = (total - x) / m
        var = (squares - x * x - m * mean * mean) / (m - 1)
        if var <= 1e-12:  # every other score equal: no spread to measure against
            continue
        out[i] = float((x - mean) / (np.sqrt(var) * np.sqrt(1.0 + 1.0 / m))) - crit
    return out


def is_example(modality: str | None) -> bool:
    """True for queries made from (or holding) a picture or sound: 'image', 'audio', 'image+text', ...; None/'text' → False."""
    return modality is not None and modality != "text"


_BACKGROUNDS: "weakref.WeakKeyDictionary[EncoderSet, dict[str, np.ndarray | None]]" = weakref.WeakKeyDictionary()
_BACKGROUNDS_LOCK = threading.Lock()


class Calibrator:
    """Match margins for one search: concept-background z for text queries, outlier test for example queries."""

    def __init__(self, collection: Collection, encoders: EncoderSet, threshold: float = STRONG_Z,
                 alpha: float = EXAMPLE_ALPHA) -> None:
        self.collection = collection
        self.encoders = encoders
        self.threshold = threshold
        self.alpha = alpha
        # per space, shared by every search with these encoders (a background depends only on them)
        with _BACKGROUNDS_LOCK:
            self._backgrounds: dict[str, np.ndarray | None] = _BACKGROUNDS.setdefault(encoders, {})

    def background(self, space: str) -> np.ndarray | None:
        """Unrelated-concept vectors float32 (M, dim) in ``space`` (None when the space has no text encoder).

        A space with a ConSE image encoder uses its 1000 class texts (already embedded and cached when
        the collection was indexed; image vectors there are mixtures of them); other spaces the tag
        prompts of :func:`~crossmodal_demo.encoders.vocabulary.tag_vectors` (cached too, also used for
        labels). Used for text queries only (example queries are tested against the collection).
        """
        if space in self._backgrounds:
            return self._backgrounds[space]
        bg = self._load_background(space)
        # float64 once here, not per search: the z-scores subtract close numbers
        self._backgrounds[space] = None if bg is None else np.asarray(bg, dtype=np.float64)
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
        bulk = getattr(self.collection, "vectors_for", None)  # one read for all hits where the store offers it
        if callable(bulk):
            found = bulk([int(i) for i in scores], space, channel)
        else:
            found = {int(i): v for i in scores if (v := self.collection.vectors_of(int(i)).get((space, channel))) is not None}
        ids, vecs = [], []
        for i in scores:
            v = found.get(int(i))
            if v is not None and v.shape[0] == bg.shape[1]:
                ids.append(int(i))
                vecs.append(v)
        if not ids:
            return {}
        B = bg @ np.stack(vecs).astype(np.float64).T  # (M, n): background score of each item
        mu, sd = B.mean(axis=0), np.maximum(B.std(axis=0), 1e-6)
        return {i: float((scores[i] - m) / s) for i, m, s in zip(ids, mu, sd)}

    def strengths(self, lists: Mapping[str, Mapping[str, float]], items: list[int],
                  modality: str | None = None) -> dict[int, float]:
        """Best margin over the sources (``"space/channel"`` → ``{id str: raw score}``) that ranked each of ``items``.

        ``modality`` of the query ('text', 'image', 'audio', 'image+text', ...; None = text): every
        query gets the concept-background margin (z − :data:`STRONG_Z`); example queries also the
        outlier test within each list (:func:`outlier_margins`), the larger counts. Margin ≥ 0 means strong.
        """
        best: dict[int, float] = {}
        for name, ranked in lists.items():
            here = [i for i in items if str(i) in ranked]
            if not here:
                continue
            space, _, channel = name.rpartition("/")
            space = space.rpartition("→")[2]  # a bridged source ("clap→clip/content") scores in its target space
            margins = [{i: z - self.threshold for i, z in self.item_z(space, channel, {i: ranked[str(i)] for i in here}).items()}
                       if space else {}]
            if is_example(modality):
                margins.append(outlier_margins(ranked, here, self.alpha))
            for part in margins:
                for i, mg in part.items():
                    best[i] = max(best.get(i, -np.inf), mg)
        return best

    def label(self, margin: float | None) -> str:
        """'strong' when ``margin`` (from :meth:`strengths`) is ≥ 0, else 'weak' (no calibrated source: weak)."""
        return STRONG if margin is not None and margin >= 0 else WEAK
