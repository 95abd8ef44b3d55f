"""Mask metrics and prompt placement shared by the benchmarks. Masks are H x W bool; points are (x, y)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from tinysam_annotate.mask_geometry import interior_point, iou, mask_box

__all__ = ["centroid_point", "interior_point", "iou", "mask_box", "match_ious", "match_masks", "next_click"]


def centroid_point(mask: np.ndarray) -> tuple[float, float]:
    """(x, y) of the mask's centroid, moved to the nearest mask pixel when the centroid falls outside."""
    rows, cols = np.nonzero(mask)
    cy, cx = rows.mean(), cols.mean()
    if mask[int(round(cy)), int(round(cx))]:
        return float(cx), float(cy)
    nearest = int(np.argmin((rows - cy) ** 2 + (cols - cx) ** 2))
    return float(cols[nearest]), float(rows[nearest])


def next_click(gt: np.ndarray, pred: np.ndarray) -> tuple[tuple[float, float], int] | None:
    """The corrective click of the click protocol: the point deepest inside the larger error region.

    False negatives give a positive click (label 1), false positives a negative one (label 0); None when
    the prediction is already perfect.
    """
    fn = np.pad(gt & ~pred, 1)
    fp = np.pad(pred & ~gt, 1)
    fn_dist = ndimage.distance_transform_edt(fn)[1:-1, 1:-1]
    fp_dist = ndimage.distance_transform_edt(fp)[1:-1, 1:-1]
    if fn_dist.max() == 0 and fp_dist.max() == 0:
        return None
    positive = fn_dist.max() >= fp_dist.max()
    dist = fn_dist if positive else fp_dist
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return (float(x), float(y)), int(positive)


def match_masks(predicted: list[np.ndarray], truth: list[np.ndarray], threshold: float = 0.5) -> tuple[int, float, float]:
    """Greedy one-to-one matching at IoU >= threshold: (matches, precision, recall)."""
    if not predicted or not truth:
        return 0, 0.0 if predicted else 1.0, 0.0 if truth else 1.0
    return match_ious(np.array([[iou(p, t) for t in truth] for p in predicted]), threshold)


def match_ious(ious: np.ndarray, threshold: float = 0.5) -> tuple[int, float, float]:
    """:func:`match_masks` on a precomputed predicted x truth IoU matrix: (matches, precision, recall)."""
    n_predicted, n_truth = ious.shape
    if not n_predicted or not n_truth:
        return 0, 0.0 if n_predicted else 1.0, 0.0 if n_truth else 1.0
    matches, used_p, used_t = 0, set(), set()
    for flat in np.argsort(-ious, axis=None):
        i, j = np.unravel_index(flat, ious.shape)
        if ious[i, j] < threshold:
            break
        if i in used_p or j in used_t:
            continue
        used_p.add(i)
        used_t.add(j)
        matches += 1
    return matches, matches / n_predicted, matches / n_truth
