"""Overlay drawing for previews and demo output (numpy + Pillow)."""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw


def render_overlay(
    rgb: np.ndarray,
    mask: np.ndarray,
    points: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    box: np.ndarray | None = None,
    color: tuple[int, int, int] = (30, 144, 255),
    alpha: float = 0.5,
) -> np.ndarray:
    """H x W x 3 uint8 image with a translucent H x W boolean mask, its outline, (x, y) points and a box."""
    out = rgb.astype(np.float32)
    m = mask.astype(bool)
    out[m] = (1 - alpha) * out[m] + alpha * np.asarray(color, np.float32)
    edge = m & ~(np.roll(m, 1, 0) & np.roll(m, -1, 0) & np.roll(m, 1, 1) & np.roll(m, -1, 1))
    out[edge] = color
    img = Image.fromarray(out.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    radius = max(3, round(max(rgb.shape[:2]) / 150))
    if box is not None:
        x0, y0, x1, y1 = (float(v) for v in np.asarray(box).reshape(4))
        draw.rectangle((x0, y0, x1, y1), outline=(0, 255, 0), width=max(2, radius // 2))
    if points is not None:
        labels = np.ones(len(points), dtype=int) if labels is None else labels
        for (x, y), label in zip(np.asarray(points).reshape(-1, 2), labels, strict=True):
            fill = {1: (0, 220, 0), 0: (230, 30, 30)}.get(int(label), (255, 220, 0))  # 2: a box corner being drawn
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=fill, outline=(255, 255, 255))
    return np.asarray(img)


def object_colours(n: int, seed: int = 0) -> np.ndarray:
    """n x 3 uint8 RGB colours, golden-ratio spaced in hue so neighbours differ, stable for a seed."""
    offset = np.random.default_rng(seed).random()
    hues = (np.arange(n) * 0.618033988749895 + offset) % 1.0
    return np.array([colorsys.hsv_to_rgb(h, 0.75, 0.95) for h in hues], dtype=np.float64).reshape(-1, 3).__mul__(255).astype(np.uint8)


def id_colours(ids: list[int], seed: int = 0) -> np.ndarray:
    """len(ids) x 3 uint8: the colour of each object id (an object keeps its colour when others are deleted)."""
    table = object_colours(max(ids, default=0) + 1, seed)
    return table[np.asarray(ids, dtype=int)] if ids else np.zeros((0, 3), np.uint8)


def render_objects(rgb: np.ndarray, masks: list[np.ndarray], alpha: float = 0.45, seed: int = 0,
                   colours: np.ndarray | None = None) -> np.ndarray:
    """H x W x 3 uint8 image with every H x W boolean mask filled in its own colour (``colours``, N x 3 uint8,
    or golden-ratio hues by position) and outlined."""
    out = rgb.astype(np.float32).copy()
    colours = (object_colours(len(masks), seed) if colours is None else np.asarray(colours)).astype(np.float32)
    for mask, colour in zip(masks, colours, strict=True):
        m = mask.astype(bool)
        out[m] = (1 - alpha) * out[m] + alpha * colour
        edge = m & ~(np.roll(m, 1, 0) & np.roll(m, -1, 0) & np.roll(m, 1, 1) & np.roll(m, -1, 1))
        out[edge] = colour
    return out.clip(0, 255).astype(np.uint8)
