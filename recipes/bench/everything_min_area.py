"""Does a minimum mask area help everything mode? Measured on scenes that neither training nor evaluation uses.

    python -m recipes.bench.everything_min_area --model tinysam-synth --data ../runs/data/calib --scenes 40

Runs TinySAM's hierarchical generator at the model's own thresholds once per scene; for each minimum (a fraction of
the image's pixels) drops the masks smaller than it and matches the rest one-to-one to the scene's objects at
IoU >= 0.5, pooling precision and recall over scenes (as ``everything_thresholds`` does). A minimum that raised F1
here would travel with the model like its thresholds; writes ``recipes/results/everything_min_area.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from tinysam_annotate.amg import SamHierarchicalMaskGenerator
from tinysam_annotate.amg.masks import encode_rle

from ..data.sa1b import Sa1bFolder
from .everything_thresholds import Tally, tally
from .model_eval import RESULTS

FRACTIONS = (0.0, 2.5e-5, 5e-5, 1e-4, 2e-4, 3e-4, 4e-4, 6e-4, 8e-4, 1.2e-3, 1.6e-3)


def scene_tallies(generator: SamHierarchicalMaskGenerator, image: np.ndarray, objects: Sequence[np.ndarray],
                  fractions: Sequence[float]) -> list[Tally]:
    """One scene (H x W x 3 uint8, its N H x W bool objects): a tally per minimum area fraction. The generator's
    output mode must be "coco_rle"."""
    truth = [encode_rle(mask) for mask in objects]
    found = generator.generate(image)
    pixels = image.shape[0] * image.shape[1]
    return [tally([r["segmentation"] for r in found if r["area"] >= fraction * pixels], truth) for fraction in fractions]


def markdown(model_name: str, scenes: int, thresholds: tuple[float, float], fractions: Sequence[float],
             pooled: Sequence[Tally]) -> str:
    lines = [f"# Everything mode with a minimum mask area: {model_name}", "",
             f"{scenes} calibration scenes (generated, seeds that neither training nor evaluation uses), hierarchical "
             f"generator at the model's thresholds (predicted IoU {thresholds[0]} / stability {thresholds[1]}), ONNX "
             "Runtime INT8; masks smaller than the minimum (a fraction of the image's pixels) dropped, the rest matched "
             "one-to-one to the scene's objects at IoU >= 0.5, pooled over scenes.", "",
             "| minimum area (fraction of the image) | masks | matched | precision | recall | F1 |", "|---|---|---|---|---|---|"]
    for fraction, t in zip(fractions, pooled, strict=True):
        lines.append(f"| {fraction:g} | {t.predicted} | {t.matches} | {t.precision:.3f} | {t.recall:.3f} | {t.f1:.3f} |")
    lines += ["", "Written by `python -m recipes.bench.everything_min_area`."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    from tinysam_annotate import load_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tinysam-synth", help="a registered name or a checkpoint path")
    parser.add_argument("--data", required=True, help="an SA-1B-layout folder of scenes used by neither training nor evaluation")
    parser.add_argument("--scenes", type=int, default=40)
    parser.add_argument("--fractions", type=float, nargs="+", default=list(FRACTIONS))
    parser.add_argument("--out", type=Path, default=RESULTS / "everything_min_area.md")
    args = parser.parse_args(argv)

    model: Any = load_model(args.model, backend="onnx", precision="int8")
    generator = SamHierarchicalMaskGenerator(model, output_mode="coco_rle")
    corpus = Sa1bFolder(args.data)
    count = min(args.scenes, len(corpus))
    pooled = [Tally()] * len(args.fractions)
    for index in tqdm(range(count), desc="scenes"):
        record = corpus[index]
        per_scene = scene_tallies(generator, record.image, list(record.masks), args.fractions)
        pooled = [total + t for total, t in zip(pooled, per_scene, strict=True)]
    thresholds = (generator.pred_iou_thresh, generator.stability_score_thresh)
    report = markdown(args.model, count, thresholds, args.fractions, pooled)
    args.out.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
