"""Prompted segmentation benchmarks: one point, one box, and the points-valid-mask click curve (1..9 clicks)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from tinysam_annotate.predictor import SamPredictor

from .metrics import centroid_point, interior_point, iou, mask_box, next_click


@dataclass
class PromptScores:
    """Per-object IoUs of each prompt kind; ``clicks[k]`` holds the IoUs after k + 1 clicks.

    ``box_outside`` is the fraction of each box-prompt mask that lies outside its box; ``predicted`` and
    ``true`` pair the chosen output's predicted IoU with its measured IoU (point and box prompts).
    """

    point: list[float] = field(default_factory=list)
    box: list[float] = field(default_factory=list)
    clicks: list[list[float]] = field(default_factory=list)
    box_outside: list[float] = field(default_factory=list)
    predicted: list[float] = field(default_factory=list)
    true: list[float] = field(default_factory=list)

    def miou(self, kind: str) -> float:
        values = getattr(self, kind)
        return float(np.mean(values)) if values else float("nan")

    def median_box_outside(self) -> float:
        return float(np.median(self.box_outside)) if self.box_outside else float("nan")

    def iou_correlation(self) -> float:
        """Pearson r between predicted and true IoU of the chosen outputs (nan with fewer than 3 or no spread)."""
        if len(self.true) < 3 or np.std(self.true) == 0 or np.std(self.predicted) == 0:
            return float("nan")
        return float(np.corrcoef(self.predicted, self.true)[0, 1])

    def click_curve(self) -> list[float]:
        return [float(np.mean(v)) for v in self.clicks]


def best_of(masks: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The mask with the highest predicted IoU (TinySAM's three outputs)."""
    return masks[int(np.argmax(scores))]


def outside_fraction(mask: np.ndarray, box: np.ndarray) -> float:
    """Share of the mask's pixels outside the (x0, y0, x1, y1) box (pixel corners, x1/y1 exclusive); 0 if empty."""
    total = int(mask.sum())
    if not total:
        return 0.0
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    inside = int(mask[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)].sum())
    return (total - inside) / total


def evaluate_prompts(
    predictor: SamPredictor,
    image: np.ndarray,
    objects: Iterable[np.ndarray],
    scores: PromptScores,
    point_rule: str = "interior",
    max_clicks: int = 0,
) -> None:
    """Add the IoUs of one image's objects to ``scores``: one point, one tight box, and ``max_clicks`` clicks.

    ``point_rule`` is ``interior`` (deepest pixel) or ``centroid``; the click curve starts at the deepest
    pixel and adds the deepest point of the larger error region, feeding back the previous logits.
    """
    predictor.set_image(image)
    place = centroid_point if point_rule == "centroid" else interior_point
    for gt in objects:
        x, y = place(gt)
        masks, ious, _ = predictor.predict(np.array([[x, y]]), np.array([1]))
        scores.point.append(iou(best_of(masks, ious), gt))
        scores.predicted.append(float(ious.max()))
        scores.true.append(scores.point[-1])
        box = mask_box(gt)
        masks, ious, _ = predictor.predict(box=box)
        chosen = best_of(masks, ious)
        scores.box.append(iou(chosen, gt))
        scores.box_outside.append(outside_fraction(chosen, box))
        scores.predicted.append(float(ious.max()))
        scores.true.append(scores.box[-1])
        if max_clicks:
            for k, value in enumerate(click_series(predictor, gt, max_clicks)):
                while len(scores.clicks) <= k:
                    scores.clicks.append([])
                scores.clicks[k].append(value)


def click_series(predictor: SamPredictor, gt: np.ndarray, max_clicks: int) -> list[float]:
    """IoU after 1..max_clicks clicks on one object (a perfect mask keeps its IoU for the remaining clicks)."""
    points, labels, logits, result = [interior_point(gt)], [1], None, []
    for _ in range(max_clicks):
        masks, ious, low_res = predictor.predict(
            np.array(points), np.array(labels), mask_input=None if logits is None else logits[None]
        )
        best = int(np.argmax(ious))
        pred, logits = masks[best], low_res[best]
        result.append(iou(pred, gt))
        click = next_click(gt, pred)
        if click is None:
            result.extend([result[-1]] * (max_clicks - len(result)))
            break
        points.append(click[0])
        labels.append(click[1])
    return result
