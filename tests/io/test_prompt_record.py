"""One schema for the prompts stored in COCO attributes, written and read back by the app, the CLI and the plugin."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tinysam_annotate.batch import annotate_folder
from tinysam_annotate.io.coco import CocoFormatError, read_coco, write_coco
from tinysam_annotate.io.prompt_record import SOURCES, PromptRecord, PromptRecordError
from tinysam_annotate.predictor import SamPredictor
from tinysam_annotate.service import everything_generator
from tinysam_annotate.session import AnnotationSession


def test_round_trip_and_older_shapes():
    record = PromptRecord("click", ((1.0, 2.0), (3.5, 4.0)), (1, 0), (0.0, 0.0, 10.0, 12.0), (3,))
    assert PromptRecord.from_json(record.to_json()) == record
    assert record.to_json() == {"source": "click", "points": [[1.0, 2.0], [3.5, 4.0]], "point_labels": [1, 0],
                                "box": [0.0, 0.0, 10.0, 12.0], "plane": [3]}
    # Before the schema: the CLI wrote point_coords and a top-level source, the app and plugin "mode".
    assert PromptRecord.from_json({"point_coords": [[5, 6]], "point_labels": [1]}).points == ((5.0, 6.0),)
    assert PromptRecord.from_json({"points": [[5, 6]], "point_labels": [1], "mode": "everything"}).source == "everything"
    assert PromptRecord.from_json(None) == PromptRecord.from_json({}) == PromptRecord("import")


@pytest.mark.parametrize("raw, field", [
    ([1, 2], "prompts must be an object"), ({"source": "magic"}, "source"), ({"points": [[1, "a"]]}, "numbers"),
    ({"points": [[1, 2, 3]]}, r"\[x, y\]"), ({"points": [[1, 2]], "point_labels": [1, 1]}, "point labels"),
    ({"point_labels": [2]}, "0 and 1"), ({"box": [0, 0, 1]}, "4 numbers"), ({"box": [0, 0, 1, float("nan")]}, "non-finite"),
    ({"plane": ["z"]}, "plane"), ({"points": "1,2"}, "points"),
])
def test_malformed_records_are_coco_format_errors_naming_the_field(raw, field):
    with pytest.raises(PromptRecordError, match=field) as caught:
        PromptRecord.from_json(raw)
    assert isinstance(caught.value, CocoFormatError)


def _sources(coco: dict) -> list[str]:
    return [PromptRecord.from_json(a["attributes"]["prompts"]).source for a in coco["annotations"]]


def test_app_cli_and_plugin_write_the_schema_and_read_each_others_files(tiny_backend, scene, tmp_path):
    from tinysam_napari.labels_io import import_coco as plugin_import
    from tinysam_napari.labels_io import labels_to_coco

    # The app's session: a click object and everything-mode objects.
    session = AnnotationSession(SamPredictor(tiny_backend), scene, "scene.png")
    session.add_point(50, 40)
    session.accept()
    session.segment_everything(lambda p: everything_generator(p, points_per_side=4, pred_iou_thresh=0.0,
                                                             stability_score_thresh=0.0))
    app_file = session.export_coco(tmp_path / "app.json")
    # The CLI's everything command.
    Image.fromarray(scene).save(tmp_path / "scene.png")
    generator = everything_generator(tiny_backend, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                                     output_mode="coco_rle")
    annotate_folder([tmp_path / "scene.png"], tmp_path / "cli.json", generator, progress=False)
    # The plugin's export.
    labels = np.zeros((120, 160), np.uint16)
    labels[30:50, 40:60], labels[70:90, 100:130] = 1, 2
    plugin_coco = labels_to_coco(labels, "scene.png", {1: PromptRecord("click", ((50.0, 40.0),), (1,))})
    plugin_file = write_coco(tmp_path / "plugin.json", plugin_coco)

    written = {name: read_coco(path) for name, path in
               (("app", app_file), ("cli", tmp_path / "cli.json"), ("plugin", plugin_file))}
    assert _sources(written["app"])[0] == "click" and set(_sources(written["app"])[1:]) == {"everything"}
    assert set(_sources(written["cli"])) == {"everything"} and _sources(written["plugin"]) == ["click", "import"]
    for coco in written.values():
        assert set(_sources(coco)) <= set(SOURCES)
        assert all(set(a["attributes"]["prompts"]) <= {"source", "points", "point_labels", "box", "plane"}
                   for a in coco["annotations"])
    # Each front end reads every file back with its prompts.
    for name, path in (("app", app_file), ("cli", tmp_path / "cli.json"), ("plugin", plugin_file)):
        fresh = AnnotationSession(SamPredictor(tiny_backend), scene, "scene.png")
        objects = fresh.import_coco(path)
        assert [o.prompts.source for o in objects] == _sources(written[name])
        _, prompts = plugin_import(path)
        assert sorted(r.source for r in prompts.values()) == sorted(_sources(written[name]))
