"""The quality report of a shipped model: held-out procedural scenes, real nuclei, coins, FP32 vs INT8.

    python -m recipes.bench.model_eval --model tinysam-synth --heldout DATA/heldout [--engines torch-fp32 onnx-fp32 onnx-int8]

Writes ``recipes/results/<model>.md`` (tables), ``<model>_clicks.png`` (click curve) and
``<model>_coins.png`` / ``<model>_nuclei.png`` (everything-mode overlays).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage import data as skdata
from skimage import filters, segmentation
from tqdm import tqdm

from tinysam_annotate.io.image import load_image
from tinysam_annotate.predictor import SamPredictor
from tinysam_annotate.visualize import render_objects

from ..data.sa1b import Sa1bFolder
from .metrics import match_masks
from .prompts import PromptScores, evaluate_prompts

RESULTS = Path(__file__).resolve().parents[1] / "results"
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def heldout_scores(predictor: SamPredictor, folder: str | Path | Any, max_objects: int = 20, click_images: int = 0,
                   max_clicks: int = 9, progress: bool = True, max_scenes: int | None = None) -> PromptScores:
    """1-point (deepest interior pixel) and box IoUs over up to ``max_objects`` objects per held-out scene
    (the first ``max_scenes`` scenes, all by default) of an SA-1B folder or a sequence of records.

    The first ``click_images`` scenes also run the 1..``max_clicks`` click protocol on 5 objects each.
    """
    scores, clicks = PromptScores(), PromptScores()
    rng = np.random.default_rng(0)
    corpus = Sa1bFolder(folder) if isinstance(folder, (str, Path)) else folder
    count = len(corpus) if max_scenes is None else min(max_scenes, len(corpus))
    for index in tqdm(range(count), desc="held-out scenes", disable=not progress):
        record = corpus[index]
        pick = rng.permutation(len(record.masks))[:max_objects]
        evaluate_prompts(predictor, record.image, [record.masks[i] for i in pick], scores)
        if index < click_images:
            evaluate_prompts(predictor, record.image, [record.masks[i] for i in pick[:5]], clicks, max_clicks=max_clicks)
    scores.clicks = clicks.clicks
    return scores


def nuclei_data() -> tuple[np.ndarray, list[np.ndarray]]:
    """../shared/data/nuclei_256.tif as RGB and its 65 instance masks."""
    import tifffile

    image = tifffile.imread(SHARED_DATA / "nuclei_256.tif")
    labels = tifffile.imread(SHARED_DATA / "nuclei_256_mask.tif")
    return load_image(image).rgb, [labels == i for i in np.unique(labels) if i > 0]


def coins_reference() -> tuple[np.ndarray, list[np.ndarray]]:
    """skimage's coins and a classical reference segmentation (scikit-image's watershed tutorial: Sobel
    elevation, markers from intensity, watershed, holes filled), used to count the coins a model finds."""
    coins = skdata.coins()
    elevation = filters.sobel(coins)
    markers = np.zeros_like(coins, dtype=np.int32)
    markers[coins < 30] = 1
    markers[coins > 150] = 2
    fg = ndimage.binary_fill_holes(segmentation.watershed(elevation, markers) == 2)
    labels, _ = ndimage.label(fg)
    masks = [labels == i for i in range(1, labels.max() + 1) if (labels == i).sum() > 300]
    return np.repeat(coins[..., None], 3, axis=2), masks


def everything(model: Any, image: np.ndarray, **params: Any) -> tuple[list[np.ndarray], float]:
    from tinysam_annotate.amg import SamHierarchicalMaskGenerator  # pycocotools: not on GPU hosts, which score prompts only

    generator = SamHierarchicalMaskGenerator(model, **params)
    start = time.perf_counter()
    masks = [r["segmentation"] for r in generator.generate(image)]
    return masks, time.perf_counter() - start


def evaluate_engine(model: Any, heldout: str | Path | None, max_objects: int, click_images: int, overlay_prefix: Path | None,
                    everything_params: dict[str, Any]) -> dict[str, Any]:
    """All numbers of one engine (backend + precision)."""
    predictor = SamPredictor(model)
    report: dict[str, Any] = {}
    if heldout:
        scores = heldout_scores(predictor, heldout, max_objects, click_images)
        report["heldout"] = {"objects": len(scores.point), "point_miou": scores.miou("point"),
                             "box_miou": scores.miou("box"), "click_curve": scores.click_curve(),
                             "box_outside_median": scores.median_box_outside(), "iou_pearson": scores.iou_correlation()}
    if (SHARED_DATA / "nuclei_256.tif").exists():
        image, masks = nuclei_data()
        scores = PromptScores()
        evaluate_prompts(predictor, image, masks, scores, point_rule="centroid")
        found, seconds = everything(model, image, **everything_params)
        matches, precision, recall = match_masks(found, masks)
        report["nuclei"] = {"objects": len(masks), "box_miou": scores.miou("box"), "centroid_miou": scores.miou("point"),
                            "box_outside_median": scores.median_box_outside(), "iou_pearson": scores.iou_correlation(),
                            "everything_masks": len(found), "everything_precision": precision,
                            "everything_recall": recall, "everything_s": seconds}
        if overlay_prefix:
            Image.fromarray(render_objects(image, found)).save(f"{overlay_prefix}_nuclei.png")
    coins, reference = coins_reference()
    found, seconds = everything(model, coins, **everything_params)
    matches, precision, _ = match_masks(found, reference)
    report["coins"] = {"reference_coins": len(reference), "found": matches, "everything_masks": len(found),
                       "precision": precision, "everything_s": seconds}
    if overlay_prefix:
        Image.fromarray(render_objects(coins, found)).save(f"{overlay_prefix}_coins.png")
    return report


def markdown(model_name: str, reports: dict[str, dict[str, Any]], everything_params: dict[str, Any]) -> str:
    lines = [f"# {model_name}: quality", ""]
    engines = list(reports)
    first = reports[engines[0]]
    if "heldout" in first:
        lines += [f"## Held-out procedural scenes ({first['heldout']['objects']} objects; best of 3 by predicted IoU)", "",
                  "| engine | 1-point mIoU (target 0.75) | box mIoU (target 0.85) | box mask outside its box, median (<= 0.05) "
                  "| predicted vs true IoU, Pearson r (>= 0.7) |", "|---|---|---|---|---|"]
        lines += [f"| {e} | {r['heldout']['point_miou']:.3f} | {r['heldout']['box_miou']:.3f} | "
                  f"{r['heldout']['box_outside_median']:.3f} | {r['heldout']['iou_pearson']:.3f} |" for e, r in reports.items()]
        curve = first["heldout"]["click_curve"]
        if curve:
            lines += ["", "Click curve (" + engines[0] + "): mIoU after k clicks, k = 1.." + str(len(curve)), "",
                      "| " + " | ".join(str(k + 1) for k in range(len(curve))) + " |", "|" + "---|" * len(curve),
                      "| " + " | ".join(f"{v:.3f}" for v in curve) + " |"]
    if "nuclei" in first:
        lines += ["", f"## nuclei_256.tif ({first['nuclei']['objects']} nuclei, never used in training)", "",
                  "| engine | box mIoU (target 0.80) | centroid 1-point mIoU (target 0.65) | box outside, median | IoU r "
                  "| everything masks | precision@0.5 (0.80) | recall@0.5 (0.75) | everything s |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for e, r in reports.items():
            n = r["nuclei"]
            lines.append(f"| {e} | {n['box_miou']:.3f} | {n['centroid_miou']:.3f} | {n['box_outside_median']:.3f} | "
                         f"{n['iou_pearson']:.3f} | {n['everything_masks']} | "
                         f"{n['everything_precision']:.3f} | {n['everything_recall']:.3f} | {n['everything_s']:.1f} |")
    lines += ["", f"## skimage.data.coins() everything mode ({first['coins']['reference_coins']} coins in the watershed reference)", "",
              "| engine | coins found (IoU >= 0.5) | masks | precision | everything s |", "|---|---|---|---|---|"]
    lines += [f"| {e} | {r['coins']['found']} / {r['coins']['reference_coins']} | {r['coins']['everything_masks']} | "
              f"{r['coins']['precision']:.3f} | {r['coins']['everything_s']:.1f} |" for e, r in reports.items()]
    lines += ["", f"Everything mode: hierarchical, {json.dumps(everything_params)}.", ""]
    return "\n".join(lines)


def plot_clicks(curves: dict[str, list[float]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for name, curve in curves.items():
        ax.plot(range(1, len(curve) + 1), curve, marker="o", label=name)
    ax.set_xlabel("clicks")
    ax.set_ylabel("mIoU")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    from tinysam_annotate.loading import load_model
    from tinysam_annotate.registry import MODEL_SPECS, everything_thresholds

    parser = argparse.ArgumentParser(prog="python -m recipes.bench.model_eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tinysam-synth", help="registry name or checkpoint path")
    parser.add_argument("--name", default=None, help="name used for the output files (default: the model)")
    parser.add_argument("--heldout", help="SA-1B folder of held-out scenes")
    parser.add_argument("--engines", nargs="+", default=["torch-fp32", "onnx-fp32", "onnx-int8"])
    parser.add_argument("--max-objects", type=int, default=20)
    parser.add_argument("--click-images", type=int, default=40)
    parser.add_argument("--pred-iou-thresh", type=float, default=None, help="default: the model's registry entry")
    parser.add_argument("--stability-score-thresh", type=float, default=None, help="default: the model's registry entry")
    parser.add_argument("--out-dir", default=str(RESULTS))
    args = parser.parse_args(argv)
    name = args.name or Path(args.model).stem
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # a checkpoint path evaluated under a registered --name (a candidate of that model) gets that model's thresholds
    tuned = everything_thresholds(args.model if args.model in MODEL_SPECS else (args.name or args.model))
    params = {"pred_iou_thresh": tuned.pred_iou if args.pred_iou_thresh is None else args.pred_iou_thresh,
              "stability_score_thresh": tuned.stability if args.stability_score_thresh is None else args.stability_score_thresh}
    reports = {}
    for engine in args.engines:
        backend, precision = engine.split("-")
        model = load_model(args.model, backend=backend, precision=precision)
        first = not reports
        reports[engine] = evaluate_engine(model, args.heldout, args.max_objects, args.click_images if first else 0,
                                          out_dir / name if first else None, params)
        print(engine, json.dumps(reports[engine]))
    (out_dir / f"{name}.json").write_text(json.dumps(reports, indent=2))
    (out_dir / f"{name}.md").write_text(markdown(name, reports, params))
    curves = {e: r["heldout"]["click_curve"] for e, r in reports.items() if r.get("heldout", {}).get("click_curve")}
    if curves:
        plot_clicks(curves, out_dir / f"{name}_clicks.png")
    print((out_dir / f"{name}.md").read_text())


if __name__ == "__main__":
    main()
