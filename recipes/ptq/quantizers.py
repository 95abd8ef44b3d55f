"""Symmetric uniform and twin-uniform fake quantizers, and the scale candidates of the search.

All quantizers round to nearest and clamp; ``bits`` is the total bit width (8 and 6 are tested).
Twin-uniform (PTQ4ViT) spends the codes on two ranges with two scales, for skewed distributions:
post-softmax values in [0, 1] (most tiny, a few near 1) and post-GELU values (negatives in [-0.17, 0],
positives unbounded).
"""

from __future__ import annotations

import torch

GELU_MIN = -0.1700  # GELU's minimum is about -0.16997
N_CANDIDATES = 100
LOW, HIGH = 0.01, 1.2  # the paper's search interval, in units of max / 2^(b-1)


def qmax(bits: int) -> int:
    return 2 ** (bits - 1) - 1


def uniform(x: torch.Tensor, scale: torch.Tensor | float, bits: int) -> torch.Tensor:
    """Symmetric signed b-bit quantize-dequantize; ``scale`` broadcasts against ``x`` (per-channel/head)."""
    return torch.clamp(torch.round(x / scale), -qmax(bits) - 1, qmax(bits)) * scale


def twin_softmax(x: torch.Tensor, small: torch.Tensor | float, bits: int) -> torch.Tensor:
    """Twin-uniform for values in [0, 1]: b-1 unsigned bits per range; values below 2^(b-1) * small use
    ``small``, the rest use the large scale 1 / 2^(b-1) that covers [0, 1]."""
    levels = 2 ** (bits - 1)
    large = 1.0 / levels
    fine = torch.clamp(torch.round(x / small), 0, levels - 1) * small
    coarse = torch.clamp(torch.round(x / large), 0, levels - 1) * large
    return torch.where(x < levels * small, fine, coarse)


def twin_gelu(x: torch.Tensor, positive: torch.Tensor | float, bits: int) -> torch.Tensor:
    """Twin-uniform for post-GELU values: negatives on a fixed fine grid covering [GELU_MIN, 0], positives
    on ``positive``; b-1 bits each."""
    levels = 2 ** (bits - 1)
    negative = -GELU_MIN / levels
    neg = torch.clamp(torch.round(x / negative), -levels, 0) * negative
    pos = torch.clamp(torch.round(x / positive), 0, levels - 1) * positive
    return torch.where(x < 0, neg, pos)


def candidates(max_abs: torch.Tensor, bits: int, n: int = N_CANDIDATES) -> torch.Tensor:
    """n x ... scales from LOW to HIGH times max / 2^(b-1) (``max_abs`` may be per channel or per head)."""
    alphas = torch.linspace(LOW, HIGH, n, dtype=torch.float32)
    base = max_abs.clamp(min=1e-8) / 2 ** (bits - 1)
    return alphas.reshape((n,) + (1,) * base.dim()) * base


def max_scale(max_abs: torch.Tensor, bits: int) -> torch.Tensor:
    """Plain max calibration: the whole range on the signed grid."""
    return max_abs.clamp(min=1e-8) / qmax(bits)
