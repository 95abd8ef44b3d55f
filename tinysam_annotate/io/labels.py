"""Label images: one integer id per object (0 = background), as TIFF (tifffile) or PNG (Pillow)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import tifffile
from PIL import Image

from ..errors import TinySamAnnotateError
from .atomic import atomic_write

UINT16_MAX_OBJECTS = 65_535


class LabelImageError(TinySamAnnotateError):
    """A label image cannot be written in the requested format, or read back."""


def label_image_name(image_name: str) -> str:
    """The file name of an image's label TIFF, the same in every front end: ``NAME_labels.tif`` for
    ``NAME.png`` (the app's download, the CLI's ``--labels-dir``)."""
    return f"{Path(image_name).stem or 'image'}_labels.tif"


def masks_to_labels(masks: Sequence[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """H x W labels where object i (1-based, in order) owns its pixels; later objects win overlaps.

    dtype is uint16, widened to uint32 past 65,535 objects.
    """
    dtype = np.uint16 if len(masks) <= UINT16_MAX_OBJECTS else np.uint32
    labels = np.zeros(shape, dtype=dtype)
    for i, mask in enumerate(masks, start=1):
        if np.shape(mask) != tuple(shape):
            raise LabelImageError(f"mask {i} has shape {np.shape(mask)}, expected {tuple(shape)}")
        labels[np.asarray(mask, dtype=bool)] = i
    return labels


def labels_to_masks(labels: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(label id, H x W bool mask) for every non-zero id, in increasing id order."""
    ids = np.unique(labels)
    return [(int(i), labels == i) for i in ids if i != 0]


def write_label_image(path: str | os.PathLike, labels: np.ndarray) -> Path:
    """Write atomically: .tif/.tiff keep uint16/uint32 (zlib-compressed) and may be nD stacks (..., Y, X);
    .png holds one 2-D plane of up to uint16."""
    path = Path(path)
    labels = np.asarray(labels)
    suffix = path.suffix.lower()
    max_ndim = 2 if suffix == ".png" else 6
    if not 2 <= labels.ndim <= max_ndim or not np.issubdtype(labels.dtype, np.integer):
        raise LabelImageError(f"labels must be a 2-D{' to 6-D' if max_ndim > 2 else ''} integer array, "
                              f"got {labels.dtype} of shape {labels.shape}")
    if labels.min() < 0:
        raise LabelImageError("labels must be non-negative")
    if suffix in (".tif", ".tiff"):
        data = labels.astype(np.uint16 if labels.max() <= UINT16_MAX_OBJECTS else np.uint32, copy=False)
        with atomic_write(path) as fh:
            tifffile.imwrite(fh, data, compression="zlib")
    elif suffix == ".png":
        if labels.max() > UINT16_MAX_OBJECTS:
            raise LabelImageError(f"{int(labels.max())} labels do not fit a 16-bit PNG; write a .tif instead")
        with atomic_write(path) as fh:
            Image.fromarray(labels.astype(np.uint16)).save(fh, format="PNG")
    else:
        raise LabelImageError(f"label images are written as .tif or .png, not {suffix!r}")
    return path


def read_label_image(path: str | os.PathLike, max_ndim: int = 2) -> np.ndarray:
    """A label image as an integer array of 2 to ``max_ndim`` dimensions (..., Y, X)."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            labels = tifffile.imread(path)
        else:
            labels = np.asarray(Image.open(path))
    except Exception as exc:
        raise LabelImageError(f"cannot read label image {path}: {exc}") from exc
    if not 2 <= labels.ndim <= max_ndim or not np.issubdtype(labels.dtype, np.integer):
        dims = "2-D" if max_ndim == 2 else f"2-D to {max_ndim}-D"
        raise LabelImageError(f"{path} is not a {dims} integer label image (shape {labels.shape}, dtype {labels.dtype})")
    return labels
