"""COCO JSON and label images: exact round trips (hypothesis), validator, atomic writes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from tinysam_annotate.io import coco as coco_io
from tinysam_annotate.io.coco import (
    CocoFormatError,
    ObjectRecord,
    build_coco,
    decode_rle,
    mask_to_polygons,
    objects_of_image,
    read_coco,
    validate_coco,
    write_coco,
)
from tinysam_annotate.io.labels import (
    LabelImageError,
    labels_to_masks,
    masks_to_labels,
    read_label_image,
    write_label_image,
)


@st.composite
def masks(draw) -> np.ndarray:
    """Empty, 1-pixel, holed, multi-part, border-touching and random masks on non-square images."""
    h = draw(st.integers(1, 40))
    w = draw(st.integers(1, 40))
    kind = draw(st.sampled_from(["empty", "pixel", "holed", "parts", "border", "random", "full"]))
    m = np.zeros((h, w), bool)
    if kind == "pixel":
        m[draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))] = True
    elif kind == "holed" and h >= 3 and w >= 3:
        m[:, :] = True
        m[draw(st.integers(1, h - 2)), draw(st.integers(1, w - 2))] = False
    elif kind == "parts":
        for _ in range(draw(st.integers(2, 4))):
            y, x = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
            m[y : y + draw(st.integers(1, 6)), x : x + draw(st.integers(1, 6))] = True
    elif kind == "border":
        m[0, :] = True
        m[:, -1] = True
    elif kind == "random":
        seed = draw(st.integers(0, 2**16))
        m = np.random.default_rng(seed).random((h, w)) < draw(st.floats(0.05, 0.95))
    elif kind == "full":
        m[:, :] = True
    return m


def _toBbox(mask):
    return [float(v) for v in mask_utils.toBbox(mask_utils.encode(np.asfortranarray(mask.astype(np.uint8))))]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(masks(), st.booleans())
def test_coco_round_trip_is_exact(mask, use_polygons):
    h, w = mask.shape
    coco = build_coco([{"file_name": "x.png", "height": h, "width": w}], [[ObjectRecord(mask, 3, 0.5)]],
                      categories=[{"id": 3, "name": "cell"}], use_polygons=use_polygons)
    validate_coco(coco)
    ann = coco["annotations"][0]
    assert ann["area"] == int(mask.sum()) and ann["bbox"] == _toBbox(mask)
    if isinstance(ann["segmentation"], dict):
        assert isinstance(ann["segmentation"]["counts"], str)
    else:
        assert all(len(p) >= 6 for p in ann["segmentation"])
    back = objects_of_image(json.loads(json.dumps(coco)), 1)[0]
    assert np.array_equal(back.mask, mask) and back.category_id == 3 and back.score == 0.5


@settings(max_examples=100, deadline=None)
@given(masks())
def test_polygons_are_exact_or_absent(mask):
    polygons = mask_to_polygons(mask)
    if polygons is None:
        return
    h, w = mask.shape
    decoded = decode_rle(mask_utils.merge(mask_utils.frPyObjects(polygons, h, w)))
    assert np.array_equal(decoded, mask) and all(len(p) >= 6 for p in polygons)


def test_holes_fall_back_to_rle_with_a_warning(caplog):
    mask = np.ones((10, 12), bool)
    mask[4, 5] = False
    coco = build_coco([{"file_name": "a", "height": 10, "width": 12}], [[ObjectRecord(mask)]], use_polygons=True)
    assert isinstance(coco["annotations"][0]["segmentation"], dict)
    assert "using RLE" in caplog.text
    parts = np.zeros((10, 12), bool)
    parts[1:3, 1:3] = parts[6:9, 7:11] = True
    coco = build_coco([{"file_name": "a", "height": 10, "width": 12}], [[ObjectRecord(parts)]], use_polygons=True)
    assert len(coco["annotations"][0]["segmentation"]) == 2  # one polygon per part


@settings(max_examples=60, deadline=None)
@given(st.lists(masks(), min_size=1, max_size=5), st.sampled_from([".tif", ".png"]))
def test_label_images_round_trip(tmp_path_factory, mask_list, suffix):
    shape = mask_list[0].shape
    same = [m for m in mask_list if m.shape == shape]
    labels = masks_to_labels(same, shape)
    path = tmp_path_factory.mktemp("labels") / f"labels{suffix}"
    write_label_image(path, labels)
    back = read_label_image(path)
    assert back.dtype == np.uint16 and np.array_equal(back, labels)
    for label_id, mask in labels_to_masks(back):
        assert np.array_equal(mask, labels == label_id)


def test_labels_widen_past_65535(tmp_path):
    labels = np.zeros((4, 5), np.uint32)
    labels[0, 0], labels[3, 4] = 70_000, 65_536
    write_label_image(tmp_path / "big.tif", labels)
    back = read_label_image(tmp_path / "big.tif")
    assert back.dtype == np.uint32 and np.array_equal(back, labels)
    with pytest.raises(LabelImageError, match="16-bit PNG"):
        write_label_image(tmp_path / "big.png", labels)
    assert masks_to_labels([np.zeros((2, 2), bool)] * 65_536, (2, 2)).dtype == np.uint32


def test_validator_finds_problems():
    mask = np.zeros((6, 7), bool)
    mask[1:3, 2:5] = True
    good = build_coco([{"file_name": "a", "height": 6, "width": 7}], [[ObjectRecord(mask)]])
    bad = json.loads(json.dumps(good))
    bad["annotations"][0]["area"] = 99
    bad["annotations"][0]["bbox"] = [0, 0, 1, 1]
    bad["annotations"].append({**bad["annotations"][0], "image_id": 42})
    bad["annotations"].append({**good["annotations"][0], "id": 7, "segmentation": [[1, 1, 2, 2]]})
    with pytest.raises(CocoFormatError) as info:
        validate_coco(bad)
    text = str(info.value)
    assert "area 99" in text and "bbox" in text and "unknown image_id 42" in text and "duplicate annotation id 1" in text
    assert ">= 3" in text
    wrong_size = json.loads(json.dumps(good))
    wrong_size["images"][0]["height"] = 5
    with pytest.raises(CocoFormatError, match="RLE size"):
        validate_coco(wrong_size)
    with pytest.raises(CocoFormatError, match="must be a list"):
        validate_coco({"images": {}})


def test_writer_killed_mid_write_leaves_old_file(tmp_path, monkeypatch):
    mask = np.ones((3, 3), bool)
    old = build_coco([{"file_name": "a", "height": 3, "width": 3}], [[ObjectRecord(mask)]])
    path = write_coco(tmp_path / "out.json", old)
    before = path.read_bytes()

    def dies_half_way(obj, fh):
        fh.write('{"images": [')
        raise KeyboardInterrupt

    monkeypatch.setattr(coco_io.json, "dump", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        write_coco(path, old)
    assert path.read_bytes() == before and read_coco(path) == old
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_read_coco_errors(tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(CocoFormatError, match="cannot read"):
        read_coco(tmp_path / "broken.json")


def test_mask_shape_must_match_image():
    with pytest.raises(ValueError, match="does not match"):
        build_coco([{"file_name": "a", "height": 3, "width": 3}], [[ObjectRecord(np.ones((4, 3), bool))]])


_SLOW_WRITER = r"""
import json, sys, time
import numpy as np
from tinysam_annotate.io import coco as coco_io

def slow_dump(obj, fh):
    fh.write('{"images": [')
    fh.flush()
    print("writing", flush=True)
    time.sleep(60)

coco_io.json.dump = slow_dump
mask = np.ones((3, 3), bool)
new = coco_io.build_coco([{"file_name": "b", "height": 3, "width": 3}], [[coco_io.ObjectRecord(mask)]])
coco_io.write_coco(sys.argv[1], new)
"""


def test_writer_sigkilled_mid_write_leaves_old_file(tmp_path):
    import subprocess
    import sys

    old = build_coco([{"file_name": "a", "height": 3, "width": 3}], [[ObjectRecord(np.ones((3, 3), bool))]])
    path = write_coco(tmp_path / "out.json", old)
    before = path.read_bytes()
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"  # the new file is half written right now
        proc.kill()
    finally:
        proc.wait(timeout=30)
    assert path.read_bytes() == before and read_coco(path) == old
