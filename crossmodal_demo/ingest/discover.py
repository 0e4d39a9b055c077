"""Turn the paths a user gives into index candidates: recurse folders, attach captions, skip safely.

Captions come from a sidecar (``photo.jpg.txt`` or ``photo.txt`` beside ``photo.jpg``) or from a
``captions.csv`` / ``captions.jsonl`` manifest (columns ``path``, ``caption``; paths relative to the
manifest's folder). Sidecars are captions, not text items. Hidden files and folders are skipped, and
no symlink is followed out of the root folder it was found under.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from crossmodal_demo.ingest.media import accepted_extensions, bom_encoding, modality_of

MANIFESTS = ("captions.csv", "captions.jsonl")


@dataclass(frozen=True)
class Candidate:
    """A file to index: absolute path, modality, the root it was found under and its caption."""

    path: Path
    modality: str
    root: Path
    caption: str | None = None


@dataclass(frozen=True)
class Problem:
    """A file that was not indexed and why (shown to the user, one line each)."""

    path: str
    reason: str


@dataclass
class Discovery:
    """What :func:`discover` found: candidates in a stable order, plus per-file problems."""

    candidates: list[Candidate] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    # Files of other types met while walking a folder (e.g. .json, .xmp): not errors, just not ours.
    ignored: list[Path] = field(default_factory=list)


def discover(paths: list[Path], max_caption_chars: int = 2000) -> Discovery:
    """Expand files and folders into candidates (sorted, de-duplicated) and problems."""
    out = Discovery()
    seen: set[Path] = set()
    for given in paths:
        given = Path(given).expanduser()
        if not given.exists():
            out.problems.append(Problem(str(given), "no such file or folder"))
            continue
        if given.is_dir():
            root = given.resolve()
            files = _walk(root, out.problems)
            walked = True
        else:
            walked = False
            root = given.resolve().parent
            files = [given.absolute()]
        captions = _Captions(root, out.problems, max_caption_chars)
        sidecars = {f for f in files if captions.is_sidecar(f, files)}
        for f in files:
            if f in sidecars or f.name in MANIFESTS:
                continue
            modality = modality_of(f)
            if modality is None and walked:
                out.ignored.append(f)
                continue
            if modality is None:
                out.problems.append(
                    Problem(str(f), f"unsupported file type '{f.suffix or f.name}' (accepted: {accepted_extensions()})")
                )
                continue
            real = f.resolve()
            if real in seen:
                continue
            seen.add(real)
            out.candidates.append(Candidate(real, modality, root, captions.for_file(f) if modality != "text" else None))
    return out


def _walk(root: Path, problems: list[Problem]) -> list[Path]:
    """Files under ``root`` (sorted), skipping hidden entries and symlinks that leave ``root``."""
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        for d in list(dirnames):
            if d.startswith("."):
                dirnames.remove(d)
            elif (here / d).is_symlink():
                # os.walk does not descend into symlinked folders; say so instead of silently ignoring.
                problems.append(Problem(str(here / d), "symlinked folder not followed"))
        dirnames.sort()
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            p = here / name
            if p.is_symlink():
                target = p.resolve()
                if not target.is_relative_to(root):
                    problems.append(Problem(str(p), f"symlink points outside the indexed folder ({root}); skipped"))
                    continue
                if not target.is_file():
                    problems.append(Problem(str(p), "broken symlink"))
                    continue
            files.append(p)
    return files


class _Captions:
    """Caption lookup for the files under one root: sidecars first, then manifests."""

    def __init__(self, root: Path, problems: list[Problem], max_chars: int) -> None:
        self.problems = problems
        self.max_chars = max_chars
        self._manifest: dict[Path, str] = {}
        self._loaded: set[Path] = set()
        self._root = root

    def is_sidecar(self, f: Path, files: list[Path]) -> bool:
        """True if ``f`` is a ``.txt`` caption for a media file next to it (``x.jpg.txt`` or ``x.txt``)."""
        if f.suffix.lower() != ".txt":
            return False
        stem = f.name[: -len(f.suffix)]
        siblings = [g for g in files if g.parent == f.parent and g != f]
        for g in siblings:
            if modality_of(g) in ("image", "audio") and (g.name == stem or g.name[: -len(g.suffix)] == stem):
                return True
        return False

    def for_file(self, f: Path) -> str | None:
        """Caption for media file ``f``, or None."""
        for side in (f.with_name(f.name + ".txt"), f.with_suffix(".txt")):
            if side.is_file() and not side.is_symlink():
                try:
                    raw = side.read_bytes()
                    return self._clip(raw.decode(bom_encoding(raw)).strip(), side)
                except (UnicodeDecodeError, OSError) as exc:
                    self.problems.append(Problem(str(side), f"caption sidecar unreadable ({exc}); caption ignored"))
        # Manifests can sit in any folder between the file and the root.
        d = f.parent
        while True:
            self._load_manifests(d)
            key = f.absolute()
            if key in self._manifest:
                return self._manifest[key]
            if d == self._root or d == d.parent or not d.is_relative_to(self._root):
                return None
            d = d.parent

    def _clip(self, text: str, src: Path) -> str | None:
        if not text:
            return None
        if len(text) > self.max_chars:
            self.problems.append(
                Problem(str(src), f"caption is {len(text):,} characters; kept the first {self.max_chars:,}")
            )
            text = text[: self.max_chars]
        return text

    def _load_manifests(self, d: Path) -> None:
        if d in self._loaded:
            return
        self._loaded.add(d)
        for name in MANIFESTS:
            m = d / name
            if not m.is_file():
                continue
            try:
                rows = _read_manifest(m)
            except (OSError, UnicodeDecodeError, csv.Error) as exc:
                self.problems.append(Problem(str(m), f"caption manifest unreadable ({exc}); ignored"))
                continue
            for lineno, row in rows:
                if not isinstance(row, dict) or not row.get("path") or row.get("caption") is None:
                    self.problems.append(
                        Problem(f"{m}:{lineno}", "expected fields 'path' and 'caption'; line ignored")
                    )
                    continue
                caption = self._clip(str(row["caption"]).strip(), m)
                if caption:
                    self._manifest[(d / str(row["path"])).absolute()] = caption


def _read_manifest(m: Path) -> list[tuple[int, object]]:
    """Rows of a captions.csv / captions.jsonl file as (line number, dict) pairs."""
    text = m.read_text(encoding="utf-8-sig")
    if m.suffix == ".csv":
        return [(i + 2, row) for i, row in enumerate(csv.DictReader(text.splitlines()))]
    rows: list[tuple[int, object]] = []
    for i, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append((i, json.loads(line)))
            except json.JSONDecodeError:
                rows.append((i, None))
    return rows
