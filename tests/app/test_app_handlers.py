"""Gradio app handlers with a tiny random model (no browser): prompts, accept, undo, everything, export, import."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from tinysam_annotate.app import handlers as h
from tinysam_annotate.app.engine import AppConfig, Engine, EngineRegistry
from tinysam_annotate.app.render import canvas
from tinysam_annotate.cache import EmbeddingCache
from tinysam_annotate.errors import ImageTooLargeError, PromptError, UnsupportedImageError
from tinysam_annotate.io.coco import CocoFormatError, read_coco, validate_coco
from tinysam_annotate.session import SessionError


@pytest.fixture
def engine(tiny_backend):
    return Engine(tiny_backend, EmbeddingCache(directory=None))


@pytest.fixture
def state(engine, scene, tmp_path):
    Image.fromarray(scene).save(tmp_path / "cells.png")
    s = h.open_image(h.AppState(workdir=tmp_path / "session"), engine, tmp_path / "cells.png")
    yield s
    h.close(s)


def test_open_click_accept_undo_export_import(state, engine, tmp_path):
    assert state.session.image_name == "cells.png" and "160 x 120" in state.message
    h.click(state, 50, 40)
    assert state.session.preview is not None and "predicted IoU" in state.message
    image = canvas(state.session, state.view)
    assert image.shape == (720, 960, 3) and image.dtype == np.uint8  # 160 x 120 drawn 6x to fill the panel
    h.set_mode(state, "negative")
    h.click(state, 140, 100)
    assert state.session.labels == [1, 0]
    if not state.session.preview.mask.any():
        h.cycle(state)
    h.accept(state, "object")
    assert [row[0] for row in h.objects_table(state)] == [1]
    h.undo(state)
    assert h.objects_table(state) == []
    h.redo(state)
    coco_path, labels_path = h.export(state)
    assert coco_path.parent == state.workdir and labels_path.name == "cells_labels.tif"  # the CLI's name too
    coco = read_coco(coco_path)
    validate_coco(coco)
    assert len(coco["annotations"]) == 1 and coco["annotations"][0]["attributes"]["prompts"]["point_labels"] == [1, 0]
    other = h.open_image(h.AppState(workdir=tmp_path / "other"), engine, tmp_path / "cells.png")
    h.import_coco(other, coco_path)
    assert np.array_equal(other.session.objects[0].mask, state.session.objects[0].mask)
    h.close(other)
    assert not (tmp_path / "other").exists()


def test_clean_masks_toggle_applies_to_the_preview_and_to_images_opened_later(state, engine, scene, tmp_path):
    from tinysam_annotate.cleanup import count_parts

    h.click(state, 50, 40)
    preview = state.session.preview
    assert count_parts(preview.raw_masks[preview.selected]) > count_parts(preview.mask)  # random weights: scattered
    h.set_clean_masks(state, False)
    assert np.array_equal(state.session.preview.mask, preview.raw_masks[preview.selected]) and "raw" in state.message
    h.open_image(state, engine, tmp_path / "cells.png")
    assert state.session.cleanup is None
    h.set_clean_masks(state, True)
    assert state.session.cleanup is not None


def test_box_mode_takes_two_clicks(state):
    h.set_mode(state, "box")
    h.click(state, 20, 20)
    assert state.box_corner == (20.0, 20.0) and state.session.preview is None
    assert canvas(state.session, state.view, state.box_corner).shape == (720, 960, 3)
    h.click(state, 90, 70)
    assert state.session.box == (20.0, 20.0, 90.0, 70.0) and state.box_corner is None


def test_everything_adds_objects_with_progress(state):
    calls = []
    embedding = f"embedding {state.embedding_seconds * 1000:.0f} ms"
    h.everything(state, "hierarchical", 8, 0.0, 0.0, 0, None, lambda d, t: calls.append((d, t)))
    assert h.objects_table(state) and calls[-1][0] == calls[-1][1]
    assert re.fullmatch(rf"everything \(hierarchical\): {len(h.objects_table(state))} objects added in \d+\.\d s",
                        state.message)
    # The generator's own set_image is a cache hit: the status line keeps the image's real embedding time.
    assert embedding in h.status(state) and f"last everything {state.everything_seconds:.1f} s" in h.status(state)
    h.everything(state, "grid", 8, 0.0, 0.0, 0, None)


def test_upload_errors_name_the_file_not_the_server_path(state, engine, tmp_path):
    upload = tmp_path / "gradio" / "3f9a1c" / "empty.png"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(b"")
    with pytest.raises(UnsupportedImageError) as caught:
        h.open_image(h.AppState(workdir=tmp_path / "s"), engine, upload)
    assert "empty.png" in str(caught.value) and str(tmp_path) not in str(caught.value)
    bad_coco = upload.with_name("bad.json")
    bad_coco.write_text("{not json")
    with pytest.raises(CocoFormatError) as caught:
        h.import_coco(state, bad_coco)
    assert "bad.json" in str(caught.value) and str(tmp_path) not in str(caught.value)


def test_status_reports_engine_and_latency(state, engine, tmp_path):
    h.click(state, 50, 40)
    text = h.status(state)
    assert "tiny" in text and f"embedding {state.embedding_seconds * 1000:.0f} ms" in text and "decode" in text
    assert state.embedding_seconds > 0 and "everything" not in text
    assert state.session.predictor.last_decode_seconds > 0
    # Another session on the same engine reports its own timings, not the last caller's.
    other = h.open_image(h.AppState(workdir=tmp_path / "other"), engine, tmp_path / "cells.png")
    assert "last decode" not in h.status(other) and "last decode" in h.status(state)


def test_bad_inputs_are_clear_errors(engine, tmp_path):
    state = h.AppState(workdir=tmp_path / "s")
    with pytest.raises(SessionError, match="open an image first"):
        h.click(state, 1, 1)
    (tmp_path / "evil.png").write_text("<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>")
    with pytest.raises(UnsupportedImageError):
        h.open_image(state, engine, tmp_path / "evil.png")
    (tmp_path / "page.png").write_text("<!DOCTYPE html><html><body onload='alert(1)'></body></html>")
    with pytest.raises(UnsupportedImageError):
        h.open_image(state, engine, tmp_path / "page.png")
    Image.fromarray(np.zeros((300, 300), np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(ImageTooLargeError):
        h.open_image(state, engine, tmp_path / "big.png", max_pixels=10_000)
    with pytest.raises(SessionError, match="mode"):
        h.set_mode(state, "lasso")
    state = h.open_image(state, engine, np.zeros((50, 60, 3), np.uint8))
    with pytest.raises(PromptError):
        h.click(state, 500, 5)
    with pytest.raises(SessionError, match="unknown example"):
        h.example_image("cats")


def test_sixteen_bit_multichannel_upload_with_a_channel_choice(engine, tmp_path):
    import tifffile

    stack = np.zeros((3, 64, 80), np.uint16)
    stack[1, 10:30, 10:40] = 40000
    tifffile.imwrite(tmp_path / "multi.tif", stack, photometric="minisblack", metadata={"axes": "CYX"})
    state = h.open_image(h.AppState(workdir=tmp_path / "s"), engine, tmp_path / "multi.tif", channels=1)
    rgb = state.session.image
    assert rgb.shape == (64, 80, 3) and rgb[20, 20].max() > rgb[50, 70].max()


def test_examples_and_engine_registry_share_one_engine(monkeypatch):
    import pooch

    def no_download(*args, **kwargs):
        raise AssertionError("an example tried to download")

    monkeypatch.setattr(pooch, "retrieve", no_download)
    monkeypatch.setattr(pooch.Pooch, "fetch", no_download)
    for name in AppConfig().examples:  # every example the app offers is installed with scikit-image
        image = h.example_image(name)
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    loads = []

    def loader(m, b, p):
        loads.append((m, b, p))
        from tests.conftest import make_tiny_sam
        from tinysam_annotate.backends.torch_backend import TorchBackend

        return TorchBackend(make_tiny_sam(), model_id=m)

    registry = EngineRegistry(AppConfig(model="tiny", backend="torch", precision="fp32"), loader)
    assert registry.get() is registry.get("tiny", "torch", "fp32")
    assert loads == [("tiny", "torch", "fp32")]
    a, b = registry.get().predictor(), registry.get().predictor()
    assert a is not b and a.cache is b.cache  # per-session predictors, one engine and cache


def test_cancel_stops_everything_and_adds_nothing(state):
    before = len(state.session.objects)
    h.everything(state, "grid", 16, 0.0, 0.0, 0, None, lambda done, total: h.cancel(state))
    assert state.message.startswith("everything cancelled") and len(state.session.objects) == before
    h.everything(state, "grid", 8, 0.0, 0.0, 0, None)  # the next run is not cancelled
    assert len(state.session.objects) > before


def test_object_list_swatches_keep_their_colour_when_others_are_deleted(state):
    from tinysam_annotate.visualize import id_colours

    masks = [np.zeros((120, 160), bool) for _ in range(3)]
    for i, m in enumerate(masks):
        m[10 * i : 10 * i + 5, :20] = True
    state.session.add_objects(masks, [0.9, 0.8, 0.7])
    rows = h.objects_table(state)
    assert len(rows) == 3 and rows[0][1].startswith('<span style="color:rgb(')
    last_id, last_swatch = rows[-1][0], rows[-1][1]
    h.delete(state, rows[0][0])
    assert h.objects_table(state)[-1][:2] == [last_id, last_swatch]
    r, g, b = id_colours([last_id])[0].tolist()
    assert f"rgb({r},{g},{b})" in last_swatch


def test_switching_the_engine_keeps_objects_and_uses_the_new_model(state, tiny_sam):
    from tinysam_annotate.app.engine import Engine
    from tinysam_annotate.backends.torch_backend import TorchBackend
    from tinysam_annotate.cache import EmbeddingCache

    from ..conftest import make_tiny_sam

    h.click(state, 80, 60)
    if not state.session.preview.mask.any():
        h.cycle(state)
    h.accept(state, "object")
    other = Engine(TorchBackend(make_tiny_sam(seed=9), model_id="other"), EmbeddingCache())
    h.switch_engine(state, other)
    assert len(state.session.objects) == 1 and state.session.preview is None
    assert state.session.predictor.backend.identity.model_id == "other" and "other" in state.message
    h.click(state, 80, 60)
    assert state.session.preview is not None


def test_a_model_being_loaded_holds_up_only_the_sessions_that_want_it():
    """A slow load (an ONNX export takes seconds) must not stall other sessions' engines (it ran under one lock)."""
    import threading

    from tests.conftest import make_tiny_sam
    from tinysam_annotate.backends.torch_backend import TorchBackend

    release = threading.Event()

    def loader(m, b, p):
        if m == "slow":
            assert release.wait(30)
        return TorchBackend(make_tiny_sam(), model_id=m)

    registry = EngineRegistry(AppConfig(model="tiny", backend="torch", precision="fp32"), loader)
    slow = []
    waiters = [threading.Thread(target=lambda: slow.append(registry.get("slow"))) for _ in range(2)]
    for thread in waiters:
        thread.start()
    fast = threading.Thread(target=registry.get)  # another model, while "slow" is loading
    fast.start()
    fast.join(20)
    assert not fast.is_alive() and len(slow) == 0
    release.set()
    for thread in waiters:
        thread.join(20)
    assert len(slow) == 2 and slow[0] is slow[1]  # loaded once, shared


def test_a_session_writes_nothing_until_it_has_something_and_close_removes_all_it_had(tmp_path, engine, scene):
    untouched = h.AppState(workdir=h.new_session_folder(tmp_path))
    h.close(untouched)
    assert not any(tmp_path.iterdir())  # a session that never wrote left no folder
    upload = tmp_path / "upload-1234" / "cells.png"
    upload.parent.mkdir()
    Image.fromarray(scene).save(upload)
    state = h.AppState(workdir=h.new_session_folder(tmp_path))
    state.uploads.append(upload)
    h.open_image(state, engine, upload)
    canvases = [h.canvas_file(state, np.zeros((8, 8, 3), np.uint8)) for _ in range(h.CANVASES_KEPT + 2)]
    assert [p.exists() for p in canvases] == [False, False] + [True] * h.CANVASES_KEPT  # a long session: newest only
    h.click(state, 50, 40)
    h.accept(state, None)
    exported = h.export(state)
    assert all(p.parent == state.workdir for p in exported)
    h.close(state)
    assert not any(tmp_path.iterdir())  # folder, canvases, exports, autosave and the upload's own folder
    assert len(state.session.objects) == 1  # the work itself stays in memory (a reconnecting browser keeps it)
