"""Output encodings of everything-mode masks (pycocotools); the small-region clean-up lives in :mod:`..cleanup`."""

from __future__ import annotations

import numpy as np

from ..io.coco import decode_rle, json_rle

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")


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
