"""The distillation and ground-truth losses. Logits and targets live in the low-res frame (K x M x h x w)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-6


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Sigmoid focal loss per mask: logits K x M x h x w, target K x h x w in [0, 1] -> K x M."""
    target = target[:, None].expand_as(logits)
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = prob * target + (1 - prob) * (1 - target)
    loss = ce * (1 - p_t) ** gamma
    loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    return loss.flatten(2).mean(dim=2)


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice per mask: K x M."""
    prob = logits.sigmoid().flatten(2)
    target = target[:, None].flatten(2).expand_as(prob)
    numerator = 2 * (prob * target).sum(dim=2)
    denominator = prob.sum(dim=2) + target.sum(dim=2)
    return 1 - (numerator + 1) / (denominator + 1)


def mask_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of the binarised logits (> 0) with the binarised target (> 0.5): K x M."""
    pred = (logits > 0).flatten(2)
    gt = (target > 0.5)[:, None].flatten(2)
    inter = (pred & gt).sum(dim=2).float()
    union = (pred | gt).sum(dim=2).float()
    return inter / union.clamp(min=1)


def hardness_weight(iou_teacher: torch.Tensor, iou_student: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """TinySAM's hard-mask weight H = sigmoid(IoU(M_T, M_GT) / (IoU(M_S, M_GT) + eps) - 1)."""
    return torch.sigmoid(iou_teacher / (iou_student + eps) - 1)


def ground_truth_losses(
    logits: torch.Tensor, iou_pred: torch.Tensor, target: torch.Tensor, w_focal: float, w_dice: float, iou_loss: str = "l1"
) -> dict[str, torch.Tensor]:
    """SAM's supervised losses: focal + dice of the best of the M outputs, and L1 (or SAM's MSE) between the
    predicted and the true IoU of every output."""
    focal = focal_loss(logits, target)
    dice = dice_loss(logits, target)
    combined = w_focal * focal + w_dice * dice
    best = combined.argmin(dim=1)  # ambiguity-aware: only the closest output is pulled towards the mask
    rows = torch.arange(logits.shape[0])
    true_iou = mask_iou(logits.detach(), target)
    return {
        "focal": focal[rows, best].mean(),
        "dice": dice[rows, best].mean(),
        "iou": (iou_pred - true_iou).abs().mean() if iou_loss == "l1" else (iou_pred - true_iou).pow(2).mean(),
    }


def outside_box_loss(logits: torch.Tensor, boxes: torch.Tensor, target: torch.Tensor, stride: int) -> torch.Tensor:
    """Box prompts: every output should stay inside its box. BCE towards 0 of the K x M x h x w ``logits`` on
    the low-res pixels whose centre lies outside the K x 4 (x0, y0, x1, y1) ``boxes`` (input-frame pixels of
    the window) and outside the object (a jittered box may cut the object), averaged per mask."""
    h, w = logits.shape[-2:]
    ys = (torch.arange(h, device=logits.device, dtype=torch.float32) + 0.5) * stride - 0.5
    xs = (torch.arange(w, device=logits.device, dtype=torch.float32) + 0.5) * stride - 0.5
    inside_x = (xs[None] >= boxes[:, 0:1]) & (xs[None] <= boxes[:, 2:3])  # K x w
    inside_y = (ys[None] >= boxes[:, 1:2]) & (ys[None] <= boxes[:, 3:4])  # K x h
    outside = ~(inside_y[:, :, None] & inside_x[:, None, :]) & (target <= 0.5)  # K x h x w
    weight = outside[:, None].float()
    spill = F.softplus(logits) * weight
    return (spill.flatten(2).sum(dim=2) / weight.flatten(2).sum(dim=2).clamp(min=1)).mean()


def distillation_losses(
    student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor], target: torch.Tensor
) -> dict[str, torch.Tensor]:
    """L1 on the decoder output tokens and on the output masks, the latter weighted by mask hardness.

    ``student``/``teacher`` hold ``logits`` K x M x h x w and ``tokens`` K x T x C of the same prompts.
    """
    with torch.no_grad():
        weight = hardness_weight(mask_iou(teacher["logits"], target), mask_iou(student["logits"], target))  # K x M
    per_mask = (student["logits"] - teacher["logits"]).abs().flatten(2).mean(dim=2)
    return {
        "tokens": (student["tokens"] - teacher["tokens"]).abs().mean(),
        "output": (weight * per_mask).mean(),
    }
