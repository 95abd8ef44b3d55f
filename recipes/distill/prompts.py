"""Prompt sampling for training, in the low-res frame (R/4 x R/4), returned in input-frame (x, y) pixels.

Round 0 is a point drawn uniformly inside the ground-truth mask or its jittered box; every further round
adds one point drawn uniformly from the error region of the current prediction (the paper's hard prompt
sampling: points from M_GT - M_i, and from M_i - M_GT as negatives). Labels follow the prompt encoder:
1 foreground, 0 background, 2/3 box corners, -1 padding.
"""

from __future__ import annotations

import torch

from .data import LOW_RES_STRIDE


def to_input_frame(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Low-res pixel indices -> K x 2 (x, y) input-frame coordinates of the pixel centres."""
    scale = LOW_RES_STRIDE
    return torch.stack([(cols.float() + 0.5) * scale - 0.5, (rows.float() + 0.5) * scale - 0.5], dim=-1)


def sample_in(regions: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One uniform pixel of each K x h x w boolean region: (rows, cols, valid); empty regions give valid False."""
    k, h, w = regions.shape
    flat = regions.reshape(k, -1).float()
    valid = flat.sum(dim=1) > 0
    weights = torch.where(valid[:, None], flat, torch.ones_like(flat))
    index = torch.multinomial(weights, 1, generator=generator)[:, 0]
    return index // w, index % w, valid


def initial_prompts(gt: torch.Tensor, box_fraction: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Round-0 prompts for K binary masks: coords K x 2 x 2 (x, y) and labels K x 2.

    A point prompt is (point, padding) as SAM pads point-only prompts; a box prompt is its two corners,
    jittered by noise of 10% of the box side (at most 20 input pixels), as in SAM's training.
    """
    k = gt.shape[0]
    rows, cols, _ = sample_in(gt, generator)
    point = to_input_frame(rows, cols)
    coords = torch.zeros(k, 2, 2)
    labels = torch.tensor([1, -1]).repeat(k, 1)
    coords[:, 0] = point
    use_box = torch.rand(k, generator=generator) < box_fraction
    if use_box.any():
        boxes = mask_boxes(gt[use_box])
        side = torch.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], dim=1).repeat(1, 2)
        noise = torch.randn(boxes.shape, generator=generator) * (0.1 * side).clamp(max=20.0)
        limit = gt.shape[-1] * LOW_RES_STRIDE - 1
        coords[use_box] = (boxes + noise).clamp(0, limit).reshape(-1, 2, 2)
        labels[use_box] = torch.tensor([2, 3])
    return coords, labels


def mask_boxes(gt: torch.Tensor) -> torch.Tensor:
    """K x 4 (x0, y0, x1, y1) input-frame boxes around K x h x w binary masks (pixel edges)."""
    rows_any, cols_any = gt.any(dim=2), gt.any(dim=1)
    h, w = gt.shape[1:]
    r = torch.arange(h)
    c = torch.arange(w)
    y0 = torch.where(rows_any, r, h).min(dim=1).values
    y1 = torch.where(rows_any, r, -1).max(dim=1).values + 1
    x0 = torch.where(cols_any, c, w).min(dim=1).values
    x1 = torch.where(cols_any, c, -1).max(dim=1).values + 1
    return torch.stack([x0, y0, x1, y1], dim=1).float() * LOW_RES_STRIDE


def next_points(gt: torch.Tensor, prediction: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One corrective click per prompt: K x 1 x 2 coords and K x 1 labels.

    Drawn uniformly from the error region gt XOR prediction; positive where the object was missed,
    negative where the prediction spilled over. A prompt with no error gets a padding point (label -1).
    """
    error = gt ^ prediction
    rows, cols, valid = sample_in(error, generator)
    positive = gt[torch.arange(gt.shape[0]), rows, cols]
    labels = torch.where(valid, positive.long(), torch.full_like(rows, -1))
    return to_input_frame(rows, cols)[:, None, :], labels[:, None]
