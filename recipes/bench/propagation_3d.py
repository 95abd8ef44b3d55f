"""3D objects from one box: the napari plugin's "Commit in 3D" against committing the middle slice only.

    python -m recipes.bench.propagation_3d [--stacks 6 --out recipes/results/propagation_3d.md]

Generated 3D fluorescence stacks (``recipes.data.scenes.generate_stack``: ellipsoid nuclei, z blur; never the
evaluation data, and not used in training). For every nucleus spanning at least 3 slices, a tight box on its
middle slice goes to the plugin's Qt-free ``StackAnnotator`` on the shipped model as users run it (ONNX INT8),
then either ``commit`` (one slice) or ``commit_in_3d`` (followed through the stack). Scores: 3D IoU of the
written label with the true nucleus, and the slices reached against the slices it spans.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tinysam_napari.annotator import PlanePrompts, StackAnnotator
from tinysam_napari.planes import PlaneSource
from tqdm import tqdm

from tinysam_annotate.cache import EmbeddingCache
from tinysam_annotate.loading import load_model
from tinysam_annotate.mask_geometry import iou, mask_box
from tinysam_annotate.predictor import SamPredictor

from ..data.scenes import generate_stack
from .model_eval import RESULTS

FIRST_SEED = 8_100_000  # stacks of this benchmark only


def score_stack(predictor: SamPredictor, seed: int, depth: int = 16, size: int = 192,
                max_objects: int | None = None) -> list[dict]:
    """One row per nucleus spanning >= 3 slices (the first ``max_objects``): 3D IoU and slices reached, middle-slice
    commit vs commit in 3D."""
    stack = generate_stack(seed, depth, size)
    annotator = StackAnnotator(predictor, PlaneSource(stack.image, rgb=True))
    rows = []
    for truth in stack.masks:
        slices = np.flatnonzero(truth.any(axis=(1, 2)))
        if len(slices) < 3:
            continue
        middle = int(slices[len(slices) // 2])
        if truth[middle].sum() < 30:
            continue
        x0, y0, x1, y1 = (float(v) for v in mask_box(truth[middle]))
        row = {"seed": seed, "true_slices": len(slices)}
        for mode in ("one slice", "3d"):
            annotator.labels[:] = 0
            annotator.update(PlanePrompts((middle,), (), (x0, y0, x1 - 1, y1 - 1)))
            object_id = annotator.commit() if mode == "one slice" else annotator.commit_in_3d()[0]
            found = annotator.labels == object_id
            row[mode] = (iou(found, truth), int(found.any(axis=(1, 2)).sum()))
        rows.append(row)
        if max_objects is not None and len(rows) >= max_objects:
            break
    return rows


def table(rows: list[dict], model: str) -> str:
    one = np.array([r["one slice"][0] for r in rows])
    three = np.array([r["3d"][0] for r in rows])
    reached = np.array([r["3d"][1] for r in rows])
    spans = np.array([r["true_slices"] for r in rows])
    lines = [
        "# 3D objects from one box on the middle slice",
        "",
        f"`python -m recipes.bench.propagation_3d`: {len(rows)} nuclei (spanning >= 3 slices) of "
        f"{len({r['seed'] for r in rows})} generated 16 x 192 x 192 stacks, model `{model}` (ONNX INT8), "
        "default limits (stop at predicted IoU < 0.5, overlap with the previous slice < 0.25, area < 10 px).",
        "",
        "| commit | mean 3D IoU | median 3D IoU | slices reached / spanned |",
        "|---|---|---|---|",
        f"| middle slice only | {one.mean():.3f} | {np.median(one):.3f} | {np.mean(np.ones_like(spans) / spans):.2f} |",
        f"| in 3D (followed) | {three.mean():.3f} | {np.median(three):.3f} | {np.mean(reached / spans):.2f} |",
        "",
        f"Commit in 3D beats the single slice on {int((three > one).sum())} of {len(rows)} nuclei and loses on "
        f"{int((three < one).sum())}; it overshoots (more slices than the nucleus spans) on "
        f"{int((reached > spans).sum())}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stacks", type=int, default=6)
    parser.add_argument("--model", default="tinysam-synth")
    parser.add_argument("--out", type=Path, default=RESULTS / "propagation_3d.md")
    args = parser.parse_args(argv)
    predictor = SamPredictor(load_model(args.model, backend="onnx", precision="int8"), cache=EmbeddingCache(directory=None))
    rows = []
    for seed in tqdm(range(FIRST_SEED, FIRST_SEED + args.stacks), desc="stacks"):
        rows.extend(score_stack(predictor, seed))
    args.out.write_text(table(rows, args.model))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
