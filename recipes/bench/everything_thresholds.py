"""Everything-mode thresholds for a model, chosen on scenes that neither training nor evaluation uses.

    python -m recipes.bench.everything_thresholds --model tinysam-synth --data ../runs/data/calib --scenes 60
        [--pred-iou 0.3 0.35 ...] [--stability 0.85 0.88 ...] [--out FILE]

Runs TinySAM's hierarchical generator once per scene at the lowest thresholds of the grid and keeps its candidates
(:meth:`SamHierarchicalMaskGenerator.candidates`); for every (predicted IoU, stability) pair it filters them, removes
duplicates as the generator does (:meth:`~SamHierarchicalMaskGenerator.merge`) and matches the masks one-to-one to the
scene's objects at IoU >= 0.5. The choice is the strictest pair whose F1 over all scenes (precision and recall
pooled over objects) is below the best pair's by at most one standard deviation of that difference (paired
bootstrap over scenes). Round 2's "done" region comes from the lowest thresholds' round 1 here, a larger region than
the chosen thresholds keep; the check on coins and nuclei_256 runs the generator itself at the current and the
chosen thresholds. Writes ``recipes/results/everything_thresholds.md`` and the per-scene counts beside it (.json).
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from pycocotools import mask as mask_utils
from tqdm import tqdm

from tinysam_annotate.amg import SamHierarchicalMaskGenerator
from tinysam_annotate.amg.masks import Candidate, encode_rle
from tinysam_annotate.registry import EverythingThresholds, everything_thresholds

from ..data.sa1b import Sa1bFolder
from .metrics import match_ious, match_masks
from .model_eval import RESULTS, coins_reference, everything, nuclei_data

# A first sweep (0.5-0.85 x 0.75-0.95) peaked at its lowest IoU threshold and at stability 0.9, hence this grid.
PRED_IOU_GRID = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7)
STABILITY_GRID = (0.85, 0.88, 0.9, 0.92)


@dataclass(frozen=True)
class Tally:
    """One-to-one matches of one threshold pair, pooled over scenes."""

    matches: int = 0
    predicted: int = 0
    objects: int = 0

    def __add__(self, other: "Tally") -> "Tally":
        return Tally(self.matches + other.matches, self.predicted + other.predicted, self.objects + other.objects)

    @property
    def precision(self) -> float:
        return self.matches / self.predicted if self.predicted else 1.0

    @property
    def recall(self) -> float:
        return self.matches / self.objects if self.objects else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass
class Sweep:
    """Each threshold pair's tally per scene, keyed by (predicted IoU, stability)."""

    per_scene: dict[tuple[float, float], list[Tally]] = field(default_factory=dict)

    def add(self, pair: tuple[float, float], tally: Tally) -> None:
        self.per_scene.setdefault(pair, []).append(tally)

    @property
    def tallies(self) -> dict[tuple[float, float], Tally]:
        """Each pair's tally pooled over the scenes."""
        return {pair: sum(scenes, Tally()) for pair, scenes in self.per_scene.items()}

    def best(self) -> tuple[float, float]:
        """The pair with the highest pooled F1 (ties: the stricter pair)."""
        tallies = self.tallies
        return max(tallies, key=lambda pair: (round(tallies[pair].f1, 6), pair))

    def difference_spread(self, pair: tuple[float, float], other: tuple[float, float], resamples: int = 500,
                          seed: int = 0) -> float:
        """The standard deviation of F1(pair) - F1(other), pooled over scenes drawn with replacement (a paired
        bootstrap: both pairs on the same draws, so what the scenes share cancels)."""
        ours, theirs = self.per_scene[pair], self.per_scene[other]
        rng = np.random.default_rng(seed)
        differences = []
        for _ in range(resamples):
            draw = rng.integers(0, len(ours), len(ours))
            differences.append(sum((ours[i] for i in draw), Tally()).f1 - sum((theirs[i] for i in draw), Tally()).f1)
        return float(np.std(differences))

    def choice(self) -> tuple[float, float]:
        """The strictest pair (highest predicted IoU, then stability) whose F1 is below the best's by at most one
        standard deviation of that difference: the scenes cannot tell such a pair from the best, and the stricter
        one gives a user fewer wrong masks to delete."""
        tallies, best = self.tallies, self.best()
        return max(pair for pair, tally in tallies.items()
                   if tallies[best].f1 - tally.f1 <= self.difference_spread(best, pair))

    def to_json(self) -> dict[str, Any]:
        return {f"{p} {s}": [[t.matches, t.predicted, t.objects] for t in scenes]
                for (p, s), scenes in self.per_scene.items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Sweep":
        """A sweep written by :meth:`to_json` (the report can be re-made without running the model again)."""
        sweep = cls()
        for key, scenes in data.items():
            pred_iou, stability = (float(v) for v in key.split())
            sweep.per_scene[(pred_iou, stability)] = [Tally(*counts) for counts in scenes]
        return sweep


def passing(candidates: Sequence[Candidate], pred_iou: float, stability: float) -> list[Candidate]:
    """The candidates the generator keeps at these thresholds (its rules: IoU strictly above, stability at least)."""
    return [c for c in candidates if c.iou > pred_iou and c.stability >= stability]


def tally(found: Sequence[dict[str, Any]], truth: Sequence[dict[str, Any]]) -> Tally:
    """Masks ``found`` matched one-to-one to the objects ``truth`` at IoU >= 0.5 (both COCO RLEs of one image)."""
    ious = mask_utils.iou(list(found), list(truth), [0] * len(truth)) if found and truth else np.zeros((len(found), len(truth)))
    matches, _, _ = match_ious(np.asarray(ious), 0.5)
    return Tally(matches, len(found), len(truth))


def sweep_scene(generator: SamHierarchicalMaskGenerator, image: np.ndarray, objects: Sequence[np.ndarray],
                pairs: Sequence[tuple[float, float]], sweep: Sweep) -> None:
    """Add one scene (H x W x 3 uint8, its N H x W bool objects) to every pair's tally. The generator's own
    thresholds must be at most every pair's, its output mode "coco_rle" (IoUs are taken on RLEs)."""
    truth = [encode_rle(mask) for mask in objects]
    candidates = generator.candidates(image)
    for pair in pairs:
        sweep.add(pair, tally([r["segmentation"] for r in generator.merge(passing(candidates, *pair))], truth))


def real_images_check(model: Any, thresholds: Sequence[EverythingThresholds]) -> list[dict[str, Any]]:
    """The generator itself on coins (24 reference coins) and nuclei_256 (65 nuclei) at each pair of thresholds."""
    nuclei, nuclei_masks = nuclei_data()
    coins, coin_masks = coins_reference()
    rows = []
    for tuned in thresholds:
        params = {"pred_iou_thresh": tuned.pred_iou, "stability_score_thresh": tuned.stability}
        row: dict[str, Any] = {"pred_iou": tuned.pred_iou, "stability": tuned.stability}
        for name, image, truth in (("coins", coins, coin_masks), ("nuclei", nuclei, nuclei_masks)):
            found, seconds = everything(model, image, **params)
            matches, precision, recall = match_masks(found, truth)
            row[name] = {"found": matches, "masks": len(found), "precision": precision, "recall": recall,
                         "seconds": seconds}
        rows.append(row)
    return rows


def markdown(model_name: str, scenes: int, sweep: Sweep, current: EverythingThresholds,
             checks: list[dict[str, Any]]) -> str:
    """The report: the sweep's table (F1, precision, recall per pair) and the real-image check."""
    tallies = sweep.tallies
    pred_ious = sorted({p for p, _ in tallies})
    stabilities = sorted({s for _, s in tallies})
    best, chosen = sweep.best(), sweep.choice()
    lines = [f"# Everything-mode thresholds for {model_name}", "",
             f"Chosen on {scenes} calibration scenes (generated, seeds that neither training nor evaluation uses): "
             f"hierarchical generator, ONNX Runtime INT8, 32 points per side; masks matched one-to-one to the scene's "
             f"objects at IoU >= 0.5, precision and recall pooled over scenes. Current thresholds "
             f"{current.pred_iou} / {current.stability}. Best F1 {tallies[best].f1:.3f} at predicted IoU {best[0]} / "
             f"stability {best[1]}; **chosen: {chosen[0]} / {chosen[1]}** (bold below), the strictest pair whose F1 is "
             f"below the best's by at most one standard deviation of the difference (paired bootstrap over scenes: "
             f"{tallies[best].f1 - tallies[chosen].f1:.3f} <= {sweep.difference_spread(best, chosen):.3f}).",
             "", "F1 (precision / recall) by predicted-IoU threshold (rows) and stability threshold (columns):", "",
             "| pred IoU | " + " | ".join(f"{s}" for s in stabilities) + " |",
             "|---|" + "---|" * len(stabilities)]
    for p in pred_ious:
        cells = []
        for s in stabilities:
            t = tallies[(p, s)]
            cell = f"{t.f1:.3f} ({t.precision:.2f} / {t.recall:.2f})"
            cells.append(f"**{cell}**" if (p, s) == chosen else cell)
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    lines += ["", "Check on real images (not used to choose; the generator itself, each pair run on its own):", "",
              "| pred IoU / stability | coins found of 24 (masks) | nuclei_256 recall / precision (masks) | s (coins, nuclei) |",
              "|---|---|---|---|"]
    for row in checks:
        c, n = row["coins"], row["nuclei"]
        lines.append(f"| {row['pred_iou']} / {row['stability']} | {c['found']} ({c['masks']}) | "
                     f"{n['recall']:.3f} / {n['precision']:.3f} ({n['masks']}) | {c['seconds']:.1f}, {n['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    from tinysam_annotate import load_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tinysam-synth", help="a registered name or a checkpoint path")
    parser.add_argument("--data", help="an SA-1B-layout folder of scenes used by neither training nor evaluation")
    parser.add_argument("--scenes", type=int, default=60)
    parser.add_argument("--pred-iou", type=float, nargs="+", default=list(PRED_IOU_GRID))
    parser.add_argument("--stability", type=float, nargs="+", default=list(STABILITY_GRID))
    parser.add_argument("--skip-check", action="store_true", help="leave out the coins and nuclei_256 runs")
    parser.add_argument("--out", type=Path, default=RESULTS / "everything_thresholds.md",
                        help="the report; the per-scene counts go beside it (.json)")
    parser.add_argument("--from-counts", type=Path, default=None,
                        help="re-make the report from a .json of per-scene counts instead of running the model")
    args = parser.parse_args(argv)
    if args.from_counts is None and args.data is None:
        parser.error("give --data (scenes to run on) or --from-counts (a sweep's per-scene counts)")

    # Re-making the report from counts without the real-image check needs no model.
    needs_model = args.from_counts is None or not args.skip_check
    model = load_model(args.model, backend="onnx", precision="int8") if needs_model else None
    if args.from_counts is not None:
        sweep = Sweep.from_json(json.loads(args.from_counts.read_text()))
        count = len(next(iter(sweep.per_scene.values())))
    else:
        pairs = list(itertools.product(sorted(args.pred_iou), sorted(args.stability)))
        generator = SamHierarchicalMaskGenerator(model, pred_iou_thresh=min(args.pred_iou),
                                                 stability_score_thresh=min(args.stability), output_mode="coco_rle")
        corpus = Sa1bFolder(args.data)
        count = min(args.scenes, len(corpus))
        sweep = Sweep()
        for index in tqdm(range(count), desc="scenes"):
            record = corpus[index]
            sweep_scene(generator, record.image, list(record.masks), pairs, sweep)
        args.out.with_suffix(".json").write_text(json.dumps(sweep.to_json()))
    current = everything_thresholds(args.model)
    chosen = EverythingThresholds(*sweep.choice())
    checks = [] if args.skip_check else real_images_check(model, [current, chosen] if chosen != current else [current])
    report = markdown(args.model, count, sweep, current, checks)
    args.out.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
