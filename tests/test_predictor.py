"""SamPredictor semantics on a tiny random TinySAM (and a SAM-like one that honours multimask_output)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tinysam_annotate import SamPredictor
from tinysam_annotate.backends import Backend
from tinysam_annotate.errors import ImageNotSetError, PromptError
from tinysam_annotate.transforms import ResizeLongestSide

from .conftest import CountingBackend

POINT = dict(point_coords=np.array([[50.0, 40.0]]), point_labels=np.array([1]))


@pytest.fixture
def predictor(tiny_sam, scene):
    p = SamPredictor(tiny_sam)
    p.set_image(scene)
    return p


def test_predict_shapes_and_types(predictor, scene):
    masks, iou, low_res = predictor.predict(**POINT)
    assert masks.shape == (3, *scene.shape[:2]) and masks.dtype == bool
    assert iou.shape == (3,) and low_res.shape == (3, 64, 64)
    logits, _, _ = predictor.predict(**POINT, return_logits=True)
    assert logits.dtype == np.float32
    assert np.array_equal(logits > 0, masks)


def test_tinysam_ignores_single_mask_request_but_sam_honours_it(predictor, tiny_vit_sam, scene):
    masks, iou, _ = predictor.predict(**POINT, multimask_output=False)
    assert masks.shape[0] == 3
    sam_predictor = SamPredictor(tiny_vit_sam)
    sam_predictor.set_image(scene)
    masks, iou, low_res = sam_predictor.predict(**POINT, multimask_output=False)
    assert masks.shape == (1, *scene.shape[:2]) and iou.shape == (1,) and low_res.shape == (1, 64, 64)


def test_prompts_change_the_mask(predictor):
    a, _, _ = predictor.predict(point_coords=np.array([[50.0, 40.0]]), point_labels=np.array([1]), return_logits=True)
    b, _, _ = predictor.predict(point_coords=np.array([[120.0, 80.0]]), point_labels=np.array([1]), return_logits=True)
    c, _, _ = predictor.predict(box=np.array([10, 10, 90, 70]), return_logits=True)
    assert not np.allclose(a, b) and not np.allclose(a, c)


def test_mask_input_feeds_back(predictor):
    _, iou, low_res = predictor.predict(**POINT)
    refined, _, low2 = predictor.predict(**POINT, mask_input=low_res[np.argmax(iou)][None], return_logits=True)
    plain, _, _ = predictor.predict(**POINT, return_logits=True)
    assert not np.allclose(refined, plain)


def test_batched_boxes_equal_single_calls(predictor, scene):
    boxes = np.array([[10, 10, 90, 70], [100, 60, 150, 110], [0, 0, 160, 120]], dtype=float)
    masks, iou, low_res = predictor.predict(box=boxes)
    assert masks.shape == (3, 3, *scene.shape[:2]) and iou.shape == (3, 3)
    for i, box in enumerate(boxes):
        m, s, low = predictor.predict(box=box)
        assert np.allclose(low, low_res[i], atol=1e-4) and np.allclose(s, iou[i], atol=1e-5)
        assert (m == masks[i]).mean() > 0.999


def test_predict_torch_matches_predict(predictor, scene):
    transform = ResizeLongestSide(predictor.backend.image_size)
    coords = torch.from_numpy(transform.apply_coords(POINT["point_coords"], scene.shape[:2]))[None]
    labels = torch.from_numpy(POINT["point_labels"])[None]
    masks_t, iou_t, low_t = predictor.predict_torch(coords, labels)
    masks, iou, low = predictor.predict(**POINT)
    assert isinstance(masks_t, torch.Tensor) and masks_t.shape == (1, 3, *scene.shape[:2])
    assert np.allclose(low_t[0].numpy(), low, atol=1e-5) and np.array_equal(masks_t[0].numpy(), masks)


def test_set_torch_image_matches_set_image(tiny_sam, scene, predictor):
    other = SamPredictor(tiny_sam)
    resized = ResizeLongestSide(256).apply_image(scene)
    other.set_torch_image(torch.from_numpy(resized).permute(2, 0, 1)[None].float(), scene.shape[:2])
    assert np.allclose(other.features, predictor.features, atol=1e-5)
    emb = other.get_image_embedding()
    assert isinstance(emb, torch.Tensor) and emb.shape == (1, 256, 16, 16)


def test_bgr_input_is_flipped(tiny_sam, scene, predictor):
    bgr = SamPredictor(tiny_sam)
    bgr.set_image(np.ascontiguousarray(scene[..., ::-1]), image_format="BGR")
    assert np.array_equal(bgr.features, predictor.features)


def test_reset_and_not_set(tiny_sam, predictor):
    predictor.reset_image()
    with pytest.raises(ImageNotSetError):
        predictor.predict(**POINT)
    with pytest.raises(ImageNotSetError):
        SamPredictor(tiny_sam).get_image_embedding()


def test_accepts_any_backend_object(tiny_backend, scene):
    backend = CountingBackend(tiny_backend)
    assert isinstance(backend, Backend)
    p = SamPredictor(backend)
    p.set_image(scene)
    masks, _, _ = p.predict(**POINT)
    assert backend.encodes == 1 and masks.shape[0] == 3
    # the embedding comes back as the engine's own tensor type: torch here (the wrapped engine is torch's) ...
    assert isinstance(p.get_image_embedding(), torch.Tensor) and p.device == tiny_backend.device == "cpu"
    # ... and the array itself for an engine whose native type is numpy (ONNX Runtime's)
    backend.as_native = lambda array: array
    assert isinstance(p.get_image_embedding(), np.ndarray)



def test_precompute_fills_the_cache_without_changing_the_current_image(tiny_backend, scene):
    backend = CountingBackend(tiny_backend)
    p = SamPredictor(backend)
    p.set_image(scene)
    before = p.predict(**POINT)[0]
    other = np.ascontiguousarray(scene[::-1])
    assert p.precompute(other) and not p.precompute(other)  # the second call finds it cached
    assert backend.encodes == 2 and p.is_cached(other)
    assert np.array_equal(p.predict(**POINT)[0], before)  # still the first image's masks
    p.set_image(other)
    assert p.last_cache_hit and backend.encodes == 2

# -- bad prompts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(), "no prompt"),
        (dict(point_coords=np.array([[np.nan, 3.0]]), point_labels=np.array([1])), "NaN"),
        (dict(point_coords=np.array([[500.0, 3.0]]), point_labels=np.array([1])), "outside"),
        (dict(point_coords=np.array([[-1.0, 3.0]]), point_labels=np.array([1])), "outside"),
        (dict(point_coords=np.array([[5.0, 3.0]])), "together"),
        (dict(point_coords=np.array([[5.0, 3.0]]), point_labels=np.array([1, 0])), "shape"),
        (dict(point_coords=np.array([5.0, 3.0]), point_labels=np.array([1])), "N x 2"),
        (dict(point_coords=np.array([[5.0, 3.0]]), point_labels=np.array([2])), "foreground"),
        (dict(box=np.array([10, 10, 10, 50])), "zero area"),
        (dict(box=np.array([200, 130, 300, 150])), "zero area"),
        (dict(box=np.array([1, 2, 3])), "shape"),
        (dict(box=np.array([1, 2, np.inf, 4])), "NaN or infinite"),
        (dict(box="abc"), "numeric"),
        (dict(mask_input=np.zeros((3, 64, 64))), "mask_input"),
        (dict(mask_input=np.zeros((1, 256, 256))), "mask_input"),
    ],
)
def test_bad_prompts_raise_prompt_error(predictor, kwargs, match):
    with pytest.raises(PromptError, match=match):
        predictor.predict(**kwargs)
    assert issubclass(PromptError, ValueError)


def test_inverted_box_equals_ordered_box(predictor):
    a = predictor.predict(box=np.array([90, 70, 10, 10]), return_logits=True)[0]
    b = predictor.predict(box=np.array([10, 10, 90, 70]), return_logits=True)[0]
    assert np.array_equal(a, b)


def test_box_past_the_border_is_clipped(predictor):
    a = predictor.predict(box=np.array([-50, -20, 90, 500]), return_logits=True)[0]
    b = predictor.predict(box=np.array([0, 0, 90, 120]), return_logits=True)[0]
    assert np.array_equal(a, b)


def test_thousands_of_points(predictor, rng):
    coords = rng.uniform([0, 0], [160, 120], size=(2000, 2))
    labels = rng.integers(0, 2, size=2000)
    masks, iou, _ = predictor.predict(point_coords=coords, point_labels=labels)
    assert masks.shape[0] == 3 and np.all(np.isfinite(iou))


def test_mask_input_alone_is_accepted(predictor):
    _, _, low_res = predictor.predict(**POINT)
    masks, _, _ = predictor.predict(mask_input=low_res[0])
    assert masks.shape[0] == 3
