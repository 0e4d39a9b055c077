"""Qrels files: parsing, the query-file policy, and resolving item names.

Qrels are JSONL, one query a line, or CSV with the same columns::

    {"id": "q1", "text": "a lion", "target": "image", "relevant": ["lion.jpg"]}
    {"id": "q2", "image": "photos/cat.jpg", "target": "text", "relevant": {"pet_diary.txt": 2, "cafe_review.md": 1}}

Exactly one of ``text`` / ``image`` / ``audio``; ``relevant`` is a list (grade 1 each) or a
``{name: grade}`` map with integer grades ≥ 1; an optional ``note`` is ignored. A *negative* query
(``"negative": true``, no ``relevant``) asks for a concept the collection does not hold: it is left
out of the ranking metrics and measures match strength (its top hit should be weak)::

    {"id": "neg-bicycle", "text": "a bicycle", "target": "image", "negative": true}
 A relevant name
matches an item by its full path, its path relative to the folder it was indexed from, or its file
name. Query files (``image`` / ``audio``): from the command line, relative paths resolve against the
qrels file's folder; with a ``query_root`` (an uploaded zip's folder) or ``allow_files=False`` (a bare
uploaded qrels file), a query file must be inside ``query_root`` or name an item of the collection,
so an upload can never make the server read an arbitrary path. The file size and the number of
queries are budgeted (``CROSSMODAL_MAX_MANIFEST_BYTES``, ``CROSSMODAL_MAX_QRELS_QUERIES``). In CSV, ``relevant`` is a
``;``-separated list (``name=grade`` for grades) or a JSON list/map. Bad lines are reported one by
one with what was expected; the valid lines still run.

"""

from __future__ import annotations

import csv
import difflib
import io
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crossmodal_demo.errors import UserError
from crossmodal_demo.index.store import Collection
from crossmodal_demo.retrieval.query import Query, check_target

MB = 1024 * 1024
QUERY_FIELDS = ("text", "image", "audio")
FIELDS = ("id", *QUERY_FIELDS, "target", "relevant", "negative", "note")
EXPECTED = (
    'one JSON object per line with "id", exactly one of "text" / "image" / "audio" (a file path), '
    '"target" (image|text|audio|any) and "relevant" (a list of item names, or a {name: grade} map), e.g. '
    '{"id": "q1", "text": "a lion", "target": "image", "relevant": ["lion.jpg"]}'
)




@dataclass
class QrelsProblem:
    """A qrels line that was skipped: 1-based line number (0 = the whole file) and why."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


@dataclass
class QrelsQuery:
    """One valid qrels line. ``relevant`` maps names as written to grades; ``items`` item ids to grades."""

    line: int
    id: str
    query: Query
    modality: str
    target: str
    relevant: dict[str, int]
    items: dict[int, int] = field(default_factory=dict)
    negative: bool = False  # nothing in the collection is relevant (match-strength checks only)

    @property
    def pair(self) -> str:
        """Query → target modality pair, e.g. ``text->image``."""
        return f"{self.modality}->{self.target}"


@dataclass
class QueryFiles:
    """Where ``image`` / ``audio`` query files may come from (see the module docstring).

    ``restricted`` False (the CLI): any path, relative ones against ``base`` (the qrels file's folder).
    ``restricted`` True (uploads): inside ``root`` (when given) or an item of ``collection``.
    """

    base: Path
    root: Path | None = None
    collection: Collection | None = None
    restricted: bool = False
    _names: "ItemNames | None" = None

    def resolve(self, modality: str, value: str) -> Path:
        """The query file for ``value``, or a UserError saying what is allowed."""
        if not self.restricted:
            p = Path(value).expanduser()
            p = p if p.is_absolute() else self.base / p
            if not p.is_file():
                raise UserError(
                    f"{modality} query file not found: {p} (relative paths resolve against the qrels file's folder, {self.base})."
                )
            return p
        if self.root is not None and not os.path.isabs(value):
            root = os.path.realpath(self.root)
            real = os.path.realpath(os.path.join(root, value))
            if os.path.commonpath([root, real]) == root and os.path.isfile(real):
                return Path(real)
        if self.collection is not None:
            if self._names is None:
                self._names = ItemNames(self.collection)
            item_id, _ = self._names.resolve(value)
            if item_id is not None and os.path.isfile(self._names.items[item_id].path):
                return Path(self._names.items[item_id].path)
        where = "be inside the uploaded zip or name" if self.root is not None else "name"
        coll = f" {self.collection.name!r}" if self.collection is not None else ""
        raise UserError(
            f"{modality} query {value!r} is not usable here: query files must {where} an item of the collection{coll} "
            "(its path relative to the indexed folder, or its file name)."
        )


def parse_qrels(
    path: Path | str,
    query_root: Path | str | None = None,
    collection: Collection | None = None,
    *,
    allow_files: bool = True,
    max_queries: int = 1000,
    max_bytes: int = 10 * MB,
) -> tuple[list[QrelsQuery], list[QrelsProblem]]:
    """Read a JSONL or CSV qrels file → (valid queries, problems). Raises UserError if nothing is usable.

    Query files: with ``query_root`` None and ``allow_files`` True (the CLI), any path, relative ones
    against the qrels file's folder. Otherwise (uploads) a query file must resolve (real path) inside
    ``query_root`` or name an item of ``collection``; anything else is a per-line problem. The file
    may be at most ``max_bytes`` (CROSSMODAL_MAX_MANIFEST_BYTES) and hold at most ``max_queries``
    queries (CROSSMODAL_MAX_QRELS_QUERIES), both checked before any query runs.
    """
    path = Path(path).expanduser()
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise UserError(
                f"Qrels file {path.name} is {size / MB:.1f} MB; the limit is {max_bytes / MB:.1f} MB "
                "(CROSSMODAL_MAX_MANIFEST_BYTES)."
            )
        raw = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UserError(f"Qrels file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"Cannot read qrels file {path}: {exc}. Expected a UTF-8 JSONL or CSV file.") from None
    if not raw.strip():
        raise UserError(f"Qrels file {path} is empty. Expected {EXPECTED}.")
    files = QueryFiles(
        base=path.parent,
        root=Path(query_root) if query_root is not None else None,
        collection=collection,
        restricted=query_root is not None or not allow_files,
    )
    rows = _csv_rows(raw, path) if path.suffix.lower() == ".csv" else _jsonl_rows(raw)
    if len(rows) > max_queries:
        raise UserError(
            f"Qrels file {path.name} holds {len(rows):,} queries; the limit is {max_queries:,} "
            "(CROSSMODAL_MAX_QRELS_QUERIES). Split it, or raise the limit."
        )
    queries: list[QrelsQuery] = []
    problems: list[QrelsProblem] = []
    seen: dict[str, int] = {}
    for line, row in rows:
        if isinstance(row, QrelsProblem):
            problems.append(row)
            continue
        try:
            q = _parse_row(row, line, files)
        except UserError as exc:
            problems.append(QrelsProblem(line, str(exc)))
            continue
        if q.id in seen:
            problems.append(QrelsProblem(line, f"duplicate id {q.id!r} (first used on line {seen[q.id]}); ids must be unique."))
            continue
        seen[q.id] = line
        queries.append(q)
    if not queries and not problems:
        raise UserError(f"Qrels file {path} holds no queries. Expected {EXPECTED}.")
    return queries, problems


def _jsonl_rows(raw: str) -> list[tuple[int, dict[str, Any] | QrelsProblem]]:
    out: list[tuple[int, dict[str, Any] | QrelsProblem]] = []
    for n, text in enumerate(raw.splitlines(), start=1):
        if not text.strip() or text.lstrip().startswith("#"):
            continue  # blank lines and '#' comments are allowed
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            out.append((n, QrelsProblem(n, f"not valid JSON ({exc.msg} at column {exc.colno}). Expected {EXPECTED}.")))
            continue
        if not isinstance(row, dict):
            out.append((n, QrelsProblem(n, f"a JSON {type(row).__name__}, not an object. Expected {EXPECTED}.")))
            continue
        out.append((n, row))
    return out


def _csv_rows(raw: str, path: Path) -> list[tuple[int, dict[str, Any] | QrelsProblem]]:
    reader = csv.DictReader(io.StringIO(raw))
    header = [h.strip() for h in (reader.fieldnames or [])]
    unknown = [h for h in header if h not in FIELDS]
    missing = [c for c in ("target", "relevant") if c not in header]
    if unknown or missing or not any(c in header for c in QUERY_FIELDS):
        raise UserError(
            f"Qrels CSV {path} has columns {', '.join(header) or '(none)'}"
            + (f"; unknown: {', '.join(unknown)}" if unknown else "")
            + (f"; missing: {', '.join(missing)}" if missing else "")
            + ". Expected a header with id, one or more of text/image/audio, target, relevant (optional note)."
        )
    reader.fieldnames = header
    out: list[tuple[int, dict[str, Any] | QrelsProblem]] = []
    for row in reader:
        if None in row:  # more cells than header columns
            out.append((reader.line_num, QrelsProblem(reader.line_num, f"{len(header) + len(row[None])} cells for {len(header)} columns.")))
            continue
        clean = {k: v for k, v in row.items() if v not in (None, "")}
        if not clean:
            continue
        rel = clean.get("relevant", "").strip()
        if rel.startswith(("[", "{")):
            try:
                clean["relevant"] = json.loads(rel)
            except json.JSONDecodeError as exc:
                out.append((reader.line_num, QrelsProblem(reader.line_num, f"'relevant' is not valid JSON ({exc.msg}).")))
                continue
        elif rel:
            grades: dict[str, Any] = {}
            for part in (p.strip() for p in rel.split(";")):
                if part:
                    name, _, grade = part.rpartition("=") if "=" in part else (part, "", "1")
                    grades[name.strip()] = _int_or_text(grade.strip())
            clean["relevant"] = grades
        out.append((reader.line_num, clean))
    return out


def _int_or_text(s: str) -> Any:
    try:
        return int(s)
    except ValueError:
        return s


def _parse_row(row: dict[str, Any], line: int, files: QueryFiles) -> QrelsQuery:
    unknown = [k for k in row if k not in FIELDS]
    if unknown:
        raise UserError(f"unknown field(s) {', '.join(map(repr, unknown))}. Expected {EXPECTED}.")
    qid = str(row.get("id", f"line{line}")).strip()
    if not qid or re.search(r"\s", qid):
        raise UserError(f"id {qid!r} must be non-empty and hold no spaces (it is written to TREC files).")
    given = [f for f in QUERY_FIELDS if row.get(f) not in (None, "")]
    if len(given) != 1:
        got = f"got {', '.join(given)}" if given else "got none"
        raise UserError(f"needs exactly one of \"text\", \"image\", \"audio\" ({got}).")
    modality = given[0]
    value = row[modality]
    if not isinstance(value, str):
        raise UserError(f"\"{modality}\" must be a string, got {type(value).__name__}.")
    if modality == "text":
        query = Query(text=value)
    else:
        p = files.resolve(modality, value)
        query = Query(image=p) if modality == "image" else Query(audio=p)
    target = row.get("target")
    try:
        check_target(target)  # type: ignore[arg-type]
    except UserError as exc:
        raise UserError(f"\"target\": {exc}") from None
    negative = row.get("negative", False)
    if negative not in (True, False, "true", "false", "1", "0", ""):
        raise UserError(f"\"negative\" must be true or false (got {negative!r}).")
    if negative in (True, "true", "1"):
        if row.get("relevant") not in (None, "", [], {}):
            raise UserError("a negative query lists no \"relevant\" items (it asks for something the collection does not hold).")
        return QrelsQuery(line, qid, query, modality, str(target), {}, negative=True)
    return QrelsQuery(line, qid, query, modality, str(target), _parse_relevant(row.get("relevant")))


def _parse_relevant(rel: Any) -> dict[str, int]:
    if isinstance(rel, str):
        rel = [rel]
    if isinstance(rel, list):
        if not all(isinstance(r, str) and r.strip() for r in rel):
            raise UserError("\"relevant\" list must hold item names (non-empty strings).")
        rel = {r: 1 for r in rel}
    if not isinstance(rel, dict) or not rel:
        raise UserError(
            f"\"relevant\" is {rel!r}; expected a non-empty list of item names or a {{name: grade}} map, "
            'e.g. ["lion.jpg"] or {"lion.jpg": 2, "cat.jpg": 1}.'
        )
    out: dict[str, int] = {}
    for name, grade in rel.items():
        if isinstance(grade, bool) or not isinstance(grade, int) or grade < 1:
            raise UserError(f"grade of {name!r} is {grade!r}; grades are whole numbers ≥ 1 (list only relevant items).")
        out[str(name).strip()] = grade
    return out


# --------------------------------------------------------------------------- names → items
class ItemNames:
    """Resolve names to items: full path, path relative to the indexed root, or file name."""

    def __init__(self, collection: Collection) -> None:
        self.collection = collection
        self.items = {it.id: it for it in collection.items()}
        self.by_path: dict[str, int] = {}
        self.by_rel: dict[str, list[int]] = {}
        self.by_name: dict[str, list[int]] = {}
        self._docnos: dict[int, str] | None = None
        for it in self.items.values():
            self.by_path[os.path.normpath(it.path)] = it.id
            self.by_rel.setdefault(Path(os.path.relpath(it.path, it.root)).as_posix(), []).append(it.id)
            self.by_name.setdefault(Path(it.path).name, []).append(it.id)

    def resolve(self, name: str) -> tuple[int | None, str | None]:
        """(item id, None) or (None, why it matched nothing or several items)."""
        if os.path.isabs(os.path.expanduser(name)):
            hit = self.by_path.get(os.path.normpath(os.path.expanduser(name)))
            if hit is not None:
                return hit, None
        for table in (self.by_rel, self.by_name):
            ids = table.get(Path(name).as_posix() if table is self.by_rel else name)
            if ids and len(ids) == 1:
                return ids[0], None
            if ids:
                paths = ", ".join(self.items[i].path for i in ids[:4])
                return None, f"{name!r} is ambiguous: it matches {len(ids)} items ({paths}); give the path relative to the indexed folder or the full path"
        close = difflib.get_close_matches(Path(name).name, list(self.by_name), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        return None, (
            f"unknown item {name!r} in collection {self.collection.name!r} (a name must be an item's full path, its path "
            f"relative to the indexed folder, or its file name; `list --collection {self.collection.name}` shows them).{hint}"
        )

    def docno(self, item_id: int) -> str:
        """A readable TREC doc id: the path relative to the indexed root with spaces → '_' (plus '#<id>' when
        two items would share it)."""
        if self._docnos is None:
            rels = {i: re.sub(r"\s", "_", Path(os.path.relpath(it.path, it.root)).as_posix()) for i, it in self.items.items()}
            counts: dict[str, int] = {}
            for r in rels.values():
                counts[r] = counts.get(r, 0) + 1
            self._docnos = {i: r if counts[r] == 1 else f"{r}#{i}" for i, r in rels.items()}
        return self._docnos[item_id]


def resolve_qrels(collection: Collection, queries: Sequence[QrelsQuery]) -> tuple[list[QrelsQuery], list[QrelsProblem]]:
    """Map every relevant name to an item; a line with an unknown, ambiguous or wrong-modality name is skipped."""
    names = ItemNames(collection)
    ok: list[QrelsQuery] = []
    problems: list[QrelsProblem] = []
    for q in queries:
        errors: list[str] = []
        items: dict[int, int] = {}
        for name, grade in q.relevant.items():
            item_id, why = names.resolve(name)
            if item_id is None:
                errors.append(str(why))
                continue
            modality = names.items[item_id].modality
            if q.target != "any" and modality != q.target:
                errors.append(f"relevant item {name!r} is {modality}, but the target is {q.target}: it can never be retrieved")
                continue
            items[item_id] = grade
        if errors:
            problems.append(QrelsProblem(q.line, "; ".join(errors) + "."))
            continue
        q.items = items
        ok.append(q)
    return ok, problems


