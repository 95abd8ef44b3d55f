"""Mask utilities for everything mode: sparse exact upsampling, boxes, NMS, RLE (numpy + pycocotools).

Low-res logits are mapped to the original image by the composed bilinear matrices of
:mod:`tinysam_annotate.transforms`. Each output pixel is a convex combination of a few neighbouring
low-res logits, so a pixel can exceed a threshold only near low-res pixels that do; we therefore
upsample just the block around them. The result equals full upsampling exactly, at a cost that
follows the mask's extent instead of the image size, and no full-resolution float mask is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils

from ..transforms import upscale_matrices


@dataclass
class UpsampleFrame:
    """Composed upsampling matrices of one image and, per output row/column, its low-res support."""

    rows: np.ndarray  # H x L
    cols: np.ndarray  # W x L
    row_lo: np.ndarray  # H: first low-res row with non-zero weight
    row_hi: np.ndarray  # H: last low-res row with non-zero weight
    col_lo: np.ndarray
    col_hi: np.ndarray

    @classmethod
    def build(cls, low_res: int, padded: int, input_size: tuple[int, int], original_size: tuple[int, int]) -> "UpsampleFrame":
        rows, cols = upscale_matrices(low_res, padded, tuple(input_size), tuple(original_size))
        return cls(rows, cols, *_support(rows), *_support(cols))

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows.shape[0], self.cols.shape[0]

    def block(self, logits: np.ndarray, threshold: float) -> tuple[slice, slice, np.ndarray] | None:
        """Full-resolution logits of the smallest block outside which every pixel is <= threshold.

        logits: L x L low-res. Returns (row slice, col slice, block logits) or None when no pixel can
        exceed the threshold.
        """
        above = logits > threshold
        row_any = above.any(axis=1)
        if not row_any.any():
            return None
        col_any = above.any(axis=0)
        r0, r1 = np.flatnonzero(row_any)[[0, -1]]
        c0, c1 = np.flatnonzero(col_any)[[0, -1]]
        y0, y1 = _covering(self.row_lo, self.row_hi, r0, r1)
        x0, x1 = _covering(self.col_lo, self.col_hi, c0, c1)
        if y0 >= y1 or x0 >= x1:
            return None
        lr0, lr1 = self.row_lo[y0], self.row_hi[y1 - 1] + 1
        lc0, lc1 = self.col_lo[x0], self.col_hi[x1 - 1] + 1
        sub = self.rows[y0:y1, lr0:lr1] @ logits[lr0:lr1, lc0:lc1].astype(np.float32) @ self.cols[x0:x1, lc0:lc1].T
        return slice(y0, y1), slice(x0, x1), sub


def _support(mat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    nonzero = mat != 0
    lo = nonzero.argmax(axis=1)
    hi = mat.shape[1] - 1 - nonzero[:, ::-1].argmax(axis=1)
    return lo, hi


def _covering(lo: np.ndarray, hi: np.ndarray, a: int, b: int) -> tuple[int, int]:
    """Output index range [start, stop) whose support [lo, hi] meets the low-res range [a, b].

    lo and hi are non-decreasing along the output axis (bilinear resizing is monotone).
    """
    start = int(np.searchsorted(hi, a, side="left"))
    stop = int(np.searchsorted(lo, b, side="right"))
    return start, stop


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
    ious = box_iou_matrix(boxes[order])
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
