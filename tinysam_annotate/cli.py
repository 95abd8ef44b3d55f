"""The ``tinysam-annotate`` command: model management, single-image segmentation and a demo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import TinySamAnnotateError


def _parse_floats(text: str, n: tuple[int, ...], what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} must be comma-separated numbers, got {text!r}") from None
    if len(values) not in n:
        raise argparse.ArgumentTypeError(f"{what} needs {' or '.join(map(str, n))} numbers, got {text!r}")
    return values


def _point(text: str) -> list[float]:
    return _parse_floats(text, (2, 3), "--point (x,y or x,y,label)")


def _box(text: str) -> list[float]:
    return _parse_floats(text, (4,), "--box (x0,y0,x1,y1)")


# -- models -------------------------------------------------------------------------------------


def cmd_models(args: argparse.Namespace) -> int:
    from .registry import MODEL_SPECS, find_model_file, get_spec, user_models_dir

    if args.action == "list":
        for spec in MODEL_SPECS.values():
            path = find_model_file(spec)
            print(f"{spec.name:<14} {spec.arch:<13} {spec.licence:<11} {path if path else 'not downloaded'}")
        return 0
    if not args.name:
        raise TinySamAnnotateError(f"`models {args.action}` needs a model NAME")
    spec = get_spec(args.name)
    if args.action == "info":
        path = find_model_file(spec)
        for field, value in vars(spec).items():
            print(f"{field:<17} {value}")
        print(f"{'local file':<17} {path if path else 'not downloaded'}")
        return 0
    from .download import download_file

    if spec.url is None:
        raise TinySamAnnotateError(f"model {spec.name!r} has no download URL (it ships with the package)")
    dest = Path(args.dest) if args.dest else user_models_dir()
    path = download_file(spec.url, dest / spec.filename, spec.sha256)
    print(f"saved {spec.name} to {path}")
    return 0


# -- segment / demo -----------------------------------------------------------------------------


def _load_backend(model: str | None, backend: str, precision: str):
    from .loading import load_model

    if model is not None:
        return load_model(model, backend=backend, precision=precision)
    import torch

    from .backends.torch_backend import TorchBackend
    from .build import sam_model_registry

    print(
        "warning: no trained model is shipped yet (tinysam-synth is built by recipes/); using TinySAM with "
        "random weights, so the pipeline runs end to end but the mask is not meaningful. Pass --model NAME|PATH "
        "for real weights.",
        file=sys.stderr,
    )
    torch.manual_seed(0)
    return TorchBackend(sam_model_registry["vit_t"](), model_id="vit_t-random-seed0")


def _segment_and_save(rgb: np.ndarray, args: argparse.Namespace, points, labels, box) -> int:
    from PIL import Image

    from .predictor import SamPredictor
    from .visualize import render_overlay

    backend = _load_backend(args.model, args.backend, args.precision)
    predictor = SamPredictor(backend)
    predictor.set_image(rgb)
    masks, scores, _ = predictor.predict(point_coords=points, point_labels=labels, box=box, multimask_output=True)
    best = int(np.argmax(scores))
    mask = masks[best]
    print(
        f"model {backend.identity.model_id} on {backend.device_description}: encode {predictor.last_encode_seconds * 1000:.0f} ms, "
        f"mask {best} of {len(scores)} (predicted IoU {scores[best]:.3f}, {int(mask.sum())} pixels)"
    )
    if args.out:
        Image.fromarray(mask.astype(np.uint8) * 255).save(args.out)
        print(f"wrote mask {args.out}")
    if args.overlay:
        Image.fromarray(render_overlay(rgb, mask, points, labels, box)).save(args.overlay)
        print(f"wrote overlay {args.overlay}")
    return 0


def cmd_segment(args: argparse.Namespace) -> int:
    from .io import load_image

    loaded = load_image(args.image, channels=args.channel, slice_index=args.slice)
    points = labels = None
    if args.point:
        points = np.array([p[:2] for p in args.point])
        labels = np.array([int(p[2]) if len(p) == 3 else 1 for p in args.point])
    box = np.array(args.box) if args.box else None
    if points is None and box is None:
        raise TinySamAnnotateError("give at least one --point x,y or a --box x0,y0,x1,y1")
    return _segment_and_save(loaded.rgb, args, points, labels, box)


def cmd_demo(args: argparse.Namespace) -> int:
    from skimage import data

    rgb = np.repeat(data.coins()[..., None], 3, axis=2)
    # One click on the centre of a coin in the second row.
    args.overlay = args.out
    args.out = None
    print("demo: skimage.data.coins(), one positive click at (x, y) = (154, 127)")
    return _segment_and_save(rgb, args, np.array([[154.0, 127.0]]), np.array([1]), None)


# -- entry point --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinysam-annotate", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    models = sub.add_parser("models", help="list, describe or download registered models")
    models.add_argument("action", choices=["list", "info", "download"])
    models.add_argument("name", nargs="?")
    models.add_argument("--dest", help="download folder (default: the user model cache)")
    models.set_defaults(func=cmd_models)

    def model_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", help="registered model name or checkpoint path")
        p.add_argument("--backend", default="torch", choices=["torch", "onnx"])
        p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16", "int8"])

    seg = sub.add_parser("segment", help="segment one object of an image from points and/or a box")
    seg.add_argument("image")
    seg.add_argument("--point", action="append", type=_point, help="x,y[,label] in pixels; label 1 (default) or 0")
    seg.add_argument("--box", type=_box, help="x0,y0,x1,y1 in pixels")
    seg.add_argument("--channel", type=int, action="append", help="channel index (repeat for R, G, B)")
    seg.add_argument("--slice", type=int, help="slice index of a stack")
    seg.add_argument("--out", help="mask PNG to write")
    seg.add_argument("--overlay", help="overlay PNG to write")
    model_options(seg)
    seg.set_defaults(func=cmd_segment)

    demo = sub.add_parser("demo", help="segment a bundled image and write an overlay PNG")
    demo.add_argument("--out", default="demo_overlay.png")
    model_options(demo)
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "channel", None) is not None and len(args.channel) == 1:
        args.channel = args.channel[0]
    try:
        return args.func(args)
    except TinySamAnnotateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
