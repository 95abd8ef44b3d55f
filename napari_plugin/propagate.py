"""Following one object through a stack: from its mask on one plane to its masks on the neighbouring planes.

Each next plane is prompted with the previous plane's mask: its bounding box (a little larger, objects grow and
shrink between slices) and a positive point at its most interior pixel. The walk stops in each direction when the
model is unsure (predicted IoU), when the new mask hardly overlaps the previous one (the object ended and the model
found a neighbour), when the mask is tiny, or at the end of the stack. Qt-free; the annotator supplies ``segment``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from tinysam_annotate.mask_geometry import interior_point, iou, mask_box

PlaneKey = tuple[int, ...]
Box = tuple[float, float, float, float]
# segment(plane key, box (x0, y0, x1, y1), point (x, y)) -> (H x W bool mask, predicted IoU)
Segment = Callable[[PlaneKey, Box, tuple[float, float]], tuple[np.ndarray, float]]


@dataclass(frozen=True)
class PropagationLimits:
    """When following an object stops (per direction)."""

    min_score: float = 0.5  # predicted IoU of the new mask
    min_overlap: float = 0.25  # IoU of the new mask with the previous plane's
    min_area: int = 10  # pixels
    box_margin: float = 0.1  # the previous mask's box grows by this fraction of its size on each side


DEFAULT_LIMITS = PropagationLimits()


def prompt_from_mask(mask: np.ndarray, margin: float = 0.1) -> tuple[Box, tuple[float, float]]:
    """The box (x0, y0, x1, y1) of an H x W bool mask grown by ``margin`` of its size and clipped to the plane,
    and its most interior (x, y) pixel."""
    x0, y0, x1, y1 = (float(v) for v in mask_box(mask))
    dx, dy = margin * (x1 - x0), margin * (y1 - y0)
    h, w = mask.shape
    return (max(0.0, x0 - dx), max(0.0, y0 - dy), min(w - 1.0, x1 + dx), min(h - 1.0, y1 + dy)), interior_point(mask)


def follow_object(start: PlaneKey, mask: np.ndarray, planes: int, segment: Segment,
                  limits: PropagationLimits = DEFAULT_LIMITS,
                  should_stop: Callable[[], bool] | None = None) -> dict[PlaneKey, np.ndarray]:
    """Masks of the object whose mask on plane ``start`` is ``mask``, along the last axis of the plane keys
    (``planes`` long), both ways; ``start`` itself included. Stops as described in the module docstring."""
    found = {start: mask}
    for step in (-1, 1):
        previous, index = mask, start[-1] + step
        while 0 <= index < planes and previous.any():
            if should_stop is not None and should_stop():
                return found
            key = (*start[:-1], index)
            box, point = prompt_from_mask(previous, limits.box_margin)
            candidate, score = segment(key, box, point)
            candidate = np.asarray(candidate, bool)
            if (score < limits.min_score or np.count_nonzero(candidate) < limits.min_area
                    or iou(candidate, previous) < limits.min_overlap):
                break
            found[key] = candidate
            previous, index = candidate, index + step
    return found
