"""Large images in the napari plugin's annotator: time to the first mask, later clicks, tiled everything mode.

Builds a large fluorescence-like plane (default 8000 x 8000) by tiling generated nuclei scenes, then times
with the plugin's Qt-free StackAnnotator (what the widget runs in its workers):
- the first click on a tile (its one embedding + a decode), a second click there (decode only),
- a click on another tile, and everything mode over a sub-window of ``--everything-size`` pixels
  (full-plane everything is tiles x the per-tile time; the table extrapolates it).

    python -m recipes.bench.napari_tiles --size 8000 --out recipes/results/napari_large.md
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from tinysam_annotate.predictor import SamPredictor

from ..data.scenes import SceneConfig, generate_scene


def large_plane(size: int, seed: int = 7_000_000, distinct: int = 6) -> np.ndarray:
    """A size x size uint16 plane tiled from ``distinct`` generated 512-px fluorescence scenes (flipped and
    rotated so neighbours differ), grey and 16-bit like a microscope image."""
    block = 512
    config = SceneConfig(min_size=block, max_size=block, kinds={"fluorescence": 1.0})
    scenes = [generate_scene(seed + k, config).image[..., 1].astype(np.uint16) * 200 for k in range(distinct)]
    plane = np.zeros((size, size), dtype=np.uint16)
    n = (size + block - 1) // block
    for i in range(n):
        for j in range(n):
            tile = np.rot90(scenes[(i * n + j) % distinct], k=(i + 2 * j) % 4)
            h, w = min(block, size - i * block), min(block, size - j * block)
            plane[i * block : i * block + h, j * block : j * block + w] = tile[:h, :w]
    return plane


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8000)
    parser.add_argument("--everything-size", type=int, default=1024)
    parser.add_argument("--model", default="tinysam-synth")
    parser.add_argument("--backend", default="onnx")
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--out", default="recipes/results/napari_large.md")
    args = parser.parse_args(argv)

    from tinysam_napari.annotator import PlanePrompts, StackAnnotator, everything_factory
    from tinysam_napari.planes import PlaneSource

    from tinysam_annotate.loading import load_model

    predictor = SamPredictor(load_model(args.model, backend=args.backend, precision=args.precision))
    start = time.perf_counter()
    plane = large_plane(args.size)
    build_s = time.perf_counter() - start
    annotator = StackAnnotator(predictor, PlaneSource(plane))
    rows = [("plane", f"{args.size} x {args.size} uint16 ({plane.nbytes / 2**20:.0f} MB), built in {build_s:.1f} s"),
            ("tiles", f"{len(annotator.grid)} of {annotator.grid.tile} px, overlap {annotator.grid.overlap} px")]

    def timed(label: str, point: tuple[float, float]) -> None:
        t = time.perf_counter()
        preview = annotator.update(PlanePrompts((), ((point[0], point[1], True),)))
        rows.append((label, f"{(time.perf_counter() - t) * 1000:.0f} ms (tile {preview.tile}, mask {int(preview.mask.sum())} px)"))
        annotator.clear_prompts()

    centre = args.size * 0.51
    timed("first click (model view of the plane + tile embedding + decode)", (centre, centre))
    timed("second click on the same tile (decode only)", (centre + 100, centre + 50))
    timed("click on a new tile (its embedding + decode)", (args.size * 0.08, args.size * 0.09))
    timed("back to the first tile (embedding cache hit)", (centre, centre))

    window = plane[: args.everything_size, : args.everything_size]
    small = StackAnnotator(predictor, PlaneSource(window), tile_size=1024,
                           generator_factory=everything_factory("hierarchical", 0.7, 0.9))
    t = time.perf_counter()
    found = small.segment_everything([()])
    seconds = time.perf_counter() - t
    per_tile = seconds / len(small.grid)
    rows.append((f"everything, {args.everything_size} px window ({len(small.grid)} tiles)",
                 f"{seconds:.1f} s, {len(found[()])} objects after merging across tile borders ({per_tile:.1f} s / tile)"))
    rows.append((f"everything, whole {args.size} px plane (extrapolated)",
                 f"~{per_tile * len(annotator.grid) / 60:.0f} min ({len(annotator.grid)} tiles x {per_tile:.1f} s)"))
    lines = ["# napari plugin on a large plane", "",
             f"Model {args.model} {args.backend}/{args.precision} on {predictor.backend.device_description}; "
             "`python -m recipes.bench.napari_tiles`.", "", "| step | result |", "|---|---|"]
    lines += [f"| {a} | {b} |" for a, b in rows]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
