"""Images per second of batch everything mode: the local engine vs Ray Data with 1 and N actors.

All runs see the same generated images and the same model in one script, so the ratios are comparable;
absolute numbers depend on the machine. Writes a Markdown table.

    python -m recipes.bench.distributed --images 24 --out recipes/results/distributed.md [--model NAME]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from PIL import Image

from tinysam_annotate.batch import annotate_folder, expand_inputs
from tinysam_annotate.io.coco import read_coco
from tinysam_annotate.service import everything_generator, open_engine

from ..data.scenes import SceneConfig, generate_scene


def write_images(folder: Path, count: int, seed: int = 5_000_000) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        scene = generate_scene(seed + i, SceneConfig(min_size=384, max_size=512))
        Image.fromarray(scene.image).save(folder / f"scene{i:04d}.png")
    return expand_inputs([folder])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--model", default=None, help="registry name or path (default: the shipped model)")
    parser.add_argument("--backend", default="onnx")
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--points-per-side", type=int, default=16)
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", default="recipes/results/distributed.md")
    args = parser.parse_args(argv)

    import torch

    from tinysam_annotate.distributed import EngineSpec, RayOptions, annotate_folder_ray, require_ray

    ray = require_ray()
    options = dict(points_per_side=args.points_per_side, pred_iou_thresh=0.7, stability_score_thresh=0.9)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        images = write_images(Path(tmp) / "images", args.images)
        cores = os.cpu_count() or 1
        for threads in sorted({1, cores}):
            torch.set_num_threads(threads)
            os.environ["OMP_NUM_THREADS"] = os.environ["TINYSAM_ANNOTATE_THREADS"] = str(threads)
            backend = open_engine(args.model, args.backend, args.precision)
            generator = everything_generator(backend, "hierarchical", output_mode="coco_rle", **options)
            start = time.perf_counter()
            annotate_folder(images, Path(tmp) / f"local{threads}.json", generator, progress=False)
            seconds = time.perf_counter() - start
            count = len(read_coco(Path(tmp) / f"local{threads}.json")["annotations"])
            rows.append((f"local engine, {threads} thread(s)", seconds, count))
        spec = EngineSpec(args.model, args.backend, args.precision, "hierarchical", options, threads=1)
        for actors in args.actors:
            ray.init(num_cpus=actors, include_dashboard=False, log_to_driver=False)
            start = time.perf_counter()
            out = Path(tmp) / f"ray{actors}.json"
            annotate_folder_ray(images, out, spec, RayOptions(num_actors=actors), progress=False)
            seconds = time.perf_counter() - start
            rows.append((f"Ray Data, {actors} actor(s) x 1 CPU (incl. cluster + actor start)", seconds,
                         len(read_coco(out)["annotations"])))
            ray.shutdown()
    lines = [
        "# Batch everything mode: local engine vs Ray",
        "",
        f"{args.images} generated scenes (384-512 px), model {args.model or 'tinysam-synth (shipped)'} "
        f"{args.backend}/{args.precision}, hierarchical, {args.points_per_side} points per side; "
        f"{os.cpu_count()} CPU cores; all runs in one script (`python -m recipes.bench.distributed`).",
        "",
        "| engine | seconds | images / s | objects |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {name} | {sec:.1f} | {args.images / sec:.2f} | {n} |" for name, sec, n in rows]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
