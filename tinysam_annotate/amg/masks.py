"""Mask utilities for everything mode: boxes, stability, NMS, RLE (numpy + pycocotools).

Upsampling uses :class:`tinysam_annotate.transforms.UpsampleFrame`, which upsamples only the block
around a mask's extent (exactly), so no full-resolution float mask is kept per candidate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils


@dataclass
class Candidate:
    """One mask that survived filtering, stored compactly (RLE, no full mask)."""

    rle: dict  # pycocotools RLE with bytes counts
    box: np.ndarray  # x0, y0, x1, y1 (inclusive pixel indexes, as SAM's batched_mask_to_box)
    area: int
    iou: float
    stability: float
    point: np.ndarray  # (x, y) prompt in original-image pixels


def stability_from_block(block: np.ndarray, mask_threshold: float, offset: float) -> float:
    """SAM's stability score: |logits > t + offset| / |logits > t - offset|.

    An empty mask scores 0.0 (SAM's 0/0 gives NaN, which fails every threshold; 0.0 does too and is JSON-safe).
    """
    unions = int(np.count_nonzero(block > mask_threshold - offset))
    intersections = int(np.count_nonzero(block > mask_threshold + offset))
    return intersections / unions if unions else 0.0


def low_res_stability(logits: np.ndarray, mask_threshold: float, offset: float) -> np.ndarray:
    """Stability scores of N x L x L low-res logits (a cheap estimate of the full-resolution score)."""
    flat = logits.reshape(logits.shape[0], -1)
    unions = np.count_nonzero(flat > mask_threshold - offset, axis=1)
    intersections = np.count_nonzero(flat > mask_threshold + offset, axis=1)
    return np.where(unions > 0, intersections / np.maximum(unions, 1), 0.0)


def mask_box(mask: np.ndarray) -> np.ndarray:
    """x0, y0, x1, y1 of a boolean mask with inclusive max indexes; zeros for an empty mask (as SAM)."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return np.zeros(4, dtype=np.float64)
    cols = np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.float64)


def encode_rle(mask: np.ndarray) -> dict:
    """pycocotools RLE of an H x W boolean mask."""
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))


def box_iou_matrix(boxes: np.ndarray) -> np.ndarray:
    """Pairwise IoU of N x 4 XYXY boxes, with torchvision's area convention (x1 - x0) * (y1 - y0)."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    lt = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
    rb = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area[:, None] + area[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; indexes of kept boxes by decreasing score (torchvision's rule)."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    return _greedy_keep(order, box_iou_matrix(boxes[order]), iou_threshold)


def mask_nms(rles: list[dict], scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS by mask IoU over pycocotools RLEs: indexes of kept masks by decreasing score.

    Box NMS misses near-duplicates whose boxes differ (a few stray pixels make one box huge); this compares
    the masks themselves.
    """
    if not rles:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    ordered = [rles[i] for i in order]
    ious = np.asarray(mask_utils.iou(ordered, ordered, [0] * len(ordered)), dtype=np.float64).reshape(len(order), len(order))
    return _greedy_keep(order, ious, iou_threshold)


def _greedy_keep(order: np.ndarray, ious: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Walk ``order`` (best first; ``ious`` pairwise in that order), keeping each item no kept one overlaps."""
    suppressed = np.zeros(len(order), dtype=bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(order[i])
        suppressed |= ious[i] > iou_threshold
    return np.asarray(keep, dtype=np.int64)


def is_box_near_crop_edge(box: np.ndarray, crop_box: list[int], orig_box: list[int], atol: float = 20.0) -> bool:
    """True when an (uncropped) box touches a crop edge that is not also an image edge."""
    crop = np.asarray(crop_box, dtype=np.float64)
    orig = np.asarray(orig_box, dtype=np.float64)
    near_crop = np.isclose(box, crop, atol=atol, rtol=0)
    near_image = np.isclose(box, orig, atol=atol, rtol=0)
    return bool(np.any(near_crop & ~near_image))
