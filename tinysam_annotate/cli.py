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



def _segment_and_save(rgb: np.ndarray, args: argparse.Namespace, points, labels, box) -> int:
    from PIL import Image

    from .cleanup import clean_mask, count_parts
    from .predictor import SamPredictor
    from .service import engine_description, open_engine
    from .visualize import render_overlay

    backend = open_engine(args.model, args.backend, args.precision, args.providers, args.strict)
    predictor = SamPredictor(backend)
    predictor.set_image(rgb)
    masks, scores, _ = predictor.predict(point_coords=points, point_labels=labels, box=box, multimask_output=True)
    best = int(np.argmax(scores))
    mask = masks[best]
    cleaned = "" if args.raw_mask else f", cleaned from {count_parts(mask)} part(s)"
    if not args.raw_mask:
        mask = clean_mask(mask, points, labels, box)
    print(
        f"model {backend.identity.model_id} ({engine_description(backend, args.backend, args.precision)}) "
        f"on {backend.device_description}: encode {predictor.last_encode_seconds * 1000:.0f} ms, "
        f"mask {best} of {len(scores)} (predicted IoU {scores[best]:.3f}, {int(mask.sum())} pixels{cleaned})"
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


# -- export / bench -----------------------------------------------------------------------------


def cmd_export(args: argparse.Namespace) -> int:
    from .export.onnx_export import export_onnx
    from .hashing import file_sha256
    from .loading import _build_torch, _resolve_checkpoint

    checkpoint, model_id, arch = _resolve_checkpoint(args.model)
    sam = _build_torch(checkpoint, arch)
    out = Path(args.out)
    print(f"exporting {model_id} to {out} (opset {args.opset}) ...")
    export_onnx(sam, out, weights_hash=file_sha256(checkpoint), model_id=model_id, opset=args.opset)
    print("FP32 encoder and decoder written; parity with torch checked")
    if "int8" in args.precision:
        from .export.quantize import default_calibration_images, quantize_encoder_int8

        images = default_calibration_images()
        if args.calibration_dir:
            from .io import load_image

            files = sorted(p for p in Path(args.calibration_dir).iterdir() if p.is_file())[: args.calibration_count]
            images = [load_image(p).rgb for p in files]
        print(f"quantizing the encoder to INT8 on {len(images)} calibration images ...")
        quantize_encoder_int8(out, calibration_images=images)
    if "fp16" in args.precision:
        from .export.quantize import convert_fp16

        convert_fp16(out)
    print(f"done: {out}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Time the chosen engine here (encode, one click); the full side-by-side table is ``python -m recipes.bench.latency``."""
    import time

    from .predictor import SamPredictor
    from .service import open_engine

    backend = open_engine(args.model, args.backend, args.precision, args.providers, args.strict)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(768, 1024, 3), dtype=np.uint8)
    predictor = SamPredictor(backend)
    encode = []
    for _ in range(3):
        predictor.cache.clear_memory()
        start = time.perf_counter()
        predictor.set_image(image)
        encode.append(time.perf_counter() - start)
    clicks = []
    for _ in range(50):
        start = time.perf_counter()
        predictor.predict(point_coords=rng.uniform(0, 768, size=(1, 2)), point_labels=np.array([1]))
        clicks.append(time.perf_counter() - start)
    print(f"{backend.identity.model_id} {backend.identity.backend}/{backend.identity.precision} on {backend.device_description}")
    print(f"encode p50 {1000 * np.median(encode[1:]):.0f} ms; one click p50 {1000 * np.median(clicks):.1f} ms, "
          f"p95 {1000 * np.percentile(clicks, 95):.1f} ms")
    return 0


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
        p.add_argument("--backend", choices=["torch", "onnx"],
                       help="default: onnx (INT8) when onnxruntime is installed, else torch (FP32), as in the app")
        p.add_argument("--precision", choices=["fp32", "bf16", "fp16", "int8"],
                       help="default: int8 on onnx, fp32 on torch")
        p.add_argument("--providers", nargs="+", help="ONNX Runtime providers in order, e.g. tensorrt cuda cpu")
        p.add_argument("--strict", action="store_true", help="fail instead of falling back to another provider")

    seg = sub.add_parser("segment", help="segment one object of an image from points and/or a box")
    seg.add_argument("image")
    seg.add_argument("--point", action="append", type=_point, help="x,y[,label] in pixels; label 1 (default) or 0")
    seg.add_argument("--box", type=_box, help="x0,y0,x1,y1 in pixels")
    seg.add_argument("--channel", type=int, action="append", help="channel index (repeat for R, G, B)")
    seg.add_argument("--slice", type=int, help="slice index of a stack")
    seg.add_argument("--out", help="mask PNG to write")
    seg.add_argument("--overlay", help="overlay PNG to write")
    seg.add_argument("--raw-mask", action="store_true",
                     help="the model's mask as is (default: only the parts the prompts point at, small holes filled)")
    model_options(seg)
    seg.set_defaults(func=cmd_segment)

    demo = sub.add_parser("demo", help="segment a bundled image and write an overlay PNG")
    demo.add_argument("--out", default="demo_overlay.png")
    demo.add_argument("--raw-mask", action="store_true", help="the model's mask as is, not cleaned")
    model_options(demo)
    demo.set_defaults(func=cmd_demo)
    from .cli_batch import add_batch_commands

    add_batch_commands(sub, model_options)

    export = sub.add_parser("export", help="export a model to ONNX (FP32, and INT8 / FP16 on request)")
    export.add_argument("model", help="registered model name or checkpoint path")
    export.add_argument("--out", required=True, help="output folder")
    export.add_argument("--precision", nargs="+", default=["fp32", "int8"], choices=["fp32", "int8", "fp16"])
    export.add_argument("--calibration-dir", help="folder of images for INT8 calibration (default: bundled samples)")
    export.add_argument("--calibration-count", type=int, default=8)
    export.add_argument("--opset", type=int, default=20)
    export.set_defaults(func=cmd_export)

    app = sub.add_parser("app", help="start the Gradio annotation app (needs the app extra: pip install tinysam-annotate[app])")
    app.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0 exposes it to the network)")
    app.add_argument("--port", type=int, default=7860)
    app.add_argument("--model", default=None, help="default model (registry name or checkpoint)")
    app.add_argument("--backend", choices=["onnx", "torch"], help="default: onnx when onnxruntime is installed")
    app.add_argument("--precision", choices=["fp32", "int8"], help="default: int8 on onnx, fp32 on torch")
    app.add_argument("--max-file-size", default="25mb")
    app.set_defaults(func=cmd_app)

    bench = sub.add_parser("bench", help="time the chosen engine (the full table: python -m recipes.bench.latency)")
    bench.add_argument("--quick", action="store_true", help=argparse.SUPPRESS)  # kept for old scripts: always quick now
    model_options(bench)
    bench.set_defaults(func=cmd_bench)
    return parser


def cmd_app(args: argparse.Namespace) -> int:
    try:
        from .app.ui import launch
    except ImportError as exc:
        raise TinySamAnnotateError(f"the app needs Gradio ({exc}); install it with: pip install 'tinysam-annotate[app]'") from None
    from .app.engine import AppConfig
    from .registry import DEFAULT_MODEL
    from .service import default_engine

    backend, precision = default_engine(args.backend)
    config = AppConfig(model=args.model or DEFAULT_MODEL, backend=backend, precision=args.precision or precision,
                       max_file_size=args.max_file_size)
    print(f"tinysam-annotate app on http://{args.host}:{args.port} (model {config.model}, {config.backend} {config.precision})")
    launch(config, host=args.host, port=args.port)
    return 0


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
