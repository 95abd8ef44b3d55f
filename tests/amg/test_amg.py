"""Everything mode: conformance with the reference grid pipeline, hierarchical rounds, options."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from tinysam_annotate import SamAutomaticMaskGenerator, SamHierarchicalMaskGenerator
from tinysam_annotate.amg import GenerationCancelled
from tinysam_annotate.amg.hierarchical import dense_points_around
from tinysam_annotate.amg.masks import encode_rle, mask_box, mask_nms, nms
from tinysam_annotate.backends.base import ScoredPrompts
from tinysam_annotate.backends.onnx_backend import OnnxBackend
from tinysam_annotate.backends.torch_backend import TorchBackend
from tinysam_annotate.build import sam_from_checkpoint
from tinysam_annotate.export.onnx_export import export_onnx
from tinysam_annotate.io.coco import decode_rle
from tinysam_annotate.transforms import UpsampleFrame, postprocess_masks

from ..conftest import CONFORMANCE, CountingBackend, make_tiny_sam, require_shared


def _reference(name: str, variant: str) -> dict:
    path = CONFORMANCE / (f"amg_{name}_nms1.json.gz" if variant == "nms1" else f"amg_{name}.json")
    opener = gzip.open if variant == "nms1" else open
    with opener(path, "rt") as fh:
        return json.load(fh)


def _generator(model, ref: dict) -> SamAutomaticMaskGenerator:
    return SamAutomaticMaskGenerator(
        model,
        points_per_side=ref["points_per_side"],
        pred_iou_thresh=ref["pred_iou_thresh"],
        stability_score_thresh=ref["stability_score_thresh"],
        stability_score_offset=ref["stability_score_offset"],
        box_nms_thresh=ref["box_nms_thresh"],
        output_mode="coco_rle",
        mask_nms_thresh=None,  # the reference pipeline has no mask-IoU deduplication
    )


def _assert_matches(anns: list[dict], ref: dict) -> None:
    """>= 98% of reference masks have one of ours at IoU >= 0.95; counts within 2%; fields agree."""
    refs = ref["annotations"]
    assert abs(len(anns) - len(refs)) <= 0.02 * len(refs)
    by_point: dict[tuple, list[dict]] = {}
    for ann in anns:
        by_point.setdefault(tuple(ann["point_coords"][0]), []).append(ann)
    matched = 0
    for r in refs:
        # Compare with our masks from the same prompt first (cheap), else with all of ours.
        pool = by_point.get(tuple(r["point_coords"][0])) or anns
        ious = mask_utils.iou([r["segmentation"]], [a["segmentation"] for a in pool], [0] * len(pool))[0]
        best = int(np.argmax(ious))
        if ious[best] >= 0.95:
            matched += 1
            ours = pool[best]
            assert abs(ours["area"] - r["area"]) <= max(2, 1e-3 * r["area"])
            assert np.allclose(ours["bbox"], r["bbox"], atol=1.0)
            assert abs(ours["predicted_iou"] - r["predicted_iou"]) < 1e-3
            assert abs(ours["stability_score"] - r["stability_score"]) < 1e-2
    assert matched >= 0.98 * len(refs)


@pytest.fixture(scope="module", params=["vit_t", "vit_small"])
def onnx_conformance(request, tmp_path_factory):
    require_shared(CONFORMANCE)
    sam = sam_from_checkpoint(CONFORMANCE / f"{request.param}.pth")
    folder = export_onnx(sam, tmp_path_factory.mktemp(request.param), weights_hash=request.param, model_id=request.param)
    image = np.asarray(Image.open(CONFORMANCE / "image.png").convert("RGB"))
    return request.param, OnnxBackend(folder, providers=["cpu"]), image


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["nms0.7", "nms1"])
def test_grid_matches_reference_onnx(onnx_conformance, variant):
    name, backend, image = onnx_conformance
    ref = _reference(name, variant)
    _assert_matches(_generator(backend, ref).generate(image), ref)


@pytest.mark.slow
def test_grid_matches_reference_torch():
    require_shared(CONFORMANCE)
    ref = _reference("vit_small", "nms0.7")
    image = np.asarray(Image.open(CONFORMANCE / "image.png").convert("RGB"))
    _assert_matches(_generator(sam_from_checkpoint(CONFORMANCE / "vit_small.pth"), ref).generate(image), ref)


def test_sparse_block_upsampling_is_exact(rng):
    logits = rng.normal(size=(64, 64)).astype(np.float32) * 3 - 4
    for input_size, orig in (((256, 192), (300, 225)), ((100, 256), (50, 128)), ((256, 256), (1000, 1000))):
        frame = UpsampleFrame.build(64, 256, input_size, orig)
        full = postprocess_masks(logits[None], 256, input_size, orig)[0]
        for thr in (-1.0, 0.0, 1.0, 5.0):
            found = frame.block(logits, thr)
            mask = np.zeros(orig, bool)
            if found is not None:
                rows, cols, block = found
                assert np.allclose(block, full[rows, cols], atol=1e-4)
                mask[rows, cols] = block > thr
            assert np.array_equal(mask, full > thr)


def test_nms_keeps_best_of_overlaps():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], float)
    assert nms(boxes, np.array([0.5, 0.9, 0.1]), 0.7).tolist() == [1, 2]
    assert nms(boxes, np.array([0.5, 0.9, 0.1]), 1.0).tolist() == [1, 0, 2]


def test_mask_nms_removes_duplicates_that_box_nms_keeps():
    """A few stray pixels make one copy's box huge: box NMS keeps both copies, mask NMS only the better one."""
    blob = np.zeros((100, 100), bool)
    blob[20:40, 20:40] = True
    stray = blob.copy()
    stray[95, 95] = True
    other = np.zeros_like(blob)
    other[60:80, 60:80] = True
    masks = [blob, stray, other]
    scores = np.array([0.8, 0.9, 0.5])
    boxes = np.stack([mask_box(m) for m in masks])
    assert len(nms(boxes, scores, 0.7)) == 3
    assert mask_nms([encode_rle(m) for m in masks], scores, 0.7).tolist() == [1, 2]
    assert mask_nms([encode_rle(m) for m in masks], scores, 1.0).tolist() == [1, 0, 2]
    assert mask_nms([], np.zeros(0), 0.7).tolist() == []


def _max_pairwise_mask_iou(anns: list[dict]) -> float:
    rles = [a["segmentation"] for a in anns]
    ious = np.asarray(mask_utils.iou(rles, rles, [0] * len(rles))).reshape(len(rles), len(rles))
    np.fill_diagonal(ious, 0.0)
    return float(ious.max()) if len(rles) > 1 else 0.0


@pytest.mark.parametrize("cls", [SamAutomaticMaskGenerator, SamHierarchicalMaskGenerator])
def test_no_two_masks_overlap_unless_duplicates_are_asked_for(tiny_backend_amg, scene, cls):
    # Box NMS off, so that only the mask-IoU step stands between the near-copies and the output. The batch is
    # fixed: sized from the process's memory, it differed between the two runs on CI, and the decoder's float32
    # scores move by ~1e-6 with the batch, enough to swap which of two tied copies is kept.
    common = dict(points_per_side=8, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0,
                  output_mode="coco_rle", points_per_batch=16)
    raw = cls(tiny_backend_amg, mask_nms_thresh=None, **common).generate(scene)
    assert _max_pairwise_mask_iou(raw) > 0.7  # random weights give near-copies: the test has something to remove
    deduplicated = cls(tiny_backend_amg, **common).generate(scene)
    assert 0 < len(deduplicated) < len(raw) and _max_pairwise_mask_iou(deduplicated) <= 0.7
    # Every dropped mask has a kept twin (mask IoU > 0.7) with at least its predicted IoU.
    kept = [a["segmentation"] for a in deduplicated]
    for ann in raw:
        ious = mask_utils.iou([ann["segmentation"]], kept, [0] * len(kept))[0]
        assert any(iou > 0.7 and kept_ann["predicted_iou"] >= ann["predicted_iou"] - 1e-5
                   for iou, kept_ann in zip(ious, deduplicated, strict=True))


@pytest.fixture(scope="module")
def tiny_backend_amg():
    return make_tiny_sam(seed=5)


def test_output_modes_agree(tiny_backend_amg, scene):
    kwargs = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    binary = SamAutomaticMaskGenerator(tiny_backend_amg, output_mode="binary_mask", **kwargs).generate(scene)
    coco = SamAutomaticMaskGenerator(tiny_backend_amg, output_mode="coco_rle", **kwargs).generate(scene)
    raw = SamAutomaticMaskGenerator(tiny_backend_amg, output_mode="uncompressed_rle", **kwargs).generate(scene)
    assert len(binary) == len(coco) == len(raw) > 0
    for b, c, r in zip(binary, coco, raw, strict=True):
        assert b["segmentation"].shape == scene.shape[:2] and b["area"] == int(b["segmentation"].sum())
        assert np.array_equal(decode_rle(c["segmentation"]), b["segmentation"])
        assert sum(r["segmentation"]["counts"]) == scene.shape[0] * scene.shape[1]
        assert set(b) == {"segmentation", "area", "bbox", "predicted_iou", "point_coords", "stability_score", "crop_box"}


def test_crop_layers_and_small_region_removal(tiny_backend_amg, scene):
    gen = SamAutomaticMaskGenerator(
        tiny_backend_amg, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0,
        crop_n_layers=1, min_mask_region_area=50,
    )
    anns = gen.generate(scene)
    assert {tuple(a["crop_box"]) for a in anns} <= {(0, 0, 160, 120)} | {tuple(b) for b in _crop_boxes_xywh(scene)}
    from skimage.measure import label

    for ann in anns:
        regions = label(ann["segmentation"], connectivity=2)
        sizes = np.bincount(regions.ravel())[1:]
        assert len(sizes) <= 1 or sizes.min() >= 50


def _crop_boxes_xywh(image):
    from tinysam_annotate.amg.grids import generate_crop_boxes

    boxes, _ = generate_crop_boxes(image.shape[:2], 1, 512 / 1500)
    return [[x0, y0, x1 - x0, y1 - y0] for x0, y0, x1, y1 in boxes]


def test_progress_and_cancel(tiny_backend_amg, scene):
    seen = []
    gen = SamAutomaticMaskGenerator(tiny_backend_amg, points_per_side=8, points_per_batch=16)
    gen.generate(scene, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (64, 64) and len(seen) == 4
    with pytest.raises(GenerationCancelled, match="cancelled after 16 of 64"):
        gen.generate(scene, should_stop=lambda: True)


def test_hierarchical_skips_points_inside_confident_masks(tiny_backend_amg, scene):
    common = dict(points_per_side=8, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    everything_done = SamHierarchicalMaskGenerator(tiny_backend_amg, high_score_thresh=-1e9, **common)
    everything_done.generate(scene)
    sparse, dense = everything_done.last_round_sizes
    assert sparse == 4 and dense < 64  # the union of round-1 masks covers part of the dense grid
    nothing_done = SamHierarchicalMaskGenerator(tiny_backend_amg, high_score_thresh=1e9, **common)
    anns = nothing_done.generate(scene)
    assert nothing_done.last_round_sizes == (4, 45) and len(anns) > 0  # 45: see the lattice test below


def test_round_two_prompts_the_reference_lattice_around_the_sparse_points():
    # 64 x 64, 8 points per side: sparse points at 16 and 48, dense stride 8; offsets -1..2 strides around each
    # sparse point tile the image with points every 8 px from 8 to 56 (64 is outside), the sparse points excluded.
    sparse = np.array([[16.0, 16.0], [48.0, 16.0], [16.0, 48.0], [48.0, 48.0]])
    points = dense_points_around(sparse, None, (64, 64), 8)
    expected = {(float(x), float(y)) for x in range(8, 64, 8) for y in range(8, 64, 8)} - {tuple(p) for p in sparse}
    assert len(points) == 45 and {tuple(p) for p in points} == expected
    done = np.zeros((64, 64), bool)
    done[:20, :20] = True  # a confident round-1 mask over the top-left corner
    left = {tuple(p) for p in dense_points_around(sparse, done, (64, 64), 8)}
    assert left == {p for p in expected if not (p[0] < 20 and p[1] < 20)}


def test_hierarchical_equals_grid_when_nothing_is_confident(tiny_backend_amg, scene):
    common = dict(points_per_side=8, pred_iou_thresh=0.0, stability_score_thresh=0.0, output_mode="coco_rle")
    grid = SamAutomaticMaskGenerator(tiny_backend_amg, **common).generate(scene)
    hier = SamHierarchicalMaskGenerator(tiny_backend_amg, high_score_thresh=1e9, **common).generate(scene)
    grid_points = {tuple(a["point_coords"][0]) for a in grid}
    assert grid_points <= {tuple(a["point_coords"][0]) for a in hier} | grid_points
    assert len(hier) >= len(grid) * 0.8


def test_hierarchical_candidates_filtered_afterwards_equal_a_stricter_run(tiny_backend_amg, scene):
    # The threshold recipe takes the candidates once at low thresholds and filters them; with no "done" region
    # (high_score_thresh 1e9) round 2 does not depend on the thresholds, so this equals running at the stricter ones.
    common = dict(points_per_side=8, stability_score_thresh=0.0, high_score_thresh=1e9, output_mode="coco_rle")
    loose = SamHierarchicalMaskGenerator(tiny_backend_amg, pred_iou_thresh=0.0, **common)
    candidates = loose.candidates(scene)
    assert loose.merge(candidates) == loose.generate(scene)
    strict_iou = float(np.median([c.iou for c in candidates]))
    kept = [c for c in candidates if c.iou > strict_iou]
    strict = SamHierarchicalMaskGenerator(tiny_backend_amg, pred_iou_thresh=strict_iou, **common).generate(scene)
    assert 0 < len(kept) < len(candidates) and strict
    assert loose.merge(kept) == strict


def test_bad_arguments(tiny_backend_amg):
    with pytest.raises(ValueError, match="exactly one"):
        SamAutomaticMaskGenerator(tiny_backend_amg, points_per_side=None)
    with pytest.raises(ValueError, match="output_mode"):
        SamAutomaticMaskGenerator(tiny_backend_amg, output_mode="png")
    with pytest.raises(ValueError, match="crop_n_layers"):
        SamHierarchicalMaskGenerator(tiny_backend_amg, crop_n_layers=1)


class _UpscaleRecorder(CountingBackend):
    """A scores-first engine that records how many prompts it scored and how many of them it upscaled."""

    scores_first = True

    def __init__(self, inner) -> None:
        super().__init__(inner)
        self.best_ious: list[float] = []
        self.upscaled = 0
        self.extents: list = []
        self.blocks: list = []

    def score_prompts(self, embedding, coords, labels, multimask_output, block=None):
        self.blocks.append(block)
        scored = self.inner.score_prompts(embedding, coords, labels, multimask_output, block)
        self.best_ious += scored.iou.max(axis=1).tolist()

        def masks_of(rows, extent=None):
            self.upscaled += len(rows)
            self.extents.append(extent)
            return scored.masks_of(rows, extent)

        return ScoredPrompts(scored.iou, masks_of)


def test_only_prompts_past_the_iou_threshold_are_upscaled(tiny_backend_amg, scene):
    torch_backend = TorchBackend(tiny_backend_amg, model_id="tiny")
    common = dict(points_per_side=8, points_per_batch=16, stability_score_thresh=0.0, output_mode="coco_rle")
    probe = _UpscaleRecorder(torch_backend)
    SamAutomaticMaskGenerator(probe, pred_iou_thresh=0.0, **common).generate(scene)
    threshold = float(np.median(probe.best_ious))  # half of the prompts have a mask past it
    recorder = _UpscaleRecorder(torch_backend)
    upscaled_only_kept = SamAutomaticMaskGenerator(recorder, pred_iou_thresh=threshold, **common).generate(scene)
    assert len(recorder.best_ious) == 64
    assert recorder.upscaled == sum(iou > threshold for iou in recorder.best_ious) < 64
    # Only the block of low-res logits the 120 x 160 image covers in the square frame is asked for.
    (rows, columns), = set(recorder.extents)
    assert rows < columns == torch_backend.low_res_size
    # An engine without scores-first decoding computes every mask; the masks kept are the same.
    every_mask = SamAutomaticMaskGenerator(CountingBackend(torch_backend), pred_iou_thresh=threshold, **common)
    expected = every_mask.generate(scene)
    assert len(upscaled_only_kept) == len(expected) > 0
    assert [a["segmentation"] for a in upscaled_only_kept] == [a["segmentation"] for a in expected]


def test_hierarchical_decodes_only_where_the_image_is(tiny_backend_amg, scene):
    """TinySAM's fast mode scores prompts over the image's part of the frame; grid mode (SAM's pipeline) over the
    whole frame; a square image gives the same masks either way."""
    torch_backend = TorchBackend(tiny_backend_amg, model_id="tiny")
    common = dict(points_per_side=8, points_per_batch=16, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                  output_mode="coco_rle")
    hierarchical, grid = _UpscaleRecorder(torch_backend), _UpscaleRecorder(torch_backend)
    SamHierarchicalMaskGenerator(hierarchical, **common).generate(scene)
    SamAutomaticMaskGenerator(grid, **common).generate(scene)
    (block,) = set(hierarchical.blocks)
    assert block[0] < block[1] == torch_backend.low_res_size  # the 120 x 160 image's rows of the square frame
    assert set(grid.blocks) == {None}
    square = np.ascontiguousarray(scene[:, :120])
    every_mask = dict(common, box_nms_thresh=1.0, mask_nms_thresh=None)
    by_block, by_frame = (SamHierarchicalMaskGenerator(torch_backend, attend_to_padding=padding, **every_mask)
                          .generate(square) for padding in (False, True))
    assert len(by_block) > 3
    assert [m["segmentation"] for m in by_block] == [m["segmentation"] for m in by_frame]
    assert [m["predicted_iou"] for m in by_block] == [m["predicted_iou"] for m in by_frame]
