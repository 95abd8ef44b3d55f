"""Which part of the image the canvas shows, at what scale, and how a click on it maps back to image pixels.

The server renders the canvas at display resolution: small images are scaled up by a whole factor (a 256 px
image fills the panel, every pixel a crisp square), large ones down, and a zoomed view shows a window of the
image. Display pixel ``u`` samples image position ``x0 + (u + 0.5) / scale``; a click maps back through the same
formula, so the pixel that is drawn under the cursor is the pixel that is prompted.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from ..errors import TinySamAnnotateError

DISPLAY_SIZE = 1024  # long side of the PNG sent to the browser (it shrinks it to fit the panel, never enlarges it)
ZOOMS = (1, 2, 4, 8)  # multiples of the whole-image view


class ViewError(TinySamAnnotateError):
    """A view description from the browser that is not one this module wrote."""


@dataclass(frozen=True)
class View:
    """An image window, (x0, y0) its top-left image pixel and width x height its size, drawn at ``scale``
    display pixels per image pixel."""

    x0: int
    y0: int
    width: int
    height: int
    scale: float

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) of the rendered canvas in display pixels."""
        return max(1, round(self.width * self.scale)), max(1, round(self.height * self.scale))

    def to_image(self, u: float, v: float) -> tuple[float, float]:
        """Image (x, y) of display pixel (u, v): the pixel drawn there when scaled up (whole pixels), the centre
        of the area it averages when scaled down."""
        px, py = self.x0 + (u + 0.5) / self.scale, self.y0 + (v + 0.5) / self.scale
        if self.scale >= 1:
            return float(math.floor(px)), float(math.floor(py))
        return round(px - 0.5, 2), round(py - 0.5, 2)

    def to_display(self, xy: np.ndarray) -> np.ndarray:
        """N x 2 image (x, y) (pixel centres at integers) -> N x 2 display (x, y) of the same positions."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        return (xy + 0.5 - [self.x0, self.y0]) * self.scale

    def sample(self, array: np.ndarray) -> np.ndarray:
        """The window of an H x W (x C) array at display size by nearest sampling (masks, and images scaled up)."""
        dw, dh = self.display_size
        cols = np.floor(self.x0 + (np.arange(dw) + 0.5) / self.scale).astype(np.intp).clip(0, array.shape[1] - 1)
        rows = np.floor(self.y0 + (np.arange(dh) + 0.5) / self.scale).astype(np.intp).clip(0, array.shape[0] - 1)
        return array[rows][:, cols]

    def render_image(self, rgb: np.ndarray) -> np.ndarray:
        """The window of an H x W x 3 uint8 image at display size: crisp squares when scaled up, area-averaged
        when scaled down (nearest sampling would alias photos)."""
        if self.scale >= 1:
            return self.sample(rgb)
        box = (self.x0, self.y0, self.x0 + self.width, self.y0 + self.height)
        return np.asarray(Image.fromarray(rgb).resize(self.display_size, Image.Resampling.BOX, box=box))

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> View:
        """The view the browser was showing (sent back with each click); refuses anything malformed."""
        try:
            fields = json.loads(text)
            view = cls(int(fields["x0"]), int(fields["y0"]), int(fields["width"]), int(fields["height"]),
                       float(fields["scale"]))
        except (TypeError, ValueError, KeyError) as exc:
            raise ViewError(f"not a canvas view: {text!r:.80}") from exc
        if view.width < 1 or view.height < 1 or not (0 < view.scale < 1e4) or not math.isfinite(view.scale):
            raise ViewError(f"not a canvas view: {text!r:.80}")
        return view


def fit_view(width: int, height: int, zoom: int = 1, centre: tuple[float, float] | None = None,
             display_size: int = DISPLAY_SIZE) -> View:
    """The view of a width x height image at ``zoom`` (1 = whole image) centred as near ``centre`` (image x, y;
    default the image centre) as the image edges allow. Whole-image views fit ``display_size``; images smaller
    than half of it are scaled up by a whole factor."""
    if zoom not in ZOOMS:
        raise ViewError(f"zoom must be one of {ZOOMS}, got {zoom!r}")
    long_side = max(width, height)
    fit = display_size // long_side if long_side * 2 <= display_size else min(1.0, display_size / long_side)
    window_w, window_h = max(1, math.ceil(width / zoom)), max(1, math.ceil(height / zoom))
    cx, cy = centre if centre is not None else (width / 2, height / 2)
    x0 = int(min(max(round(cx - window_w / 2), 0), width - window_w))
    y0 = int(min(max(round(cy - window_h / 2), 0), height - window_h))
    return View(x0, y0, window_w, window_h, float(fit * zoom))


def pan(view: View, image_width: int, image_height: int, dx: int, dy: int) -> View:
    """The view moved by (dx, dy) half windows, kept inside the image."""
    x0 = min(max(view.x0 + dx * view.width // 2, 0), image_width - view.width)
    y0 = min(max(view.y0 + dy * view.height // 2, 0), image_height - view.height)
    return View(int(x0), int(y0), view.width, view.height, view.scale)
