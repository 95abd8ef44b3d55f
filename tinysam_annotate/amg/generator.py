"""SamAutomaticMaskGenerator: SAM's grid "segment everything", fast on CPU.

Same semantics and output dicts as segment-anything's generator. Faster because: prompts run in
batches through the backend's batched decoder, several batches at once where the engine runs best so; the
IoU threshold and a low-res stability estimate drop most candidates before any upsampling; survivors are
upsampled only around their extent (exactly, see :mod:`.masks`) and kept as RLE; the embedding is computed once
per image (and cached).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import numpy as np
from pycocotools import mask as mask_utils

from ..backends.base import LowResExtent, ScoresFirst, concurrent_batches, score_prompts
from ..cleanup import remove_small_regions
from ..errors import TinySamAnnotateError
from ..io.coco import decode_rle
from ..io.image import as_model_view
from ..predictor import SamPredictor
from ..prompts import to_decoder_inputs
from ..registry import tuned_everything_thresholds
from ..transforms import UpsampleFrame
from .grids import build_all_layer_point_grids, generate_crop_boxes
from .masks import (
    Candidate,
    encode_rle,
    is_box_near_crop_edge,
    low_res_stability,
    mask_box,
    mask_nms,
    nms,
    stability_from_block,
)
from .memory import DEFAULT_MEMORY_BUDGET, batch_for_engine, note_kept_memory
from .ordered_pool import map_in_order
from .postprocess import OUTPUT_MODES, encode_output

# Low-res stability runs a little below the exact full-resolution score; candidates this far under
# the threshold are still upsampled and judged exactly.
LOW_RES_STABILITY_MARGIN = 0.1
# No two returned masks overlap more than this (mask IoU) unless the caller turns deduplication off.
DEFAULT_MASK_NMS_THRESH = 0.7

ProgressCallback = Callable[[int, int], None]


class GenerationCancelled(TinySamAnnotateError):
    """Everything mode was stopped by its ``should_stop`` callback."""


class SamAutomaticMaskGenerator:
    """Prompt a grid of points over the image and keep the good, distinct masks (SAM's AMG)."""

    def __init__(
        self,
        model: Any,
        points_per_side: int | None = 32,
        points_per_batch: int | None = None,
        pred_iou_thresh: float | None = None,
        stability_score_thresh: float | None = None,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: list[np.ndarray] | None = None,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
        mask_nms_thresh: float | None = DEFAULT_MASK_NMS_THRESH,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        attend_to_padding: bool = True,
    ) -> None:
        """SAM's generator options, plus:

        pred_iou_thresh / stability_score_thresh: None takes the ones the model's weights were tuned for
        (the registry entry of a registered model, found by name or checksum; SAM's 0.88 / 0.95 otherwise).
        mask_nms_thresh: after box NMS, drop masks whose mask IoU with a better-scored kept mask exceeds it
        (None: off, SAM's exact pipeline).
        points_per_batch: prompts per decoder call; None (default) sizes it when an image starts so that the
        process stays within ``memory_budget`` bytes (see :mod:`.memory`). Engines that run several batches at once
        (ONNX Runtime on CPU: one per core) share the budget's prompts out among them; the masks are the same.
        attend_to_padding: True (SAM's pipeline) decodes every prompt over the whole square frame; False only over
        the feature pixels the image covers (a 4:3 image: 51 of the frame's 64 rows), which scores prompts ~1.3x
        faster on such images and changes their predicted IoUs slightly (engines that cannot: the whole frame,
        see :meth:`ScoresFirst.score_prompts`). Square images are the same either way.
        """
        if point_grids is None:
            if points_per_side is None:
                raise ValueError("give exactly one of points_per_side and point_grids")
            point_grids = build_all_layer_point_grids(points_per_side, crop_n_layers, crop_n_points_downscale_factor)
        elif points_per_side is not None:
            raise ValueError("give exactly one of points_per_side and point_grids")
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"output_mode must be one of {OUTPUT_MODES}, got {output_mode!r}")
        if points_per_batch is not None and points_per_batch < 1:
            raise ValueError("points_per_batch must be >= 1")
        self.predictor = model if isinstance(model, SamPredictor) else SamPredictor(model)
        self.points_per_side = points_per_side
        self.point_grids = point_grids
        self.points_per_batch = points_per_batch
        self.memory_budget = memory_budget
        self.last_batch_size = points_per_batch or 0  # the batch the last image ran with
        self._resident_before_batches: int | None = None  # measured when the image's batch was sized
        if pred_iou_thresh is None or stability_score_thresh is None:  # the registry lookup may read a manifest
            identity = self.predictor.backend.identity
            tuned = tuned_everything_thresholds(identity.model_id, identity.weights_hash)
            pred_iou_thresh = tuned.pred_iou if pred_iou_thresh is None else pred_iou_thresh
            stability_score_thresh = tuned.stability if stability_score_thresh is None else stability_score_thresh
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.mask_nms_thresh = mask_nms_thresh
        self.attend_to_padding = attend_to_padding
        self.stability_score_offset = stability_score_offset
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode

    # -- public ---------------------------------------------------------------------------------

    def generate(
        self,
        image: np.ndarray,
        progress: ProgressCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[dict[str, Any]]:
        """Masks for an H x W x 3 uint8 image, as a list of SAM's annotation dicts.

        progress(done, total) is called after each decoder batch; should_stop() returning True
        raises GenerationCancelled.
        """
        image = as_model_view(image)
        orig_size = image.shape[:2]
        crop_boxes, layer_idxs = generate_crop_boxes(orig_size, self.crop_n_layers, self.crop_overlap_ratio)
        total = sum(len(self.point_grids[layer]) for layer in layer_idxs)
        tracker = _Progress(total, progress, should_stop)
        candidates: list[Candidate] = []
        crop_of: list[list[int]] = []
        with self._batches_of_one_image():
            for crop_box, layer in zip(crop_boxes, layer_idxs, strict=True):
                found = self._process_crop(image, crop_box, layer, tracker)
                candidates += found
                crop_of += [crop_box] * len(found)
        if len(crop_boxes) > 1 and candidates:
            areas = np.array([(c[2] - c[0]) * (c[3] - c[1]) for c in crop_of], dtype=np.float64)
            keep = nms(np.stack([c.box for c in candidates]), 1.0 / areas, self.crop_nms_thresh)
            candidates, crop_of = [candidates[i] for i in keep], [crop_of[i] for i in keep]
        return self._finalize(candidates, crop_of)

    # -- per crop ----------------------------------------------------------------------------------

    def _process_crop(self, image: np.ndarray, crop_box: list[int], layer: int, tracker: "_Progress") -> list[Candidate]:
        x0, y0, x1, y1 = crop_box
        crop = np.ascontiguousarray(image[y0:y1, x0:x1])
        self.predictor.set_image(crop)
        points = self.point_grids[layer] * np.array(crop.shape[:2])[None, ::-1]
        candidates, _ = self.prompt_points(points, crop_box, image.shape[:2], tracker)
        if not candidates:
            return []
        keep = nms(np.stack([c.box for c in candidates]), np.array([c.iou for c in candidates]), self.box_nms_thresh)
        return [candidates[i] for i in keep]

    def prompt_points(
        self,
        points: np.ndarray,
        crop_box: list[int],
        orig_size: tuple[int, int],
        tracker: "_Progress | None" = None,
        high_score_thresh: float | None = None,
    ) -> tuple[list[Candidate], np.ndarray | None]:
        """Prompt each (x, y) point (crop pixels) alone; return filtered candidates in image coordinates.

        With ``high_score_thresh`` also returns the crop-sized union of the kept masks' pixels whose
        logits exceed it (TinySAM's "done" region).
        """
        p = self.predictor
        backend = p.backend
        embedded = p.embedded_image()
        frame = UpsampleFrame.build(backend.low_res_size, backend.image_size, embedded.input_size, embedded.original_size)
        crop_h, crop_w = embedded.original_size
        union = np.zeros((crop_h, crop_w), dtype=bool) if high_score_thresh is not None else None
        x0, y0 = crop_box[0], crop_box[1]
        out: list[Candidate] = []
        step = self._batch_size()
        batches = [points[start : start + step] for start in range(0, len(points), step)]

        def passing_masks(batch: np.ndarray) -> list[tuple[np.ndarray, float, np.ndarray]]:
            coords = p.transform.apply_coords(batch, embedded.original_size)[:, None, :]
            coords, labels = to_decoder_inputs(coords, np.ones((len(batch), 1), dtype=np.int64), None)
            return list(self._passing_masks(embedded.features, coords, labels, batch, frame.low_res_extent))

        # Batches may run concurrently; their candidates are taken in the points' order, so the result is the same.
        with contextlib.closing(map_in_order(passing_masks, batches, concurrent_batches(backend))) as results:
            for batch, passing in zip(batches, results, strict=True):
                for logits, iou, point in passing:
                    cand = self._candidate(frame, logits, iou, point, crop_box, orig_size, union, high_score_thresh)
                    if cand is not None:
                        cand.point = cand.point + np.array([x0, y0])
                        out.append(cand)
                if tracker is not None:
                    tracker.advance(len(batch))
        return out, union

    def _passing_masks(
        self, features: np.ndarray, coords: np.ndarray, labels: np.ndarray, points: np.ndarray, extent: LowResExtent
    ) -> Iterator[tuple[np.ndarray, float, np.ndarray]]:
        """The masks of one batch of single-point prompts that pass the IoU threshold and the low-res stability
        estimate: (low-res logits of the top-left ``extent`` of the L x L frame, which the image covers, predicted
        IoU, the prompt's (x, y) in ``points``) each.

        Only prompts with a mask past the IoU threshold are upscaled (with the shipped model 46% of them on coins, none
        on a photo it finds nothing in), and only where the image is (coins: 808 of the frame's 1024 rows).
        """
        block = None if self.attend_to_padding else extent
        scored = score_prompts(self.predictor.backend, features, coords, labels, True, block)
        passing = scored.iou > self.pred_iou_thresh if self.pred_iou_thresh > 0 else np.ones(scored.iou.shape, bool)
        rows = np.flatnonzero(passing.any(axis=1))
        if not len(rows):
            return
        low = scored.masks_of(rows, extent)  # rows x M x h x w
        n_masks = low.shape[1]
        low = low.reshape(-1, *low.shape[2:])
        iou = scored.iou[rows].reshape(-1)
        keep = passing[rows].reshape(-1)
        if self.stability_score_thresh > 0:
            estimate = low_res_stability(low, 0.0, self.stability_score_offset)
            keep &= estimate >= self.stability_score_thresh - LOW_RES_STABILITY_MARGIN
        for i in np.flatnonzero(keep):
            yield low[i], float(iou[i]), points[rows[i // n_masks]]

    @contextlib.contextmanager
    def _batches_of_one_image(self) -> Iterator[None]:
        """Within the block the batch is sized once (at the first batch); afterwards what the batches left resident
        (the decoder's arena keeps their peak) is credited to the engine, for its next image."""
        self._resident_before_batches = None
        try:
            yield
        finally:
            if self._resident_before_batches is not None:
                note_kept_memory(self.predictor.backend, self._resident_before_batches)

    def _batch_size(self) -> int:
        """Prompts per decoder call: the fixed points_per_batch, else the prompts that fit the memory budget when the
        image's first batch starts (its embedding held), shared by the engine's concurrent batches, counting what
        the engine's earlier batches keep resident as available to it. Sized once per image: the decoder's arena then
        holds that batch's peak for reuse, so measuring again would count it twice."""
        if self.points_per_batch is not None:
            self.last_batch_size = self.points_per_batch
        elif self._resident_before_batches is None:
            backend = self.predictor.backend
            scores_first = isinstance(backend, ScoresFirst) and backend.scores_first
            in_flight, self._resident_before_batches = batch_for_engine(
                backend, self.memory_budget, backend.low_res_size, scores_first)
            self.last_batch_size = max(1, in_flight // concurrent_batches(backend))
        return self.last_batch_size

    def _candidate(
        self,
        frame: UpsampleFrame,
        logits: np.ndarray,
        iou: float,
        point: np.ndarray,
        crop_box: list[int],
        orig_size: tuple[int, int],
        union: np.ndarray | None,
        high_score_thresh: float | None,
    ) -> Candidate | None:
        offset = self.stability_score_offset
        found = frame.block(logits, -offset)
        # No block: every pixel <= -offset, an empty mask with stability 0.
        stability = 0.0 if found is None else stability_from_block(found[2], 0.0, offset)
        if self.stability_score_thresh > 0 and stability < self.stability_score_thresh:
            return None
        mask = np.zeros(frame.shape, dtype=bool)
        if found is not None:
            rows, cols, block = found
            mask[rows, cols] = block > 0.0
            if union is not None and high_score_thresh is not None:
                union[rows, cols] |= block > high_score_thresh
        box = mask_box(mask)
        x0, y0 = crop_box[0], crop_box[1]
        full_box = box + np.array([x0, y0, x0, y0])
        orig_h, orig_w = orig_size
        if is_box_near_crop_edge(full_box, crop_box, [0, 0, orig_w, orig_h]):
            return None
        if mask.shape != (orig_h, orig_w):
            full = np.zeros((orig_h, orig_w), dtype=bool)
            full[y0 : y0 + mask.shape[0], x0 : x0 + mask.shape[1]] = mask
            mask = full
        rle = encode_rle(mask)
        return Candidate(rle, full_box, int(mask_utils.area(rle)), iou, stability, np.asarray(point, dtype=np.float64))

    # -- post-processing ---------------------------------------------------------------------------

    def _finalize(self, candidates: list[Candidate], crops: list[list[int]]) -> list[dict[str, Any]]:
        """Optional small-region clean-up, then SAM's annotation dicts."""
        if self.min_mask_region_area > 0:
            candidates, crops = self._remove_small_regions(candidates, crops)
        if self.mask_nms_thresh is not None and len(candidates) > 1:
            keep = mask_nms([c.rle for c in candidates], np.array([c.iou for c in candidates]), self.mask_nms_thresh)
            candidates, crops = [candidates[i] for i in keep], [crops[i] for i in keep]
        return [self._record(c, crop) for c, crop in zip(candidates, crops, strict=True)]

    def _remove_small_regions(self, candidates: list[Candidate], crops: list[list[int]]) -> tuple[list[Candidate], list]:
        if not candidates:
            return candidates, crops
        masks, scores = [], []
        for cand in candidates:
            mask = decode_rle(cand.rle)
            mask, changed_holes = remove_small_regions(mask, self.min_mask_region_area, "holes")
            mask, changed_islands = remove_small_regions(mask, self.min_mask_region_area, "islands")
            masks.append((mask, changed_holes or changed_islands))
            scores.append(0.0 if (changed_holes or changed_islands) else 1.0)
        boxes = np.stack([mask_box(m) for m, _ in masks])
        keep = nms(boxes, np.array(scores), max(self.box_nms_thresh, self.crop_nms_thresh))
        for i in keep:
            mask, changed = masks[i]
            if changed:
                cand = candidates[i]
                cand.rle = encode_rle(mask)
                cand.box = boxes[i]
                cand.area = int(mask_utils.area(cand.rle))
        return [candidates[i] for i in keep], [crops[i] for i in keep]

    def _record(self, cand: Candidate, crop_box: list[int]) -> dict[str, Any]:
        x0, y0, x1, y1 = cand.box
        cx0, cy0, cx1, cy1 = crop_box
        return {
            "segmentation": encode_output(cand.rle, self.output_mode),
            "area": cand.area,
            "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
            "predicted_iou": cand.iou,
            "point_coords": [[float(cand.point[0]), float(cand.point[1])]],
            "stability_score": cand.stability,
            "crop_box": [cx0, cy0, cx1 - cx0, cy1 - cy0],
        }


class _Progress:
    def __init__(self, total: int, callback: ProgressCallback | None, should_stop: Callable[[], bool] | None) -> None:
        self.total, self.done = total, 0
        self.callback, self.should_stop = callback, should_stop

    def advance(self, n: int) -> None:
        self.done += n
        if self.callback is not None:
            self.callback(self.done, self.total)
        if self.should_stop is not None and self.should_stop():
            raise GenerationCancelled(f"everything mode cancelled after {self.done} of {self.total} prompts")
