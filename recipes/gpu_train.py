"""One call on a lent GPU machine: generate scenes, train, evaluate, write the weights back in small files.

    python -m recipes.gpu_train --out $OUT --minutes 6          # on the GPU machine (PyTorch, 16 cores, no network)
    python -m recipes.gpu_train --assemble DIR --to model.pth   # here, on what came back

DataLoader workers draw procedural scenes on the fly (seeds from ``--first-seed``, apart from the CPU
corpus 0..N and the held-out seeds 1,000,000+) and turn each into a few training samples; nothing is
written to disk, so the GPU host needs neither pycocotools nor a prepared corpus. The trainer is the CPU
recipe's (``recipes.distill``), with bf16 on the GPU. After a few timed steps the cosine schedule is
stretched to the steps that fit in ``--minutes``. Then the first ``--eval-scenes`` held-out scenes are
scored (box / 1-point mIoU, box spill, IoU correlation) and the fp32 state_dict is written as parts of at
most 15 MiB (``student.pth.partNNN``) with ``summary.json`` (sha256, steps, images, timings, scores,
hardware) and the loss log. ``--tiny`` runs the same path with a toy encoder on the CPU (the test).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import os
import platform
import random
import time
from pathlib import Path
from typing import Iterator

import torch

from .data.sa1b import Sa1bRecord
from .data.scenes import SceneConfig, generate_scene
from .distill.config import DistillConfig
from .distill.data import TrainSample, prepare_sample
from .distill.train import LOG_NAME, Trainer

PART_BYTES = 15 * 2**20  # the device tool returns files of at most 16 MiB
HELDOUT_FIRST = 1_000_000
CONFIG = Path(__file__).resolve().parent / "configs" / "tinysam_synth_gpu.yaml"
TINY_ENCODER = {"embed_dims": [16, 32, 32, 64], "depths": [1, 1, 1, 1], "num_heads": [1, 2, 2, 4]}  # the tests' toy TinyViT


class SceneStream(torch.utils.data.IterableDataset):
    """Endless training samples from freshly generated scenes; worker w of W draws seeds first + w, + W, ..."""

    def __init__(self, cfg: DistillConfig, first_seed: int, samples_per_scene: int = 2,
                 scenes: SceneConfig | None = None) -> None:
        super().__init__()
        self.cfg, self.first_seed, self.samples_per_scene = cfg, first_seed, samples_per_scene
        self.scenes = scenes or SceneConfig()

    def __iter__(self) -> Iterator[TrainSample]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        rng = random.Random(self.first_seed + worker)
        seed = self.first_seed + worker
        cfg = self.cfg
        while True:
            scene = generate_scene(seed, self.scenes)
            record = Sa1bRecord(image_id=seed, image=scene.image, masks=scene.masks)
            seed += workers
            if not len(record.masks):
                continue
            for _ in range(self.samples_per_scene):
                scale = rng.uniform(cfg.min_scale, 1.0) if cfg.min_scale < 1 else 1.0
                flip = cfg.hflip and rng.random() < 0.5
                sample = prepare_sample(record, cfg.resolution, cfg.crop, hflip=flip, rng=rng, scale=scale)
                if len(sample.gt):
                    yield sample


def stream_batches(cfg: DistillConfig, workers: int, first_seed: int) -> Iterator[list[TrainSample]]:
    loader = torch.utils.data.DataLoader(
        SceneStream(cfg, first_seed), batch_size=cfg.batch_size, num_workers=workers, collate_fn=list,
        prefetch_factor=4 if workers else None, persistent_workers=bool(workers))
    return iter(loader)


def heldout_records(count: int, size: tuple[int, int] | None = None) -> list[Sa1bRecord]:
    """The first ``count`` held-out scenes (the same seeds and mix as ``recipes.data`` writes for evaluation)."""
    config = SceneConfig(*size) if size else SceneConfig()
    records = []
    for seed in range(HELDOUT_FIRST, HELDOUT_FIRST + count):
        scene = generate_scene(seed, config)
        if len(scene.masks):
            records.append(Sa1bRecord(image_id=seed, image=scene.image, masks=scene.masks))
    return records


def write_parts(data: bytes, folder: Path, name: str) -> list[str]:
    """``data`` as ``name.part000``, ``name.part001``, ... of at most PART_BYTES each; returns the file names."""
    names = []
    for index, start in enumerate(range(0, len(data), PART_BYTES)):
        names.append(f"{name}.part{index:03d}")
        (folder / names[-1]).write_bytes(data[start : start + PART_BYTES])
    return names


def assemble(folder: Path, to: Path) -> Path:
    """Join the parts listed in ``folder/summary.json`` into ``to``, checking the sha256 it records."""
    summary = json.loads((folder / "summary.json").read_text())
    data = b"".join((folder / name).read_bytes() for name in summary["parts"])
    digest = hashlib.sha256(data).hexdigest()
    if digest != summary["sha256"]:
        raise ValueError(f"the parts in {folder} join to sha256 {digest}, summary.json says {summary['sha256']}")
    to.write_bytes(data)
    return to


def train_and_report(args: argparse.Namespace) -> dict:
    from .bench.pilots import quality

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    overrides = dict(out=args.run_dir, progress=False, save_every=10**9)
    if args.init and Path(args.init).exists():
        overrides["student_init"] = args.init
    if args.tiny:
        overrides.update(resolution=256, crop=None, batch_size=2, prompts_per_image=4, max_rounds=1, student_encoder=TINY_ENCODER,
                         student_init=None, warmup_steps=1)
    cfg = DistillConfig.from_yaml(args.config, **overrides)
    budget = args.minutes * 60
    trainer = Trainer(cfg, batches=stream_batches(cfg, args.workers, args.first_seed))
    started = time.monotonic()
    timing = [trainer.train_step() for _ in range(args.timing_steps)]  # measure, then fit the schedule to the budget
    with open(Path(args.run_dir) / LOG_NAME, "a") as log:
        log.writelines(json.dumps(record) + "\n" for record in timing)
    per_step = (time.monotonic() - started) / args.timing_steps
    steps = max(trainer.step + 1, int(budget / per_step))
    trainer.cfg = dataclasses.replace(cfg, steps=steps, time_budget_s=max(0.0, budget - (time.monotonic() - started)))
    trainer.run()
    train_s = time.monotonic() - started
    records = heldout_records(args.eval_scenes, (96, 128) if args.tiny else None)
    device = "cuda" if torch.cuda.is_available() else None
    scores = quality(trainer.weights(), records, len(records), args.eval_objects, device=device,
                     encoder=TINY_ENCODER if args.tiny else None, resolution=256 if args.tiny else 1024)
    buffer = io.BytesIO()
    torch.save({k: v.detach().float().cpu() if v.is_floating_point() else v.cpu() for k, v in trainer.weights().items()}, buffer)
    data = buffer.getvalue()
    summary = {
        "parts": write_parts(data, out, "student.pth"), "sha256": hashlib.sha256(data).hexdigest(),
        "steps": trainer.step, "images": trainer.step * cfg.batch_size, "train_s": round(train_s, 1),
        "s_per_step": round(train_s / max(1, trainer.step), 3), "eval": scores, "eval_scenes": len(records),
        "hardware": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or platform.machine(),
        "torch": torch.__version__, "workers": args.workers, "config": trainer.cfg.to_dict(),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    log = Path(args.run_dir) / LOG_NAME
    if log.exists():
        (out / "log.jsonl").write_bytes(log.read_bytes())
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=2))
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m recipes.gpu_train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="folder for the parts, summary.json and log.jsonl (the device tool's $OUT)")
    parser.add_argument("--minutes", type=float, default=6.0, help="training wall time, timing steps included")
    parser.add_argument("--config", default=str(CONFIG))
    parser.add_argument("--init", default="models/tinysam_synth.pth", help="initial weights (skipped when missing)")
    parser.add_argument("--workers", type=int, default=max(0, (os.cpu_count() or 2) - 1))
    parser.add_argument("--first-seed", type=int, default=2_000_000)
    parser.add_argument("--timing-steps", type=int, default=5)
    parser.add_argument("--eval-scenes", type=int, default=60)
    parser.add_argument("--eval-objects", type=int, default=10)
    parser.add_argument("--run-dir", default="/tmp/tinysam-gpu-run", help="the trainer's own folder (last.pt, log)")
    parser.add_argument("--tiny", action="store_true", help="toy encoder and sizes: the CPU test of this recipe")
    parser.add_argument("--assemble", metavar="DIR", help="join the parts that came back in DIR (with --to)")
    parser.add_argument("--to", metavar="PATH")
    args = parser.parse_args(argv)
    if args.assemble:
        if not args.to:
            parser.error("--assemble needs --to PATH")
        print(f"wrote {assemble(Path(args.assemble), Path(args.to))}")
        return
    if not args.out:
        parser.error("--out is required")
    train_and_report(args)


if __name__ == "__main__":
    main()
