"""Small facts about H x W boolean masks that prompts and metrics are made of: overlap, the most interior pixel,
the bounding box. All coordinates (x, y)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def interior_point(mask: np.ndarray) -> tuple[float, float]:
    """(x, y) of the pixel farthest from the mask's boundary: the usual first click of click benchmarks."""
    dist = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return float(x), float(y)


def mask_box(mask: np.ndarray) -> np.ndarray:
    """(x0, y0, x1, y1) around a boolean mask, in SAM's pixel-corner convention (x1, y1 exclusive)."""
    rows, cols = np.nonzero(mask)
    return np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], dtype=np.float32)
