"""Hostile COCO files: every bad input is a CocoFormatError within a second, never a crash or a raw error."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinysam_annotate.io.coco import CocoFormatError, ObjectRecord, build_coco, objects_of_image, read_coco
from tinysam_annotate.predictor import SamPredictor
from tinysam_annotate.session import AnnotationSession, SessionError

IMAGE = {"id": 1, "file_name": "a.png", "height": 303, "width": 384}
CATEGORIES = [{"id": 1, "name": "object"}]


def _valid() -> dict:
    first, second = np.zeros((303, 384), bool), np.zeros((303, 384), bool)
    first[10:60, 20:90], second[100:200, 150:300] = True, True
    coco = build_coco([IMAGE], [[ObjectRecord(first, 1, 0.9, {"prompts": {"source": "click", "points": [[50.0, 30.0]],
                                                                          "point_labels": [1]}}), ObjectRecord(second)]],
                      CATEGORIES, use_polygons=False)
    coco["annotations"][1]["segmentation"] = [[150.0, 100.0, 299.0, 100.0, 299.0, 199.0, 150.0, 199.0]]
    return json.loads(json.dumps(coco))


def _annotation(**fields) -> dict:
    return {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 10, 0, 10, 10]], "area": 50,
            "bbox": [0, 0, 10, 10], **fields}


def _file(tmp_path, coco=None, text=None):
    path = tmp_path / "hostile.json"
    path.write_text(text if text is not None else json.dumps(coco))
    return path


@pytest.mark.parametrize("name, text, match", [
    ("polygon at 1e9", json.dumps({"images": [IMAGE], "categories": CATEGORIES, "annotations": [
        _annotation(segmentation=[[0, 0, 1e9, 0, 1e9, 1e9]])]}), "outside the 384 x 303 image"),
    ("polygon at -1e10", json.dumps({"images": [IMAGE], "categories": CATEGORIES, "annotations": [
        _annotation(segmentation=[[0, 0, -1e10, 0, 5, 5]])]}), "outside"),
    ("30000 x 30000 image", json.dumps({"images": [{**IMAGE, "height": 30000, "width": 30000}], "categories": CATEGORIES,
                                        "annotations": [_annotation(segmentation={"size": [30000, 30000], "counts": "0"})]}),
     "larger than"),
    ("score 'high'", json.dumps({"images": [IMAGE], "categories": CATEGORIES, "annotations": [_annotation(score="high")]}),
     "score must be a finite number"),
    ("images: [1]", json.dumps({"images": [1], "categories": CATEGORIES, "annotations": []}), "image #0"),
    ("a list as an id", json.dumps({"images": [IMAGE], "categories": CATEGORIES, "annotations": [_annotation(id=[1])]}),
     "annotation #0"),
    ("category without a name", json.dumps({"images": [IMAGE], "categories": [{"id": 1}], "annotations": []}),
     "non-empty name"),
    ("100,000 nested [", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ("NaN area", '{"images": [%s], "categories": [{"id": 1, "name": "a"}], "annotations": [%s]}'
     % (json.dumps(IMAGE), json.dumps(_annotation()).replace('"area": 50', '"area": NaN')), "area must be a finite"),
    ("RLE counts of 10**12", json.dumps({"images": [IMAGE], "categories": CATEGORIES, "annotations": [
        _annotation(segmentation={"size": [303, 384], "counts": [10**12]})]}), "summing to"),
])
def test_known_hostile_files(tmp_path, name, text, match):
    start = time.perf_counter()
    with pytest.raises(CocoFormatError, match=match):
        read_coco(_file(tmp_path, text=text))
    assert time.perf_counter() - start < 1.0, name


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def _mutate(coco, path, new, delete):
    if not path:
        return new
    parent = coco
    for step in path[:-1]:
        parent = parent[step]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = new
    return coco


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_files_are_valid_or_a_coco_format_error(tmp_path, data):
    coco = _valid()
    paths = list(_paths(coco))
    path = data.draw(st.sampled_from(paths))
    coco = _mutate(coco, path, data.draw(JSON_VALUES), data.draw(st.booleans()))
    file = _file(tmp_path, text=json.dumps(coco, allow_nan=True))
    for validate in (True, False):
        try:
            loaded = read_coco(file, validate=validate)
            for image in loaded["images"]:
                objects_of_image(loaded, image["id"])
        except CocoFormatError:
            pass


def test_an_import_is_all_or_nothing(tiny_backend, scene, tmp_path):
    session = AnnotationSession(SamPredictor(tiny_backend), scene, "scene.png")
    session.add_point(50, 40)
    session.accept()
    before = session.objects
    mask = np.zeros((120, 160), bool)
    mask[5:20, 5:20] = True
    coco = build_coco([{"id": 1, "file_name": "scene.png", "height": 120, "width": 160}],
                      [[ObjectRecord(mask), ObjectRecord(mask, attributes={"prompts": {"source": "click", "points": "x"}})]])
    with pytest.raises(CocoFormatError, match="points"):
        session.import_coco(_file(tmp_path, coco))
    coco["images"][0]["height"] = 30000
    with pytest.raises((CocoFormatError, SessionError)):
        session.import_coco(_file(tmp_path, coco))
    assert session.objects == before
    session.undo()  # the failed imports left no undo step: one undo takes back the accept
    assert session.objects == () and not session.can_undo()
    session.redo()
    session.add_point(60, 50)  # the session still works
    assert session.accept().object_id == 2
