"""``tinysam-annotate bench``: time the chosen engine here (the full side-by-side table: ``python -m recipes.bench.latency``)."""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from .options import add_model_options


def add_commands(sub: Any) -> None:
    bench = sub.add_parser("bench", help="time the chosen engine (the full table: python -m recipes.bench.latency)")
    bench.add_argument("--quick", action="store_true", help=argparse.SUPPRESS)  # kept for old scripts: always quick now
    add_model_options(bench)
    bench.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Median encode time of a 1024 x 768 image (cache cleared each time) and of one click."""
    from ..predictor import SamPredictor
    from ..service import open_engine

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
