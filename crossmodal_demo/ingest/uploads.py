"""Uploaded files into a collection folder, within budgets: single files, .zip archives, clean-up.

Everything a visitor sends is charged against an :class:`UploadBudget` (bytes and files left, with the
names of the settings that set them, because the app has two regimes: a local upload and a public
workspace). Zip members are streamed and stopped *at* the per-file limit and at the budget, so a tiny
archive of a huge member never reaches the disk whole. Member names are made safe for the file
system and for display; unsafe members are problems, files of other types are listed as ignored.
"""

from __future__ import annotations

import fnmatch
import re
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Iterable

from crossmodal_demo.errors import MediaError, UserError
from crossmodal_demo.ingest.discover import DEFAULT_MAX_MANIFEST_BYTES, MANIFESTS, Problem
from crossmodal_demo.ingest.files import AUDIO_EXTS, IMAGE_EXTS, TEXT_EXTS, human_bytes
from crossmodal_demo.ingest.media import TEXT_MAX_BYTES

MB = 1024 * 1024
BLOCK = 1 << 20  # bytes copied at a time
MAX_NAME_BYTES = 200  # UTF-8 bytes of one file name (file systems allow 255; room for "-123")
MEDIA_EXTS = frozenset(IMAGE_EXTS | AUDIO_EXTS | TEXT_EXTS)
MAX_LISTED = 1000  # problems / ignored members listed one by one per archive; the rest are counted
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass
class UploadBudget:
    """What one upload may still add: ``bytes_left`` bytes and ``files_left`` files.

    ``bytes_setting`` / ``files_setting`` are the variables quoted when the budget runs out, e.g.
    ``CROSSMODAL_MAX_UPLOAD_BYTES`` (local mode) or ``CROSSMODAL_WORKSPACE_MAX_BYTES`` (public mode).
    """

    bytes_left: int
    files_left: int
    bytes_setting: str = "CROSSMODAL_MAX_UPLOAD_BYTES"
    files_setting: str = "CROSSMODAL_MAX_UPLOAD_FILES"

    def take_file(self, name: str) -> None:
        """Charge one file; :class:`UserError` (the whole upload stops) when none is left."""
        if self.files_left < 1:
            raise UserError(f"'{name}' is one file too many for this upload ({self.files_setting}). Upload the rest later or in parts.")
        self.files_left -= 1

    def take_bytes(self, n: int, name: str) -> None:
        """Charge ``n`` bytes; :class:`UserError` when they do not fit (nothing is charged then)."""
        if n > self.bytes_left:
            raise UserError(
                f"'{name}' does not fit: only {human_bytes(max(0, self.bytes_left))} are left for this upload "
                f"({self.bytes_setting}). Upload fewer or smaller files."
            )
        self.bytes_left -= n


@dataclass
class ZipResult:
    """What :func:`extract_zip` did: files written, per-member problems, members ignored (with the
    reason), and how many hidden / macOS metadata entries were skipped silently."""

    extracted: list[Path] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    ignored: list[Problem] = field(default_factory=list)
    hidden: int = 0
    bytes_written: int = 0


def accepted_upload_types(extra_names: Iterable[str] = ()) -> str:
    """Human-readable list of what an upload may hold, for messages."""
    return ", ".join([*sorted(MEDIA_EXTS), ".zip", *MANIFESTS, *extra_names])


def upload_kind(name: str, extra_names: Iterable[str] = ()) -> str | None:
    """'media', 'manifest', 'zip' or 'extra' (matches a glob of ``extra_names``) for an upload named
    ``name``; None when it is not accepted. Caption lists are accepted only by their exact names."""
    low = name.lower()
    suffix = PurePosixPath(low).suffix
    if low in MANIFESTS:
        return "manifest"
    if suffix in MEDIA_EXTS:
        return "media"
    if suffix == ".zip":
        return "zip"
    if any(fnmatch.fnmatch(low, pat.lower()) for pat in extra_names):
        return "extra"
    return None


def safe_name(name: str) -> str:
    """``name`` made safe as one file-name component and for display: control characters, bidirectional
    overrides and other format characters removed, separators and NUL replaced, at most
    ``MAX_NAME_BYTES`` UTF-8 bytes (extension kept). Unicode letters are kept. May return ''."""
    name = unicodedata.normalize("NFC", name)
    name = "".join(c for c in name if unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"))
    name = name.replace("/", "_").replace("\\", "_").strip().rstrip(".")
    if name in ("", ".", ".."):
        return ""
    stem, dot, ext = name.rpartition(".")
    if not dot or len(ext) > 16:
        stem, ext = name, ""
    ext = f".{ext}" if ext else ""
    while len((stem + ext).encode()) > MAX_NAME_BYTES and stem:
        stem = stem[:-1]
    return stem + ext if stem else ""


def unique_path(path: Path) -> Path:
    """``path``, or ``name-1.ext``, ``name-2.ext``… if it exists already."""
    if not path.exists():
        return path
    for i in range(1, 100_000):
        cand = path.with_name(f"{path.stem}-{i}{path.suffix}")
        if not cand.exists():
            return cand
    raise UserError(f"Too many files named {path.name!r} in one upload.")


def _limit_for(kind: str, max_file_bytes: int, max_manifest_bytes: int, max_text_bytes: int, name: str) -> tuple[int, str]:
    """(byte limit, setting to quote) for one file: caption lists, ``extra_names`` side files (qrels)
    and text files have tighter limits."""
    if kind in ("manifest", "extra") and max_manifest_bytes < max_file_bytes:
        return max_manifest_bytes, "CROSSMODAL_MAX_MANIFEST_BYTES"
    if kind == "media" and PurePosixPath(name.lower()).suffix in TEXT_EXTS and max_text_bytes < max_file_bytes:
        return max_text_bytes, "CROSSMODAL_MAX_TEXT_BYTES"
    return max_file_bytes, "CROSSMODAL_MAX_FILE_BYTES"


def _too_big(name: str, size: str, limit: int, setting: str) -> str:
    return f"'{name}' is {size}; the limit is {human_bytes(limit)} per file ({setting})"


def _copy_capped(src: BinaryIO, target: Path, limit: int, budget: UploadBudget, label: str) -> int:
    """Stream ``src`` into ``target``, never writing more than ``limit`` bytes (MediaError past it) or
    more than the budget (UserError). The partial file is removed on any failure."""
    written = 0
    dst = open(target, "xb")  # exclusive: never truncates a file that appeared meanwhile (and never unlinks it)
    try:
        with dst:
            while True:
                block = src.read(min(BLOCK, limit - written + 1))  # one byte past the limit is enough to know
                if not block:
                    return written
                if written + len(block) > limit:
                    raise MediaError(f"more than {limit / MB:,.1f} MB")
                budget.take_bytes(len(block), label)
                dst.write(block)
                written += len(block)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def copy_upload(
    src: Path,
    dest_dir: Path,
    budget: UploadBudget,
    max_file_bytes: int,
    *,
    max_manifest_bytes: int = DEFAULT_MAX_MANIFEST_BYTES,
    max_text_bytes: int = TEXT_MAX_BYTES,
) -> Path:
    """Copy one uploaded file into ``dest_dir`` under a safe, unique name; returns the new path.

    Type and size are checked before copying: :class:`MediaError` for this file (unsupported type,
    empty, over ``max_file_bytes`` — CROSSMODAL_MAX_FILE_BYTES —, gone), :class:`UserError` when the
    upload budget is exhausted (the whole upload stops).
    """
    src = Path(src)
    name = safe_name(src.name) or "upload"
    kind = upload_kind(name)
    if kind not in ("media", "manifest"):
        why = "a .zip is unpacked, not copied" if kind == "zip" else f"unsupported file type '{PurePosixPath(name).suffix or name}'"
        raise MediaError(f"'{name}': {why} (accepted: {accepted_upload_types()}).")
    try:
        size = src.stat().st_size
    except OSError:
        raise MediaError(f"'{name}': the uploaded file is gone (upload it again).") from None
    if size == 0:
        raise MediaError(f"'{name}' is empty (0 bytes).")
    limit, setting = _limit_for(kind, max_file_bytes, max_manifest_bytes, max_text_bytes, name)
    if size > limit:
        raise MediaError(_too_big(name, human_bytes(size), limit, setting) + ".")
    if size > budget.bytes_left:
        budget.take_bytes(size, name)  # raises with the message naming the setting
    budget.take_file(name)
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = unique_path(dest_dir / name)
    try:
        with open(src, "rb") as fh:
            _copy_capped(fh, target, limit, budget, name)
    except MediaError:  # the file grew after stat()
        raise MediaError(_too_big(name, "larger than that now", limit, setting) + ".") from None
    except OSError as exc:
        raise MediaError(f"'{name}': cannot be copied ({exc.strerror or exc}).") from None
    return target


def _member_parts(m: zipfile.ZipInfo) -> list[str] | None:
    """Path components of a zip member, or None when the path is unsafe (absolute, '..', drive letter)."""
    raw = m.filename.replace("\\", "/")
    if raw.startswith("/") or _DRIVE.match(raw) or "\x00" in raw:
        return None
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return parts


def extract_zip(
    zpath: Path,
    dest: Path,
    budget: UploadBudget,
    max_file_bytes: int,
    *,
    extra_names: Iterable[str] = (),
    max_manifest_bytes: int = DEFAULT_MAX_MANIFEST_BYTES,
    max_text_bytes: int = TEXT_MAX_BYTES,
) -> ZipResult:
    """Extract the accepted members of ``zpath`` under ``dest``, streaming each one.

    Accepted: media files, ``captions.csv`` / ``captions.jsonl``, and names matching a glob of
    ``extra_names`` (e.g. ``"*.jsonl"`` for qrels). Each member stops *at* its limit (``max_file_bytes``,
    CROSSMODAL_MAX_FILE_BYTES; caption lists and extra files ``max_manifest_bytes``, CROSSMODAL_MAX_MANIFEST_BYTES;
    text ``max_text_bytes``, CROSSMODAL_MAX_TEXT_BYTES): at most
    the limit + 1 byte is ever written, then removed. Absolute paths, ``..``, drive letters, symlinks and
    names that are empty once cleaned are problems; hidden entries and ``__MACOSX`` are skipped (counted
    in ``hidden``); other types are listed in ``ignored``. :class:`UserError` when the archive cannot
    fit the budget (checked first from the declared sizes, then on the bytes actually written).
    """
    extra = tuple(extra_names)
    out = ZipResult()
    zname = safe_name(Path(zpath).name) or "upload.zip"
    try:
        zf = zipfile.ZipFile(zpath)
    except Exception as exc:  # BadZipFile, OSError, and struct/value errors from a mangled directory
        out.problems.append(Problem(zname, f"not a readable .zip archive ({exc})"))
        return out
    with zf:
        plan: list[tuple[zipfile.ZipInfo, list[str], str, tuple[int, str]]] = []
        for m in zf.infolist():
            if m.is_dir():
                continue
            parts = _member_parts(m)
            shown = "/".join(safe_name(p) or "_" for p in (parts or m.filename.replace("\\", "/").split("/")))[:300]
            label = f"{zname}:{shown}"
            if parts is None:
                out.problems.append(Problem(label, "unsafe path inside the .zip (absolute, with '..' or a drive letter); skipped"))
                continue
            if any(p.startswith(".") or p == "__MACOSX" for p in parts):
                out.hidden += 1
                continue
            if (m.external_attr >> 16) & 0o170000 == 0o120000:
                out.problems.append(Problem(label, "symbolic link inside the .zip; skipped"))
                continue
            clean = [safe_name(p) for p in parts]
            if not all(clean):
                out.problems.append(Problem(label, "file name is empty once control characters are removed; skipped"))
                continue
            if any(p.startswith(".") for p in clean):  # hidden once cleaned ("\u202e.env")
                out.hidden += 1
                continue
            kind = upload_kind(clean[-1], extra)
            if kind in (None, "zip"):
                why = "a .zip inside a .zip is not opened" if kind == "zip" else (
                    f"unsupported file type '{PurePosixPath(clean[-1]).suffix or clean[-1]}'")
                out.ignored.append(Problem(label, f"{why} (accepted: {accepted_upload_types(extra)})"))
                continue
            limit, setting = _limit_for(kind, max_file_bytes, max_manifest_bytes, max_text_bytes, clean[-1])
            if m.file_size > limit:  # declared size: refused without reading a byte
                out.problems.append(Problem(label, _too_big(clean[-1], f"{human_bytes(m.file_size)} unpacked", limit, setting) + "; skipped"))
                continue
            plan.append((m, clean, label, (limit, setting)))
        if len(plan) > budget.files_left:
            raise UserError(
                f"'{zname}' holds {len(plan):,} files to add; only {max(0, budget.files_left):,} more fit "
                f"({budget.files_setting}). Upload it in parts."
            )
        declared = sum(m.file_size for m, *_ in plan)
        if declared > budget.bytes_left:
            raise UserError(
                f"'{zname}' unpacks to {human_bytes(declared)}; only {human_bytes(max(0, budget.bytes_left))} more fit "
                f"({budget.bytes_setting}). Upload it in parts."
            )
        root = Path(dest)
        root.mkdir(parents=True, exist_ok=True)
        root = root.resolve()
        for m, clean, label, (limit, setting) in plan:
            target = root.joinpath(*clean)
            if not target.resolve().is_relative_to(root):  # a folder of dest that is a symlink, say
                out.problems.append(Problem(label, "unsafe path inside the .zip; skipped"))
                continue
            budget.take_file(label)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)  # fails if a file took the folder's name
                target = unique_path(target)
                with zf.open(m) as src:
                    n = _copy_capped(src, target, limit, budget, label)
            except MediaError:  # declared size lied: stopped at the limit
                budget.files_left += 1
                out.problems.append(Problem(label, _too_big(clean[-1], "larger than its declared size", limit, setting) + "; stopped there and skipped"))
                continue
            except UserError:  # the upload budget ran out: the whole upload stops
                raise
            except Exception as exc:  # BadZipFile, zlib.error, OSError, encrypted or unsupported compression…
                budget.files_left += 1
                out.problems.append(Problem(label, f"cannot be extracted ({exc})"))
                continue
            if n == 0:
                target.unlink(missing_ok=True)
                out.problems.append(Problem(label, "is empty (0 bytes); skipped"))
                continue
            out.extracted.append(target)
            out.bytes_written += n
    for kind, listed in (("problems", out.problems), ("ignored", out.ignored)):
        if len(listed) > MAX_LISTED:  # a zip of 300,000 stray files must not become a 300,000-line answer
            more = len(listed) - MAX_LISTED
            del listed[MAX_LISTED:]
            listed.append(Problem(zname, f"{more:,} more {'members with problems' if kind == 'problems' else 'members ignored'} not listed"))
    return out


def prune(batch_dir: Path, keep: set[str]) -> None:
    """Delete files under ``batch_dir`` whose path (as given or resolved) is not in ``keep``, then empty
    folders, then ``batch_dir`` itself if empty."""
    batch_dir = Path(batch_dir)
    if not batch_dir.is_dir():
        return
    for f in sorted(batch_dir.rglob("*"), reverse=True):
        if f.is_symlink() or f.is_file():
            if str(f) not in keep and str(f.resolve()) not in keep:
                f.unlink(missing_ok=True)
        elif f.is_dir() and not any(f.iterdir()):
            f.rmdir()
    if not any(batch_dir.iterdir()):
        batch_dir.rmdir()


__all__ = [
    "UploadBudget", "ZipResult", "accepted_upload_types", "copy_upload", "extract_zip", "prune", "safe_name",
    "unique_path", "upload_kind",
]
