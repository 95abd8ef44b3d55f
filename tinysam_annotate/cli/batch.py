"""``tinysam-annotate everything|boxes|embed IMAGES...``: many images into one COCO file or the embedding cache,
in this process or on a Ray actor pool."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import TinySamAnnotateError
from ..registry import DEFAULT_MODEL, SAM_THRESHOLDS, everything_thresholds
from .options import add_model_options, add_pool_options


def add_commands(sub: Any) -> None:
    every = sub.add_parser("everything", help="segment everything in images or folders into a COCO file (resumable)")
    every.add_argument("images", nargs="+", help="image files or folders")
    every.add_argument("--out", required=True, help="COCO JSON to write (existing images in it are skipped)")
    every.add_argument("--mode", default="hierarchical", choices=["hierarchical", "grid"])
    every.add_argument("--labels-dir", help="also write one label TIFF per image here")
    every.add_argument("--points-per-side", type=int, default=32)
    tuned, sam = everything_thresholds(DEFAULT_MODEL), SAM_THRESHOLDS
    every.add_argument("--pred-iou-thresh", type=float, help=f"minimum predicted IoU (default: what the model was tuned "
                       f"for, {DEFAULT_MODEL} {tuned.pred_iou}; SAM's {sam.pred_iou} otherwise)")
    every.add_argument("--stability-score-thresh", type=float, help=f"minimum stability score (default: the model's, "
                       f"{DEFAULT_MODEL} {tuned.stability}; SAM's {sam.stability} otherwise)")
    every.add_argument("--box-nms-thresh", type=float, default=0.7)
    every.add_argument("--mask-nms-thresh", type=float,
                       help="no two masks overlap with a mask IoU above this (default 0.7: near-duplicates removed)")
    every.add_argument("--keep-duplicates", action="store_true", help="no mask-IoU deduplication (SAM's exact pipeline)")
    every.add_argument("--min-area", type=int, default=0, help="remove islands and holes smaller than this")
    add_model_options(every)
    add_pool_options(every)
    every.set_defaults(func=run_everything)

    boxes = sub.add_parser("boxes", help="one mask per detector box (COCO results JSON) into a COCO file (resumable)")
    boxes.add_argument("images", nargs="+", help="image files or folders")
    boxes.add_argument("--detections", required=True, help="COCO results JSON: [{image_id or file_name, bbox, score, category_id}]")
    boxes.add_argument("--images-json", help="COCO file whose images map image_id to file_name (and give category names)")
    boxes.add_argument("--out", required=True, help="COCO JSON to write (existing images in it are skipped)")
    add_model_options(boxes)
    add_pool_options(boxes)
    boxes.set_defaults(func=run_boxes)

    embed = sub.add_parser("embed", help="precompute image embeddings into the shared disk cache the GUIs read")
    embed.add_argument("images", nargs="+", help="image files or folders")
    embed.add_argument("--cache-dir", help="cache folder (default: the user cache the app and napari plugin use)")
    embed.add_argument("--max-cache-gb", type=int, default=50)
    add_model_options(embed)
    add_pool_options(embed)
    embed.set_defaults(func=run_embed)



def _ray_settings(args: argparse.Namespace) -> tuple[Any, Any]:
    from ..distributed import EngineSpec, RayOptions, require_ray

    require_ray()  # a clear install hint before any work starts
    if args.num_actors < 1:
        raise TinySamAnnotateError("--num-actors must be at least 1")
    options = getattr(args, "generator_options", {})
    spec = EngineSpec(args.model, args.backend, args.precision, getattr(args, "mode", "hierarchical"), options,
                      threads=max(1, int(args.cpus_per_actor)))
    return spec, RayOptions(args.address, args.num_actors, args.cpus_per_actor, args.gpus_per_actor)


def _images(args: argparse.Namespace) -> list[Path]:
    from ..batch import expand_inputs

    images = expand_inputs(args.images)
    if not images:
        raise TinySamAnnotateError("no images found in the given paths")
    return images


def _report(result: Any, out: str) -> int:
    print(f"{len(result.processed)} images annotated ({result.annotations} objects), "
          f"{len(result.skipped)} already done or without prompts, "
          f"{len(result.failed)} unreadable; wrote {out}")
    for name, why in result.failed.items():
        print(f"  skipped {name}: {why}", file=sys.stderr)
    return 0 if not result.failed else 1


def run_everything(args: argparse.Namespace) -> int:
    from ..batch import annotate_folder
    from ..service import engine_description, everything_generator, open_engine

    images = _images(args)
    options: dict[str, Any] = dict(points_per_side=args.points_per_side, box_nms_thresh=args.box_nms_thresh,
                                   min_mask_region_area=args.min_area)
    if args.keep_duplicates or args.mask_nms_thresh is not None:
        options["mask_nms_thresh"] = None if args.keep_duplicates else args.mask_nms_thresh
    if args.pred_iou_thresh is not None:
        options["pred_iou_thresh"] = args.pred_iou_thresh
    if args.stability_score_thresh is not None:
        options["stability_score_thresh"] = args.stability_score_thresh
    args.generator_options = options
    if args.engine == "ray":
        from ..distributed import annotate_folder_ray

        print(f"everything mode: {args.mode}, {args.points_per_side} points per side, thresholds: "
              f"{_thresholds_text(options, 'the model was tuned for')}")
        spec, ray_options = _ray_settings(args)
        result = annotate_folder_ray(images, args.out, spec, ray_options, args.labels_dir, progress=not args.no_progress)
        return _report(result, args.out)
    backend = open_engine(args.model, args.backend, args.precision, args.providers, args.strict)
    engine = engine_description(backend, args.backend, args.precision)
    print(f"model {backend.identity.model_id} ({engine}) on {backend.device_description}")
    generator = everything_generator(backend, args.mode, output_mode="coco_rle", **options)
    print(f"everything mode: {args.mode}, {args.points_per_side} points per side, predicted IoU >= "
          f"{generator.pred_iou_thresh}, stability >= {generator.stability_score_thresh}, "
          f"duplicates {'kept' if generator.mask_nms_thresh is None else f'removed above mask IoU {generator.mask_nms_thresh}'}")
    result = annotate_folder(images, args.out, generator, labels_dir=args.labels_dir, progress=not args.no_progress)
    return _report(result, args.out)


def _thresholds_text(options: dict, default: str) -> str:
    given = {k: options[k] for k in ("pred_iou_thresh", "stability_score_thresh") if k in options}
    return ", ".join(f"{k} {v}" for k, v in given.items()) or default


def run_boxes(args: argparse.Namespace) -> int:
    from ..batch import annotate_boxes_folder, load_detections
    from ..predictor import SamPredictor
    from ..service import open_engine

    images = _images(args)
    detections, categories = load_detections(args.detections, args.images_json)
    missing = sorted(set(detections) - {p.name for p in images})
    if missing:
        print(f"warning: {len(missing)} images with detections are not among the inputs, e.g. {missing[0]}", file=sys.stderr)
    if args.engine == "ray":
        from ..distributed import annotate_boxes_ray

        spec, ray_options = _ray_settings(args)
        result = annotate_boxes_ray(images, detections, categories, args.out, spec, ray_options, progress=not args.no_progress)
        return _report(result, args.out)
    predictor = SamPredictor(open_engine(args.model, args.backend, args.precision, args.providers, args.strict))
    result = annotate_boxes_folder(images, detections, categories, args.out, predictor, progress=not args.no_progress)
    return _report(result, args.out)


def run_embed(args: argparse.Namespace) -> int:
    from ..batch import embed_folder
    from ..cache import EmbeddingCache, default_cache_dir
    from ..predictor import SamPredictor
    from ..service import open_engine

    images = _images(args)
    cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    if args.engine == "ray":
        from ..distributed import embed_folder_ray

        spec, ray_options = _ray_settings(args)
        status = embed_folder_ray(images, cache_dir, spec, ray_options, progress=not args.no_progress)
    else:
        cache = EmbeddingCache(cache_dir, max_disk_bytes=args.max_cache_gb << 30)
        predictor = SamPredictor(open_engine(args.model, args.backend, args.precision, args.providers, args.strict), cache)
        status = embed_folder(images, predictor, progress=not args.no_progress)
    errors = {k: v for k, v in status.items() if v.startswith("error")}
    computed = sum(v == "computed" for v in status.values())
    print(f"{computed} embeddings computed, {len(status) - computed - len(errors)} already cached, {len(errors)} unreadable; "
          f"cache {cache_dir}")
    for name, why in errors.items():
        print(f"  {name}: {why}", file=sys.stderr)
    return 0 if not errors else 1
