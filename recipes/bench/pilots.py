"""Pilot runs side by side: quality gained per CPU core-hour of training.

    python -m recipes.bench.pilots --heldout ../runs/data/heldout --start models/tinysam_synth.pth \\
        ../runs/pilot_a ../runs/pilot_b --out recipes/results/pilots.md

Each run folder is a ``recipes.distill`` output (``last.pt``, ``config.json``). Its model is evaluated
with the torch engine on the same held-out subset (the first ``--scenes`` scenes, ``--objects`` objects
each: one interior point, one tight box) and on nuclei_256 (box, centroid point); core-hours are the
run's training wall time times its threads. ``--start`` evaluates the common initial weights as row 0,
so every run's gain per core-hour is measured from the same point. ``--start`` may also be a training state
(a ``last.pt`` copied when the pilots were forked from a run): its moving average is row 0 and each run's
steps, crops and core-hours count from its step.

``--calibrate FOLDER`` re-fits every row's IoU head on the first ``--calibration-scenes`` scenes of FOLDER
(``recipes.distill.calibrate``) before evaluating, as the shipped model's head is: a raw moving average's
ranking of its three outputs understates its masks. ``--click-scenes K`` adds the click curve (1..``--clicks``
clicks, logits fed back, best of three by predicted IoU) on 5 objects of each of the first K scenes.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from tinysam_annotate.backends.torch_backend import TorchBackend
from tinysam_annotate.build import read_checkpoint
from tinysam_annotate.predictor import SamPredictor

from ..data.sa1b import Sa1bFolder
from ..distill.calibrate import SceneSubset, calibrate
from ..distill.config import DistillConfig
from ..distill.train import build_student
from .model_eval import SHARED_DATA, heldout_scores, nuclei_data
from .prompts import PromptScores, evaluate_prompts


def quality(state_dict: dict[str, torch.Tensor], heldout: Any, scenes: int, objects: int, device: str | None = None,
            encoder: dict | None = None, resolution: int = 1024, click_scenes: int = 0,
            clicks: int = 5) -> dict[str, Any]:
    """Held-out box / point mIoU, box spill and IoU correlation, and nuclei box / centroid mIoU of one model;
    with ``click_scenes``, also ``clicks``: the mean IoU after 1..``clicks`` clicks on 5 objects of each of the
    first ``click_scenes`` held-out scenes.

    ``heldout`` is an SA-1B folder or any sequence of records (``.image``, ``.masks``); ``encoder`` and
    ``resolution`` describe a non-default student (toy models in tests)."""
    sam = build_student(resolution, encoder=encoder)
    sam.load_state_dict({k: v.float() for k, v in state_dict.items()})
    backend = TorchBackend(sam.eval(), model_id="pilot", device=device)
    predictor = SamPredictor(backend)
    held = heldout_scores(predictor, heldout, max_objects=objects, max_scenes=scenes, progress=False,
                          click_images=click_scenes, max_clicks=clicks)
    result: dict[str, Any] = {"box": held.miou("box"), "point": held.miou("point"),
                              "box_outside": held.median_box_outside(), "iou_r": held.iou_correlation()}
    if click_scenes:
        result["clicks"] = held.click_curve()
    if (SHARED_DATA / "nuclei_256.tif").exists():
        image, masks = nuclei_data()
        nuclei = PromptScores()
        evaluate_prompts(predictor, image, masks, nuclei, point_rule="centroid")
        result.update(nuclei_box=nuclei.miou("box"), nuclei_centroid=nuclei.miou("point"))
    return result


def with_calibrated_head(state_dict: dict[str, torch.Tensor], calibration: str | Path, scenes: int,
                         workdir: Path, name: str) -> dict[str, torch.Tensor]:
    """``state_dict`` with its IoU head re-fitted on the first ``scenes`` scenes of the SA-1B folder
    ``calibration`` (the shipping protocol); the files it needs are written under ``workdir``."""
    raw, fitted = workdir / f"{name}.pth", workdir / f"{name}.calibrated.pth"
    torch.save(state_dict, raw)
    folder = Sa1bFolder(calibration)
    calibrate(raw, SceneSubset(folder, range(min(scenes, len(folder)))), fitted, progress=False)
    return read_checkpoint(fitted)


def start_point(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Row 0's weights and the cost already spent there: a checkpoint costs nothing, a training state
    (``last.pt``) brings its moving average (or its weights), its step and its wall seconds."""
    loaded = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(loaded, dict) and "step" in loaded and "model" in loaded:
        return loaded.get("ema") or loaded["model"], {"step": int(loaded["step"]),
                                                      "elapsed_s": float(loaded.get("elapsed_s", 0.0))}
    return read_checkpoint(path), {"step": 0, "elapsed_s": 0.0}


def run_summary(folder: Path, since: dict[str, float] | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A run's current weights and what it cost since ``since`` (a :func:`start_point` cost; the run's start
    by default): steps, images, core-hours."""
    since = since or {"step": 0, "elapsed_s": 0.0}
    state = torch.load(folder / "last.pt", map_location="cpu", weights_only=False)
    cfg = DistillConfig(**state["config"])
    records = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines() if line.strip()]
    records = list({r["step"]: r for r in records if since["step"] < r["step"] <= state["step"]}.values())  # resumes repeat steps
    threads = cfg.threads or torch.get_num_threads()
    elapsed = state.get("elapsed_s") or (records[-1]["elapsed_s"] if records else 0.0)
    last = records[-50:]
    images = sum(cfg.at_step(r["step"] - 1).batch_size for r in records)
    return state.get("ema") or state["model"], {"steps": state["step"] - int(since["step"]), "images": images,
                            "core_hours": (elapsed - since["elapsed_s"]) * threads / 3600,
                            "train_iou": sum(r.get("mask_iou", 0.0) for r in last) / max(1, len(last))}


def markdown(rows: list[dict[str, Any]], scenes: int, objects: int, calibrated: int = 0, click_scenes: int = 0) -> str:
    start = rows[0]
    head = f"moving averages with their IoU heads re-fitted on {calibrated} calibration scenes; " if calibrated else ""
    clicks = f"; click curve: first {click_scenes} scenes x 5 objects, logits fed back" if click_scenes else ""
    lines = [f"### Pilots, {time.strftime('%Y-%m-%d')}: held-out = first {scenes} held-out scenes x {objects} objects; "
             f"{head}torch FP32 engine, best of 3 by predicted IoU{clicks}", "",
             "| run | steps | crops | core-h | held-out box | held-out 1-point | box spill (median) | IoU r | nuclei box "
             "| nuclei centroid | box gain per core-h | train IoU (last 50) |" + (" click curve |" if click_scenes else ""),
             "|" + "---|" * (13 if click_scenes else 12)]
    for r in rows:
        gain = (r["box"] - start["box"]) / r["core_hours"] if r.get("core_hours") else float("nan")
        curve = (" " + ", ".join(f"{v:.3f}" for v in r.get("clicks", [])) + " |") if click_scenes else ""
        lines.append(f"| {r['name']} | {r.get('steps', 0)} | {r.get('images', 0)} | {r.get('core_hours', 0):.2f} | {r['box']:.3f} | "
                     f"{r['point']:.3f} | {r['box_outside']:.3f} | {r['iou_r']:.3f} | {r.get('nuclei_box', float('nan')):.3f} | "
                     f"{r.get('nuclei_centroid', float('nan')):.3f} | {gain:+.3f} | {r.get('train_iou', float('nan')):.3f} |{curve}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m recipes.bench.pilots", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="recipes.distill output folders")
    parser.add_argument("--heldout", required=True)
    parser.add_argument("--start", help="the runs' common initial checkpoint, evaluated as row 0")
    parser.add_argument("--scenes", type=int, default=40)
    parser.add_argument("--objects", type=int, default=10)
    parser.add_argument("--calibrate", metavar="FOLDER", help="re-fit each row's IoU head on scenes of this SA-1B folder first")
    parser.add_argument("--calibration-scenes", type=int, default=100)
    parser.add_argument("--click-scenes", type=int, default=0, help="add the click curve on this many held-out scenes")
    parser.add_argument("--clicks", type=int, default=5)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "results" / "pilots.md"))
    args = parser.parse_args(argv)
    candidates: list[tuple[str, dict[str, torch.Tensor], dict[str, Any]]] = []
    since = None
    if args.start:
        weights, since = start_point(args.start)
        candidates.append((f"start ({Path(args.start).name})", weights, {}))
    for run in args.runs:
        weights, cost = run_summary(Path(run), since)
        candidates.append((Path(run).name, weights, cost))
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for index, (name, weights, cost) in enumerate(candidates):
            if args.calibrate:
                weights = with_calibrated_head(weights, args.calibrate, args.calibration_scenes, Path(workdir), f"row{index}")
            rows.append({"name": name, **cost, **quality(weights, args.heldout, args.scenes, args.objects,
                                                        click_scenes=args.click_scenes, clicks=args.clicks)})
            print(rows[-1], flush=True)
    table = markdown(rows, args.scenes, args.objects, args.calibration_scenes if args.calibrate else 0, args.click_scenes)
    with open(args.out, "a") as fh:
        fh.write(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
