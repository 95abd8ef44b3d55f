"""``python -m recipes.distill CONFIG.yaml [--key value ...]``: train (or resume) a TinySAM student."""

from __future__ import annotations

import argparse
import dataclasses

from .config import DistillConfig
from .plot import plot_losses
from .train import LOG_NAME, Trainer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m recipes.distill", description=__doc__)
    parser.add_argument("config", help="YAML file with DistillConfig fields")
    parser.add_argument("--export", metavar="PATH", help="after training, write the student weights (fp16) here")
    for f in dataclasses.fields(DistillConfig):
        kind = {int: int, float: float}.get(f.type if isinstance(f.type, type) else None, str)
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=kind, default=None)
    args = vars(parser.parse_args(argv))
    config_path, export = args.pop("config"), args.pop("export")
    cfg = DistillConfig.from_yaml(config_path, **_typed(args))
    trainer = Trainer(cfg)
    trainer.run()
    plot_losses(trainer.out / LOG_NAME, trainer.out / "loss_curves.png")
    if export:
        trainer.export_weights(export, half=True)
        print(f"wrote {export}")


def _typed(args: dict) -> dict:
    """Command-line strings -> the field types of DistillConfig (ints, floats, bools, None)."""
    types = {f.name: f.type for f in dataclasses.fields(DistillConfig)}
    out = {}
    for name, value in args.items():
        if value is None:
            continue
        t = str(types[name])
        if "bool" in t:
            value = str(value).lower() in ("1", "true", "yes")
        elif "int" in t and "None" in t:
            value = None if str(value).lower() == "none" else int(value)
        elif "float" in t and "None" in t:
            value = None if str(value).lower() == "none" else float(value)
        out[name] = value
    return out


if __name__ == "__main__":
    main()
