"""Geometry between the original image and the model's input frame (numpy and Pillow only, no torch).

The model sees the image resized so that its longest side equals ``target_length`` (PIL bilinear on
uint8, as the reference implementation), padded bottom/right to a square. Prompts given in (x, y)
pixels of the original image are scaled into that frame, and low-res logits are mapped back by
bilinear interpolation written as two small matrices, which equals torch's
``interpolate(bilinear, align_corners=False)`` twice (to the padded frame, then to the original size).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image
from threadpoolctl import ThreadpoolController

# The upsampling matmuls are small; run them on one BLAS thread so that BLAS's spinning workers do not
# fight the inference engine's thread pool (measured: one-click predict 63 ms -> 27 ms with ORT on 2 cores).
_BLAS = ThreadpoolController()


def preprocess_shape(height: int, width: int, target_length: int) -> tuple[int, int]:
    """(h, w) of an image of size (height, width) after resizing its longest side to ``target_length``.

    Same rounding as the reference, but never 0: a 1 x 3000 strip becomes 1 x 1024, not 0 x 1024.
    """
    scale = target_length * 1.0 / max(height, width)
    return max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))


class ResizeLongestSide:
    """Resizes images and (x, y) coordinates so the longest image side equals ``target_length``."""

    def __init__(self, target_length: int) -> None:
        self.target_length = target_length

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """H x W x 3 uint8 -> h x w x 3 uint8 with max(h, w) == target_length (PIL bilinear)."""
        h, w = preprocess_shape(image.shape[0], image.shape[1], self.target_length)
        if (h, w) == image.shape[:2]:
            return np.ascontiguousarray(image)
        return np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR))

    def apply_coords(self, coords: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
        """... x 2 array of (x, y) original pixels -> the same points in the resized frame (float32)."""
        old_h, old_w = original_size
        new_h, new_w = preprocess_shape(old_h, old_w, self.target_length)
        coords = np.array(coords, dtype=np.float64, copy=True)
        coords[..., 0] *= new_w / old_w
        coords[..., 1] *= new_h / old_h
        return coords.astype(np.float32)

    def apply_boxes(self, boxes: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
        """B x 4 (x0, y0, x1, y1) boxes -> B x 4 in the resized frame."""
        return self.apply_coords(np.asarray(boxes).reshape(-1, 2, 2), original_size).reshape(-1, 4)


PIXEL_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
PIXEL_STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)


def normalize_and_pad(resized: np.ndarray, size: int) -> np.ndarray:
    """h x w x 3 resized image (0..255) -> 1 x 3 x size x size float32, normalised, zero-padded bottom/right.

    The numpy twin of ``Sam.preprocess`` (padding happens after normalisation, so pads are 0).
    """
    h, w = resized.shape[:2]
    out = np.zeros((1, 3, size, size), dtype=np.float32)
    out[0, :, :h, :w] = ((resized.astype(np.float32) - PIXEL_MEAN) / PIXEL_STD).transpose(2, 0, 1)
    return out


@lru_cache(maxsize=64)
def bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """out_size x in_size matrix R with R @ v == torch bilinear resize of v (align_corners=False)."""
    scale = in_size / out_size
    src = np.maximum((np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    w1 = src - i0
    mat = np.zeros((out_size, in_size), dtype=np.float64)
    rows = np.arange(out_size)
    np.add.at(mat, (rows, i0), 1.0 - w1)
    np.add.at(mat, (rows, i1), w1)
    return mat


@lru_cache(maxsize=32)
def upscale_matrices(
    low_res: int, padded: int, input_size: tuple[int, int], original_size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Row and column matrices (H x low_res, W x low_res, float32) mapping low-res logits to the original.

    Composes: low_res -> padded (bilinear), crop to input_size, -> original_size (bilinear).
    """
    full = bilinear_matrix(low_res, padded)
    rows = bilinear_matrix(input_size[0], original_size[0]) @ full[: input_size[0]]
    cols = bilinear_matrix(input_size[1], original_size[1]) @ full[: input_size[1]]
    return rows.astype(np.float32), cols.astype(np.float32)


def postprocess_masks(
    low_res_logits: np.ndarray, padded: int, input_size: tuple[int, int], original_size: tuple[int, int]
) -> np.ndarray:
    """... x 256 x 256 logits -> ... x H x W logits at the original size (float32)."""
    rows, cols = upscale_matrices(low_res_logits.shape[-1], padded, tuple(input_size), tuple(original_size))
    with _BLAS.limit(limits=1, user_api="blas"):
        return rows @ low_res_logits.astype(np.float32, copy=False) @ cols.T


@dataclass
class UpsampleFrame:
    """Composed upsampling matrices of one image and, per output row/column, its low-res support.

    Each output pixel is a convex combination of a few neighbouring low-res logits, so it can exceed a
    threshold only near low-res pixels that do: :meth:`block` upsamples just that block. Thresholding it
    equals thresholding the full upsampling, at a cost that follows the mask's extent, not the image's.
    """

    rows: np.ndarray  # H x L
    cols: np.ndarray  # W x L
    row_lo: np.ndarray  # H: first low-res row with non-zero weight
    row_hi: np.ndarray  # H: last low-res row with non-zero weight
    col_lo: np.ndarray
    col_hi: np.ndarray

    @classmethod
    def build(cls, low_res: int, padded: int, input_size: tuple[int, int], original_size: tuple[int, int]) -> "UpsampleFrame":
        """The frame of one image geometry (cached: every click on an image reuses it)."""
        return _upsample_frame(low_res, padded, tuple(input_size), tuple(original_size))

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows.shape[0], self.cols.shape[0]

    @property
    def low_res_extent(self) -> tuple[int, int]:
        """(rows, columns) of the top-left low-res block that any output pixel reads: the rest is the frame's
        padding (a 384 x 303 image fills 1024 x 808 of the 1024 frame: rows 203 and on are never read)."""
        return int(self.row_hi[-1]) + 1, int(self.col_hi[-1]) + 1

    def block(self, logits: np.ndarray, threshold: float) -> tuple[slice, slice, np.ndarray] | None:
        """Full-resolution logits of the smallest block outside which every pixel is <= threshold.

        logits: L x L low-res. Returns (row slice, col slice, block logits) or None when no pixel can
        exceed the threshold.
        """
        above = logits > threshold
        row_any = above.any(axis=1)
        if not row_any.any():
            return None
        col_any = above.any(axis=0)
        r0, r1 = np.flatnonzero(row_any)[[0, -1]]
        c0, c1 = np.flatnonzero(col_any)[[0, -1]]
        y0, y1 = _covering(self.row_lo, self.row_hi, r0, r1)
        x0, x1 = _covering(self.col_lo, self.col_hi, c0, c1)
        if y0 >= y1 or x0 >= x1:
            return None
        lr0, lr1 = self.row_lo[y0], self.row_hi[y1 - 1] + 1
        lc0, lc1 = self.col_lo[x0], self.col_hi[x1 - 1] + 1
        with _BLAS.limit(limits=1, user_api="blas"):
            sub = self.rows[y0:y1, lr0:lr1] @ logits[lr0:lr1, lc0:lc1].astype(np.float32) @ self.cols[x0:x1, lc0:lc1].T
        return slice(y0, y1), slice(x0, x1), sub


def _support(mat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    nonzero = mat != 0
    lo = nonzero.argmax(axis=1)
    hi = mat.shape[1] - 1 - nonzero[:, ::-1].argmax(axis=1)
    return lo, hi


def _covering(lo: np.ndarray, hi: np.ndarray, a: int, b: int) -> tuple[int, int]:
    """Output index range [start, stop) whose support [lo, hi] meets the low-res range [a, b].

    lo and hi are non-decreasing along the output axis (bilinear resizing is monotone).
    """
    start = int(np.searchsorted(hi, a, side="left"))
    stop = int(np.searchsorted(lo, b, side="right"))
    return start, stop


@lru_cache(maxsize=16)
def _upsample_frame(low_res: int, padded: int, input_size: tuple[int, int], original_size: tuple[int, int]) -> UpsampleFrame:
    rows, cols = upscale_matrices(low_res, padded, input_size, original_size)
    return UpsampleFrame(rows, cols, *_support(rows), *_support(cols))
