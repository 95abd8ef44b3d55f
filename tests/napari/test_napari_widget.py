"""The napari dock widget on a real viewer (Xvfb via pytest-xvfb, pytest-qt) with a tiny random model."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
import time

import numpy as np
import pytest

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from tinysam_napari.widget import TinySamWidget  # noqa: E402

from tinysam_annotate.predictor import SamPredictor  # noqa: E402

from ..conftest import ROOT, OracleGenerator  # noqa: E402

pytestmark = pytest.mark.gui

MANIFEST = ROOT / "napari_plugin" / "napari.yaml"


@pytest.fixture
def widget(make_napari_viewer, tiny_backend, qtbot, tmp_path):
    viewer = make_napari_viewer()
    w = TinySamWidget(viewer, predictor=SamPredictor(tiny_backend))
    w.autosave_folder = tmp_path / "autosave"  # not the user's
    viewer.window.add_dock_widget(w, name="TinySAM")
    yield w
    w.cancel()
    qtbot.waitUntil(lambda: not w.busy and not w.prefetching, timeout=60_000)
    qtbot.wait(100)  # let the workers' last queued signals arrive before the viewer closes


def wait_idle(widget, qtbot):
    qtbot.waitUntil(lambda: not widget.busy, timeout=180_000)  # everything mode on a busy 2-core machine


def start(widget, qtbot, data, channel_axis=None, **layer_kwargs):
    layer = widget.viewer.add_image(data, name="cells", **layer_kwargs)
    widget.image.value = layer.name
    if channel_axis is not None:  # over the widget's guess (a 2-4 slice stack looks like channels)
        widget.channel_axis.value = channel_axis
    widget.start()
    wait_idle(widget, qtbot)
    return layer


def blobs(rng, shape=(120, 160)):
    data = (rng.random(shape) * 4000).astype(np.uint16)
    data[..., 30:70, 40:90] += 20000
    return data


def click(widget, world_yx, qtbot):
    """Add a point where a user clicks (world coordinates), as napari's add mode does."""
    layer = widget.layers.points
    layer.add(layer.world_to_data(np.asarray(world_yx, float)))
    wait_idle(widget, qtbot)


def test_points_give_a_preview_commit_writes_an_id_undo_removes_it(widget, qtbot, rng):
    start(widget, qtbot, blobs(rng))
    click(widget, (50, 60), qtbot)
    assert widget.layers.preview.data.any()
    assert widget.annotator.current.prompts.points == ((60.0, 50.0, True),)
    widget.toggle_negative()
    click(widget, (5, 5), qtbot)
    assert widget.annotator.current.prompts.points[-1] == (5.0, 5.0, False)
    assert widget.layers.points.features["positive"].tolist() == [True, False]
    object_id = widget.commit()
    assert object_id == 1 and (widget.layers.labels.data == 1).any()
    assert len(widget.layers.points.data) == 0 and not widget.layers.preview.data.any()
    widget.undo()
    assert not widget.layers.labels.data.any()
    widget.redo()
    assert (widget.layers.labels.data == 1).any()


def test_clean_masks_checkbox_switches_the_preview_between_cleaned_and_raw(widget, qtbot, rng):
    from tinysam_annotate.cleanup import count_parts

    start(widget, qtbot, (rng.random((120, 160)) * 60000).astype(np.uint16))  # noise: scattered raw masks
    click(widget, (50, 60), qtbot)
    preview = widget.annotator.current.preview
    assert count_parts(preview.raw_masks[preview.selected]) > 1
    assert count_parts(widget.layers.preview.data > 0) == count_parts(preview.mask) == 1
    widget.clean.value = False
    assert np.array_equal(widget.layers.preview.data > 0, preview.raw_masks[preview.selected])
    widget.clean.value = True
    assert count_parts(widget.layers.preview.data > 0) == 1


def test_box_prompt(widget, qtbot, rng):
    start(widget, qtbot, blobs(rng))
    widget.layers.box.add_rectangles(np.array([[25.0, 35.0], [75.0, 95.0]]))
    wait_idle(widget, qtbot)
    assert widget.annotator.current.prompts.box == (35.0, 25.0, 95.0, 75.0)
    assert widget.layers.preview.data.any()


def test_stack_annotates_slice_two_without_touching_slice_one(widget, qtbot, rng):
    start(widget, qtbot, blobs(rng, (3, 120, 160)), channel_axis=-1)
    widget.viewer.dims.set_current_step(0, 2)
    assert widget.current_key() == (2,)
    click(widget, (2, 50, 60), qtbot)
    widget.commit()
    labels = widget.layers.labels.data
    assert labels[2].any() and not labels[0].any() and not labels[1].any()


def test_scale_and_translate_map_clicks_to_pixels(widget, qtbot, rng):
    layer = start(widget, qtbot, blobs(rng), scale=(0.5, 2.0), translate=(10.0, -20.0))
    assert tuple(widget.layers.labels.scale) == (0.5, 2.0)
    click(widget, (10 + 0.5 * 40, -20 + 2.0 * 70), qtbot)  # pixel row 40, col 70
    x, y, _ = widget.annotator.current.prompts.points[0]
    assert (x, y) == pytest.approx((70.0, 40.0))
    assert np.allclose(layer.world_to_data((30.0, 120.0)), (40.0, 70.0))


def test_channels_of_a_multichannel_layer(widget, qtbot, rng):
    data = np.stack([blobs(rng), rng.integers(0, 100, (120, 160)).astype(np.uint16)])  # C, Y, X
    widget.channel_axis.value = 0
    widget.channels.value = "0"
    start(widget, qtbot, data)
    assert widget.layers.labels.data.shape == (120, 160)
    click(widget, (0, 50, 60), qtbot)
    assert widget.layers.preview.data.any()


def test_everything_fills_labels_and_export_import_round_trip(widget, qtbot, rng, tmp_path):
    start(widget, qtbot, blobs(rng, (2, 120, 160)), channel_axis=-1)
    widget.pred_iou.value, widget.stability.value, widget.mode.value = 0.0, 0.0, "grid"
    widget.min_area.value = 20
    widget.segment_everything(all_slices=True)
    wait_idle(widget, qtbot)
    labels = widget.layers.labels.data.copy()
    assert labels[0].any() and labels[1].any()
    objects = len(np.unique(labels[0])) + len(np.unique(labels[1])) - 2
    assert re.fullmatch(rf"Everything mode: {objects} objects on 2 plane\(s\) in \d+\.\d s\.", widget.status.value)
    saved = widget.autosave_file()  # the worker's change reached the object store, which autosaved it
    qtbot.waitUntil(saved.exists)
    assert len(json.loads(saved.read_text())["annotations"]) == len(np.unique(labels)) - 1
    out = widget.export(tmp_path / "cells.json", "coco")
    widget.export(tmp_path / "cells.tif", "tiff")
    widget.undo()
    assert not widget.layers.labels.data.any() and not json.loads(saved.read_text())["annotations"]
    widget.import_file(out)
    assert np.array_equal(widget.layers.labels.data > 0, labels > 0)
    widget.undo()
    widget.import_file(tmp_path / "cells.tif")
    assert np.array_equal(widget.layers.labels.data > 0, labels > 0)


def test_everything_on_one_plane_shows_its_prompts_done_and_left(widget, qtbot, rng, monkeypatch):
    start(widget, qtbot, blobs(rng))
    widget.pred_iou.value, widget.stability.value, widget.mode.value = 0.0, 0.0, "grid"
    values, messages = [], []
    widget.progress.changed.connect(values.append)
    say = TinySamWidget._say
    monkeypatch.setattr(TinySamWidget, "_say", lambda self, text: (messages.append(text), say(self, text)))
    widget.segment_everything()
    wait_idle(widget, qtbot)
    qtbot.wait(50)  # the last queued progress calls
    inside = [v for v in values if 0 < v < widget.progress.max]
    assert len(set(inside)) >= 4  # the bar moves within the single plane's single tile
    assert any("of 1024 prompts done" in m and "left" in m for m in messages)  # 32 x 32 grid


def test_cancel_stops_everything_on_a_stack(widget, qtbot, rng):
    start(widget, qtbot, blobs(rng, (6, 120, 160)))
    widget.pred_iou.value, widget.stability.value, widget.mode.value = 0.0, 0.0, "grid"
    worker = widget.segment_everything(all_slices=True)
    widget.cancel()
    wait_idle(widget, qtbot)
    assert worker is not None and "cancelled" in widget.status.value or widget.layers.labels.data[-1].max() == 0


def test_errors_become_notifications_not_crashes(widget, qtbot, rng, monkeypatch):
    shown = []
    monkeypatch.setattr("tinysam_napari.widget.show_error", shown.append)
    widget.start()  # no image layer yet
    assert shown and "image layer" in shown[-1]
    start(widget, qtbot, blobs(rng))
    widget.commit_button.changed.emit(True)  # nothing to commit
    assert "nothing to commit" in shown[-1]


def test_manifest_validates_and_every_command_imports():
    result = subprocess.run([sys.executable, "-m", "npe2", "validate", str(MANIFEST)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    import yaml

    manifest = yaml.safe_load(MANIFEST.read_text())
    for command in manifest["contributions"]["commands"]:
        module, name = command["python_name"].split(":")
        assert callable(getattr(importlib.import_module(module), name))


def test_reader_writer_and_samples(tmp_path):
    from tinysam_napari import hooks

    data, meta, kind = hooks.sample_nuclei()[0]
    assert kind == "image" and data.dtype == np.uint16 and data.shape == (384, 512)
    labels = np.zeros((2, 30, 40), np.uint32)
    labels[1, 5:10, 5:10] = 3
    path = str(tmp_path / "out.json")
    assert hooks.write_coco_labels(path, labels, {"name": "stack"}) == [path]
    reader = hooks.get_coco_reader(path)
    (back, back_meta, back_kind), = reader(path)
    assert back_kind == "labels" and np.array_equal(back, labels)
    assert hooks.get_coco_reader(str(tmp_path / "image.png")) is None


def test_screenshot_of_the_docked_plugin(widget, qtbot, tmp_path):
    from tinysam_napari import hooks

    widget.viewer.window._qt_window.resize(1400, 900)
    data, meta, _ = hooks.sample_nuclei()[0]
    widget.viewer.add_image(data, **meta)
    widget.image.value = "nuclei"
    widget.start()
    wait_idle(widget, qtbot)
    click(widget, (100, 100), qtbot)
    widget.commit()
    widget.viewer.reset_view()
    shot = widget.viewer.screenshot(path=str(tmp_path / "napari_plugin.png"), canvas_only=False)
    assert shot.shape[0] > 400 and (tmp_path / "napari_plugin.png").stat().st_size > 10_000


def test_start_without_a_model_loads_the_shipped_default_and_reads_precomputed_embeddings(
        make_napari_viewer, qtbot, rng, tmp_path, monkeypatch):
    """`tinysam-annotate embed` fills the cache; the plugin then opens the image without an encoder pass."""
    from PIL import Image

    from tinysam_annotate.cli import main
    from tinysam_annotate.registry import DEFAULT_MODEL, find_model_file, get_spec

    if find_model_file(get_spec(DEFAULT_MODEL)) is None:
        pytest.skip("the shipped model file is not present")
    monkeypatch.setenv("TINYSAM_ANNOTATE_HOME", str(tmp_path / "home"))
    image = (blobs(rng) // 256).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "cells.png")
    assert main(["embed", str(tmp_path / "cells.png"), "--backend", "onnx", "--precision", "int8", "--no-progress"]) == 0
    viewer = make_napari_viewer()
    widget = TinySamWidget(viewer)
    viewer.add_image(image, name="cells")
    widget.image.value = "cells"
    widget.start()
    qtbot.waitUntil(lambda: widget.annotator is not None and not widget.busy, timeout=120_000)
    assert widget.predictor.backend.identity.model_id == DEFAULT_MODEL
    assert "CPU" in widget.predictor.backend.device_description
    assert not widget.annotator.needs_embedding(())  # found in the disk cache written by `embed`
    click(widget, (50, 60), qtbot)
    assert widget.layers.preview.data.any()
    assert widget.predictor.last_cache_hit and widget.predictor.cache.stats.disk_hits == 1
    assert widget.predictor.cache.stats.misses == 0  # no encoder pass in the GUI


def test_tiled_large_image_merges_an_object_across_tile_borders(widget, qtbot, monkeypatch):
    monkeypatch.setattr("tinysam_napari.widget.everything_factory", lambda *args: OracleGenerator)
    data = np.zeros((700, 1000), np.uint8)
    data[300:360, 200:600] = 255  # 400 px wide: crosses several borders of the 256 px tiles
    data[50:90, 50:90] = 255
    widget.tile_size.value = 256
    start(widget, qtbot, data)
    assert widget.annotator.tiled and len(widget.annotator.grid) > 1
    click(widget, (320, 700), qtbot)  # routed to a tile: the preview lies inside it
    x0, y0, x1, y1 = widget.annotator.current.tile
    rows, cols = np.nonzero(widget.layers.preview.data)
    assert rows.min() >= y0 and rows.max() < y1 and cols.min() >= x0 and cols.max() < x1
    widget.clear_prompts()
    widget.segment_everything()
    wait_idle(widget, qtbot)
    labels = widget.layers.labels.data
    bar = labels[300:360, 200:600]
    assert bar.min() > 0 and len(np.unique(bar)) == 1  # one label across the tile borders
    assert len(np.unique(labels)) == 3


def test_a_click_outside_the_image_is_refused_and_not_kept(widget, qtbot, rng, monkeypatch):
    shown = []
    monkeypatch.setattr("tinysam_napari.widget.show_error", shown.append)
    start(widget, qtbot, blobs(rng))
    click(widget, (50, 400), qtbot)  # x = 400 on a 160 px wide image
    assert shown and "outside the image (160 x 120 pixels)" in shown[-1] and "not kept" in shown[-1]
    assert len(widget.layers.points.data) == 0
    click(widget, (50, 60), qtbot)  # the next valid click works
    assert widget.layers.preview.data.any() and len(shown) == 1


def test_restarting_on_a_layer_keeps_its_objects(widget, qtbot, rng):
    start(widget, qtbot, blobs(rng))
    click(widget, (50, 60), qtbot)
    widget.commit()
    before = widget.layers.labels.data.copy()
    widget.start()
    wait_idle(widget, qtbot)
    assert np.array_equal(widget.layers.labels.data, before) and before.any()
    assert [layer.name for layer in widget.viewer.layers].count("cells labels") == 1
    assert widget.annotator.object_prompts[1].points == ((60.0, 50.0),)  # its prompt goes on too
    widget.undo()  # and its history
    assert not widget.layers.labels.data.any()


def test_keys_work_whatever_layer_is_selected_and_the_box_layer_draws_rectangles(widget, qtbot, rng):
    start(widget, qtbot, blobs(rng))
    assert widget.layers.box.mode == "add_rectangle"
    click(widget, (50, 60), qtbot)
    for layer in (widget.viewer.layers["cells"], widget.layers.labels, widget.layers.box):
        widget.viewer.layers.selection.active = layer
        bound = layer.keymap  # napari asks the active layer's keymap first
        assert any(str(k).lower() == "c" for k in bound), f"c not bound on {layer.name}"
    widget.viewer.layers.selection.active = widget.viewer.layers["cells"]
    keymap = {str(k).lower(): v for k, v in widget.viewer.layers["cells"].keymap.items()}
    keymap["c"](widget.viewer.layers["cells"])  # what napari calls for c on the image layer
    assert (widget.layers.labels.data == 1).any()  # committed, not napari's contrast action
    assert "c commit" in widget.keys_help.value


def test_channel_last_and_blank_images_are_recognised(widget, qtbot, rng, monkeypatch):
    warned = []
    monkeypatch.setattr("tinysam_napari.widget.show_warning", warned.append)
    yxc = np.stack([blobs(rng), blobs(rng)], axis=-1)  # Y, X, C
    layer = widget.viewer.add_image(yxc, name="two channels")
    widget.image.value = layer.name
    assert widget.channel_axis.value == 2 and "axis 2 (2 values) is read as channels" in widget.status.value
    widget.start()
    wait_idle(widget, qtbot)
    assert widget.layers.labels.data.shape == (120, 160) and not warned
    blank = widget.viewer.add_image(np.zeros((120, 160), np.uint16), name="blank")
    widget.image.value = blank.name
    widget.start()
    wait_idle(widget, qtbot)
    assert warned and "blank" in warned[-1]


def test_export_asks_for_a_file_writes_readable_files_and_names_the_source(widget, qtbot, rng, tmp_path, monkeypatch):
    import json
    import os

    import tifffile

    shown = []
    monkeypatch.setattr("tinysam_napari.widget.show_error", shown.append)
    tifffile.imwrite(tmp_path / "cells.tif", blobs(rng))
    layer = widget.viewer.open(str(tmp_path / "cells.tif"), plugin="napari")[0]
    widget.image.value = layer.name
    widget.start()
    wait_idle(widget, qtbot)
    click(widget, (50, 60), qtbot)
    widget.commit()
    widget.path.value = ""
    widget.export_coco_button.changed.emit(True)
    assert shown and "choose a file to export to" in shown[-1]
    widget.import_button.changed.emit(True)
    assert "choose a file to import" in shown[-1]
    out = widget.export(tmp_path / "out.json", "coco")
    labels = widget.export(tmp_path / "out.tif", "tiff")
    for path in (out, labels):
        assert os.stat(path).st_mode & 0o777 == 0o666 & ~_umask()
    assert json.loads(out.read_text())["images"][0]["file_name"] == "cells.tif"


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_failing_worker_is_reported_once_and_the_session_goes_on(widget, qtbot, rng, monkeypatch):
    shown = []
    monkeypatch.setattr("tinysam_napari.widget.show_error", shown.append)
    start(widget, qtbot, blobs(rng, (5, 120, 160)))

    def broken(*_args, **_kwargs):
        raise OSError("disk on fire")
        yield  # a generator, as iter_embed is

    monkeypatch.setattr(widget.annotator, "iter_embed", broken)
    widget.embed((3,))
    wait_idle(widget, qtbot)
    qtbot.wait(50)
    assert len([m for m in shown if "disk on fire" in m]) == 1 and "Failed" in widget.status.value
    monkeypatch.undo()
    click(widget, (0, 50, 60), qtbot)
    assert widget.layers.preview.data[0].any()


def test_a_large_plane_embeds_only_the_tiles_clicked_and_cancel_says_so(widget, qtbot, rng, monkeypatch):
    encodes = []
    backend = widget.predictor.backend
    real_encode = backend.encode
    monkeypatch.setattr(backend, "encode", lambda image: (encodes.append(image.shape), real_encode(image))[1])
    data = (rng.random((700, 1000)) * 60).astype(np.uint8)
    data[300:360, 200:600] = 255
    widget.tile_size.value = 256
    start(widget, qtbot, data)
    assert widget.annotator.tiled and encodes == [] and "embedded when you first click" in widget.status.value
    click(widget, (320, 700), qtbot)
    assert widget.layers.preview.data.any()
    # the clicked tile, then (in the background, while the user goes on) the up to 8 tiles around it
    qtbot.waitUntil(lambda: not widget.prefetching, timeout=60_000)
    around = widget.annotator.grid.neighbours(widget.annotator.current.tile)
    assert len(encodes) == 1 + len(around) < len(widget.annotator.grid)
    x0, y0, x1, y1 = widget.annotator.current.tile
    widget.clear_prompts()
    widget.layers.points.add(np.array([(y0 + y1) / 2, (x0 + x1) / 2 + 128]))  # the next tile's centre
    assert not widget.busy and widget.annotator.current.tile in around  # no embedding to wait for
    assert widget.layers.preview.data.any()
    assert widget.layers.points.canvas_size_limits == (8, 16)  # markers sized on screen, not in image pixels
    widget.embed(())  # every tile, then Cancel
    widget.cancel()
    wait_idle(widget, qtbot)
    assert widget.status.value.startswith("Cancelled") and "ready" not in widget.status.value
    assert len(encodes) < len(widget.annotator.grid)


def test_a_click_next_to_the_last_one_is_instant_and_a_far_click_stops_the_prefetch(widget, qtbot, rng, monkeypatch):
    predictor = widget.predictor
    calls = []
    real_precompute, real_set_image = predictor.precompute, predictor.set_image

    def slow_precompute(image):  # a laptop's encoder: the prefetch is still running when the user clicks
        around_first = any(np.array_equal(image, widget.annotator.tile_image((), t)) for t in first_around)
        calls.append("around the first click" if around_first else "background")
        time.sleep(0.3)
        return real_precompute(image)

    def recorded_set_image(image, *args):
        calls.append("foreground")
        return real_set_image(image, *args)

    monkeypatch.setattr(predictor, "precompute", slow_precompute)
    monkeypatch.setattr(predictor, "set_image", recorded_set_image)
    data = (rng.random((700, 1000)) * 60).astype(np.uint8)
    widget.tile_size.value = 256
    start(widget, qtbot, data)
    first_around = widget.annotator.grid.neighbours(widget.annotator.grid.tile_for(450, 320))
    click(widget, (320, 450), qtbot)  # a tile in the middle: 8 neighbours
    first = widget.annotator.current.tile
    qtbot.waitUntil(lambda: calls.count("around the first click") >= 2, timeout=30_000)
    assert widget.prefetching and not widget.busy  # background work leaves the widget free for prompts
    widget.clear_prompts()
    mark = len(calls)
    widget.layers.points.add(widget.layers.points.world_to_data(np.array([680.0, 20.0])))  # far away: not embedded
    assert widget.busy  # its tile is embedded in the foreground
    wait_idle(widget, qtbot)
    assert widget.annotator.current.tile != first and widget.layers.preview.data.any()
    qtbot.waitUntil(lambda: not widget.prefetching, timeout=60_000)
    after = calls[mark:]
    # the far tile's embedding waited at most for the tile in progress, and the first click's prefetch stopped
    assert after.index("foreground") <= 1 and after.count("around the first click") <= 1, calls
    assert "background" in after  # the far click's own neighbours

def test_work_is_autosaved_and_offered_back_after_a_restart(widget, make_napari_viewer, tiny_backend, qtbot, rng):
    data = blobs(rng)
    start(widget, qtbot, data)
    assert not widget.restore_button.enabled  # nothing saved yet
    click(widget, (50, 60), qtbot)
    widget.commit()
    saved = widget.autosave_file()
    assert saved.exists() and saved.parent == widget.autosave_folder
    before = widget.layers.labels.data.copy()

    # napari closed without exporting; a new viewer opens the same image
    other = TinySamWidget(make_napari_viewer(), predictor=SamPredictor(tiny_backend))
    other.autosave_folder = widget.autosave_folder
    start(other, qtbot, data)
    assert other.restore_button.enabled and "1 object autosaved" in other.status.value
    other.restore_autosave()
    assert np.array_equal(other.layers.labels.data, before) and not other.restore_button.enabled
    assert other.annotator.object_prompts[1].points == ((60.0, 50.0),)
    other.undo()  # restoring is one undo step
    assert not other.layers.labels.data.any()


def test_an_autosave_not_restored_is_kept_aside_not_overwritten(widget, make_napari_viewer, tiny_backend, qtbot, rng):
    data = blobs(rng)
    start(widget, qtbot, data)
    click(widget, (50, 60), qtbot)
    widget.commit()
    other = TinySamWidget(make_napari_viewer(), predictor=SamPredictor(tiny_backend))
    other.autosave_folder = widget.autosave_folder
    start(other, qtbot, data)
    click(other, (100, 20), qtbot)
    other.commit()  # new work without restoring: the old autosave moves aside
    previous = other.autosave_file().with_suffix(".previous.json")
    assert previous.exists() and other.autosave_file().exists()
    from tinysam_napari.labels_io import import_coco

    assert np.array_equal(import_coco(previous)[0] > 0, widget.layers.labels.data > 0)


def test_commit_in_3d_writes_one_id_on_several_slices_and_undo_removes_it(widget, qtbot, rng, monkeypatch):
    from tinysam_napari.propagate import PropagationLimits

    # the tiny model is random: accept every mask so that the walk reaches the neighbouring slices
    widget.propagation_limits = PropagationLimits(min_score=-1, min_overlap=0, min_area=1)
    start(widget, qtbot, blobs(rng, (5, 120, 160)))
    widget.viewer.dims.set_current_step(0, 2)
    click(widget, (2, 50, 60), qtbot)
    keymap = {str(k).lower(): v for k, v in widget.viewer.layers["cells"].keymap.items()}
    keymap["shift+c"](widget.viewer.layers["cells"])  # Shift-C, whatever layer is selected
    wait_idle(widget, qtbot)
    planes = [z for z in range(5) if (widget.layers.labels.data[z] == 1).any()]
    assert 2 in planes and len(planes) >= 2 and "Committed object 1 on" in widget.status.value
    assert len(widget.layers.points.data) == 0 and widget.autosave_file().exists()
    widget.undo()
    assert not widget.layers.labels.data.any()
