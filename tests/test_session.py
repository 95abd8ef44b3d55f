"""AnnotationSession: the GUI-free core both GUIs share."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tinysam_annotate.amg import SamHierarchicalMaskGenerator
from tinysam_annotate.cleanup import clean_mask, count_parts
from tinysam_annotate.errors import PromptError
from tinysam_annotate.io.coco import read_coco, validate_coco
from tinysam_annotate.io.labels import read_label_image
from tinysam_annotate.predictor import SamPredictor
from tinysam_annotate.session import AnnotationSession, SessionError


@pytest.fixture
def session(tiny_backend, scene, tmp_path):
    return AnnotationSession(SamPredictor(tiny_backend), scene, "scene.png", ["nucleus", "cell"],
                             autosave_path=tmp_path / "autosave.json")


def _accept_one(session, x=50, y=40, category=None):
    session.add_point(x, y)
    if not session.preview.mask.any():
        session.cycle_candidate()
    return session.accept(category)


def test_points_give_a_preview_and_refine_it(session):
    preview = session.add_point(50, 40)
    assert preview.masks.shape == (3, 120, 160) and preview.scores.shape == (3,)
    assert preview.selected == int(np.argmax(preview.scores))
    second = session.add_point(120, 80, positive=False)
    assert session.labels == [1, 0] and second.masks.shape == (3, 120, 160)
    before = second.selected
    assert session.cycle_candidate().selected == (before + 1) % 3
    session.set_box(10, 10, 90, 70)
    assert session.box == (10.0, 10.0, 90.0, 70.0)
    session.clear_prompts()
    assert session.preview is None and session.points == []


def test_previews_are_cleaned_unless_raw_masks_are_asked_for(tiny_backend, scene):
    raw_session = AnnotationSession(SamPredictor(tiny_backend), scene, cleanup=None)
    clean_session = AnnotationSession(SamPredictor(tiny_backend), scene)
    for prompts in (dict(points=[(50, 40)], box=None), dict(points=[(50, 40), (120, 80)], box=(10, 10, 90, 70))):
        for s in (raw_session, clean_session):
            s.clear_prompts()
            for x, y in prompts["points"]:
                s.add_point(x, y)
            if prompts["box"]:
                s.set_box(*prompts["box"])
        raw, cleaned = raw_session.preview.masks, clean_session.preview.masks
        assert sum(count_parts(m) for m in raw) > sum(count_parts(m) for m in cleaned)  # random weights: scattered
        box = None if prompts["box"] is None else np.array(prompts["box"], float)
        for r, c in zip(raw, cleaned, strict=True):
            assert np.array_equal(c, clean_mask(r, np.array(prompts["points"], float), np.ones(len(prompts["points"])), box))


def test_accept_undo_redo_delete_relabel(session):
    first = _accept_one(session)
    assert first.object_id == 1 and first.category == "nucleus" and first.prompts.points == ((50.0, 40.0),)
    assert session.preview is None  # prompts cleared for the next object
    second = _accept_one(session, 120, 80, category="cell")
    assert [o.object_id for o in session.objects] == [1, 2]
    session.undo()
    assert [o.object_id for o in session.objects] == [1]
    session.redo()
    assert [o.object_id for o in session.objects] == [1, 2]
    session.relabel(2, "nucleus")
    assert session.objects[1].category == "nucleus"
    session.delete(1)
    assert [o.object_id for o in session.objects] == [2]
    session.undo()
    session.undo()
    assert [(o.object_id, o.category) for o in session.objects] == [(1, "nucleus"), (2, "cell")]
    third = _accept_one(session, 30, 100)
    assert third.object_id == 3 and not session.can_redo()  # a new action drops the redo branch
    assert second.object_id == 2


def test_bad_actions_are_clear_errors(session, tmp_path):
    with pytest.raises(SessionError, match="nothing to accept"):
        session.accept()
    with pytest.raises(SessionError, match="nothing to undo"):
        session.undo()
    with pytest.raises(PromptError, match="outside"):
        session.add_point(500, 10)
    with pytest.raises(PromptError, match="outside"):
        session.add_point(float("nan"), 10)
    with pytest.raises(PromptError, match="empty"):
        session.set_box(10, 10, 10.5, 40)
    with pytest.raises(SessionError, match="unknown category"):
        session.add_point(50, 40)
        session.accept("dog")
    with pytest.raises(SessionError, match="no object"):
        session.delete(99)
    with pytest.raises(SessionError, match="uint8 RGB"):
        AnnotationSession(session.predictor, np.zeros((4, 4), np.uint16))


def test_everything_adds_objects_in_one_undo_step(session):
    _accept_one(session)
    calls = []
    added = session.segment_everything(
        lambda p: SamHierarchicalMaskGenerator(p, points_per_side=8, pred_iou_thresh=0.0, stability_score_thresh=0.0),
        category="cell", progress=lambda done, total: calls.append((done, total)))
    assert added and all(o.category == "cell" and o.prompts.source == "everything" for o in added)
    assert calls and calls[-1][0] == calls[-1][1]
    assert len(session.objects) == 1 + len(added)
    session.undo()
    assert len(session.objects) == 1


def test_export_import_round_trip(session, tiny_backend, scene, tmp_path):
    _accept_one(session)
    _accept_one(session, 120, 80, category="cell")
    path = session.export_coco(tmp_path / "out.json")
    coco = read_coco(path)
    validate_coco(coco)
    assert [c["name"] for c in coco["categories"]] == ["nucleus", "cell"]
    assert coco["annotations"][0]["attributes"]["prompts"]["points"] == [[50.0, 40.0]]
    labels_path = session.export_labels(tmp_path / "labels.tif")
    labels = read_label_image(labels_path)
    for obj in session.objects:
        assert (labels == obj.object_id).sum() > 0
    fresh = AnnotationSession(SamPredictor(tiny_backend), scene, "scene.png")
    imported = fresh.import_coco(path)
    assert [o.category for o in imported] == ["nucleus", "cell"]
    assert set(fresh.categories) >= {"nucleus", "cell"}
    for a, b in zip(session.objects, fresh.objects, strict=True):
        assert np.array_equal(a.mask, b.mask) and a.prompts == b.prompts
    small = AnnotationSession(SamPredictor(tiny_backend), scene[:60], "half.png")
    with pytest.raises(SessionError, match="annotates a 160 x 120 image"):
        small.import_coco(path)


def test_autosave_keeps_every_accepted_object_and_restores(session, tiny_backend, scene, tmp_path):
    _accept_one(session)
    saved = json.loads((tmp_path / "autosave.json").read_text())
    assert len(saved["annotations"]) == 1  # written before accept() returned
    _accept_one(session, 120, 80)
    session.undo()
    assert len(read_coco(tmp_path / "autosave.json")["annotations"]) == 1
    restored = AnnotationSession.restore(SamPredictor(tiny_backend), scene, tmp_path / "autosave.json")
    assert len(restored.objects) == 1 and np.array_equal(restored.objects[0].mask, session.objects[0].mask)
    assert not restored.can_undo()
    _accept_one(restored, 120, 80)
    assert len(read_coco(tmp_path / "autosave.json")["annotations"]) == 2
