"""Options several commands share: the model and engine to run, and the Ray pool for batch work."""

from __future__ import annotations

import argparse


def parse_floats(text: str, counts: tuple[int, ...], what: str) -> list[float]:
    """Comma-separated numbers, ``counts`` of them; an argparse error naming ``what`` otherwise."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} must be comma-separated numbers, got {text!r}") from None
    if len(values) not in counts:
        raise argparse.ArgumentTypeError(f"{what} needs {' or '.join(map(str, counts))} numbers, got {text!r}")
    return values


def add_model_options(p: argparse.ArgumentParser) -> None:
    """--model, --backend, --precision, --providers, --strict: what ``service.open_engine`` takes."""
    p.add_argument("--model", help="registered model name or checkpoint path")
    p.add_argument("--backend", choices=["torch", "onnx"],
                   help="default: onnx (INT8) when onnxruntime is installed, else torch (FP32), as in the app")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16", "int8"], help="default: int8 on onnx, fp32 on torch")
    p.add_argument("--providers", nargs="+", help="ONNX Runtime providers in order, e.g. tensorrt cuda cpu")
    p.add_argument("--strict", action="store_true", help="fail instead of falling back to another provider")


def add_pool_options(p: argparse.ArgumentParser) -> None:
    """--engine local|ray and the Ray pool's size, plus --no-progress."""
    p.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="local: this process; ray: a Ray Data actor pool (pip install 'tinysam-annotate[distributed]')")
    p.add_argument("--address", default=None, help="Ray cluster to join: auto or ray://HOST:10001 (default: start a local one)")
    p.add_argument("--num-actors", type=int, default=2, help="Ray actors, each holding one engine")
    p.add_argument("--cpus-per-actor", type=float, default=1.0)
    p.add_argument("--gpus-per-actor", type=float, default=0.0)
    p.add_argument("--no-progress", action="store_true")
