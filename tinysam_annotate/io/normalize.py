"""Intensity normalisation of arbitrary numeric images to uint8 (numpy only)."""

from __future__ import annotations

import numpy as np

# Percentiles that map to 0 and 255: robust to a few hot or dead pixels.
LOWER_PERCENTILE = 0.1
UPPER_PERCENTILE = 99.9
_MAX_SAMPLES = 1 << 20


def _sample(values: np.ndarray) -> np.ndarray:
    """At most ~1M finite values, taken at a fixed stride (deterministic, cheap on huge images)."""
    flat = values.reshape(-1)
    step = max(1, flat.size // _MAX_SAMPLES)
    sample = flat[::step]
    if np.issubdtype(sample.dtype, np.floating):
        sample = sample[np.isfinite(sample)]
    return sample


def intensity_range(values: np.ndarray) -> tuple[float, float]:
    """(low, high) percentiles of the finite values; (0, 0) when there are none."""
    sample = _sample(values)
    if sample.size == 0:
        return 0.0, 0.0
    low, high = np.percentile(sample.astype(np.float64), [LOWER_PERCENTILE, UPPER_PERCENTILE])
    if high <= low:  # nearly constant: fall back to the full range
        low, high = float(sample.min()), float(sample.max())
    return float(low), float(high)


def to_uint8(values: np.ndarray, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Map any numeric array to uint8.

    uint8 passes through unchanged; bool maps to 0/255; everything else (16/32-bit integers, floats) is
    stretched so that the 0.1th..99.9th percentiles span 0..255, NaN and +-Inf become 0, and a constant
    image becomes all zeros. Values are never wrapped or truncated to 8 bits.
    """
    if values.dtype == np.uint8:
        return values
    if values.dtype == np.bool_:
        return values.astype(np.uint8) * 255
    if not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)):
        raise TypeError(f"cannot normalise pixels of dtype {values.dtype}")
    low, high = value_range if value_range is not None else intensity_range(values)
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values.astype(np.float32) - np.float32(low)) * np.float32(255.0 / (high - low))
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
