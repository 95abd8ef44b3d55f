"""A picture of the generator: scenes of every kind, with their instance outlines below, and a 3D stack.

    python -m recipes.data.preview recipes/results/scenes.jpg [--per-kind 2]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from skimage.segmentation import find_boundaries

from .scenes import KINDS, SceneConfig, generate_scene, generate_stack

TILE = 256


def _tile(image: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
    """An image (optionally with its instance outlines in yellow) resized to TILE x TILE."""
    out = image.copy()
    if masks is not None and len(masks):
        labels = np.zeros(image.shape[:2], np.int32)
        for i, mask in enumerate(masks, start=1):
            labels[mask] = i
        out[find_boundaries(labels, mode="inner")] = (255, 220, 0)
    return np.asarray(Image.fromarray(out).resize((TILE, TILE), Image.Resampling.BILINEAR))


def preview(per_kind: int = 2, first_seed: int = 0) -> Image.Image:
    """One column per kind (``per_kind`` scenes, each above its outlined masks), then 3 slices of a stack."""
    columns = []
    for kind in KINDS:
        config = SceneConfig(kinds={kind: 1.0})
        tiles = []
        for seed in range(first_seed, first_seed + per_kind):
            scene = generate_scene(seed, config)
            tiles += [_tile(scene.image), _tile(scene.image, scene.masks)]
        columns.append(np.concatenate(tiles, axis=0))
    stack = generate_stack(first_seed)
    slices = np.linspace(0, len(stack.image) - 1, 2 * per_kind).round().astype(int)
    columns.append(np.concatenate([_tile(stack.image[z], stack.masks[:, z]) for z in slices], axis=0))
    grid = Image.fromarray(np.concatenate(columns, axis=1))
    draw = ImageDraw.Draw(grid)
    for index, name in enumerate([*KINDS, "3D stack (z slices)"]):
        draw.rectangle([index * TILE, 0, index * TILE + 8 * len(name) + 6, 14], fill=(0, 0, 0))
        draw.text((index * TILE + 3, 1), name, fill=(255, 255, 255))
    return grid


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m recipes.data.preview", description=__doc__)
    parser.add_argument("out", help="image to write (.jpg keeps it small, .png is lossless)")
    parser.add_argument("--per-kind", type=int, default=2)
    parser.add_argument("--first-seed", type=int, default=0)
    args = parser.parse_args(argv)
    image = preview(args.per_kind, args.first_seed)
    image.save(Path(args.out), quality=88)
    print(f"wrote {args.out} ({image.width} x {image.height})")


if __name__ == "__main__":
    main()
