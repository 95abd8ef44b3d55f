"""The ``tinysam-annotate`` command: thin argparse adapters over the service layer, one module per command group.

    models      list, describe or download registered models          (models.py)
    segment     one object of an image from points and / or a box     (segment.py, with demo)
    everything  / boxes / embed: many images, local or on Ray        (batch.py)
    export      ONNX export and quantization                          (export.py)
    app         the Gradio web app                                    (app.py)
    bench       time the chosen engine                                (bench.py)
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ..errors import TinySamAnnotateError
from . import app, batch, bench, export, models, segment

COMMAND_GROUPS = (models, segment, batch, export, app, bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinysam-annotate",
                                     description="Interactive segmentation annotation on TinySAM: segment, batch, export, app.")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; 2 for a user error (printed without a traceback), 130 when interrupted."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except TinySamAnnotateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
