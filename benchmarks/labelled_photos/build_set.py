"""Rebuild this picture set from its sources (run once; the JPEGs and labels.tsv are committed).

Sources (see SOURCES.md): the Debian package ``tuxpaint-stamps-default`` (GPL-2+ photo cut-outs with a
transparent background) and five photos from ``tests/data/images`` (scikit-image / scikit-learn sample
photos). Cut-outs are composited on white; every picture is resized to ≤ 320 px on its long side and
saved as JPEG quality 85.

    apt-get download tuxpaint-stamps-default && dpkg -x tuxpaint-stamps-default_*.deb /tmp/tp
    python benchmarks/labelled_photos/build_set.py /tmp/tp/usr/share/tuxpaint/stamps benchmarks/labelled_photos/build_table.txt
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent.parent / "tests" / "data" / "images"
LONG_SIDE = 320


def flatten(im: Image.Image) -> Image.Image:
    """RGBA/LA/P → RGB on a white background (the cut-outs have transparent surroundings)."""
    if im.mode in ("RGBA", "LA", "P"):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        bg.alpha_composite(rgba)
        return bg.convert("RGB")
    return im.convert("RGB")


def main(stamps: str, table: str) -> None:
    """Write ``<name>.jpg`` files and ``labels.tsv`` (file, categories, ImageNet indices, source)."""
    rows = ["file\tcategories\timagenet\tsource"]
    seen: set[str] = set()
    for line in Path(table).read_text().splitlines():
        if not line.strip():
            continue
        src, cats, imnet = line.split("|")
        if src.startswith("TEST:"):
            path, origin = TESTS / src[5:], f"tests/data/images/{src[5:]}"
        else:
            path, origin = Path(stamps) / src, f"tuxpaint-stamps-default:{src}"
        name = Path(src.split(":")[-1]).stem.lower().replace("_", "-")
        while name in seen:
            name += "-b"
        seen.add(name)
        im = flatten(Image.open(path))
        im.thumbnail((LONG_SIDE, LONG_SIDE), Image.Resampling.LANCZOS)
        im.save(HERE / f"{name}.jpg", quality=85, optimize=True)
        rows.append(f"{name}.jpg\t{cats}\t{imnet}\t{origin}")
    (HERE / "labels.tsv").write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
