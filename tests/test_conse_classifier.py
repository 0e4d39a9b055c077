"""The offline classifier runs as trained: labelled photos get their ImageNet class (real bundled weights).

Catches preprocessing/weight-mapping regressions: with the old path (timm efficientnet_lite0, ImageNet
mean/std) the cat's cat-class mass and the coffee's espresso/cup mass drop well below these bounds.
Measured with the shipped path: cat top-1 Egyptian cat 0.78 (cat classes 0.96); coffee espresso 0.64
(espresso + cup + mug 0.76).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crossmodal_demo.config import load_config
from crossmodal_demo.encoders import conse
from crossmodal_demo.encoders.offline import CONSE, MINILM
from crossmodal_demo.encoders.sbert import make_minilm

IMAGES = Path(__file__).parent / "data" / "images"
EXPECTED = {"cat.jpg": ({281, 282, 285}, 0.8), "coffee.jpg": ({967, 968, 504}, 0.6)}


@pytest.fixture(scope="module")
def encoder() -> conse.ConSEImage:
    cfg = load_config(environ={})
    return conse.ConSEImage(CONSE, make_minilm(MINILM, cfg), conse.bundled_effnet_lite0_path(), 10,
                            Path(tempfile.mkdtemp()))


def test_labelled_photos_get_their_imagenet_class(encoder: conse.ConSEImage) -> None:
    ims = [Image.open(IMAGES / f).convert("RGB") for f in EXPECTED]
    probs = encoder.probabilities(ims)
    assert probs.shape == (len(ims), 1000) and probs.dtype == np.float32
    for (name, (classes, floor)), p in zip(EXPECTED.items(), probs):
        assert int(np.argmax(p)) in classes, name
        assert p[sorted(classes)].sum() >= floor, name


def test_top_classes_are_sorted_labels_with_probabilities(encoder: conse.ConSEImage) -> None:
    tags = encoder.top_classes([Image.open(IMAGES / "cat.jpg").convert("RGB")], k=5)[0]
    assert len(tags) == 5 and tags[0][0] in {"tabby", "tiger cat", "Egyptian cat"}
    assert [p for _, p in tags] == sorted((p for _, p in tags), reverse=True)


def test_weight_mapping_rejects_a_wrong_architecture(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        conse.load_effnet_lite("lite1", conse.bundled_effnet_lite0_path())
