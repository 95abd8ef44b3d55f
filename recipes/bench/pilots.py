"""Pilot runs side by side: quality gained per CPU core-hour of training.

    python -m recipes.bench.pilots --heldout ../runs/data/heldout --start models/tinysam_synth.pth \\
        ../runs/pilot_a ../runs/pilot_b --out recipes/results/pilots.md

Each run folder is a ``recipes.distill`` output (``last.pt``, ``config.json``). Its model is evaluated
with the torch engine on the same held-out subset (the first ``--scenes`` scenes, ``--objects`` objects
each: one interior point, one tight box) and on nuclei_256 (box, centroid point); core-hours are the
run's training wall time times its threads. ``--start`` evaluates the common initial weights as row 0,
so every run's gain per core-hour is measured from the same point.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from tinysam_annotate.backends.torch_backend import TorchBackend
from tinysam_annotate.build import read_checkpoint
from tinysam_annotate.predictor import SamPredictor

from ..distill.config import DistillConfig
from ..distill.train import build_student
from .model_eval import SHARED_DATA, heldout_scores, nuclei_data
from .prompts import PromptScores, evaluate_prompts


def quality(state_dict: dict[str, torch.Tensor], heldout: Any, scenes: int, objects: int, device: str | None = None,
            encoder: dict | None = None, resolution: int = 1024) -> dict[str, float]:
    """Held-out box / point mIoU, box spill and IoU correlation, and nuclei box / centroid mIoU of one model.

    ``heldout`` is an SA-1B folder or any sequence of records (``.image``, ``.masks``); ``encoder`` and
    ``resolution`` describe a non-default student (toy models in tests)."""
    sam = build_student(resolution, encoder=encoder)
    sam.load_state_dict({k: v.float() for k, v in state_dict.items()})
    backend = TorchBackend(sam.eval(), model_id="pilot", device=device)
    predictor = SamPredictor(backend)
    held = heldout_scores(predictor, heldout, max_objects=objects, max_scenes=scenes, progress=False)
    result = {"box": held.miou("box"), "point": held.miou("point"), "box_outside": held.median_box_outside(),
              "iou_r": held.iou_correlation()}
    if (SHARED_DATA / "nuclei_256.tif").exists():
        image, masks = nuclei_data()
        nuclei = PromptScores()
        evaluate_prompts(predictor, image, masks, nuclei, point_rule="centroid")
        result.update(nuclei_box=nuclei.miou("box"), nuclei_centroid=nuclei.miou("point"))
    return result


def run_summary(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A run's current weights and what it cost: steps, images, prompts, core-hours."""
    state = torch.load(folder / "last.pt", map_location="cpu", weights_only=False)
    cfg = DistillConfig(**state["config"])
    records = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines() if line.strip()]
    records = list({r["step"]: r for r in records if r["step"] <= state["step"]}.values())  # resumes repeat steps
    threads = cfg.threads or torch.get_num_threads()
    elapsed = state.get("elapsed_s") or (records[-1]["elapsed_s"] if records else 0.0)
    last = records[-50:]
    images = sum(cfg.at_step(r["step"] - 1).batch_size for r in records)
    return state.get("ema") or state["model"], {"steps": state["step"], "images": images,
                            "core_hours": elapsed * threads / 3600,
                            "train_iou": sum(r.get("mask_iou", 0.0) for r in last) / max(1, len(last))}


def markdown(rows: list[dict[str, Any]], scenes: int, objects: int) -> str:
    start = rows[0]
    lines = [f"### Pilots, {time.strftime('%Y-%m-%d')}: held-out = first {scenes} held-out scenes x {objects} objects; "
             "torch FP32 engine, best of 3 by predicted IoU", "",
             "| run | steps | crops | core-h | held-out box | held-out 1-point | box spill (median) | IoU r | nuclei box "
             "| nuclei centroid | box gain per core-h | train IoU (last 50) |", "|" + "---|" * 12]
    for r in rows:
        gain = (r["box"] - start["box"]) / r["core_hours"] if r.get("core_hours") else float("nan")
        lines.append(f"| {r['name']} | {r.get('steps', 0)} | {r.get('images', 0)} | {r.get('core_hours', 0):.2f} | {r['box']:.3f} | "
                     f"{r['point']:.3f} | {r['box_outside']:.3f} | {r['iou_r']:.3f} | {r.get('nuclei_box', float('nan')):.3f} | "
                     f"{r.get('nuclei_centroid', float('nan')):.3f} | {gain:+.3f} | {r.get('train_iou', float('nan')):.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m recipes.bench.pilots", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="recipes.distill output folders")
    parser.add_argument("--heldout", required=True)
    parser.add_argument("--start", help="the runs' common initial checkpoint, evaluated as row 0")
    parser.add_argument("--scenes", type=int, default=40)
    parser.add_argument("--objects", type=int, default=10)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "results" / "pilots.md"))
    args = parser.parse_args(argv)
    rows = []
    if args.start:
        rows.append({"name": f"start ({Path(args.start).name})", **quality(read_checkpoint(args.start), args.heldout,
                                                                         args.scenes, args.objects)})
        print(rows[-1], flush=True)
    for run in args.runs:
        weights, cost = run_summary(Path(run))
        rows.append({"name": Path(run).name, **cost, **quality(weights, args.heldout, args.scenes, args.objects)})
        print(rows[-1], flush=True)
    table = markdown(rows, args.scenes, args.objects)
    with open(args.out, "a") as fh:
        fh.write(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
