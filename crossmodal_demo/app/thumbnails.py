"""Small previews of items (the photo itself, a waveform for audio, a card with the first words for text).

Previews are made from the item's stored file and cached in the collection's ``thumbs/`` folder,
named by item id and content hash, so a replaced file gets a new preview.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from crossmodal_demo.config import Config
from crossmodal_demo.errors import MediaError
from crossmodal_demo.index.store import Collection, Item
from crossmodal_demo.ingest.media import AudioLimits, ImageLimits, load_audio, load_image, load_text

THUMB_PX = 256


def thumbnail_path(coll: Collection, item: Item) -> Path:
    """Where the preview of ``item`` is cached (inside the collection's ``thumbs/`` folder)."""
    return coll.root / "thumbs" / f"{item.id}-{item.sha256[:12]}.png"


def thumbnail(coll: Collection, item: Item, config: Config) -> Path:
    """The preview PNG of ``item`` (256 px), made on first request and cached."""
    dst = thumbnail_path(coll, item)
    if not dst.is_file():
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.stem}.{secrets.token_hex(4)}.tmp.png")  # one temp per request: no collision
        make_thumbnail(item, config).save(tmp)
        tmp.replace(dst)  # concurrent requests never see a half-written preview
    return dst


def drop_thumbnails(coll: Collection, item_id: int) -> None:
    """Delete the cached previews of a deleted item."""
    for t in (coll.root / "thumbs").glob(f"{int(item_id)}-*.png"):
        t.unlink(missing_ok=True)


def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: bitmap font
        return ImageFont.load_default()


def _wrap(words: list[str], width: int = 26, lines_max: int = 10) -> list[str]:
    lines, line = [], ""
    for w in words:
        if len(line) + len(w) + 1 > width:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
        if len(lines) >= lines_max - 1:
            break
    return [*lines, line][:lines_max]


def make_thumbnail(item: Item, config: Config) -> Image.Image:
    """PIL RGB image, at most THUMB_PX × THUMB_PX, for any item; a readable card if the file cannot be read."""
    name = Path(item.path).name
    try:
        if item.modality == "image":
            im = load_image(Path(item.path), limits=ImageLimits.from_config(config))
            im.thumbnail((THUMB_PX, THUMB_PX))
            return im
        card = Image.new("RGB", (THUMB_PX, THUMB_PX), (246, 246, 250))
        draw = ImageDraw.Draw(card)
        if item.modality == "audio":
            clip = load_audio(Path(item.path), limits=AudioLimits.from_config(config))
            cols = np.array_split(np.abs(clip.samples), THUMB_PX - 16) if len(clip.samples) else []
            peak = max((float(c.max()) for c in cols if len(c)), default=0.0) or 1.0
            mid = THUMB_PX // 2
            for x, c in enumerate(cols):
                h = int((float(c.max()) if len(c) else 0.0) / peak * (THUMB_PX // 2 - 40))
                draw.line([(8 + x, mid - h), (8 + x, mid + h)], fill=(70, 110, 200))
            draw.text((8, 8), f"{clip.seconds:.1f} s", fill=(40, 40, 40), font=_font(16))
        else:
            lines = _wrap(load_text(Path(item.path), max_bytes=config.max_text_bytes).split())
            draw.multiline_text((10, 10), "\n".join(lines), fill=(40, 40, 40), font=_font(15), spacing=4)
        draw.text((8, THUMB_PX - 24), name[:30], fill=(90, 90, 90), font=_font(13))
        return card
    except (MediaError, OSError) as exc:
        card = Image.new("RGB", (THUMB_PX, THUMB_PX), (250, 235, 235))
        ImageDraw.Draw(card).multiline_text((8, 8), f"{name[:30]}\ncannot preview:\n{str(exc)[:60]}", fill=(150, 40, 40), font=_font(13))
        return card


__all__ = ["THUMB_PX", "drop_thumbnails", "make_thumbnail", "thumbnail", "thumbnail_path"]
