"""TREC files: qrels and run files (trec_eval / ranx readable) with readable doc ids."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from crossmodal_demo.analysis.qrels import ItemNames, QrelsQuery
from crossmodal_demo.index.store import Collection
from crossmodal_demo.retrieval.fusion import RankedList, break_ties


def write_runs(
    queries: Sequence[QrelsQuery], rows: Mapping[str, Mapping[str, RankedList]], collection: Collection, out_dir: Path
) -> dict[str, str]:
    """Write ``<out_dir>/<row>.run`` (TREC run) per row (``{row: {qid: ranked list}}``) and ``<out_dir>/qrels.trec``; returns {row: file}.

    Doc ids are item paths relative to the indexed folder (see :meth:`ItemNames.docno`); '/' in a
    row name becomes '_' in its file name (``text/caption`` → ``text_caption.run``).
    """
    names = ItemNames(collection)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "qrels.trec", "w", encoding="utf-8") as fh:
        for q in queries:
            fh.writelines(f"{q.id} 0 {names.docno(item_id)} {grade}\n" for item_id, grade in sorted(q.items.items()))
    written: dict[str, str] = {}
    for name, run in rows.items():
        path = out_dir / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.run"
        tag = re.sub(r"\s", "_", name)
        with open(path, "w", encoding="utf-8") as fh:
            for q in queries:
                fh.writelines(f"{q.id} Q0 {names.docno(int(doc))} {rank} {score!r} {tag}\n" for rank, (doc, score) in enumerate(break_ties(run.get(q.id, {})).items(), start=1))
        written[name] = str(path)
    return written
