"""Overlapping tiles for images too large for one 1024-pixel embedding, and merging across tile borders.

Boxes are (x0, y0, x1, y1) in plane pixels, x1/y1 exclusive. Masks are bool arrays in (row, col) order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinysam_annotate.errors import PromptError

Box = tuple[int, int, int, int]


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


@dataclass(frozen=True)
class TileGrid:
    """Tiles of ``tile`` x ``tile`` pixels overlapping by ``overlap`` over a ``height`` x ``width`` plane.

    A plane no larger than one tile is a single tile covering it. The overlap should exceed the
    largest object, so that every object lies whole inside at least one tile.
    """

    height: int
    width: int
    tile: int = 1024
    overlap: int = 256

    def __post_init__(self) -> None:
        if self.tile < 16:
            raise ValueError(f"tile size must be at least 16 pixels, got {self.tile}")
        if not 0 <= self.overlap < self.tile:
            raise ValueError(f"tile overlap must be in [0, {self.tile}), got {self.overlap}")

    @property
    def boxes(self) -> list[Box]:
        ys = _starts(self.height, self.tile, self.overlap)
        xs = _starts(self.width, self.tile, self.overlap)
        return [(x, y, min(x + self.tile, self.width), min(y + self.tile, self.height)) for y in ys for x in xs]

    def __len__(self) -> int:
        return len(self.boxes)

    def neighbours(self, tile: Box) -> list[Box]:
        """The up to 8 tiles around ``tile`` in the grid (sides and corners), nearest centre first."""
        xs = _starts(self.width, self.tile, self.overlap)
        ys = _starts(self.height, self.tile, self.overlap)
        if tile[0] not in xs or tile[1] not in ys:
            raise ValueError(f"{tile} is not a tile of this grid")
        col, row = xs.index(tile[0]), ys.index(tile[1])
        around = [(c, r) for r in range(row - 1, row + 2) for c in range(col - 1, col + 2)
                  if (c, r) != (col, row) and 0 <= c < len(xs) and 0 <= r < len(ys)]
        by_start = {(b[0], b[1]): b for b in self.boxes}
        found = [by_start[(xs[c], ys[r])] for c, r in around]
        centre = ((tile[0] + tile[2]) / 2, (tile[1] + tile[3]) / 2)
        return sorted(found, key=lambda b: ((b[0] + b[2]) / 2 - centre[0]) ** 2 + ((b[1] + b[3]) / 2 - centre[1]) ** 2)

    def _margin(self, box: Box, x0: float, y0: float, x1: float, y1: float) -> float:
        """How far the region (x0, y0, x1, y1) stays from the tile's inner edges (image borders don't count)."""
        left = x0 - box[0] if box[0] > 0 else np.inf
        top = y0 - box[1] if box[1] > 0 else np.inf
        right = box[2] - x1 if box[2] < self.width else np.inf
        bottom = box[3] - y1 if box[3] < self.height else np.inf
        return float(min(left, top, right, bottom))

    def tile_for(self, x0: float, y0: float, x1: float | None = None, y1: float | None = None) -> Box:
        """The tile holding the point (x0, y0) or the box (x0, y0, x1, y1) farthest from its inner edges."""
        x1 = x0 if x1 is None else x1
        y1 = y0 if y1 is None else y1
        inside = [b for b in self.boxes if b[0] <= x0 and b[1] <= y0 and x1 <= b[2] and y1 <= b[3]]
        if not inside:
            raise PromptError(
                f"the prompt region ({x0:.0f}, {y0:.0f})-({x1:.0f}, {y1:.0f}) does not fit in one "
                f"{self.tile}-pixel tile; use a larger tile size or a smaller box")
        return max(inside, key=lambda b: self._margin(b, x0, y0, x1, y1))


def paste_merged(labels: np.ndarray, tile: Box, masks: list[np.ndarray], next_id: int,
                 min_shared: float = 0.5) -> tuple[list[int], int]:
    """Write one tile's masks into the plane's ``labels`` (H x W ints), merging with objects already there.

    A mask whose already-labelled pixels are mostly (``min_shared``) one existing object continues that
    object (it was cut by an earlier tile's border); otherwise it becomes object ``next_id``, ``next_id + 1``...
    Only unlabelled pixels are written, so earlier objects are never overwritten. Returns the ids written
    (new and continued) and the next free id.
    """
    x0, y0, x1, y1 = tile
    window = labels[y0:y1, x0:x1]
    written: list[int] = []
    for mask in masks:
        if mask.shape != window.shape:
            raise ValueError(f"mask of shape {mask.shape} does not fit tile {tile}")
        under = window[mask]
        labelled = under[under > 0]
        target = next_id
        if labelled.size:
            ids, counts = np.unique(labelled, return_counts=True)
            best = int(np.argmax(counts))
            if counts[best] >= min_shared * labelled.size and counts[best] >= min_shared * min(mask.sum(), (window == ids[best]).sum()):
                target = int(ids[best])
        free = mask & (window == 0)
        if not free.any() and target == next_id:
            continue  # wholly covered by earlier objects
        window[free] = target
        if target == next_id:
            next_id += 1
        written.append(target)
    return written, next_id


def filter_areas(labels: np.ndarray, ids: list[int], min_area: int = 0, max_area: int | None = None) -> list[int]:
    """Erase the objects among ``ids`` whose pixel count is outside [min_area, max_area]; return the kept ids."""
    if not ids:
        return []
    unique = np.unique(np.asarray(ids))
    counts = np.bincount(labels.ravel(), minlength=int(unique.max()) + 1)[unique]
    too_small = counts < min_area
    too_big = counts > max_area if max_area else np.zeros_like(too_small)
    drop = unique[too_small | too_big]
    if drop.size:
        labels[np.isin(labels, drop)] = 0
    return [int(i) for i in unique if i not in set(drop.tolist())]
