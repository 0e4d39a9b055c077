"""Safe decoding: limits, allow-lists and clear per-file errors (no encoder needed)."""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image, ImageFile

from crossmodal_demo.config import load_config
from crossmodal_demo.errors import MediaError
from crossmodal_demo.ingest.media import ImageLimits, check_image_file, load_audio, load_image, load_text, modality_of


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
    with pytest.raises(MediaError) as err:
        load_image(data_dir / "bad" / "bomb.png", max_mpx=100)
    # 900 Mpx: Pillow's own guard (over 179 Mpx) fires in open(), before ours; the message still names ours
    assert "'bomb.png' declares an enormous size" in str(err.value) and "(CROSSMODAL_MAX_IMAGE_MPX)" in str(err.value)


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


# -------------------------------------------- budgets (issue 11); more in test_budgets.py, bombs in test_bombs.py


def test_decoded_bytes_limit_names_size_mode_and_setting(tmp_path: Path) -> None:
    p = tmp_path / "big.png"
    Image.new("RGBA", (1000, 1000)).save(p)
    with pytest.raises(MediaError, match=r"'big.png' is 1,000×1,000 px in mode RGBA: decoding it needs about \d+ MB; "
                                         r"the limit is 2 MB \(CROSSMODAL_MAX_DECODED_MB\)"):
        load_image(p, max_decoded_bytes=2 * 1024 * 1024)


def test_check_image_file_reads_the_header_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "page.tiff"
    Image.new("F", (900, 700)).save(p)
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("decoded pixels"))
    info = check_image_file(p, ImageLimits.from_config(load_config(environ={"CROSSMODAL_MAX_DECODED_MB": "64"})))
    assert (info.width, info.height, info.mode, info.format) == (900, 700, "F", "TIFF")
    assert info.decoded_bytes >= 900 * 700 * 4  # at least Pillow's float storage
    with pytest.raises(MediaError, match=r"the limit is 1 MB \(CROSSMODAL_MAX_DECODED_MB\)"):
        check_image_file(p, ImageLimits(max_decoded_bytes=1024 * 1024))
    monkeypatch.undo()
    with pytest.raises(MediaError, match=r"\(1 Mpx\); the limit is 0.5 Mpx \(CROSSMODAL_MAX_IMAGE_MPX\)"):
        load_image(p, limits=ImageLimits(max_mpx=0.5))


@pytest.mark.parametrize("mode", ["1", "L", "P", "I;16", "I", "F", "LA", "RGB", "RGBA", "CMYK"])
def test_large_images_are_reduced_before_conversion(tmp_path: Path, mode: str) -> None:
    if mode == "I;16":
        im = Image.fromarray((np.arange(1100 * 780) % 65536).reshape(780, 1100).astype(np.uint16))
    else:
        im = Image.new(mode, (1100, 780))
    if mode == "P":
        im.info["transparency"] = 0  # a transparent palette entry: flattened on white
    p = tmp_path / ("x.tiff" if mode in ("I;16", "I", "F", "CMYK") else "x.png")
    im.save(p)
    out = load_image(p)
    assert out.mode == "RGB" and out.size == (367, 260)  # ÷3: the short side stays ≥ 256 px
    if mode == "P":
        assert out.getpixel((0, 0)) == (255, 255, 255)


def test_exif_orientation_survives_reduction(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    p = tmp_path / "rot.png"
    Image.new("RGB", (1200, 600)).save(p, exif=exif.tobytes())
    assert load_image(p).size == (300, 600)


def _multichannel_wav(path: Path, sr: int, channels: int, seconds: float) -> None:
    with sf.SoundFile(path, "w", sr, channels, "PCM_16") as f:
        for _ in range(int(seconds)):
            f.write(np.zeros((sr, channels), dtype=np.int16))


def test_decoded_samples_budget_names_the_seconds_setting(tmp_path: Path) -> None:
    p = tmp_path / "eight.wav"
    _multichannel_wav(p, 96000, 8, 2)  # 2 s, but 1,536,000 samples: more than 3 s × 48 kHz × 8 channels
    with pytest.raises(MediaError, match=r"1,536,000 samples .* \(CROSSMODAL_MAX_QUERY_AUDIO_SECONDS × 48 kHz × 8 channels\)"):
        load_audio(p, max_seconds=3.0, seconds_setting="CROSSMODAL_MAX_QUERY_AUDIO_SECONDS")
    with pytest.raises(MediaError, match=r"the limit is 1 s \(CROSSMODAL_MAX_QUERY_AUDIO_SECONDS\)"):
        load_audio(p, max_seconds=1.0, seconds_setting="CROSSMODAL_MAX_QUERY_AUDIO_SECONDS")


def test_audio_is_decoded_block_by_block(tmp_path: Path) -> None:
    p = tmp_path / "long8.wav"
    _multichannel_wav(p, 48000, 8, 60)  # a whole-file float32 decode would hold 92 MB
    tracemalloc.start()
    try:
        clip = load_audio(p)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert clip.sr == 16000 and abs(clip.seconds - 60) < 0.01
    assert peak < 30_000_000, f"{peak / 1e6:.0f} MB"  # blocks of 2 MB + the 3.8 MB mono result (+ concatenation)
