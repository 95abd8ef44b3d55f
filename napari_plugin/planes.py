"""The 2D planes of an nD napari image layer, and the RGB view of each that the model sees.

A layer's data is (..., Y, X), (..., Y, X, 3|4) for RGB layers, or carries a channel axis anywhere
before Y or last, after X. A plane is addressed by its *key*: the indexes of the leading (non-spatial, non-channel)
axes, () for a 2D image. Labels for the layer have the data's shape without the channel / RGB axes.
Intensities are normalised per plane for the model only; the layer data is never modified.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np

from tinysam_annotate.io.image import ChannelError, plane_to_rgb

PlaneKey = tuple[int, ...]


class StackData(Protocol):
    """What a layer's data offers and planes are read through: numpy, dask and zarr arrays all do."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def __getitem__(self, index: Any) -> Any: ...


@dataclass
class PlaneSource:
    """Planes of ``data`` (numpy, dask or zarr array) for the model.

    rgb: the last axis holds RGB(A) colours (napari's ``layer.rgb``). channel_axis: an axis of ``data``
    holding channels (not with rgb); channels: which of them make the model's R, G, B (None: the
    natural view of 1-3 channels).
    """

    data: StackData
    rgb: bool = False
    channel_axis: int | None = None
    channels: Sequence[int] | int | None = None
    cache_bytes: int = 512 << 20  # recent model views kept (a 8000 x 8000 plane's view is 192 MB)

    def __post_init__(self) -> None:
        ndim = len(self.data.shape)
        if self.rgb and self.channel_axis is not None:
            raise ChannelError("an RGB layer has no separate channel axis")
        if self.channel_axis is not None:
            if self.channel_axis < 0:
                self.channel_axis += ndim
            if not (0 <= self.channel_axis < ndim - 2 or (self.channel_axis == ndim - 1 and ndim >= 3)):
                raise ChannelError(f"channel axis {self.channel_axis} must be one of the leading axes 0..{ndim - 3} "
                                   f"or the last axis of the {ndim}D data (Y, X are the last two others)")
        min_ndim = 3 if self.rgb else 2
        if ndim < min_ndim:
            raise ChannelError(f"need at least a 2D image, got data of shape {self.data.shape}")
        self._planes: OrderedDict[PlaneKey, np.ndarray] = OrderedDict()

    @property
    def labels_shape(self) -> tuple[int, ...]:
        """Shape of the labels for this layer: the data's shape without the channel / RGB axes."""
        shape = list(self.data.shape[:-1] if self.rgb else self.data.shape)
        if self.channel_axis is not None:
            del shape[self.channel_axis]
        return tuple(shape)

    @property
    def plane_shape(self) -> tuple[int, int]:
        """(H, W) of every plane."""
        return tuple(self.labels_shape[-2:])  # type: ignore[return-value]

    def plane_keys(self) -> list[PlaneKey]:
        """Every plane's key, in C order (all slices of a stack, all times of a series)."""
        leading = self.labels_shape[:-2]
        return [tuple(int(i) for i in idx) for idx in np.ndindex(*leading)] if leading else [()]

    def check_key(self, key: PlaneKey) -> PlaneKey:
        leading = self.labels_shape[:-2]
        key = tuple(int(k) for k in key)
        if len(key) != len(leading) or any(not 0 <= k < n for k, n in zip(key, leading, strict=True)):
            raise IndexError(f"plane {key} is outside the stack of shape {leading}")
        return key

    def raw_plane(self, key: PlaneKey) -> np.ndarray:
        """H x W x K numbers of one plane (K channels, 1 for grey)."""
        key = self.check_key(key)
        if self.channel_axis is None:
            plane = np.asarray(self.data[key])
            return plane if self.rgb else plane[..., None]
        if self.channel_axis == len(self.data.shape) - 1:  # channels last: (..., Y, X, C)
            return np.asarray(self.data[key]) if key else np.asarray(self.data)
        index: list[object] = list(key)
        index.insert(self.channel_axis, slice(None))
        plane = np.asarray(self.data[tuple(index)])  # K x H x W
        return np.moveaxis(plane, 0, -1)

    def model_view(self, key: PlaneKey) -> np.ndarray:
        """H x W x 3 uint8 RGB view of one plane (a few recent planes are kept)."""
        key = self.check_key(key)
        if key in self._planes:
            self._planes.move_to_end(key)
            return self._planes[key]
        view = plane_to_rgb(self.raw_plane(key), self.channels, interleaved_rgb=self.rgb)
        self._planes[key] = view
        while len(self._planes) > 1 and sum(v.nbytes for v in self._planes.values()) > self.cache_bytes:
            self._planes.popitem(last=False)
        return view


def parse_channels(text: str) -> list[int] | None:
    """'' -> None (natural view); '1' -> [1]; '0, 2' -> [0, 2]."""
    text = text.strip()
    if not text:
        return None
    try:
        return [int(part) for part in text.replace(";", ",").split(",") if part.strip()]
    except ValueError as exc:
        raise ChannelError(f"channels must be comma-separated indexes like '0' or '0, 2', got {text!r}") from exc


def guess_channel_axis(shape: Sequence[int], rgb: bool) -> int | None:
    """The axis of a non-RGB layer that most likely holds channels, or None: a last axis of 2-4 values after two
    long ones (Y, X, C), else a first axis of 2-4 values in front of Y, X (C, Y, X). A 2-4 slice stack looks like
    the second case, so the guess is shown to the user, who can set it back."""
    if rgb or len(shape) < 3:
        return None
    if 2 <= shape[-1] <= 4 and min(shape[-3], shape[-2]) > 16:
        return len(shape) - 1
    if len(shape) == 3 and 2 <= shape[0] <= 4 and min(shape[1], shape[2]) > 16:
        return 0
    return None


def inside(coords: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """N bools: which of N x D data coordinates (..., row, col) of a labels array of ``shape`` round to a pixel of it."""
    coords = np.asarray(coords, dtype=float).reshape(-1, len(shape))
    index = np.round(coords)
    return np.all((index >= 0) & (index < np.asarray(shape)), axis=1)


def is_blank(plane: np.ndarray) -> bool:
    """Whether a plane holds no image: every finite value equal, or no finite value at all."""
    values = np.asarray(plane)
    if np.issubdtype(values.dtype, np.floating):
        values = values[np.isfinite(values)]
    return values.size == 0 or values.min() == values.max()
