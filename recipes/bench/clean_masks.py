"""Raw against cleaned interactive masks: pieces per mask and IoU, one point and one box per object.

    python -m recipes.bench.clean_masks --heldout DATA/heldout [--scenes 40 --objects 10 --model tinysam-synth]

Runs the model on the engine users get by default (ONNX INT8), on held-out generated scenes and on
``../shared/data/nuclei_256.tif``; the mask of each prompt is the best of three by predicted IoU, then
:func:`tinysam_annotate.cleanup.clean_mask` with the app's settings. Writes ``recipes/results/clean_masks.md``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tinysam_annotate.cleanup import clean_mask, count_parts
from tinysam_annotate.loading import load_model
from tinysam_annotate.predictor import SamPredictor

from ..data.sa1b import Sa1bFolder
from .metrics import interior_point, iou, mask_box
from .model_eval import RESULTS, nuclei_data
from .prompts import best_of, outside_fraction


@dataclass
class CleanupScores:
    """Per prompt kind ("point", "box"): raw and cleaned pieces, IoUs and (box) outside-the-box fractions."""

    pieces: dict[str, list[tuple[int, int]]] = field(default_factory=lambda: {"point": [], "box": []})
    ious: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: {"point": [], "box": []})
    outside: list[tuple[float, float]] = field(default_factory=list)

    def add(self, kind: str, raw: np.ndarray, cleaned: np.ndarray, gt: np.ndarray) -> None:
        self.pieces[kind].append((count_parts(raw), count_parts(cleaned)))
        self.ious[kind].append((iou(raw, gt), iou(cleaned, gt)))


def score_image(predictor: SamPredictor, image: np.ndarray, objects: list[np.ndarray], scores: CleanupScores) -> None:
    """One deepest-pixel click and one tight box per object, raw and cleaned."""
    predictor.set_image(image)
    for gt in objects:
        x, y = interior_point(gt)
        point, label = np.array([[x, y]]), np.array([1])
        masks, ious, _ = predictor.predict(point, label)
        raw = best_of(masks, ious)
        scores.add("point", raw, clean_mask(raw, point, label), gt)
        box = mask_box(gt)
        masks, ious, _ = predictor.predict(box=box)
        raw = best_of(masks, ious)
        cleaned = clean_mask(raw, box=box)
        scores.add("box", raw, cleaned, gt)
        scores.outside.append((outside_fraction(raw, box), outside_fraction(cleaned, box)))


def rows(name: str, scores: CleanupScores) -> list[str]:
    out = []
    for kind in ("point", "box"):
        pieces = np.array(scores.pieces[kind], dtype=np.float64)
        ious = np.array(scores.ious[kind], dtype=np.float64)
        spill = ""
        if kind == "box":
            outside = np.median(np.array(scores.outside), axis=0)
            spill = f"{outside[0]:.3f} -> {outside[1]:.3f}"
        out.append(
            f"| {name} | {kind} | {len(ious)} | {pieces[:, 0].mean():.1f} -> {pieces[:, 1].mean():.1f} | "
            f"{np.mean(pieces[:, 0] > 1):.0%} -> {np.mean(pieces[:, 1] > 1):.0%} | "
            f"{ious[:, 0].mean():.3f} -> {ious[:, 1].mean():.3f} | {spill} |"
        )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heldout", help="held-out SA-1B-format folder (python -m recipes.data ... --first 1000000)")
    parser.add_argument("--scenes", type=int, default=40)
    parser.add_argument("--objects", type=int, default=10)
    parser.add_argument("--model", default="tinysam-synth")
    parser.add_argument("--backend", default="onnx")
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--out", type=Path, default=RESULTS / "clean_masks.md")
    args = parser.parse_args(argv)

    predictor = SamPredictor(load_model(args.model, backend=args.backend, precision=args.precision))
    table = []
    if args.heldout:
        scores, corpus, rng = CleanupScores(), Sa1bFolder(args.heldout), np.random.default_rng(0)
        for index in tqdm(range(min(args.scenes, len(corpus))), desc="held-out scenes"):
            record = corpus[index]
            pick = rng.permutation(len(record.masks))[: args.objects]
            score_image(predictor, record.image, [record.masks[i] for i in pick], scores)
        table += rows(f"held-out scenes ({args.scenes} x {args.objects})", scores)
    image, nuclei = nuclei_data()
    scores = CleanupScores()
    score_image(predictor, image, nuclei, scores)
    table += rows("nuclei_256.tif", scores)
    text = "\n".join([
        "# Clean interactive masks: raw against cleaned",
        "",
        f"Model `{args.model}` on {args.backend}/{args.precision} (the default engine); per object one click on its",
        "deepest pixel and one tight box, best of three masks by predicted IoU, then `clean_mask` with the app's",
        "settings (parts holding a positive point or mostly inside the box, specks under 10% of the largest part",
        "dropped, holes under 10% of the area filled). `python -m recipes.bench.clean_masks` writes this file.",
        "",
        "| set | prompt | objects | pieces per mask (mean) | masks in > 1 piece | mIoU | box spill (median) |",
        "|---|---|---|---|---|---|---|",
        *table,
        "",
    ])
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
