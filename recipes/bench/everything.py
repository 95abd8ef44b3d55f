"""Everything mode, grid vs TinySAM's hierarchical strategy: time, decoder prompts, agreement, and (with
ground truth) precision / recall at IoU 0.5.

    python -m recipes.bench.everything [--model NAME] [--points-per-side 32] IMAGES...
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinysam_annotate.amg import SamAutomaticMaskGenerator, SamHierarchicalMaskGenerator
from tinysam_annotate.io.image import load_image

from .metrics import iou, match_masks


@dataclass
class ModeResult:
    masks: list[np.ndarray]
    seconds: float
    prompts: int


def run_mode(model: Any, image: np.ndarray, mode: str, **params: Any) -> ModeResult:
    """Masks of one everything-mode run; the embedding is computed before the clock starts (both modes share it)."""
    cls = SamHierarchicalMaskGenerator if mode == "hierarchical" else SamAutomaticMaskGenerator
    generator = cls(model, **params)
    generator.predictor.set_image(image)  # warm the cache: the comparison is about the prompting strategy
    start = time.perf_counter()
    records = generator.generate(image)
    seconds = time.perf_counter() - start
    if mode == "hierarchical":
        prompts = sum(generator.last_round_sizes)
    else:
        prompts = generator.points_per_side**2 if generator.points_per_side else 0
    return ModeResult([r["segmentation"] for r in records], seconds, prompts)


def agreement(reference: list[np.ndarray], candidate: list[np.ndarray]) -> float:
    """Mean over reference masks of their best IoU with a candidate mask (the paper's 'mIoU vs grid')."""
    if not reference:
        return 1.0 if not candidate else 0.0
    return float(np.mean([max((iou(r, c) for c in candidate), default=0.0) for r in reference]))


def compare(model: Any, images: dict[str, np.ndarray], truth: dict[str, list[np.ndarray]] | None = None, **params: Any) -> list[dict]:
    """One row per image: times, prompts, mask counts, agreement, and P/R when ``truth`` has the image."""
    rows = []
    for name, image in images.items():
        grid = run_mode(model, image, "grid", **params)
        hier = run_mode(model, image, "hierarchical", **params)
        row = {"image": name, "grid_s": grid.seconds, "hier_s": hier.seconds, "grid_prompts": grid.prompts,
               "hier_prompts": hier.prompts, "grid_masks": len(grid.masks), "hier_masks": len(hier.masks),
               "miou_vs_grid": agreement(grid.masks, hier.masks)}
        if truth and name in truth:
            for mode, result in (("grid", grid), ("hier", hier)):
                _, p, r = match_masks(result.masks, truth[name])
                row[f"{mode}_precision"], row[f"{mode}_recall"] = p, r
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| image | grid s | hierarchical s | speed-up | grid prompts | hier. prompts | grid masks | hier. masks | mIoU vs grid |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['image']} | {r['grid_s']:.2f} | {r['hier_s']:.2f} | {r['grid_s'] / max(r['hier_s'], 1e-9):.2f}x | "
                     f"{r['grid_prompts']} | {r['hier_prompts']} | {r['grid_masks']} | {r['hier_masks']} | {r['miou_vs_grid']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from tinysam_annotate.loading import load_model

    parser = argparse.ArgumentParser(prog="python -m recipes.bench.everything", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+")
    parser.add_argument("--model", default="tinysam-synth")
    parser.add_argument("--backend", default="onnx")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--points-per-side", type=int, default=32)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "results" / "everything_modes.md"))
    args = parser.parse_args(argv)
    model = load_model(args.model, backend=args.backend, precision=args.precision)
    images = {Path(p).name: load_image(p).rgb for p in args.images}
    rows = compare(model, images, points_per_side=args.points_per_side)
    text = f"# Everything mode: grid vs hierarchical ({args.model}, {args.backend} {args.precision})\n\n{table(rows)}\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
