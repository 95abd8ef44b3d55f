"""SA-1B records -> training samples in the model's input frame (resized, normalised, padded, optionally cropped).

Crop-in-frame training: the image is resized exactly as at inference (longest side = ``frame``, e.g.
1024) and a ``crop`` x ``crop`` window at an offset that is a multiple of 16 is cut out. The encoder is
convolutional/windowed, so it sees objects at their inference pixel scale for a quarter of the cost
(crop 512 of frame 1024); the decoder gets the matching window of the frame's positional encoding and
prompts in frame coordinates, so the trained weights run unchanged on whole 1024 frames.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from tinysam_annotate.transforms import ResizeLongestSide, normalize_and_pad

from ..data.sa1b import Sa1bRecord

LOW_RES_STRIDE = 4  # the decoder's logits are 1/4 of the input size
EMBED_STRIDE = 16  # image embedding cells are 16 input pixels


@dataclass
class TrainSample:
    """image: 3 x S x S normalised; gt: N x S/4 x S/4 soft masks (area fraction) in the low-res frame.

    ``offset`` is the (x, y) input-frame position of the window's top-left pixel (0, 0 without cropping).
    """

    key: str
    image: torch.Tensor
    gt: torch.Tensor
    offset: tuple[int, int] = (0, 0)


def crop_offset(content: int, frame: int, crop: int, rng: random.Random) -> int:
    """A window start (multiple of 16) that keeps the window inside the frame and, when it can, on the content."""
    last = max(0, min(content, frame) - crop)
    return min(rng.randint(0, last) // EMBED_STRIDE * EMBED_STRIDE, frame - crop)


def prepare_sample(
    record: Sa1bRecord,
    frame: int,
    crop: int | None = None,
    hflip: bool = False,
    rng: random.Random | None = None,
    scale: float = 1.0,
) -> TrainSample:
    """Resize the longest side to ``scale * frame`` (PIL bilinear, as at inference), pad to the frame, move the
    masks along, then crop. ``scale`` < 1 shows the scene's objects smaller than inference on this image would
    (scale augmentation: real images come at every size, the generated ones at 320-640 px)."""
    image, masks = record.image, record.masks
    if hflip:
        image, masks = image[:, ::-1], masks[:, :, ::-1]
    content = max(EMBED_STRIDE, round(frame * scale))
    resized = ResizeLongestSide(content).apply_image(np.ascontiguousarray(image))
    h, w = resized.shape[:2]
    crop = crop or frame
    rng = rng or random.Random(0)
    ox, oy = (crop_offset(w, frame, crop, rng), crop_offset(h, frame, crop, rng)) if crop < frame else (0, 0)
    low = crop // LOW_RES_STRIDE
    lx, ly = ox // LOW_RES_STRIDE, oy // LOW_RES_STRIDE
    lw, lh = max(1, round(w / LOW_RES_STRIDE)), max(1, round(h / LOW_RES_STRIDE))
    gt = np.zeros((len(masks), low, low), np.float32)
    for i, mask in enumerate(masks):
        # PIL's bilinear filter widens its support when shrinking, so this is close to the area fraction
        # of each low-res cell, at a fraction of the cost of resizing to the input frame first.
        small = np.asarray(Image.fromarray(mask.view(np.uint8) * np.uint8(255)).resize((lw, lh), Image.Resampling.BILINEAR))
        small = small.astype(np.float32) / 255.0
        window = small[ly : ly + low, lx : lx + low]
        gt[i, : window.shape[0], : window.shape[1]] = window
    keep = (gt > 0.5).sum(axis=(1, 2)) > 0  # objects with no low-res pixel in the window cannot be trained on
    padded = normalize_and_pad(resized, frame)[0, :, oy : oy + crop, ox : ox + crop]
    return TrainSample(
        key=f"{record.image_id}{'_flip' if hflip else ''}" + (f"_{ox}_{oy}_{crop}" if crop < frame else ""),
        image=torch.from_numpy(np.ascontiguousarray(padded)),
        gt=torch.from_numpy(gt[keep]),
        offset=(ox, oy),
    )
