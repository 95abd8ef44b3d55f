"""Where a training step's time goes, for one or more variants of a config.

    python -m recipes.distill.profile recipes/configs/tinysam_synth_v2.yaml --data DIR --steps 4 \\
        --variant "v1 recipe:crop=512,batch_size=4,prompts_per_image=16,w_dense=0" --variant "v2:"

Each variant overrides config fields (``key=value``, YAML values). The table lists the mean seconds per
step of each section the trainer times (data, encoder forward, dense head, no-grad corrective decoder
rounds, decoder with gradients, backward, optimizer); ``encoder backward`` is measured separately on the
same batches (the encoder alone, backward of a random projection of its output) to split the backward.
Rounds are drawn as in training, so run enough steps for their mean. Appends to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import time
from pathlib import Path

import torch
import yaml

from .config import DistillConfig
from .train import Trainer

SECTIONS = ("data", "encoder", "dense_head", "decoder_rounds", "decoder", "backward", "optimizer")


def encoder_backward_seconds(trainer: Trainer, images: torch.Tensor) -> float:
    """Seconds of the encoder's backward pass alone on ``images`` (B x 3 x S x S)."""
    with torch.autocast(**trainer.autocast):
        embedding = trainer.student.image_encoder(images)
    probe = torch.randn_like(embedding, dtype=torch.float32)
    start = time.perf_counter()
    (embedding.float() * probe).mean().backward()
    seconds = time.perf_counter() - start
    trainer.optimizer.zero_grad(set_to_none=True)
    return seconds


def profile_variant(cfg: DistillConfig, steps: int) -> dict[str, float]:
    """Mean seconds per section over ``steps`` steps (after one warm-up step), plus images/s and prompts/s."""
    trainer = Trainer(cfg)
    trainer.train_step()  # warm-up: first-touch allocations, oneDNN kernel selection
    rows: list[dict[str, float]] = []
    for _ in range(steps):
        start = time.perf_counter()
        record = trainer.train_step()
        total = time.perf_counter() - start
        batch = trainer.next_batch()
        images = torch.stack([s.image for s in batch]).to(trainer.device)
        rows.append({**trainer.timings, "total": total, "rounds": record["rounds"],
                     "encoder_backward": encoder_backward_seconds(trainer, images)})
    mean = {key: statistics.mean(r.get(key, 0.0) for r in rows) for key in (*SECTIONS, "total", "encoder_backward")}
    # Rounds are drawn per step, so a few steps see few of them: report the cost of one corrective round and
    # the step time at the configuration's expected number of rounds.
    phase = trainer.phase
    drawn = sum(r["rounds"] for r in rows)
    mean["per_round"] = sum(r.get("decoder_rounds", 0.0) for r in rows) / drawn if drawn else float("nan")
    expected_rounds = (1 - phase.round0_fraction) * phase.max_rounds / 2 if phase.rounds_from_step == 0 else 0.0
    rounds_cost = mean["per_round"] * expected_rounds if expected_rounds else 0.0
    mean["expected_total"] = mean["total"] - mean["decoder_rounds"] + rounds_cost
    mean["images_per_s"] = phase.batch_size / mean["expected_total"]
    mean["prompts_per_s"] = phase.batch_size * phase.prompts_per_image / mean["expected_total"]
    return mean


def parse_variant(text: str) -> tuple[str, dict]:
    name, _, assignments = text.partition(":")
    overrides = {}
    for item in filter(None, (a.strip() for a in assignments.split(","))):
        key, _, value = item.partition("=")
        overrides[key.strip()] = yaml.safe_load(value)
    return name.strip(), overrides


def markdown(results: dict[str, dict[str, float]], steps: int) -> str:
    cols = ["variant", "step s (measured)", *SECTIONS, "encoder backward", "s per corrective round",
            "step s at expected rounds", "crops/s", "prompts/s"]
    lines = [f"### {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
             f"{torch.get_num_threads()} threads, mean of {steps} steps", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for name, r in results.items():
        cells = [name, f"{r['total']:.2f}"] + [f"{r[s]:.2f}" for s in SECTIONS]
        cells += [f"{r['encoder_backward']:.2f}", f"{r['per_round']:.2f}", f"{r['expected_total']:.2f}",
                  f"{r['images_per_s']:.2f}", f"{r['prompts_per_s']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m recipes.distill.profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--data", help="override the config's data folder")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--variant", action="append", default=[], help="NAME:key=value,key=value")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "results" / "training_profile.md"))
    args = parser.parse_args(argv)
    base = dataclasses.replace(DistillConfig.from_yaml(args.config, data=args.data, progress=False), phases=None)
    results = {}
    for text in args.variant or ["config:"]:
        name, overrides = parse_variant(text)
        cfg = dataclasses.replace(base, out=f"/tmp/tinysam-profile-{name.replace(' ', '_')}", **overrides)
        results[name] = profile_variant(cfg, args.steps)
        print(name, {k: round(v, 3) for k, v in results[name].items()}, flush=True)
    table = markdown(results, args.steps)
    with open(args.out, "a") as fh:
        fh.write(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
