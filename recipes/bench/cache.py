"""Benchmark: cost of SamPredictor.set_image on a cache hit vs an encoder pass (TinySAM, 1024 input).

Runs miss, memory hit and disk hit side by side in one process for several image sizes and writes
a Markdown table to recipes/results/cache.md. Weights are random (speed does not depend on them);
pass --checkpoint for real ones.

    python -m recipes.bench.cache [--checkpoint tinysam.pth] [--repeats 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from tinysam_annotate import SamPredictor, sam_model_registry
from tinysam_annotate.cache import EmbeddingCache

SIZES = [(600, 800), (1024, 1024), (2048, 2048), (4000, 4000)]
RESULTS = Path(__file__).resolve().parent / "results" / "cache.md"


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    torch.manual_seed(0)
    sam = sam_model_registry["vit_t"](checkpoint=args.checkpoint)
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for h, w in SIZES:
            image = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
            uncached = SamPredictor(sam, cache=EmbeddingCache(None, memory_bytes=0))
            uncached.set_image(image)  # warm-up
            miss = _median_ms(partial(uncached.set_image, image), args.repeats)

            memory = SamPredictor(sam, cache=EmbeddingCache(None))
            memory.set_image(image)
            mem_hit = _median_ms(partial(memory.set_image, image), args.repeats * 4)
            assert memory.last_cache_hit

            on_disk = SamPredictor(sam, cache=EmbeddingCache(Path(tmp) / f"{h}x{w}"))
            on_disk.set_image(image)

            def disk_hit(on_disk: SamPredictor = on_disk, image: np.ndarray = image) -> None:
                on_disk.cache.clear_memory()
                on_disk.set_image(image)
                assert on_disk.last_cache_hit

            disk = _median_ms(disk_hit, args.repeats * 2)
            assert on_disk.cache.stats.disk_hits >= args.repeats * 2
            rows.append((h, w, miss, mem_hit, disk))
            print(f"{w}x{h}: miss {miss:.0f} ms, memory hit {mem_hit:.1f} ms, disk hit {disk:.1f} ms")

    lines = [
        "# Embedding cache: set_image cost on a hit vs an encoder pass",
        "",
        f"TinySAM (TinyViT-5M, 1024 input), torch {torch.__version__} eager FP32 on CPU "
        f"({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads). "
        f"Median of {args.repeats}+ runs each, all in one process. A hit hashes the pixels (sha256) and "
        "returns the stored embedding; a disk hit also reads and verifies the 4 MiB entry.",
        "",
        "| image (W x H) | miss: encode (ms) | memory hit (ms) | disk hit (ms) | memory hit / miss | disk hit / miss |",
        "|---|---|---|---|---|---|",
    ]
    for h, w, miss, mem_hit, disk in rows:
        lines.append(f"| {w} x {h} | {miss:.0f} | {mem_hit:.1f} | {disk:.1f} | {100 * mem_hit / miss:.2f}% | {100 * disk / miss:.2f}% |")
    lines.append("")
    lines.append("Written by `recipes/bench/cache.py`.")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
