"""Clean interactive masks: keep the parts the prompts point at, fill small holes (SAM's remove_small_regions idea).

A model's raw mask can come back in pieces far from the prompt (stray blobs elsewhere in the picture,
speckles around the object). :func:`clean_mask` keeps only the 8-connected parts that

* contain a positive point, or
* lie mostly (at least half of their pixels) inside the box prompt and are not specks (at least
  ``min_part_fraction`` of the largest such part),

and then fills holes smaller than ``max_hole_fraction`` of the kept area (or ``max_hole_area`` pixels). When
no part qualifies (a click just off the mask) the part nearest to a positive point, else the largest part
overlapping the box, is kept, so a non-empty mask never becomes empty. The SAM-compatible predictor
returns raw masks; the session (app, plugin) and the CLI's ``segment`` clean them by default.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.measure import label as label_parts


@dataclass(frozen=True)
class MaskCleanup:
    """Settings of :func:`clean_mask`; the defaults are what the app, the plugin and the CLI use."""

    min_part_fraction: float = 0.1  # box-only parts smaller than this share of the largest one are specks
    max_hole_fraction: float = 0.1  # holes below this share of the kept area are filled ...
    max_hole_area: int | None = None  # ... or, when set, holes below this many pixels


def clean_mask(
    mask: np.ndarray,
    points: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    box: np.ndarray | None = None,
    settings: MaskCleanup = MaskCleanup(),  # noqa: B008 (frozen dataclass: an immutable default)
) -> np.ndarray:
    """The H x W bool ``mask`` without the parts its prompts do not point at, small holes filled.

    points: N x 2 (x, y) pixels with ``labels`` N (1 positive, 0 negative); box: (x0, y0, x1, y1) pixels.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"clean_mask takes one H x W mask, got shape {mask.shape}")
    parts, count = label_parts(mask, connectivity=2, return_num=True)
    if count == 0:
        return mask.copy()
    keep = _parts_at_points(parts, points, labels) | _parts_in_box(parts, count, box, settings.min_part_fraction)
    if not keep:
        keep = _fallback_part(parts, count, points, labels, box)
    kept = np.isin(parts, sorted(keep))
    hole_area = settings.max_hole_area if settings.max_hole_area is not None else settings.max_hole_fraction * kept.sum()
    if hole_area > 0:
        kept, _ = remove_small_regions(kept, hole_area, "holes")
    return kept


def remove_small_regions(mask: np.ndarray, area_thresh: float, mode: str) -> tuple[np.ndarray, bool]:
    """Fill holes ("holes") or drop islands ("islands") smaller than ``area_thresh`` pixels (8-connected).

    Returns the new mask and whether it changed. When every island is small the largest one is kept.
    """
    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    holes = mode == "holes"
    working = np.logical_xor(holes, mask)
    regions, n = label_parts(working, connectivity=2, return_num=True)
    sizes = np.bincount(regions.ravel(), minlength=n + 1)[1:]
    small = [i + 1 for i, size in enumerate(sizes) if size < area_thresh]
    if not small:
        return mask, False
    fill = [0] + small
    if not holes:
        fill = [i for i in range(1, n + 1) if i not in fill] or [int(np.argmax(sizes)) + 1]
    return np.isin(regions, fill), True


def count_parts(mask: np.ndarray) -> int:
    """Number of 8-connected parts of an H x W bool mask."""
    return int(label_parts(np.asarray(mask, dtype=bool), connectivity=2, return_num=True)[1])


def _positive_pixels(parts: np.ndarray, points: np.ndarray | None, labels: np.ndarray | None) -> list[tuple[int, int]]:
    if points is None or len(points) == 0:
        return []
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    labels = np.ones(len(points), dtype=np.int64) if labels is None else np.asarray(labels).reshape(-1)
    h, w = parts.shape
    return [(min(max(int(y), 0), h - 1), min(max(int(x), 0), w - 1))
            for (x, y), label in zip(points, labels, strict=True) if label == 1]


def _parts_at_points(parts: np.ndarray, points: np.ndarray | None, labels: np.ndarray | None) -> set[int]:
    return {int(parts[row, col]) for row, col in _positive_pixels(parts, points, labels)} - {0}


def _box_slices(shape: tuple[int, ...], box: np.ndarray) -> tuple[slice, slice]:
    x0, y0, x1, y1 = (float(v) for v in np.asarray(box).reshape(4))
    h, w = shape
    return (slice(max(int(np.floor(y0)), 0), min(int(np.ceil(y1)) + 1, h)),
            slice(max(int(np.floor(x0)), 0), min(int(np.ceil(x1)) + 1, w)))


def _parts_in_box(parts: np.ndarray, count: int, box: np.ndarray | None, min_fraction: float) -> set[int]:
    if box is None:
        return set()
    total = np.bincount(parts.ravel(), minlength=count + 1)
    inside = np.bincount(parts[_box_slices(parts.shape, box)].ravel(), minlength=count + 1)
    mostly_inside = [i for i in range(1, count + 1) if inside[i] * 2 >= total[i]]
    if not mostly_inside:
        return set()
    largest = max(total[i] for i in mostly_inside)
    return {i for i in mostly_inside if total[i] >= min_fraction * largest}


def _fallback_part(parts: np.ndarray, count: int, points: np.ndarray | None, labels: np.ndarray | None,
                   box: np.ndarray | None) -> set[int]:
    """The part nearest to a positive point; else the largest part overlapping the box; else the largest."""
    pixels = _positive_pixels(parts, points, labels)
    if pixels:
        seeds = np.ones(parts.shape, dtype=bool)
        for row, col in pixels:
            seeds[row, col] = False
        distance = ndimage.distance_transform_edt(seeds)  # to the nearest positive point
        distance[parts == 0] = np.inf
        return {int(parts.flat[int(np.argmin(distance))])}
    if box is not None:
        inside = np.bincount(parts[_box_slices(parts.shape, box)].ravel(), minlength=count + 1)
        inside[0] = 0
        if inside.any():
            return {int(np.argmax(inside))}
    sizes = np.bincount(parts.ravel(), minlength=count + 1)
    sizes[0] = 0
    return {int(np.argmax(sizes))}
