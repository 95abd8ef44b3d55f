"""``tinysam-annotate segment IMAGE --point x,y --box x0,y0,x1,y1`` and ``tinysam-annotate demo``."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from ..errors import TinySamAnnotateError
from .options import add_model_options, parse_floats


def point(text: str) -> list[float]:
    return parse_floats(text, (2, 3), "--point (x,y or x,y,label)")


def box(text: str) -> list[float]:
    return parse_floats(text, (4,), "--box (x0,y0,x1,y1)")


def add_commands(sub: Any) -> None:
    seg = sub.add_parser("segment", help="segment one object of an image from points and/or a box")
    seg.add_argument("image")
    seg.add_argument("--point", action="append", type=point, help="x,y[,label] in pixels; label 1 (default) or 0")
    seg.add_argument("--box", type=box, help="x0,y0,x1,y1 in pixels")
    seg.add_argument("--channel", type=int, action="append", help="channel index (repeat for R, G, B)")
    seg.add_argument("--slice", type=int, help="slice index of a stack")
    seg.add_argument("--out", help="mask PNG to write")
    seg.add_argument("--overlay", help="overlay PNG to write")
    seg.add_argument("--raw-mask", action="store_true",
                     help="the model's mask as is (default: only the parts the prompts point at, small holes filled)")
    add_model_options(seg)
    seg.set_defaults(func=run_segment)

    demo = sub.add_parser("demo", help="segment a bundled image and write an overlay PNG")
    demo.add_argument("--out", default="demo_overlay.png")
    demo.add_argument("--raw-mask", action="store_true", help="the model's mask as is, not cleaned")
    add_model_options(demo)
    demo.set_defaults(func=run_demo)


def run_segment(args: argparse.Namespace) -> int:
    from ..io import load_image

    channels = args.channel[0] if args.channel is not None and len(args.channel) == 1 else args.channel
    loaded = load_image(args.image, channels=channels, slice_index=args.slice)
    points = labels = None
    if args.point:
        points = np.array([p[:2] for p in args.point])
        labels = np.array([int(p[2]) if len(p) == 3 else 1 for p in args.point])
    box_xyxy = np.array(args.box) if args.box else None
    if points is None and box_xyxy is None:
        raise TinySamAnnotateError("give at least one --point x,y or a --box x0,y0,x1,y1")
    return segment_and_save(loaded.rgb, args, points, labels, box_xyxy, mask_png=args.out, overlay_png=args.overlay)


def run_demo(args: argparse.Namespace) -> int:
    from skimage import data

    rgb = np.repeat(data.coins()[..., None], 3, axis=2)
    print("demo: skimage.data.coins(), one positive click at (x, y) = (154, 127)")  # the centre of a coin, second row
    return segment_and_save(rgb, args, np.array([[154.0, 127.0]]), np.array([1]), None, overlay_png=args.out)


def segment_and_save(rgb: np.ndarray, args: argparse.Namespace, points: np.ndarray | None, labels: np.ndarray | None,
                     box_xyxy: np.ndarray | None, mask_png: str | None = None, overlay_png: str | None = None) -> int:
    """Segment one object of an H x W x 3 image from (x, y) points and / or a box; print what was found, write the
    mask and / or an overlay PNG. The mask is cleaned (``cleanup.clean_mask``) unless ``args.raw_mask``."""
    from PIL import Image

    from ..cleanup import clean_mask, count_parts
    from ..predictor import SamPredictor
    from ..service import engine_description, open_engine
    from ..visualize import render_overlay

    backend = open_engine(args.model, args.backend, args.precision, args.providers, args.strict)
    predictor = SamPredictor(backend)
    predictor.set_image(rgb)
    masks, scores, _ = predictor.predict(point_coords=points, point_labels=labels, box=box_xyxy, multimask_output=True)
    best = int(np.argmax(scores))
    mask = masks[best]
    cleaned = "" if args.raw_mask else f", cleaned from {count_parts(mask)} part(s)"
    if not args.raw_mask:
        mask = clean_mask(mask, points, labels, box_xyxy)
    print(
        f"model {backend.identity.model_id} ({engine_description(backend, args.backend, args.precision)}) "
        f"on {backend.device_description}: encode {predictor.last_encode_seconds * 1000:.0f} ms, "
        f"mask {best} of {len(scores)} (predicted IoU {scores[best]:.3f}, {int(mask.sum())} pixels{cleaned})"
    )
    if mask_png:
        Image.fromarray(mask.astype(np.uint8) * 255).save(mask_png)
        print(f"wrote mask {mask_png}")
    if overlay_png:
        Image.fromarray(render_overlay(rgb, mask, points, labels, box_xyxy)).save(overlay_png)
        print(f"wrote overlay {overlay_png}")
    return 0
