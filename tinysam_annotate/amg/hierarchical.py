"""SamHierarchicalMaskGenerator: TinySAM's two-round "segment everything".

Round 1 prompts a sparse grid (points_per_side / 4 per side). The union of the kept masks' pixels
whose logits exceed ``high_score_thresh`` (8.5) is taken as done. Round 2 prompts only the points of
the dense points_per_side grid that fall outside that union. Both rounds' masks are merged and NMS'd.
This follows the paper's idea directly: the dense grid's own points are tested against the union
(the reference code walks offsets around each sparse point and wraps at the image border).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..io.image import as_model_view
from .generator import ProgressCallback, SamAutomaticMaskGenerator, _Progress
from .grids import build_point_grid
from .masks import nms

SPARSE_FACTOR = 4


class SamHierarchicalMaskGenerator(SamAutomaticMaskGenerator):
    """TinySAM's hierarchical strategy on top of SAM's generator (same filters and output dicts)."""

    def __init__(self, model: Any, points_per_side: int = 32, high_score_thresh: float = 8.5, **kwargs: Any) -> None:
        if kwargs.get("crop_n_layers", 0):
            raise ValueError("hierarchical everything mode works on the whole image (crop_n_layers=0)")
        if points_per_side < SPARSE_FACTOR:
            raise ValueError(f"points_per_side must be >= {SPARSE_FACTOR} for the hierarchical strategy")
        super().__init__(model, points_per_side=points_per_side, **kwargs)
        self.high_score_thresh = high_score_thresh
        self.last_round_sizes: tuple[int, int] = (0, 0)

    def generate(
        self,
        image: np.ndarray,
        progress: ProgressCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[dict[str, Any]]:
        """Masks for an H x W x 3 uint8 image (SAM's annotation dicts); see the module docstring."""
        image = as_model_view(image)
        self._sized_for_image = False
        h, w = image.shape[:2]
        whole = [0, 0, w, h]
        self.predictor.set_image(image)
        scale = np.array([w, h], dtype=np.float64)
        sparse = build_point_grid(self.points_per_side // SPARSE_FACTOR) * scale
        dense = build_point_grid(self.points_per_side) * scale
        # The total is not known before round 1 ends; report against the dense grid as the worst case.
        tracker = _Progress(len(sparse) + len(dense), progress, should_stop)
        first, done = self.prompt_points(sparse, whole, (h, w), tracker, high_score_thresh=self.high_score_thresh)
        assert done is not None
        cols = np.clip(dense[:, 0].astype(np.int64), 0, w - 1)
        rows = np.clip(dense[:, 1].astype(np.int64), 0, h - 1)
        remaining = dense[~done[rows, cols]]
        tracker.total = len(sparse) + len(remaining)
        second, _ = self.prompt_points(remaining, whole, (h, w), tracker)
        self.last_round_sizes = (len(sparse), len(remaining))
        candidates = first + second
        if candidates:
            keep = nms(np.stack([c.box for c in candidates]), np.array([c.iou for c in candidates]), self.box_nms_thresh)
            candidates = [candidates[i] for i in keep]
        return self._finalize(candidates, [whole] * len(candidates))
