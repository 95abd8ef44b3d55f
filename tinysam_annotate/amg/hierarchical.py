"""SamHierarchicalMaskGenerator: TinySAM's two-round "segment everything".

Round 1 prompts a sparse grid (points_per_side / 4 per side). The union of the kept masks' pixels
whose logits exceed ``high_score_thresh`` (8.5) is taken as done. Round 2 prompts the dense points
around each sparse point that fall outside that union. Both rounds' masks are merged and NMS'd.
The dense points are the reference implementation's lattice (:func:`dense_points_around`), not the
dense grid of grid mode: the two lattices are half a cell apart, and other points find slightly
different masks for the same objects (on coins with the same weights in torch FP32, the authors' masks
are matched with a mean best IoU of 0.78 from the dense grid, 0.94 from their lattice; see
``recipes/bench/everything_vs_authors.py``).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..io.image import as_model_view
from .generator import ProgressCallback, SamAutomaticMaskGenerator, _Progress
from .grids import build_point_grid
from .masks import Candidate, nms

SPARSE_FACTOR = 4


class SamHierarchicalMaskGenerator(SamAutomaticMaskGenerator):
    """TinySAM's hierarchical strategy on top of SAM's generator (same filters and output dicts)."""

    points_per_side: int  # always given: the dense side of round 2 (the sparse round uses a quarter of it)

    def __init__(self, model: Any, points_per_side: int = 32, high_score_thresh: float = 8.5,
                 attend_to_padding: bool = False, **kwargs: Any) -> None:
        """SAM's generator's options (see :class:`SamAutomaticMaskGenerator`), here with ``attend_to_padding`` off by
        default: TinySAM's fast mode decodes only where the image is (measured against the authors' generator in
        ``recipes/results/everything.md``)."""
        if kwargs.get("crop_n_layers", 0):
            raise ValueError("hierarchical everything mode works on the whole image (crop_n_layers=0)")
        if points_per_side < SPARSE_FACTOR:
            raise ValueError(f"points_per_side must be >= {SPARSE_FACTOR} for the hierarchical strategy")
        super().__init__(model, points_per_side=points_per_side, attend_to_padding=attend_to_padding, **kwargs)
        self.high_score_thresh = high_score_thresh
        self.last_round_sizes: tuple[int, int] = (0, 0)
        self._image_box = [0, 0, 0, 0]  # the last image's x0, y0, x1, y1, the crop box of its masks

    def generate(
        self,
        image: np.ndarray,
        progress: ProgressCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[dict[str, Any]]:
        """Masks for an H x W x 3 uint8 image (SAM's annotation dicts); see the module docstring."""
        return self.merge(self.candidates(image, progress, should_stop))

    def candidates(
        self,
        image: np.ndarray,
        progress: ProgressCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[Candidate]:
        """Both rounds' masks that pass the filters, before duplicates are removed (:meth:`merge` does that).

        A recipe that tunes the thresholds takes them once at low thresholds and filters afterwards.
        """
        image = as_model_view(image)
        h, w = image.shape[:2]
        whole = [0, 0, w, h]
        self.predictor.set_image(image)
        scale = np.array([w, h], dtype=np.float64)
        sparse = build_point_grid(self.points_per_side // SPARSE_FACTOR) * scale
        # The total is not known before round 1 ends; report against every dense point as the worst case.
        tracker = _Progress(len(sparse) + len(dense_points_around(sparse, None, (h, w), self.points_per_side)),
                            progress, should_stop)
        with self._batches_of_one_image():
            first, done = self.prompt_points(sparse, whole, (h, w), tracker, high_score_thresh=self.high_score_thresh)
            assert done is not None
            remaining = dense_points_around(sparse, done, (h, w), self.points_per_side)
            tracker.total = len(sparse) + len(remaining)
            second, _ = self.prompt_points(remaining, whole, (h, w), tracker)
        self.last_round_sizes = (len(sparse), len(remaining))
        self._image_box = whole
        return first + second

    def merge(self, candidates: list[Candidate]) -> list[dict[str, Any]]:
        """SAM's annotation dicts of :meth:`candidates`' masks (of the last image): box NMS, then the optional
        small-region clean-up and the mask-IoU duplicate removal."""
        if candidates:
            keep = nms(np.stack([c.box for c in candidates]), np.array([c.iou for c in candidates]), self.box_nms_thresh)
            candidates = [candidates[i] for i in keep]
        return self._finalize(candidates, [self._image_box] * len(candidates))


def dense_points_around(sparse: np.ndarray, done: np.ndarray | None, image_size: tuple[int, int],
                        points_per_side: int) -> np.ndarray:
    """Round 2's prompts: around each sparse (x, y) point, the points at offsets of -1, 0, 1 and 2 dense strides
    (``W // points_per_side``, ``H // points_per_side``) in x and y, the point itself excluded, those at +2 only
    while inside the image, and none whose pixel ``done[int(y), int(x)]`` is set (``done``: H x W bool, or None).

    This is the reference implementation's lattice: it tiles the image with 4 x 4 blocks of points
    around the sparse grid's points. Returns an N x 2 float array of (x, y) pixels.
    """
    h, w = image_size
    x_stride, y_stride = w // points_per_side, h // points_per_side
    points = []
    for px, py in sparse:
        for dx in (-1, 0, 1, 2):
            if dx == 2 and not px + 2 * x_stride < w:
                continue
            for dy in (-1, 0, 1, 2):
                if (dx, dy) == (0, 0) or (dy == 2 and not py + 2 * y_stride < h):
                    continue
                x, y = px + dx * x_stride, py + dy * y_stride
                if done is None or not done[int(y), int(x)]:
                    points.append((x, y))
    return np.array(points, dtype=np.float64).reshape(-1, 2)
