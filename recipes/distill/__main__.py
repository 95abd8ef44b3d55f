"""``python -m recipes.distill CONFIG.yaml [--key value ...]``: train (or resume) a TinySAM student."""

from __future__ import annotations

import argparse
import dataclasses
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from .config import DistillConfig
from .data import prepare_sample
from .plot import plot_losses
from .train import LOG_NAME, Trainer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m recipes.distill", description=__doc__)
    parser.add_argument("config", help="YAML file with DistillConfig fields")
    parser.add_argument("--export", metavar="PATH", help="after training, write the student weights (fp16) here")
    parser.add_argument("--precompute-teacher", action="store_true",
                        help="fill the teacher-embedding cache for every image (and its flip) before training; needs crop: null")
    for f in dataclasses.fields(DistillConfig):
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, default=None, help=f"type {f.type}")
    args = vars(parser.parse_args(argv))
    config_path, export, precompute = args.pop("config"), args.pop("export"), args.pop("precompute_teacher")
    cfg = DistillConfig.from_yaml(config_path, **_typed(args))
    trainer = Trainer(cfg)
    if precompute:
        _precompute_teacher(trainer)
    (trainer.out / "STOP").unlink(missing_ok=True)  # a request left by an earlier session
    with _stop_requests(trainer.out) as stop:
        trainer.run(should_stop=stop)
    plot_losses(trainer.out / LOG_NAME, trainer.out / "loss_curves.png")
    if export:
        trainer.export_weights(export, half=True)
        print(f"wrote {export}")


def _precompute_teacher(trainer: Trainer) -> None:
    """Teacher embeddings of every whole-frame sample (both orientations with hflip) into the cache."""
    cfg = trainer.cfg
    if trainer.teacher_embeddings is None:
        raise SystemExit("--precompute-teacher needs a teacher in the config")
    if cfg.crop is not None and cfg.crop < cfg.resolution:
        raise SystemExit("--precompute-teacher caches whole frames; set crop: null (random crops are computed on the fly)")
    flips = (False, True) if cfg.hflip else (False,)
    samples = (prepare_sample(trainer.data[i], cfg.resolution, hflip=f) for i in range(len(trainer.data)) for f in flips)
    done = trainer.teacher_embeddings.precompute(samples, total=len(trainer.data) * len(flips))
    print(f"teacher embeddings: {done} computed, the rest were cached")


@contextmanager
def _stop_requests(out: Path) -> Iterator[Callable[[], bool]]:
    """A should_stop for the trainer: SIGTERM/SIGINT or a file ``STOP`` in the run folder end the run after the
    current step, with its state saved (a long run is stopped cleanly at the end of a session). The previous
    signal handlers are restored afterwards."""
    requested: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: requested.append(signum))
                for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield lambda: bool(requested) or (out / "STOP").exists()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _typed(args: dict) -> dict:
    """Command-line strings -> the field types of DistillConfig (int, float, bool, str, None; dicts as YAML)."""
    import yaml

    types = {f.name: str(f.type) for f in dataclasses.fields(DistillConfig)}
    out = {}
    for name, value in args.items():
        if value is None:
            continue
        t = types[name]
        if value.lower() in ("none", "null") and "None" in t:
            out[name] = None
        elif t.startswith("bool"):
            out[name] = value.lower() in ("1", "true", "yes")
        elif t.startswith("int"):
            out[name] = int(value)
        elif t.startswith("float"):
            out[name] = float(value)
        elif t.startswith(("dict", "list")):
            out[name] = yaml.safe_load(value)
        else:
            out[name] = value
    return out


if __name__ == "__main__":
    main()
