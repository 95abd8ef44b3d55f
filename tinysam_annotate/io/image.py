"""Read any image into the H x W x 3 uint8 RGB view the model sees, keeping the original pixels.

Axes use tifffile's letters: Y, X spatial; S interleaved samples (RGB(A), channel-last); C channels
(channel-first); every other letter (Z, T, Q, ...) is a stack axis whose planes are reached by a flat
slice index.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ChannelError, ImageTooLargeError, TruncatedImageError, UnsupportedImageError
from .normalize import to_uint8

DEFAULT_MAX_PIXELS = 256_000_000  # per plane (16000 x 16000)
DEFAULT_MAX_BYTES = 8 << 30  # whole file, all planes
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_CHANNEL_AXES = "SC"

ChannelChoice = int | Sequence[int] | None


@dataclass
class ImageSource:
    """An image as read: the original array and its axes, with per-slice access to model views."""

    data: np.ndarray
    axes: str
    path: Path | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.axes) != self.data.ndim:
            raise UnsupportedImageError(f"axes {self.axes!r} do not match an array of shape {self.data.shape}")
        if "Y" not in self.axes or "X" not in self.axes:
            raise UnsupportedImageError(f"image axes {self.axes!r} lack Y and X")
        if self.data.size == 0:
            raise UnsupportedImageError(f"image has no pixels (shape {self.data.shape})")

    @property
    def stack_axes(self) -> str:
        return "".join(a for a in self.axes if a not in "YX" + self._channel_axis)

    @property
    def _channel_axis(self) -> str:
        return "S" if "S" in self.axes else ("C" if "C" in self.axes else "")

    @property
    def stack_shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape[self.axes.index(a)] for a in self.stack_axes)

    @property
    def n_slices(self) -> int:
        return int(np.prod(self.stack_shape)) if self.stack_axes else 1

    @property
    def n_channels(self) -> int:
        return self.data.shape[self.axes.index(self._channel_axis)] if self._channel_axis else 1

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of one plane."""
        return self.data.shape[self.axes.index("Y")], self.data.shape[self.axes.index("X")]

    def plane(self, index: int = 0) -> np.ndarray:
        """Original pixels of one slice as H x W x n_channels (no normalisation)."""
        if not 0 <= index < self.n_slices:
            raise UnsupportedImageError(f"slice {index} out of range: the image has {self.n_slices} slice(s)")
        order = [self.axes.index(a) for a in self.stack_axes] + [self.axes.index("Y"), self.axes.index("X")]
        if self._channel_axis:
            order.append(self.axes.index(self._channel_axis))
        arr = np.transpose(self.data, order)
        arr = arr.reshape(-1, *arr.shape[len(self.stack_axes) :])[index] if self.stack_axes else arr
        return arr if arr.ndim == 3 else arr[..., None]

    def model_view(self, index: int = 0, channels: ChannelChoice = None) -> np.ndarray:
        """H x W x 3 uint8 RGB view of one slice (see :func:`plane_to_rgb` for ``channels``)."""
        return plane_to_rgb(self.plane(index), channels, interleaved_rgb=self._channel_axis == "S")


def plane_to_rgb(plane: np.ndarray, channels: ChannelChoice = None, interleaved_rgb: bool = False) -> np.ndarray:
    """H x W x K plane -> H x W x 3 uint8.

    channels: None picks the natural view (1 channel: grey; 2: red/green; 3: RGB; 4 interleaved: RGB
    without alpha); an int shows that channel as grey; a sequence of up to 3 indexes fills R, G, B.
    RGB photos are normalised jointly (colour balance kept); chosen channels each get their own range.
    """
    k = plane.shape[-1]
    if channels is None:
        if k == 1:
            chosen = [0]
        elif k == 2:
            chosen = [0, 1]
        elif k == 3 or (k == 4 and interleaved_rgb):
            chosen = [0, 1, 2]
        else:
            raise ChannelError(f"image has {k} channels; choose one (channels=i) or up to three (channels=[r, g, b])")
    else:
        chosen = [channels] if isinstance(channels, (int, np.integer)) else list(channels)
        if not 1 <= len(chosen) <= 3:
            raise ChannelError(f"choose 1 to 3 channels, got {len(chosen)}")
        bad = [c for c in chosen if not isinstance(c, (int, np.integer)) or not 0 <= c < k]
        if bad:
            raise ChannelError(f"channel index {bad[0]!r} out of range: the image has {k} channel(s) (0..{k - 1})")
    joint = channels is None and len(chosen) == 3 and interleaved_rgb
    selected = plane[..., chosen]
    if joint:
        rgb8 = to_uint8(selected)
    else:
        rgb8 = np.stack([to_uint8(selected[..., i]) for i in range(len(chosen))], axis=-1)
    if len(chosen) == 1:
        return np.ascontiguousarray(np.repeat(rgb8, 3, axis=-1))
    if len(chosen) == 2:
        rgb8 = np.concatenate([rgb8, np.zeros_like(rgb8[..., :1])], axis=-1)
    return np.ascontiguousarray(rgb8)


def infer_axes(shape: tuple[int, ...]) -> str:
    """Guess axes for an array: YX, YXS (channel-last), CYX (channel-first, <= 4), else a stack (QYX).

    Leading axes beyond the last three are stack axes ('Q'); singleton axes are kept (they are 1-slice
    stacks or 1-channel images), so a 1 x N image is never mistaken for something else.
    """
    ndim = len(shape)
    if ndim < 2 or ndim > 6:
        raise UnsupportedImageError(f"cannot interpret an array of shape {shape} as an image")
    if ndim == 2:
        return "YX"
    first, middle, last = shape[-3:]
    # Channel-last with more than 4 channels is common (YXC), a stack stored as YXZ is not.
    channel_last = last <= 4 or (last < min(first, middle) and last <= 64)
    channel_first = first <= 4
    if channel_last and (not channel_first or last in (3, 4)):
        tail = "YXS"
    elif channel_first:
        tail = "CYX"
    else:
        tail = "QYX"
    return "Q" * (ndim - 3) + tail


def from_array(array: np.ndarray, axes: str | None = None) -> ImageSource:
    """Wrap an in-memory array (any dtype, layout inferred unless ``axes`` is given)."""
    array = np.asarray(array)
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_
    ) or np.issubdtype(array.dtype, np.complexfloating):
        raise UnsupportedImageError(f"image pixels must be numeric, got dtype {array.dtype}")
    return ImageSource(array, axes.upper() if axes else infer_axes(array.shape))


def read_image(
    path: str | os.PathLike,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ImageSource:
    """Read PNG/JPEG/TIFF/BMP/GIF/WebP (TIFF stacks and multichannel via tifffile) with size guards.

    Raises UnsupportedImageError (empty, not an image, unknown layout), TruncatedImageError, or
    ImageTooLargeError (more than ``max_pixels`` per plane, or ``max_bytes`` in all) before decoding.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except FileNotFoundError:
        raise UnsupportedImageError(f"image file not found: {path}") from None
    except IsADirectoryError:
        raise UnsupportedImageError(f"{path} is a directory, not an image file") from None
    if not head:
        raise UnsupportedImageError(f"image file is empty: {path}")
    if head[:4] in _TIFF_MAGIC:
        return _read_tiff(path, max_pixels, max_bytes)
    return _read_pillow(path, head, max_pixels)


def _check_size(path: Path, plane_hw: tuple[int, int], total_bytes: int, max_pixels: int, max_bytes: int) -> None:
    pixels = plane_hw[0] * plane_hw[1]
    if pixels > max_pixels:
        raise ImageTooLargeError(
            f"{path.name} is {plane_hw[1]} x {plane_hw[0]} = {pixels:,} pixels per plane, over the limit of {max_pixels:,}"
        )
    if total_bytes > max_bytes:
        raise ImageTooLargeError(f"{path.name} would take {total_bytes:,} bytes decoded, over the limit of {max_bytes:,}")


def _read_tiff(path: Path, max_pixels: int, max_bytes: int) -> ImageSource:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes, shape = series.axes, tuple(series.shape)
            if "Y" not in axes or "X" not in axes:
                raise UnsupportedImageError(f"{path.name}: TIFF axes {axes!r} have no Y/X plane")
            hw = (shape[axes.index("Y")], shape[axes.index("X")])
            _check_size(path, hw, int(np.prod(shape)) * series.dtype.itemsize, max_pixels, max_bytes)
            data = series.asarray()
    except (ImageTooLargeError, UnsupportedImageError):
        raise
    except (tifffile.TiffFileError, ValueError, OSError, IndexError, KeyError, EOFError) as exc:
        kind = TruncatedImageError if _is_truncated(path, exc) else UnsupportedImageError
        raise kind(f"cannot read TIFF {path.name}: {exc}") from exc
    if "S" in axes and "C" in axes:  # both: treat C as a stack axis so S stays the colour axis
        axes = axes.replace("C", "Q")
    return ImageSource(data, axes, path, {"format": "TIFF"})


def _is_truncated(path: Path, exc: BaseException) -> bool:
    text = str(exc).lower()
    return "truncat" in text or "eof" in text or "out of range" in text or "buffer" in text or "size" in text


def _read_pillow(path: Path, head: bytes, max_pixels: int) -> ImageSource:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except UnidentifiedImageError:
        raise UnsupportedImageError(
            f"{path.name} is not an image Pillow or tifffile can read (file starts with {head[:8]!r})"
        ) from None
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{path.name}: {exc}") from None
    with img:
        w, h = img.size
        _check_size(path, (h, w), 0, max_pixels, 1 << 62)
        fmt = img.format
        old_limit = Image.MAX_IMAGE_PIXELS
        try:
            Image.MAX_IMAGE_PIXELS = None  # our own limit was checked above
            img.load()
            upright = ImageOps.exif_transpose(img)
        except OSError as exc:
            kind = TruncatedImageError if "truncat" in str(exc).lower() else UnsupportedImageError
            raise kind(f"cannot decode {path.name}: {exc}") from None
        finally:
            Image.MAX_IMAGE_PIXELS = old_limit
        data, axes = _pillow_to_array(upright)
    return ImageSource(data, axes, path, {"format": fmt})


def _pillow_to_array(img: Image.Image) -> tuple[np.ndarray, str]:
    mode = img.mode
    if mode in ("1", "L", "I", "F") or mode.startswith("I;16"):
        return np.asarray(img), "YX"
    if mode == "LA":
        return np.asarray(img)[..., 0], "YX"
    if mode in ("RGB", "RGBA"):
        return np.asarray(img), "YXS"
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in img.info
        return np.asarray(img.convert("RGBA" if has_alpha else "RGB")), "YXS"
    return np.asarray(img.convert("RGB")), "YXS"


@dataclass
class LoadedImage:
    """One plane ready for the model: ``rgb`` (H x W x 3 uint8) and where it came from."""

    rgb: np.ndarray
    source: ImageSource
    slice_index: int = 0
    channels: ChannelChoice = None

    @property
    def original(self) -> np.ndarray:
        """The original pixels of this plane (H x W x K, original dtype)."""
        return self.source.plane(self.slice_index)


def load_image(
    image: str | os.PathLike | np.ndarray,
    channels: ChannelChoice = None,
    slice_index: int | None = None,
    axes: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> LoadedImage:
    """Load a file or array and return the model's RGB view of one plane, keeping the original.

    A stack with more than one slice needs ``slice_index`` (or use :func:`read_image` /
    :meth:`ImageSource.model_view` to walk slices).
    """
    if isinstance(image, np.ndarray):
        source = from_array(image, axes)
    else:
        source = read_image(image, max_pixels=max_pixels)
    if slice_index is None:
        if source.n_slices > 1:
            raise UnsupportedImageError(
                f"image is a stack of {source.n_slices} slices (axes {source.axes}, shape {source.data.shape}); "
                "pass slice_index (CLI: --slice), or axes= if it is really multichannel"
            )
        slice_index = 0
    return LoadedImage(source.model_view(slice_index, channels), source, slice_index, channels)


def as_model_view(image: np.ndarray) -> np.ndarray:
    """H x W x 3 uint8 arrays pass through; any other single-plane array is converted by :func:`load_image`."""
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise UnsupportedImageError(f"image has no pixels (shape {image.shape})")
        return image
    return load_image(np.asarray(image)).rgb

