"""Validation of user prompts and their conversion to the unified (coords, labels) decoder input.

All coordinates are (x, y) pixels. Point labels: 1 foreground, 0 background. Boxes: (x0, y0, x1, y1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import PromptError

LABEL_PADDING = -1
BOX_CORNER_LABELS = (2, 3)


@dataclass(frozen=True)
class Prompts:
    """Validated prompts for a batch of B queries, in original-image pixels.

    points: B x N x 2 float64 (N may be 0); labels: B x N int64; boxes: B x 4 or None;
    mask_input: B x 1 x h x w float32 or None.
    """

    points: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray | None
    mask_input: np.ndarray | None
    batched: bool  # the caller passed a batch of boxes (or points) and gets batched outputs back

    @property
    def batch_size(self) -> int:
        return self.points.shape[0]


def _finite(name: str, arr: np.ndarray) -> None:
    if not np.all(np.isfinite(arr)):
        raise PromptError(f"{name} contains NaN or infinite values: {arr.tolist() if arr.size <= 16 else '...'}")


def _as_float_array(name: str, value: object) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise PromptError(f"{name} must be numeric, got {type(value).__name__}") from exc
    _finite(name, arr)
    return arr


def validate_prompts(
    image_size: tuple[int, int],
    point_coords: object = None,
    point_labels: object = None,
    box: object = None,
    mask_input: object = None,
    low_res_size: int = 256,
) -> Prompts:
    """Check prompts against an image of (H, W) pixels and return them in batched form.

    Points must lie inside the image (0 <= x <= W, 0 <= y <= H). Boxes with swapped corners are
    reordered and boxes reaching past the border are clipped to it; a box with no area left is an error.
    """
    height, width = image_size
    points: np.ndarray | None = None
    labels: np.ndarray | None = None
    boxes: np.ndarray | None = None
    masks: np.ndarray | None = None
    if point_coords is not None or point_labels is not None:
        if point_coords is None or point_labels is None:
            raise PromptError("point_coords and point_labels must be given together")
        points = _as_float_array("point_coords", point_coords)
        labels_f = _as_float_array("point_labels", point_labels)
        if points.ndim not in (2, 3) or points.shape[-1] != 2:
            raise PromptError(f"point_coords must have shape N x 2 or B x N x 2 (x, y), got {points.shape}")
        if labels_f.shape != points.shape[:-1]:
            raise PromptError(f"point_labels must have shape {points.shape[:-1]} to match point_coords, got {labels_f.shape}")
        if not np.all(np.isin(labels_f, (0, 1))):
            raise PromptError(f"point_labels must be 1 (foreground) or 0 (background), got {np.unique(labels_f).tolist()}")
        labels = labels_f.astype(np.int64)
        outside = (points[..., 0] < 0) | (points[..., 0] > width) | (points[..., 1] < 0) | (points[..., 1] > height)
        if outside.any():
            bad = points[outside][0].tolist()
            raise PromptError(f"point (x, y) = {bad} lies outside the {width} x {height} (W x H) image")
    if box is not None:
        boxes = _as_float_array("box", box)
        if boxes.shape == (4,):
            boxes = boxes[None]
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise PromptError(f"box must have shape 4 or B x 4 (x0, y0, x1, y1), got {boxes.shape}")
        boxes = np.concatenate([np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])], axis=1)
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
        empty = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
        if empty.any():
            raise PromptError(
                f"box {np.asarray(box).reshape(-1, 4)[int(np.argmax(empty))].tolist()} has zero area inside the "
                f"{width} x {height} image; drag a box with width and height, or click a point instead"
            )
    if mask_input is not None:
        masks = _as_float_array("mask_input", mask_input).astype(np.float32)
        given_shape = masks.shape
        if masks.ndim == 2:
            masks = masks[None]
        if masks.ndim == 3:
            masks = masks[None]
        if masks.ndim != 4 or masks.shape[1:] != (1, low_res_size, low_res_size):
            raise PromptError(
                f"mask_input must be 1 x {low_res_size} x {low_res_size} low-res logits (pick one mask of a previous "
                f"prediction, e.g. low_res[i][None]), got shape {given_shape}"
            )
    if points is None and boxes is None and masks is None:
        raise PromptError("no prompt given: pass point_coords/point_labels, a box, or mask_input")

    batched = (boxes is not None and boxes.shape[0] > 1) or (points is not None and points.ndim == 3)
    batch = max(
        boxes.shape[0] if boxes is not None else 1,
        points.shape[0] if points is not None and points.ndim == 3 else 1,
        masks.shape[0] if masks is not None else 1,
    )
    if points is None or labels is None:  # given together or not at all
        points, labels = np.zeros((batch, 0, 2)), np.zeros((batch, 0), dtype=np.int64)
    elif points.ndim == 2:
        points, labels = np.broadcast_to(points, (batch, *points.shape)), np.broadcast_to(labels, (batch, *labels.shape))
    for name, arr in (("point_coords", points), ("box", boxes), ("mask_input", masks)):
        if arr is not None and arr.shape[0] not in (1, batch):
            raise PromptError(f"{name} has a batch of {arr.shape[0]}, but other prompts have {batch}")
    if boxes is not None and boxes.shape[0] != batch:
        boxes = np.broadcast_to(boxes, (batch, 4))
    if points.shape[0] != batch:
        points, labels = np.broadcast_to(points, (batch, *points.shape[1:])), np.broadcast_to(labels, (batch, *labels.shape[1:]))
    if masks is not None and masks.shape[0] != batch:
        masks = np.broadcast_to(masks, (batch, *masks.shape[1:]))
    return Prompts(points, labels, boxes, masks, batched)


def to_decoder_inputs(points: np.ndarray, labels: np.ndarray, boxes: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Unified decoder input: points (B x N x 2), a padding point when there are points but no box, box corners.

    Inputs are already in the model's input frame. Returns coords B x K x 2 float32 and labels B x K int64.
    """
    batch = points.shape[0]
    parts_xy = [points.astype(np.float32)]
    parts_lab = [labels.astype(np.int64)]
    if boxes is None and points.shape[1] > 0:
        parts_xy.append(np.zeros((batch, 1, 2), dtype=np.float32))
        parts_lab.append(np.full((batch, 1), LABEL_PADDING, dtype=np.int64))
    elif boxes is not None:
        parts_xy.append(boxes.reshape(batch, 2, 2).astype(np.float32))
        parts_lab.append(np.broadcast_to(np.array(BOX_CORNER_LABELS, dtype=np.int64), (batch, 2)))
    return np.concatenate(parts_xy, axis=1), np.concatenate(parts_lab, axis=1)
