"""Peak resident memory of everything mode: fixed decoder batches against the budget-sized one.

    python -m recipes.bench.everything_memory [--sizes 512 8000] [--batches 16 64 128 auto] [--model NAME_OR_FOLDER]
        [--image astronaut|coins] [--out FILE]

Each run is a fresh process (peak RSS = the whole process: model, image, embedding, decoder), TinySAM's
hierarchical generator (the shipped model unless told) with ONNX Runtime INT8 (the default engine), 32 points per
side, on skimage's astronaut (or coins) resized to a square of each size. Writes ``recipes/results/everything_memory.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from .model_eval import RESULTS

RUN = """
import json, resource, sys, time
import numpy as np
from PIL import Image
from skimage import data
from tinysam_annotate import SamHierarchicalMaskGenerator, load_model
size, batch, model, picture = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
pixels = data.astronaut() if picture == "astronaut" else np.stack([data.coins()] * 3, axis=-1)
image = np.asarray(Image.fromarray(pixels).resize((size, size), Image.BILINEAR))
generator = SamHierarchicalMaskGenerator(load_model(model, backend="onnx", precision="int8"),
                                         points_per_batch=None if batch == "auto" else int(batch))
start = time.perf_counter()
masks = generator.generate(image)
print(json.dumps({"seconds": time.perf_counter() - start, "masks": len(masks), "batch": generator.last_batch_size,
                  "prompts": sum(generator.last_round_sizes),
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(size: int, batch: str, model: str = "tinysam-synth", picture: str = "astronaut") -> dict:
    done = subprocess.run([sys.executable, "-c", RUN, str(size), batch, model, picture], capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 8000])
    parser.add_argument("--batches", nargs="+", default=["16", "64", "128", "auto"])
    parser.add_argument("--model", default="tinysam-synth", help="registered name or ONNX folder")
    parser.add_argument("--image", choices=["astronaut", "coins"], default="astronaut",
                        help="coins: most prompts keep a mask, so the upscaling's memory counts too")
    parser.add_argument("--out", type=Path, default=RESULTS / "everything_memory.md")
    args = parser.parse_args(argv)
    rows = []
    for size in args.sizes:
        for batch in args.batches:
            result = measure(size, batch, args.model, args.image)
            print(size, batch, result, flush=True)
            if "error" in result:
                rows.append(f"| {size} x {size} | {batch} | failed: {result['error']} | | | |")
                continue
            label = f"auto ({result['batch']})" if batch == "auto" else batch
            rows.append(f"| {size} x {size} | {label} | {result['peak_mb']:.0f} | {result['seconds']:.1f} | "
                        f"{result['prompts']} | {result['masks']} |")
    text = "\n".join([
        "# Everything mode: peak memory against the decoder batch",
        "",
        f"Fresh process per row (peak RSS of the whole process), hierarchical generator, model {args.model} on ONNX",
        f"Runtime INT8, 32 points per side, skimage's {args.image} resized. `auto` sizes the batch from the 1.5 GB",
        "default budget (`tinysam_annotate/amg/memory.py`). Times depend on what else the machine runs: measure",
        "speed with recipes/bench/everything_speed.py; memory is the point of this table.",
        "`python -m recipes.bench.everything_memory` writes this file.",
        "",
        "| image | points per batch | peak RSS (MB) | seconds | prompts | masks |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
    ])
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
