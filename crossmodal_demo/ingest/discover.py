"""Turn the paths a user gives into index candidates: recurse folders, attach captions, skip safely.

Captions come from a sidecar (``photo.jpg.txt`` or ``photo.txt`` beside ``photo.jpg``) or from a
``captions.csv`` / ``captions.jsonl`` manifest (columns ``path``, ``caption``; paths relative to the
manifest's folder). Sidecars are captions, not text items. Hidden files and folders are skipped, and
no symlink is followed out of the root folder it was found under.

Work is linear in the number of files: sidecars are found through a per-folder set of media names,
and caption files over ``max_manifest_bytes`` are refused from their size, before they are read.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from crossmodal_demo.ingest.files import MB, accepted_extensions, human_bytes, modality_of
from crossmodal_demo.ingest.media import bom_encoding

MANIFESTS = ("captions.csv", "captions.jsonl")
DEFAULT_MAX_MANIFEST_BYTES = 10 * MB  # Config.max_manifest_bytes
MAX_LINE_PROBLEMS = 20  # per manifest: bad lines listed one by one, then one summary line


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


def discover(
    paths: list[Path], max_caption_chars: int = 2000, max_manifest_bytes: int = DEFAULT_MAX_MANIFEST_BYTES
) -> Discovery:
    """Expand files and folders into candidates (sorted, de-duplicated) and problems.

    ``max_caption_chars`` clips each caption; sidecars and manifests over ``max_manifest_bytes`` bytes
    are refused unread (CROSSMODAL_MAX_MANIFEST_BYTES). Linear in the number of files.
    """
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
        captions = _Captions(root, files, out.problems, max_caption_chars, max_manifest_bytes)
        for f in files:
            if f.name in MANIFESTS or (walked and captions.is_sidecar(f)):
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
            if not _utf8_name(real):
                # The collection stores paths as UTF-8 text; a name that is not valid UTF-8 cannot be kept.
                out.problems.append(Problem(str(f), "file name is not valid UTF-8; rename it (e.g. with convmv) and index it again"))
                continue
            if real in seen:
                continue
            seen.add(real)
            out.candidates.append(Candidate(real, modality, root, captions.for_file(f) if modality != "text" else None))
    return out


def _utf8_name(p: Path) -> bool:
    """True when ``p`` is valid UTF-8 (undecodable bytes appear as lone surrogates in Python's str)."""
    try:
        str(p).encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


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


def _stem(name: str) -> str:
    """``name`` without its last suffix (``a.jpg`` → ``a``; ``a`` → ``a``)."""
    dot = name.rfind(".")
    return name[:dot] if dot > 0 else name


class _Captions:
    """Caption lookup for the files under one root: sidecars first, then manifests.

    ``files`` are indexed once per folder (media names and media stems), so telling a sidecar from a
    text item is a set look-up, not a scan of the folder.
    """

    def __init__(self, root: Path, files: list[Path], problems: list[Problem], max_chars: int, max_bytes: int) -> None:
        self.problems = problems
        self.max_chars = max_chars
        self.max_bytes = max_bytes
        self._root = root
        self._manifest: dict[str, str] = {}  # absolute path of a file we index → caption
        self._loaded: set[Path] = set()
        media = [f for f in files if modality_of(f) in ("image", "audio")]
        # Only rows naming one of our media files are kept: a manifest's size cannot become memory.
        self._wanted = {str(f.absolute()) for f in media}
        self._media: dict[Path, set[str]] = {}  # folder → names and stems of its image/audio files
        for f in media:
            self._media.setdefault(f.parent, set()).update((f.name, _stem(f.name)))

    def is_sidecar(self, f: Path) -> bool:
        """True if ``f`` is a ``.txt`` caption for a media file next to it (``x.jpg.txt`` or ``x.txt``)."""
        return f.suffix.lower() == ".txt" and _stem(f.name) in self._media.get(f.parent, ())

    def for_file(self, f: Path) -> str | None:
        """Caption for media file ``f``, or None."""
        for side in (f.with_name(f.name + ".txt"), f.with_suffix(".txt")):
            if side.is_file() and not side.is_symlink():
                raw = self._read_capped(side, "caption sidecar")
                if raw is None:
                    continue
                try:
                    return self._clip(raw.decode(bom_encoding(raw)).strip(), side)
                except UnicodeDecodeError as exc:
                    self.problems.append(Problem(str(side), f"caption sidecar unreadable ({exc}); caption ignored"))
        # Manifests can sit in any folder between the file and the root.
        d = f.parent
        key = str(f.absolute())
        while True:
            self._load_manifests(d)
            if key in self._manifest:
                return self._manifest[key]
            if d == self._root or d == d.parent or not d.is_relative_to(self._root):
                return None
            d = d.parent

    def _read_capped(self, p: Path, what: str) -> bytes | None:
        """Bytes of a caption file, or None (and a problem) when it is over the limit or unreadable."""
        try:
            size = p.stat().st_size
            if size > self.max_bytes:
                self.problems.append(Problem(str(p), (
                    f"{what} is {human_bytes(size)}; the limit is {human_bytes(self.max_bytes)} "
                    "(CROSSMODAL_MAX_MANIFEST_BYTES); ignored")))
                return None
            with open(p, "rb") as fh:
                return fh.read(self.max_bytes + 1)[: self.max_bytes]  # the file may grow after stat()
        except OSError as exc:
            self.problems.append(Problem(str(p), f"{what} unreadable ({exc.strerror or exc}); ignored"))
            return None

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
            raw = self._read_capped(m, "caption manifest")
            if raw is None:
                continue
            try:
                rows = _parse_manifest(raw.decode("utf-8-sig"), m.suffix)
            except UnicodeDecodeError as exc:
                self.problems.append(Problem(str(m), f"caption manifest unreadable ({exc}); ignored"))
                continue
            bad = 0
            prefix = str(d.absolute()) + os.sep
            try:
                for lineno, path, caption in rows:
                    if not path or caption is None:
                        bad += 1
                        if bad <= MAX_LINE_PROBLEMS:
                            self.problems.append(
                                Problem(f"{m}:{lineno}", "expected fields 'path' and 'caption'; line ignored")
                            )
                        continue
                    key = os.path.normpath(prefix + path)
                    if key in self._wanted and key.startswith(prefix) and key not in self._manifest:
                        text = self._clip(caption.strip(), m)
                        if text:
                            self._manifest[key] = text
            except csv.Error as exc:
                self.problems.append(Problem(str(m), f"caption manifest unreadable ({exc}); the rest is ignored"))
            if bad > MAX_LINE_PROBLEMS:
                self.problems.append(Problem(str(m), f"{bad - MAX_LINE_PROBLEMS:,} more lines without 'path' and 'caption' ignored"))


def _parse_manifest(text: str, suffix: str) -> Iterator[tuple[int, str | None, str | None]]:
    """(line number, path, caption) of each row of a captions.csv / captions.jsonl text, one at a time;
    path or caption is None when the row lacks it. csv.reader, not DictReader: 6× faster on huge files."""
    if suffix == ".csv":
        reader = csv.reader(io.StringIO(text, newline=""))
        header = [h.strip().lower() for h in next(reader, [])]
        ip = header.index("path") if "path" in header else None
        ic = header.index("caption") if "caption" in header else None
        for row in reader:
            n = len(row)
            yield (reader.line_num, row[ip] if ip is not None and ip < n else None,
                   row[ic] if ic is not None and ic < n else None)
        return
    for i, line in enumerate(io.StringIO(text), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):  # bad JSON, or nesting deep enough to exhaust the stack
            row = None
        if isinstance(row, dict):
            path, caption = row.get("path"), row.get("caption")
            yield i, str(path) if path else None, None if caption is None else str(caption)
        else:
            yield i, None, None
