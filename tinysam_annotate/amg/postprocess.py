"""Small-region clean-up and output encodings of everything-mode masks (scikit-image, pycocotools)."""

from __future__ import annotations

import numpy as np
from skimage.measure import label as label_regions

from ..io.coco import decode_rle, json_rle

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")


def remove_small_regions(mask: np.ndarray, area_thresh: float, mode: str) -> tuple[np.ndarray, bool]:
    """Fill holes ("holes") or drop islands ("islands") smaller than ``area_thresh`` pixels (8-connected).

    Returns the new mask and whether it changed. When every island is small the largest one is kept.
    """
    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    holes = mode == "holes"
    working = np.logical_xor(holes, mask)
    regions, n = label_regions(working, connectivity=2, return_num=True)
    sizes = np.bincount(regions.ravel(), minlength=n + 1)[1:]
    small = [i + 1 for i, size in enumerate(sizes) if size < area_thresh]
    if not small:
        return mask, False
    fill = [0] + small
    if not holes:
        fill = [i for i in range(1, n + 1) if i not in fill] or [int(np.argmax(sizes)) + 1]
    return np.isin(regions, fill), True


def uncompressed_rle(mask: np.ndarray) -> dict:
    """SAM's uncompressed RLE: column-major run lengths starting with a run of zeros."""
    flat = np.asfortranarray(mask).reshape(-1, order="F").astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0] + counts
    return {"size": list(mask.shape), "counts": counts}


def encode_output(rle: dict, output_mode: str):
    """The ``segmentation`` value for one mask in the requested output mode."""
    if output_mode == "coco_rle":
        return json_rle(rle)
    mask = decode_rle(rle)
    if output_mode == "binary_mask":
        return mask
    return uncompressed_rle(mask)
