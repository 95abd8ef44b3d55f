"""A training-only dense head: per-pixel supervision of the image encoder from the instance masks.

Prompted training reaches the encoder only through the few objects that were prompted, one mask at a
time. This head reads the image embedding (B x C x g x g) and predicts, at the decoder's low-res size
(4g x 4g), three maps derived from all ground-truth instances of the window:

- foreground: inside any object;
- boundary: an object pixel with a 4-neighbour of another label (touching objects are separated);
- centre: distance to the object's border, divided by its largest value in that object (1 at the centre).

The head is not part of the model: it is saved in the training state and never exported.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

TARGET_NAMES = ("foreground", "boundary", "centre")


class DenseHead(nn.Module):
    """B x C x g x g embedding -> B x 3 x 4g x 4g (foreground logit, boundary logit, centre in [0, 1] as a logit)."""

    def __init__(self, channels: int = 256, hidden: int = 64) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, hidden, kernel_size=3, padding=1)
        self.up1 = nn.ConvTranspose2d(hidden, hidden // 2, kernel_size=2, stride=2)
        self.up2 = nn.ConvTranspose2d(hidden // 2, len(TARGET_NAMES), kernel_size=2, stride=2)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.up2(F.gelu(self.up1(F.gelu(self.reduce(embedding)))))


def dense_targets(gt: torch.Tensor) -> torch.Tensor:
    """N x h x w soft instance masks (visible parts) -> 3 x h x w float targets (see the module docstring)."""
    h, w = gt.shape[-2:]
    if not len(gt):
        return torch.zeros(3, h, w)
    masks = gt.numpy() > 0.5
    labels = np.where(masks.any(axis=0), masks.argmax(axis=0) + 1, 0)  # the later index wins where masks touch
    foreground = labels > 0
    padded = np.pad(labels, 1, mode="edge")
    differs = np.zeros_like(foreground)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        differs |= padded[dy : dy + h, dx : dx + w] != labels
    boundary = foreground & differs
    distance = ndimage.distance_transform_edt(foreground & ~boundary) + foreground
    peak = ndimage.maximum(distance, labels, index=np.arange(labels.max() + 1))
    centre = np.where(foreground, distance / np.maximum(peak[labels], 1e-6), 0.0)
    return torch.from_numpy(np.stack([foreground, boundary, centre]).astype(np.float32))


def dense_loss(prediction: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean of the three per-pixel losses: BCE (foreground), BCE with positives up-weighted (boundary: thin),
    BCE against the soft centre map. ``prediction`` and ``targets`` are B x 3 x h x w."""
    fg = F.binary_cross_entropy_with_logits(prediction[:, 0], targets[:, 0])
    share = targets[:, 1].mean().clamp(min=1e-3)
    pos_weight = ((1 - share) / share).clamp(max=10.0)
    boundary = F.binary_cross_entropy_with_logits(prediction[:, 1], targets[:, 1], pos_weight=pos_weight)
    centre = F.binary_cross_entropy_with_logits(prediction[:, 2], targets[:, 2])
    return (fg + boundary + centre) / 3
