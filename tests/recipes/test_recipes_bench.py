"""Benchmark recipes: COCO segm AP, click protocol, prompt metrics, everything-mode comparison."""

from __future__ import annotations

import numpy as np
import pytest

from recipes.bench.coco_ap import box_prompt_results, evaluate_segm
from recipes.bench.everything import agreement, compare, table
from recipes.bench.metrics import centroid_point, interior_point, iou, mask_box, match_ious, match_masks, next_click
from recipes.bench.prompts import PromptScores, click_series, evaluate_prompts
from tinysam_annotate.io.coco import rle_from_mask
from tinysam_annotate.predictor import SamPredictor

pytestmark = pytest.mark.slow


@pytest.fixture
def scene_with_masks(scene):
    yy, xx = np.mgrid[:120, :160]
    return scene, [(yy - 40) ** 2 + (xx - 50) ** 2 < 20**2, (yy - 80) ** 2 + (xx - 120) ** 2 < 15**2]


def _square(h, w, y0, x0, size):
    m = np.zeros((h, w), bool)
    m[y0 : y0 + size, x0 : x0 + size] = True
    return m


def _gt_coco(masks):
    anns = []
    for i, m in enumerate(masks):
        x0, y0, x1, y1 = mask_box(m)
        anns.append({"id": i + 1, "image_id": 1, "category_id": 1, "segmentation": rle_from_mask(m), "area": int(m.sum()),
                     "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)], "iscrowd": 0})
    return {"images": [{"id": 1, "width": 100, "height": 100, "file_name": "a.png"}], "annotations": anns,
            "categories": [{"id": 1, "name": "thing"}]}


def test_coco_ap_is_one_when_predictions_equal_ground_truth():
    masks = [_square(100, 100, 5, 5, 20), _square(100, 100, 50, 40, 30)]
    results = [{"image_id": 1, "category_id": 1, "segmentation": rle_from_mask(m), "score": 0.9} for m in masks]
    metrics = evaluate_segm(_gt_coco(masks), results)
    assert metrics["AP"] == pytest.approx(1.0)
    assert metrics["AP50"] == pytest.approx(1.0) and metrics["AP75"] == pytest.approx(1.0)


def test_coco_ap_on_a_hand_made_case():
    """One perfect mask (score 0.9) and one with IoU 0.62 (score 0.8): matched at IoU 0.50, 0.55, 0.60 only.

    At those 3 thresholds AP = 1; at the other 7 only the first object is found: precision 1 up to
    recall 0.5, so 51 of COCO's 101 recall points -> AP = 51/101. Mean = (3 + 7 * 51/101) / 10.
    """
    gt = [_square(100, 100, 5, 5, 20), _square(100, 100, 50, 40, 30)]
    partial = np.zeros((100, 100), bool)
    partial[50:80, 40:70] = True
    partial[50:80, 40:51] = False  # keep 19 of 30 columns: IoU 570/900 = 0.633
    value = iou(partial, gt[1])
    assert 0.6 < value < 0.65
    results = [{"image_id": 1, "category_id": 1, "segmentation": rle_from_mask(gt[0]), "score": 0.9},
               {"image_id": 1, "category_id": 1, "segmentation": rle_from_mask(partial), "score": 0.8}]
    metrics = evaluate_segm(_gt_coco(gt), results)
    assert metrics["AP"] == pytest.approx((3 + 7 * 51 / 101) / 10, abs=1e-6)
    assert metrics["AP50"] == pytest.approx(1.0)
    assert metrics["AP75"] == pytest.approx(51 / 101, abs=1e-6)


def test_coco_ap_with_no_results_is_zero():
    assert evaluate_segm(_gt_coco([_square(100, 100, 5, 5, 20)]), [])["AP"] == 0.0


def test_prompt_placement():
    ring = _square(60, 60, 10, 10, 40) & ~_square(60, 60, 20, 20, 20)
    x, y = centroid_point(ring)
    assert ring[int(y), int(x)]  # the centroid (a hole) is moved onto the object
    x, y = interior_point(_square(60, 60, 10, 10, 41))
    assert (x, y) == (30.0, 30.0)
    assert list(mask_box(_square(60, 60, 10, 12, 5))) == [12, 10, 17, 15]


def test_next_click_targets_the_larger_error():
    gt = _square(50, 50, 10, 10, 20)
    pred = _square(50, 50, 10, 10, 10)  # misses most of the object
    (x, y), label = next_click(gt, pred)
    assert label == 1 and gt[int(y), int(x)] and not pred[int(y), int(x)]
    (x, y), label = next_click(pred, gt)  # spills over: a negative click outside the object
    assert label == 0 and gt[int(y), int(x)] and not pred[int(y), int(x)]
    assert next_click(gt, gt) is None


def test_match_masks_is_one_to_one():
    a, b = _square(50, 50, 0, 0, 10), _square(50, 50, 30, 30, 10)
    assert match_masks([a, a], [a]) == (1, 0.5, 1.0)
    assert match_masks([a, b], [a, b]) == (2, 1.0, 1.0)
    assert match_masks([], [a]) == (0, 1.0, 0.0)
    assert match_ious(np.array([[0.9, 0.6], [0.8, 0.1]])) == (1, 0.5, 0.5)  # greedy: the best pair (0.9) first
    assert match_ious(np.zeros((0, 2))) == (0, 1.0, 0.0)


def test_prompt_benchmarks_run_on_a_model(tiny_backend, scene_with_masks):
    image, masks = scene_with_masks
    predictor = SamPredictor(tiny_backend)
    scores = PromptScores()
    evaluate_prompts(predictor, image, masks, scores, max_clicks=3)
    assert len(scores.point) == len(scores.box) == len(masks)
    assert all(0 <= v <= 1 for v in scores.point + scores.box)
    assert len(scores.click_curve()) == 3
    series = click_series(predictor, masks[0], 4)
    assert len(series) == 4 and all(0 <= v <= 1 for v in series)


def test_box_prompt_results_feed_the_coco_evaluation(tiny_backend, scene_with_masks, tmp_path):
    from PIL import Image

    image, masks = scene_with_masks
    Image.fromarray(image).save(tmp_path / "a.png")
    coco = _gt_coco([m for m in masks])
    coco["images"][0].update(width=image.shape[1], height=image.shape[0])
    results = box_prompt_results(SamPredictor(tiny_backend), coco, tmp_path, progress=False)
    assert len(results) == len(masks) and all(r["score"] >= 0 for r in results)
    detections = [{"image_id": 1, "category_id": 1, "bbox": coco["annotations"][0]["bbox"], "score": 0.5}]
    results = box_prompt_results(SamPredictor(tiny_backend), coco, tmp_path, detections, progress=False)
    assert len(results) == 1 and results[0]["score"] <= 0.5 * 1.5
    metrics = evaluate_segm(coco, results)
    assert set(metrics) == {"AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L"}


def test_everything_comparison_table(tiny_backend, scene):
    image = scene
    rows = compare(tiny_backend, {"scene": image}, points_per_side=8, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    row = rows[0]
    assert row["grid_prompts"] == 64 and 0 < row["hier_prompts"] <= 64 + 4
    assert 0 <= row["miou_vs_grid"] <= 1
    assert "| scene |" in table(rows)
    a = _square(20, 20, 0, 0, 5)
    assert agreement([a], [a]) == 1.0 and agreement([], []) == 1.0 and agreement([a], []) == 0.0


def test_clean_masks_benchmark_scores_raw_and_cleaned_masks(tiny_backend, scene_with_masks):
    from recipes.bench.clean_masks import CleanupScores, rows, score_image

    image, masks = scene_with_masks
    scores = CleanupScores()
    score_image(SamPredictor(tiny_backend), image, masks, scores)
    assert len(scores.pieces["point"]) == len(scores.pieces["box"]) == len(scores.outside) == 2
    for kind in ("point", "box"):
        assert all(cleaned <= max(raw, 1) for raw, cleaned in scores.pieces[kind])
    table = rows("scene", scores)
    assert len(table) == 2 and table[0].startswith("| scene | point | 2 |")


def test_the_3d_benchmark_scores_every_nucleus_spanning_three_slices(tiny_backend):
    from recipes.bench.propagation_3d import FIRST_SEED, score_stack
    from recipes.bench.propagation_3d import table as propagation_table

    rows = score_stack(SamPredictor(tiny_backend), FIRST_SEED, depth=8, size=96, max_objects=3)
    assert rows and all(r["true_slices"] >= 3 for r in rows)
    assert all(0.0 <= r[mode][0] <= 1.0 and r[mode][1] >= 1 for r in rows for mode in ("one slice", "3d"))
    assert all(r["one slice"][1] == 1 for r in rows)  # a plain commit writes one slice
    text = propagation_table(rows, "tiny")
    assert f"{len(rows)} nuclei" in text and "| in 3D (followed) |" in text


def test_authors_code_stand_ins_behave_like_torchvision(tmp_path):
    import torch
    from PIL import Image

    from recipes.bench.authors_code import _batched_nms, _resize, import_authors_package

    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]], dtype=torch.float32)
    scores = torch.tensor([0.5, 0.9, 0.8, 0.1])
    # one category: the 0.9 box suppresses its two overlapping neighbours; kept indexes by decreasing score
    assert _batched_nms(boxes, scores, torch.zeros(4), 0.7).tolist() == [1, 3]
    # categories apart: box 2 survives in its own category
    assert _batched_nms(boxes, scores, torch.tensor([0, 0, 1, 0]), 0.7).tolist() == [1, 2, 3]
    assert _resize(Image.new("RGB", (40, 20)), (10, 30)).size == (30, 10)  # (h, w) in, PIL's (w, h) out
    with pytest.raises(FileNotFoundError, match="not a checkout of the TinySAM repository"):
        import_authors_package(tmp_path)


def test_everything_threshold_sweep_tallies_every_pair_and_picks_the_best_f1(tiny_backend, scene_with_masks):
    from recipes.bench.everything_thresholds import Sweep, Tally, markdown, passing, sweep_scene
    from tinysam_annotate import SamHierarchicalMaskGenerator
    from tinysam_annotate.registry import EverythingThresholds

    image, masks = scene_with_masks
    generator = SamHierarchicalMaskGenerator(tiny_backend, points_per_side=8, pred_iou_thresh=0.0,
                                             stability_score_thresh=0.0, output_mode="coco_rle")
    pairs = [(0.0, 0.0), (0.0, 0.5), (0.5, 0.0)]
    sweep = Sweep()
    sweep_scene(generator, image, masks, pairs, sweep)
    sweep_scene(generator, image, masks, pairs, sweep)  # a second scene adds to the same tallies
    assert set(sweep.tallies) == set(pairs)
    assert all(t.objects == 2 * len(masks) for t in sweep.tallies.values())
    loosest = generator.generate(image)
    assert sweep.tallies[(0.0, 0.0)].predicted == 2 * len(loosest)
    candidates = generator.candidates(image)
    assert passing(candidates, 0.5, 0.0) == [c for c in candidates if c.iou > 0.5]

    made_up = Sweep()
    for _scene in range(10):  # the same counts in every scene: no spread, so the choice is the best pair
        for pair, tally in {(0.6, 0.9): Tally(8, 10, 20), (0.7, 0.9): Tally(8, 8, 20), (0.8, 0.9): Tally(7, 7, 20)}.items():
            made_up.add(pair, tally)
    assert made_up.tallies[(0.7, 0.9)] == Tally(80, 80, 200)
    assert made_up.tallies[(0.7, 0.9)].f1 == pytest.approx(2 * 1.0 * 0.4 / 1.4)
    assert made_up.best() == made_up.choice() == (0.7, 0.9) and made_up.difference_spread((0.7, 0.9), (0.6, 0.9)) < 1e-12
    report = markdown("tiny", 10, made_up, EverythingThresholds(0.7, 0.9), [])
    assert "**chosen: 0.7 / 0.9**" in report and "**0.571 (1.00 / 0.40)**" in report
    noisy = Sweep()
    for scene in range(10):  # (0.8, 0.9) is worse on the whole but better in half the scenes: within the noise
        noisy.add((0.7, 0.9), Tally(8, 8, 20) if scene % 2 else Tally(4, 8, 20))
        noisy.add((0.8, 0.9), Tally(4, 8, 20) if scene % 2 else Tally(7, 8, 20))
    assert noisy.best() == (0.7, 0.9) and noisy.choice() == (0.8, 0.9)
    assert Sweep.from_json(noisy.to_json()).per_scene == noisy.per_scene


def test_minimum_area_drops_only_masks_smaller_than_the_fraction(tiny_backend, scene_with_masks):
    from recipes.bench.everything_min_area import markdown, scene_tallies
    from tinysam_annotate import SamHierarchicalMaskGenerator

    image, masks = scene_with_masks
    generator = SamHierarchicalMaskGenerator(tiny_backend, points_per_side=8, pred_iou_thresh=0.0,
                                             stability_score_thresh=0.0, box_nms_thresh=1.0, mask_nms_thresh=None,
                                             output_mode="coco_rle")
    areas = sorted(r["area"] for r in generator.generate(image))
    assert len(areas) > 1
    between = (areas[0] + 0.5) / (image.shape[0] * image.shape[1])  # just above the smallest masks' area
    none, smallest_gone, all_gone = scene_tallies(generator, image, masks, [0.0, between, 1.01])
    assert (none.predicted, smallest_gone.predicted, all_gone.predicted) == (len(areas), len(areas) - areas.count(areas[0]), 0)
    assert none.objects == smallest_gone.objects == all_gone.objects == len(masks)
    assert all_gone.matches == 0 and smallest_gone.matches <= none.matches
    report = markdown("tiny", 1, (0.0, 0.0), [0.0, between, 1.01], [none, smallest_gone, all_gone])
    assert f"| 0 | {len(areas)} | {none.matches} |" in report
