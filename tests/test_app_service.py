"""The app's callbacks (AppService methods and ui helpers), called directly as functions, with real offline weights."""

from __future__ import annotations

import json
import shutil
import stat
import zipfile
from pathlib import Path

import pytest
import soundfile as sf

from crossmodal_demo.app.service import OFFLINE_BANNER, AppService, offline_banner
from crossmodal_demo.encoders import PRESETS
from crossmodal_demo.config import load_config
from crossmodal_demo.app.demo_collection import MARKER, demo_files, ensure_demo_collection
from crossmodal_demo.errors import UserError
from crossmodal_demo.retrieval.library import open_library

DATA = Path(__file__).parent / "data"
HIT_FIELDS = {"id", "path", "modality", "score", "space", "channel", "caption", "transcript", "rank"}
UPLOADS = [
    DATA / "images" / "cat.jpg",
    DATA / "images" / "coffee.jpg",
    DATA / "images" / "rocket.jpg",
    DATA / "speech" / "weather.wav",
    DATA / "texts" / "forecast_note.txt",
    DATA / "texts" / "commute_note.txt",
    DATA / "texts" / "pet_note.txt",
]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> AppService:
    """A started service on collection 'mine' (pre-created, so no demo build) holding UPLOADS."""
    cfg = load_config(indexes_dir=tmp_path_factory.mktemp("app-indexes"))
    open_library(cfg, "mine", preset="offline", create=True).collection.close()
    svc = AppService(cfg, preset="offline", collection="mine")
    assert svc.start() == "mine"
    calls: list[tuple[int, int, str]] = []
    svc.first_report = svc.index_uploads([str(p) for p in UPLOADS], progress=lambda d, t, desc: calls.append((d, t, desc)))  # type: ignore[attr-defined]
    svc.progress_calls = calls  # type: ignore[attr-defined]
    yield svc
    svc.close()


def test_start_loads_no_model_and_picks_the_requested_collection(tmp_path: Path, shared_cache: Path) -> None:
    cfg = load_config(indexes_dir=tmp_path / "ix")
    open_library(cfg, "only", preset="offline", create=True).collection.close()
    svc = AppService(cfg)
    assert svc.start() == "only"  # an existing collection: no demo build
    st = svc.status()
    assert st["collection"] == "only" and st["demo_build"]["state"] == "idle"
    assert not any(e["loaded"] for e in st["encoders"])
    svc.close()


def test_uploads_are_copied_into_the_collection_and_indexed(service: AppService) -> None:
    rep = service.first_report  # type: ignore[attr-defined]
    assert rep["added"] == len(UPLOADS) and rep["errors"] == [] and rep["collection"] == "mine"
    assert rep["counts"] == {"image": 3, "audio": 1, "text": 3, "total": 7}
    media = service.library.collection.root / "media"
    for it in service.library.collection.items():
        assert Path(it.path).is_file() and Path(it.path).is_relative_to(media.resolve())
    done, total, desc = service.progress_calls[-1]  # type: ignore[attr-defined]
    assert (done, total) == (7, 7) and "items/s" in desc


def test_text_query_returns_the_cat_photo_first_with_cli_fields(service: AppService) -> None:
    res = service.search(text="a cat", target="image", k=3)
    assert Path(res["hits"][0]["path"]).name == "cat.jpg"
    assert set(res["hits"][0]) == HIT_FIELDS
    assert res["query"] == {"modality": "text", "text": "a cat", "target": "image", "k": 3, "collection": "mine", "preset": "offline"}
    json.dumps(res)  # JSON-ready


def test_audio_query_returns_the_matching_note_as_a_ranked_text_list(service: AppService) -> None:
    res = service.search(audio=str(DATA / "speech" / "weather.wav"), target="text", k=3)
    assert [Path(h["path"]).name for h in res["hits"]][0] == "forecast_note.txt"
    assert "rain" in res["query"]["transcript"].lower()
    view = service.result_view(res)
    assert view["gallery"] == [] and [c["rank"] for c in view["cards"]] == [1, 2, 3]
    assert view["cards"][0]["excerpt"] and "Heard in the clip" in view["summary"]


def test_microphone_array_query_is_accepted(service: AppService) -> None:
    data, sr = sf.read(DATA / "speech" / "weather.wav", dtype="int16")
    res = service.search(audio=(sr, data), target="text", k=1)
    assert Path(res["hits"][0]["path"]).name == "forecast_note.txt"


def test_image_query_finds_the_describing_note(service: AppService) -> None:
    res = service.search(image=str(DATA / "images" / "cat.jpg"), target="text", k=3)
    assert Path(res["hits"][0]["path"]).name == "pet_note.txt"
    view = service.result_view(service.search(text="a rocket", target="image", k=2))
    assert Path(view["gallery"][0][0]).name == "rocket.jpg" and "#1 · " in view["gallery"][0][1]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "Nothing to search for"),
        ({"text": "   "}, "Nothing to search for"),
        ({"text": "cat", "image": str(DATA / "images" / "cat.jpg")}, "one query at a time (got text and image)"),
        ({"text": "cat", "target": "video"}, "Unknown target 'video'"),
        ({"text": "cat", "k": 0}, "k must be between 1 and 50"),
        ({"image": str(DATA / "bad" / "notes_not_image.jpg")}, "not a readable image"),
    ],
)
def test_search_mistakes_are_specific_user_errors(service: AppService, kwargs: dict, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        service.search(**kwargs)


def test_duplicates_and_unsupported_uploads_are_reported_not_kept(service: AppService, tmp_path: Path) -> None:
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(b"%PDF-1.4 nothing")
    rep = service.index_uploads([str(DATA / "images" / "cat.jpg"), str(pdf), str(DATA / "bad" / "truncated.jpg")])
    assert rep["added"] == 0 and rep["duplicates"] == 1
    reasons = {e["path"]: e["reason"] for e in rep["errors"]}
    assert "unsupported file type '.pdf'" in reasons["report.pdf"]
    assert "truncated.jpg" in reasons  # per-file error, shown by name
    uploads = list((service.library.collection.root / "media").glob("upload-*"))
    assert len(uploads) == 1  # the first batch only: nothing of this one was kept


def test_zip_upload_is_extracted_safely(service: AppService, tmp_path: Path) -> None:
    z = tmp_path / "bundle.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(DATA / "images" / "china.jpg", "trip/temple.jpg")
        zf.writestr("trip/captions.csv", "path,caption\ntemple.jpg,a pagoda by a lake\n")
        zf.writestr("../escape.txt", "outside")
        zf.writestr("/abs.txt", "absolute")
        zf.writestr("__MACOSX/._temple.jpg", "fork")
        link = zipfile.ZipInfo("trip/link.txt")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    service.create_collection("zipped")
    try:
        rep = service.index_uploads([str(z)])
        assert rep["added"] == 1
        reasons = " | ".join(f"{e['path']}: {e['reason']}" for e in rep["errors"])
        assert "bundle.zip:../escape.txt: unsafe path" in reasons and "bundle.zip:/abs.txt: unsafe path" in reasons
        assert "symbolic link" in reasons
        item = service.library.collection.items()[0]
        assert item.caption == "a pagoda by a lake"  # captions.csv inside the zip applies
        assert not (service.config.indexes_dir / "zipped" / "escape.txt").exists()
        assert not any(p.name in ("escape.txt", "abs.txt", "link.txt") for p in Path(service.config.indexes_dir).rglob("*"))
    finally:
        service.switch_collection("mine")


def test_zip_over_the_size_limit_is_refused(tmp_path: Path, shared_cache: Path) -> None:
    cfg = load_config(indexes_dir=tmp_path / "ix")
    svc = AppService(cfg, preset="offline", collection="small", max_upload_bytes=10_000)
    svc.start()
    z = tmp_path / "big.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.txt", "0" * 50_000)  # compresses to ~100 bytes, unpacks to 50 kB
    with pytest.raises(UserError, match="over the upload limit"):
        svc.index_uploads([str(z)])
    assert not list((cfg.indexes_dir / "small" / "media").glob("upload-*"))
    svc.close()


def test_browse_thumbnails_and_delete(service: AppService) -> None:
    service.create_collection("scratch")
    try:
        service.index_uploads([str(DATA / "images" / "flower.jpg"), str(DATA / "sounds" / "beep.wav"), str(DATA / "texts" / "houseplants.txt")])
        items = service.list_items("all")
        assert {i["modality"] for i in items} == {"image", "audio", "text"}
        assert all(Path(i["thumbnail"]).is_file() for i in items)
        assert [i["name"] for i in service.list_items("image")] == ["flower.jpg"]
        flower = service.list_items("image")[0]
        out = service.delete(f"{flower['id']}, 99999")
        assert out["removed"] == [flower["id"]] and "99999" in out["unknown"][0]
        assert not Path(flower["path"]).exists() and not Path(flower["thumbnail"]).exists()
        assert out["counts"]["image"] == 0
        with pytest.raises(UserError, match="Select items"):
            service.delete("")
        with pytest.raises(UserError, match="whole numbers"):
            service.delete("cat.jpg")
        with pytest.raises(UserError, match="Unknown modality"):
            service.list_items("video")
    finally:
        service.switch_collection("mine")


def test_collections_create_switch_and_mistakes(service: AppService) -> None:
    with pytest.raises(UserError, match="already exists"):
        service.create_collection("mine")
    with pytest.raises(UserError, match="Invalid collection name"):
        service.create_collection("../etc")
    with pytest.raises(UserError, match="Unknown collection 'nope'. Available: .*mine"):
        service.switch_collection("nope")
    with pytest.raises(UserError, match="--allow-folder-indexing"):
        service.index_folder(str(DATA / "images"))
    st = service.switch_collection("mine")
    assert st["collection"] == "mine" and "mine" in st["collections"]


def test_status_reports_the_stand_in_preset_device_and_counts(service: AppService) -> None:
    st = service.status()
    assert st["preset"] == "offline" and st["stand_in"] and st["banner"] == offline_banner()
    assert st["banner"].startswith(OFFLINE_BANNER) and "stand in for the hub models" in st["banner"]
    if "clip" in PRESETS and PRESETS["clip"].encoders:
        assert "--preset clip" in st["banner"]
    else:
        assert "the only one available" in st["banner"]
    assert st["device"] in ("cpu", "cuda") and isinstance(st["cuda_available"], bool)
    assert st["counts"]["total"] == 7
    assert {e["name"] for e in st["encoders"] if e["loaded"]} >= {"minilm-text", "conse-effnet-lite0"}


def test_media_roots_are_only_collection_media(service: AppService) -> None:
    roots = service.media_roots()
    base = Path(service.config.indexes_dir).resolve()
    assert roots and all(Path(r).name in ("media", "thumbs") and Path(r).parent.parent == base for r in roots)


def test_folder_indexing_when_allowed(tmp_path: Path, shared_cache: Path) -> None:
    cfg = load_config(indexes_dir=tmp_path / "ix")
    folder = tmp_path / "notes"
    folder.mkdir()
    shutil.copy(DATA / "texts" / "tax_deadline.txt", folder)
    svc = AppService(cfg, preset="offline", collection="f", allow_folder_indexing=True)
    svc.start()
    rep = svc.index_folder(str(folder))
    assert rep["added"] == 1 and str(folder.resolve()) in svc.media_roots()
    with pytest.raises(UserError, match="No such file or folder"):
        svc.index_folder(str(tmp_path / "missing"))
    svc.close()


def test_demo_builder_builds_once_and_resumes(tmp_path: Path, shared_cache: Path) -> None:
    src = tmp_path / "demo_data"
    (src / "photos").mkdir(parents=True)
    (src / "notes").mkdir()
    shutil.copy(DATA / "images" / "cat.jpg", src / "photos")
    (src / "photos" / "captions.csv").write_text("path,caption\ncat.jpg,a tabby cat\n")
    (src / "photos" / "transcripts.json").write_text("{}")  # not a demo file type: not copied
    shutil.copy(DATA / "texts" / "pet_note.txt", src / "notes")
    (src / "SOURCES.md").write_text("# not indexed")
    assert sorted(map(str, demo_files(src))) == ["notes/pet_note.txt", "photos/captions.csv", "photos/cat.jpg"]
    cfg = load_config(indexes_dir=tmp_path / "ix")
    calls: list[tuple[int, int, str]] = []
    lib = ensure_demo_collection(cfg, lambda d, t, n: calls.append((d, t, n)), source=src, preset="offline")
    assert lib.collection.counts() == {"image": 1, "audio": 0, "text": 1, "total": 2}
    assert lib.collection.items("image")[0].caption == "a tabby cat"
    assert all(Path(i.path).is_relative_to((cfg.indexes_dir / "demo" / "media").resolve()) for i in lib.collection.items())
    assert calls[-1][:2] == (2, 2) and (cfg.indexes_dir / "demo" / MARKER).is_file()
    calls.clear()
    assert ensure_demo_collection(cfg, lambda d, t, n: calls.append((d, t, n)), library=lib, source=src) is lib
    assert calls == []  # complete: reused as is
    (cfg.indexes_dir / "demo" / MARKER).unlink()  # as if the first build had been interrupted
    ensure_demo_collection(cfg, None, library=lib, source=src)
    assert lib.collection.counts()["total"] == 2 and (cfg.indexes_dir / "demo" / MARKER).is_file()
    lib.collection.close()


def test_user_errors_become_gradio_errors_with_the_message() -> None:
    import gradio as gr

    from crossmodal_demo.app.ui.main import card_markdown, user_errors

    @user_errors
    def cb(x: int) -> int:
        """Doc kept."""
        raise UserError(f"bad value {x}")

    with pytest.raises(gr.Error, match="bad value 3"):
        cb(3)
    assert cb.__doc__ == "Doc kept."
    card = {"rank": 1, "score": 0.5, "space": "text", "channel": "content", "modality": "text", "name": "a.md", "excerpt": "# Title *x*"}
    assert "\\# Title \\*x\\*" in card_markdown(card)


def test_first_start_builds_the_shipped_demo(tmp_path: Path, shared_cache: Path) -> None:
    svc = AppService(load_config(indexes_dir=tmp_path / "ix"), preset="offline")
    assert svc.start(background=False) == "demo"
    assert svc.build.state == "done", svc.build.error
    assert svc.status()["counts"] == {"image": 11, "audio": 13, "text": 11, "total": 35}
    assert Path(svc.search(text="a cat", target="image", k=1)["hits"][0]["path"]).name == "cat.jpg"
    svc.close()
    again = AppService(load_config(indexes_dir=tmp_path / "ix"))
    again.start()
    assert again.build.state == "idle"  # reused, not rebuilt
    again.close()
