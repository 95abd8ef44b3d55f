"""``tinysam-annotate export MODEL --out DIR [--precision fp32 int8 fp16]``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..loading import export_model


def add_commands(sub: Any) -> None:
    export = sub.add_parser("export", help="export a model to ONNX (FP32, and INT8 / FP16 on request)")
    export.add_argument("model", help="registered model name or checkpoint path")
    export.add_argument("--out", required=True, help="output folder")
    export.add_argument("--precision", nargs="+", default=["fp32", "int8"], choices=["fp32", "int8", "fp16"])
    export.add_argument("--calibration-dir", help="folder of images for INT8 calibration (default: bundled samples)")
    export.add_argument("--calibration-count", type=int, default=8)
    export.add_argument("--opset", type=int, default=20)
    export.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    images = None
    if args.calibration_dir:
        from ..io import load_image

        files = sorted(p for p in Path(args.calibration_dir).iterdir() if p.is_file())[: args.calibration_count]
        images = [load_image(p).rgb for p in files]
        print(f"INT8 calibration on {len(images)} images from {args.calibration_dir}")
    folder = export_model(args.model, args.out, args.precision, images, args.opset, log=print)
    print(f"done: {folder}")
    return 0
