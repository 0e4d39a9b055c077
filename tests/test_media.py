"""Safe decoding: limits, allow-lists and clear per-file errors (no encoder needed)."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from crossmodal_demo.errors import MediaError
from crossmodal_demo.ingest.media import load_audio, load_image, load_text, modality_of


def test_good_image_is_rgb(data_dir: Path) -> None:
    im = load_image(data_dir / "images" / "coins.png")  # greyscale PNG
    assert im.mode == "RGB" and im.size == (320, 253)


@pytest.mark.parametrize(
    "name, fragment",
    [
        ("truncated.jpg", "damaged or truncated"),
        ("empty.png", "is empty (0 bytes)"),
        ("notes_not_image.jpg", "It looks like a text file"),
    ],
)
def test_bad_images_are_refused_with_a_reason(data_dir: Path, name: str, fragment: str) -> None:
    with pytest.raises(MediaError) as err:
        load_image(data_dir / "bad" / name)
    assert name in str(err.value) and fragment in str(err.value)


def test_decompression_bomb_is_refused_before_decoding(data_dir: Path) -> None:
    t0 = time.perf_counter()
    with pytest.raises(MediaError) as err:
        load_image(data_dir / "bad" / "bomb.png", max_mpx=100)
    assert "bomb.png" in str(err.value)
    assert "900 Mpx" in str(err.value) or "enormous" in str(err.value)
    assert time.perf_counter() - t0 < 5  # refused from the header, not after decoding 900 Mpx


def test_pixel_limit_names_the_size_and_the_setting(tmp_path: Path) -> None:
    p = tmp_path / "wide.png"
    Image.new("RGB", (3000, 1000)).save(p)
    with pytest.raises(MediaError, match=r"3,000×1,000 px .*limit is 2 Mpx \(CROSSMODAL_MAX_IMAGE_MPX\)"):
        load_image(p, max_mpx=2)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    im = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° CW on display
    p = tmp_path / "rot.jpg"
    im.save(p, exif=exif.tobytes())
    assert load_image(p).size == (20, 40)


@pytest.mark.parametrize("mode", ["CMYK", "P", "I;16", "LA", "RGBA"])
def test_unusual_modes_become_rgb(tmp_path: Path, mode: str) -> None:
    if mode == "I;16":
        im = Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16))
    else:
        im = Image.new(mode, (64, 64))
    ext = ".tiff" if mode in ("CMYK", "I;16") else ".png"
    p = tmp_path / f"x{ext}"
    im.save(p)
    out = load_image(p)
    assert out.mode == "RGB" and out.size == (64, 64)


def test_transparent_pixels_flatten_on_white(tmp_path: Path) -> None:
    p = tmp_path / "clear.png"
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(p)
    assert load_image(p).getpixel((0, 0)) == (255, 255, 255)


def test_gif_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("P", (16, 16), c) for c in (1, 2)]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:])
    assert load_image(p).size == (16, 16)


def test_format_outside_allow_list_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "pic.jpg"
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PCX")
    p.write_bytes(buf.getvalue())
    with pytest.raises(MediaError, match="accepted formats are JPEG, PNG"):
        load_image(p)


def test_audio_is_resampled_to_mono_16k(tmp_path: Path) -> None:
    sr = 44100
    t = np.arange(sr) / sr
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t)], axis=1).astype(np.float32) * 0.5
    p = tmp_path / "tone.flac"
    sf.write(p, stereo, sr)
    clip = load_audio(p, target_sr=16000)
    assert clip.sr == 16000 and clip.samples.ndim == 1 and abs(clip.seconds - 1.0) < 0.01
    assert clip.samples.dtype == np.float32


def test_audio_over_the_cap_is_refused_from_the_header(data_dir: Path) -> None:
    with pytest.raises(MediaError, match=r"12\.0 s long; the limit is 10 s"):
        load_audio(data_dir / "bad" / "long_tone.wav", max_seconds=10)


def test_audio_with_nan_samples_is_refused(tmp_path: Path) -> None:
    x = np.zeros(1600, dtype=np.float32)
    x[10] = np.nan
    p = tmp_path / "nan.wav"
    sf.write(p, x, 16000, subtype="FLOAT")
    with pytest.raises(MediaError, match="NaN or infinite"):
        load_audio(p)


def test_image_named_wav_gets_a_hint(data_dir: Path, tmp_path: Path) -> None:
    p = tmp_path / "song.wav"
    p.write_bytes((data_dir / "images" / "cat.jpg").read_bytes())
    with pytest.raises(MediaError, match="looks like a JPEG image"):
        load_audio(p)


def test_text_invalid_utf8_reports_offset(tmp_path: Path) -> None:
    p = tmp_path / "bad.txt"
    p.write_bytes(b"hello \xff world")
    with pytest.raises(MediaError, match="not valid UTF-8 .*offset 6"):
        load_text(p)


def test_modality_by_extension() -> None:
    assert [modality_of(Path(n)) for n in ("a.JPG", "b.flac", "c.md", "d.pdf")] == ["image", "audio", "text", None]
