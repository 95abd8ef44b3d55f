"""Zero-shot instance segmentation with box prompts, scored with pycocotools (segm AP, AP_S/M/L).

Boxes come from the ground truth or from a detections file in COCO results format, as in the paper
(which prompts with ViTDet boxes). Each box yields the decoder output with the highest predicted IoU;
its score is detection score x predicted IoU (predicted IoU alone for ground-truth boxes).

    python -m recipes.bench.coco_ap --coco annotations.json --images DIR [--detections dets.json] [--model NAME]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tqdm import tqdm

from tinysam_annotate.io.coco import rle_from_mask
from tinysam_annotate.io.image import load_image
from tinysam_annotate.predictor import SamPredictor

METRIC_NAMES = ("AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L")


def evaluate_segm(ground_truth: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, float]:
    """COCO segm metrics of ``results`` (COCO results format) against a ground-truth COCO dict."""
    gt = COCO()
    gt.dataset = json.loads(json.dumps(ground_truth))
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        if not results:
            return {name: 0.0 for name in METRIC_NAMES}
        dt = gt.loadRes(json.loads(json.dumps(results)))
        evaluator = COCOeval(gt, dt, iouType="segm")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(v) for name, v in zip(METRIC_NAMES, evaluator.stats[:6], strict=True)}


def box_prompt_results(
    predictor: SamPredictor,
    coco: dict[str, Any],
    image_dir: str | Path,
    detections: list[dict[str, Any]] | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Segment every box (ground truth, or ``detections``) of every image; COCO results format."""
    boxes: dict[int, list[tuple[list[float], int, float]]] = defaultdict(list)
    if detections is None:
        for ann in coco["annotations"]:
            boxes[ann["image_id"]].append((ann["bbox"], ann["category_id"], 1.0))
    else:
        for det in detections:
            boxes[det["image_id"]].append((det["bbox"], det["category_id"], float(det.get("score", 1.0))))
    results = []
    for img in tqdm(coco["images"], desc="box prompts", disable=not progress):
        if not boxes.get(img["id"]):
            continue
        predictor.set_image(load_image(Path(image_dir) / img["file_name"]).rgb)
        for (x, y, w, h), category, det_score in boxes[img["id"]]:
            masks, ious, _ = predictor.predict(box=np.array([x, y, x + w, y + h], dtype=np.float32))
            best = int(np.argmax(ious))
            results.append({
                "image_id": img["id"],
                "category_id": category,
                "segmentation": rle_from_mask(masks[best]),
                "score": det_score * float(ious[best]),
            })
    return results


def write_table(metrics: dict[str, float], out: Path, title: str) -> Path:
    lines = [f"# {title}", "", "| " + " | ".join(METRIC_NAMES) + " |", "|" + "---|" * len(METRIC_NAMES),
             "| " + " | ".join(f"{metrics[n]:.3f}" for n in METRIC_NAMES) + " |", ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    return out


def main(argv: list[str] | None = None) -> None:
    from tinysam_annotate.loading import load_model

    parser = argparse.ArgumentParser(prog="python -m recipes.bench.coco_ap", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--coco", required=True, help="ground-truth COCO JSON")
    parser.add_argument("--images", required=True, help="folder of the images")
    parser.add_argument("--detections", help="COCO results JSON with boxes and scores (default: ground-truth boxes)")
    parser.add_argument("--model", default="tinysam-synth")
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "results" / "coco_ap.md"))
    args = parser.parse_args(argv)
    coco = json.loads(Path(args.coco).read_text())
    detections = json.loads(Path(args.detections).read_text()) if args.detections else None
    predictor = SamPredictor(load_model(args.model, backend=args.backend, precision=args.precision))
    metrics = evaluate_segm(coco, box_prompt_results(predictor, coco, args.images, detections))
    source = "detector boxes" if detections else "ground-truth boxes"
    print(write_table(metrics, Path(args.out), f"Box-prompt instance segmentation ({args.model}, {source})").read_text())


if __name__ == "__main__":
    main()
