"""2-D maps of a query and its results in one space (PCA; UMAP when installed), for the lab's scatter plot."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from crossmodal_demo.errors import UserError
from crossmodal_demo.index.store import Item
from crossmodal_demo.retrieval.library import Library


def project(
    library: Library, query_vec: np.ndarray | None, space: str, ids: Sequence[int], items: Mapping[int, Item], method: str = "auto"
) -> dict[str, Any]:
    """2-D coordinates of the query and each result's vectors in ``space`` (content and caption points).

    ``method``: 'pca', 'umap' (needs umap-learn) or 'auto' (UMAP when installed and ≥ 15 points, else
    PCA — UMAP needs a neighbourhood to be meaningful). Returns {"method", "space", "points": [...]}.
    """
    labels: list[dict[str, Any]] = []
    rows: list[np.ndarray] = []
    if query_vec is not None:
        labels.append({"label": "query", "kind": "query", "id": None, "channel": None})
        rows.append(np.asarray(query_vec, dtype=np.float32))
    for i in ids:
        for (sp, channel), vec in sorted(library.collection.vectors_of(i).items()):
            if sp != space:
                continue
            it = items.get(i)
            name = Path(it.path).name if it else str(i)
            labels.append({"label": f"{name} ({channel})", "kind": "result", "id": i, "channel": channel})
            rows.append(vec)
    if len(rows) < 3:
        return {"method": None, "space": space, "points": [{**lab, "x": 0.0, "y": 0.0} for lab in labels]}
    X = np.stack(rows).astype(np.float64)
    used = "pca"
    if method in ("umap", "auto"):
        try:
            import umap  # type: ignore[import-not-found]  # lazy: optional, heavy (numba)

            if method == "umap" or len(rows) >= 15:
                xy = umap.UMAP(n_components=2, n_neighbors=min(15, len(rows) - 1), random_state=0).fit_transform(X)
                used = "umap"
        except ImportError:
            if method == "umap":
                raise UserError("UMAP projection needs the umap-learn package (pip install umap-learn); PCA works without it.") from None
    elif method != "pca":
        raise UserError(f"Unknown projection {method!r}. Choose one of: auto, pca, umap.")
    if used == "pca":
        from sklearn.decomposition import PCA  # lazy: heavy import

        xy = PCA(n_components=2, random_state=0).fit_transform(X)
    return {
        "method": used,
        "space": space,
        "points": [{**lab, "x": round(float(x), 6), "y": round(float(y), 6)} for lab, (x, y) in zip(labels, xy)],
    }
